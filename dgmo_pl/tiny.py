"""Write a tiny, seeded, randomly initialised AudioLDM in diffusers layout, offline.

Usage: ``python -m dgmo_pl.tiny OUT_DIR``. The tensors have the real shapes (8 latent channels,
64 mel bins, VAE scale factor 4, 512 -> 32 text projection width aside), so every code path runs
as with the real model; the weights are random, so what it "separates" is not a separation.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

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


def tiny_tokenizer() -> RobertaTokenizerFast:
    """A byte-level RoBERTa tokenizer built in memory: special tokens plus the 256 byte symbols."""
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    symbols = specials + sorted(set(bytes_to_unicode().values())) + ["<mask>"]
    vocab = {token: i for i, token in enumerate(symbols)}
    return RobertaTokenizerFast(vocab=vocab, merges=[], model_max_length=MAX_TOKENS)


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
    scheduler = DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.0015,
        beta_end=0.0195,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
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


def save_tiny_audioldm(out_dir: str | Path, seed: int = 0) -> Path:
    """Write the tiny model to ``out_dir`` in diffusers' AudioLDM layout; returns the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, component in tiny_components(seed).items():
        component.save_pretrained(out / name)
    index = {"_class_name": "AudioLDMPipeline", "_diffusers_version": diffusers.__version__}
    index.update({name: list(lib) for name, lib in _LIBRARIES.items()})
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    return out


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m dgmo_pl.tiny OUT_DIR [--seed N]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="folder to write (created if needed)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = parser.parse_args(argv)
    out = save_tiny_audioldm(args.out_dir, args.seed)
    print(f"wrote a tiny random AudioLDM (not a separation model) to {out}")


if __name__ == "__main__":
    main()
