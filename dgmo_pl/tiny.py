"""Write a seeded, randomly initialised AudioLDM in diffusers layout, offline: tiny or full size.

Usage: ``python -m dgmo_pl.tiny OUT_DIR [--size tiny|full] [--seed N]``.

``tiny`` (the default): the tensors have the real shapes (8 latent channels, 64 mel bins, VAE
scale factor 4, 512 -> 32 text projection width aside), so every code path runs as with the real
model in seconds. ``full``: the AudioLDM-S architecture at its real size (ALGORITHM.md section 5;
UNet about 185 M parameters, about 1.6 GB on disk), to measure the real model's speed and memory,
which do not depend on the weights' values. Either way the weights are random, so what it
"separates" is not a separation.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Literal

import diffusers
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import (
    ClapTextConfig,
    ClapTextModelWithProjection,
    RobertaTokenizerFast,
    SpeechT5HifiGan,
    SpeechT5HifiGanConfig,
)
from transformers.convert_slow_tokenizer import bytes_to_unicode

TEXT_WIDTH = 32
MAX_TOKENS = 32

#: Model sizes :func:`save_audioldm` writes.
Size = Literal["tiny", "full"]
#: AudioLDM-S (ALGORITHM.md section 5): UNet block widths...
FULL_UNET_WIDTHS = (128, 256, 384, 640)
#: ...and channels per attention head (the original's ``num_head_channels``).
FULL_HEAD_CHANNELS = 32
#: Width of the CLAP text embedding, the UNet's ``class_labels``.
FULL_TEXT_WIDTH = 512
#: Tokens per text for the full-size tokenizer (as CLIP-style models; the text tower allows 512).
FULL_MAX_TOKENS = 77
#: RoBERTa-base's vocabulary size: the full-size embedding table has the real model's shape,
#: although the offline tokenizer emits only its 261 byte-level ids.
ROBERTA_VOCAB_SIZE = 50265
#: AudioLDM's DDIM scheduler (both sizes): 1000 training steps, scaled-linear betas.
SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.0015,
    "beta_end": 0.0195,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}


def tiny_tokenizer(max_length: int = MAX_TOKENS) -> RobertaTokenizerFast:
    """A byte-level RoBERTa tokenizer built in memory: special tokens plus the 256 byte symbols.

    Args:
        max_length: The tokenizer's ``model_max_length`` (texts are padded to it).
    """
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    symbols = specials + sorted(set(bytes_to_unicode().values())) + ["<mask>"]
    vocab = {token: i for i, token in enumerate(symbols)}
    return RobertaTokenizerFast(vocab=vocab, merges=[], model_max_length=max_length)


def tiny_components(seed: int = 0) -> dict[str, object]:
    """Build the tiny components with a fixed seed."""
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    text_encoder = ClapTextModelWithProjection(
        ClapTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=MAX_TOKENS + 2,
            projection_dim=TEXT_WIDTH,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=(256, 16),
        in_channels=8,
        out_channels=8,
        block_out_channels=(8, 16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        # Attention only at the coarsest level keeps the tiny model fast on a CPU.
        down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        cross_attention_dim=(8, 16, 32),
        attention_head_dim=8,
        class_embed_type="simple_projection",
        projection_class_embeddings_input_dim=TEXT_WIDTH,
        class_embeddings_concat=True,
    )
    vae = AutoencoderKL(
        in_channels=1,
        out_channels=1,
        latent_channels=8,
        block_out_channels=(8, 16, 16),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        sample_size=256,
        scaling_factor=0.9228,
    )
    vocoder = SpeechT5HifiGan(
        SpeechT5HifiGanConfig(
            model_in_dim=64,
            sampling_rate=16000,
            upsample_initial_channel=32,
            upsample_rates=[5, 4, 2, 2, 2],
            upsample_kernel_sizes=[16, 16, 8, 4, 4],
            resblock_kernel_sizes=[3],
            resblock_dilation_sizes=[[1]],
            normalize_before=False,
            initializer_range=0.2,  # the default 0.01 makes a tiny vocoder output silence
        )
    )
    scheduler = DDIMScheduler(**SCHEDULER_CONFIG)
    return {
        "tokenizer": tokenizer,
        "text_encoder": text_encoder,
        "unet": unet,
        "vae": vae,
        "vocoder": vocoder,
        "scheduler": scheduler,
    }


_LIBRARIES = {
    "tokenizer": ("transformers", "RobertaTokenizerFast"),
    "text_encoder": ("transformers", "ClapTextModelWithProjection"),
    "unet": ("diffusers", "UNet2DConditionModel"),
    "vae": ("diffusers", "AutoencoderKL"),
    "vocoder": ("transformers", "SpeechT5HifiGan"),
    "scheduler": ("diffusers", "DDIMScheduler"),
}


def full_unet_config() -> dict[str, Any]:
    """``UNet2DConditionModel`` arguments of AudioLDM-S's UNet (about 185 M parameters).

    Attention runs over the latent only (``cross_attention_dim`` = block width, no text tokens);
    the CLAP text embedding enters through ``class_labels``, projected and concatenated to the
    time embedding. diffusers reads ``attention_head_dim`` as the number of heads (its naming
    issue 2011), so 32 channels per head is expressed as width / 32 heads per block. (The
    diffusers conversion of the released checkpoints leaves it at the default 8 heads; the
    parameter count and FLOPs are the same either way.)
    """
    widths = FULL_UNET_WIDTHS
    return {
        "sample_size": (256, 16),
        "in_channels": 8,
        "out_channels": 8,
        "block_out_channels": widths,
        "layers_per_block": 2,
        "down_block_types": ("DownBlock2D",) + ("CrossAttnDownBlock2D",) * 3,
        "up_block_types": ("CrossAttnUpBlock2D",) * 3 + ("UpBlock2D",),
        "cross_attention_dim": widths,
        "attention_head_dim": tuple(width // FULL_HEAD_CHANNELS for width in widths),
        "class_embed_type": "simple_projection",
        "projection_class_embeddings_input_dim": FULL_TEXT_WIDTH,
        "class_embeddings_concat": True,
    }


def full_text_encoder(tokenizer: RobertaTokenizerFast) -> ClapTextModelWithProjection:
    """CLAP's text tower at RoBERTa-base size (768 wide, 12 layers, 12 heads), projected to 512."""
    return ClapTextModelWithProjection(
        ClapTextConfig(
            vocab_size=ROBERTA_VOCAB_SIZE,
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            intermediate_size=3072,
            max_position_embeddings=514,
            type_vocab_size=1,
            projection_dim=FULL_TEXT_WIDTH,
            pad_token_id=tokenizer.pad_token_id,
        )
    )


def full_vae() -> AutoencoderKL:
    """AudioLDM-S's VAE: 1 channel in and out, widths (128, 256, 512), 8 latent channels."""
    return AutoencoderKL(
        in_channels=1,
        out_channels=1,
        latent_channels=8,
        block_out_channels=(128, 256, 512),
        layers_per_block=2,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        sample_size=512,
        scaling_factor=0.9228,
    )


def full_vocoder() -> SpeechT5HifiGan:
    """AudioLDM's HiFi-GAN: 64 mels in, 16 kHz out, 1024 initial channels, 3 residual kernels."""
    return SpeechT5HifiGan(
        SpeechT5HifiGanConfig(
            model_in_dim=64,
            sampling_rate=16000,
            upsample_initial_channel=1024,
            upsample_rates=[5, 4, 2, 2, 2],
            upsample_kernel_sizes=[16, 16, 8, 4, 4],
            resblock_kernel_sizes=[3, 7, 11],
            resblock_dilation_sizes=[[1, 3, 5]] * 3,
            normalize_before=False,
        )
    )


def full_components(seed: int = 0) -> dict[str, object]:
    """Build the full-size AudioLDM-S components with random weights and a fixed seed."""
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer(FULL_MAX_TOKENS)
    return {
        "tokenizer": tokenizer,
        "text_encoder": full_text_encoder(tokenizer),
        "unet": UNet2DConditionModel(**full_unet_config()),
        "vae": full_vae(),
        "vocoder": full_vocoder(),
        "scheduler": DDIMScheduler(**SCHEDULER_CONFIG),
    }


def parameter_counts(components: dict[str, object]) -> dict[str, int]:
    """Number of parameters of each network among ``components``."""
    return {
        name: sum(p.numel() for p in part.parameters())
        for name, part in components.items()
        if isinstance(part, torch.nn.Module)
    }


def _save(components: dict[str, object], out_dir: str | Path) -> Path:
    """Write ``components`` to ``out_dir`` in diffusers' AudioLDM layout; returns the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, component in components.items():
        component.save_pretrained(out / name)
    index = {"_class_name": "AudioLDMPipeline", "_diffusers_version": diffusers.__version__}
    index.update({name: list(lib) for name, lib in _LIBRARIES.items()})
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    return out


def save_tiny_audioldm(out_dir: str | Path, seed: int = 0) -> Path:
    """Write the tiny model to ``out_dir`` in diffusers' AudioLDM layout; returns the folder."""
    return _save(tiny_components(seed), out_dir)


def save_full_audioldm(out_dir: str | Path, seed: int = 0) -> Path:
    """Write the full-size random AudioLDM-S to ``out_dir`` in diffusers' layout; returns the folder."""
    return _save(full_components(seed), out_dir)


def save_audioldm(out_dir: str | Path, seed: int = 0, size: Size = "tiny") -> Path:
    """Write the random AudioLDM of ``size`` ("tiny" or "full") to ``out_dir``; returns the folder."""
    if size not in ("tiny", "full"):
        raise ValueError(f"size must be 'tiny' or 'full', got {size!r}")
    return save_full_audioldm(out_dir, seed) if size == "full" else save_tiny_audioldm(out_dir, seed)


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m dgmo_pl.tiny OUT_DIR [--size tiny|full] [--seed N]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="folder to write (created if needed)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument(
        "--size", choices=("tiny", "full"), default="tiny",
        help="tiny: seconds on a CPU (default); full: AudioLDM-S's real architecture, about 1.6 GB",
    )
    args = parser.parse_args(argv)
    components = full_components(args.seed) if args.size == "full" else tiny_components(args.seed)
    out = _save(components, args.out_dir)
    what = "full-size random AudioLDM-S" if args.size == "full" else "tiny random AudioLDM"
    print(f"wrote a {what} (not a separation model) to {out}")
    for name, count in parameter_counts(components).items():
        print(f"  {name:<12} {count / 1e6:8.2f} M parameters")


if __name__ == "__main__":
    main()
