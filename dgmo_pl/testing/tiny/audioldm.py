"""Seeded, randomly initialised AudioLDM (v1) components, offline: tiny, or any of the real sizes.

Written by ``python -m dgmo_pl.tiny OUT_DIR --backbone audioldm [--size tiny|full|full-m|full-l]``.

``tiny``: the tensors have the real shapes (8 latent channels, 64 mel bins, VAE
scale factor 4, 512 -> 32 text projection width aside), so every code path runs as with the real
model in seconds. ``full``: the AudioLDM-S architecture at its real size (ALGORITHM.md section 5;
UNet about 185 M parameters, about 1.6 GB on disk), to measure the real model's speed and memory,
which do not depend on the weights' values; ``full-m`` and ``full-l``: AudioLDM-M and -L (UNet
base width 192 and 256 instead of 128). The full sizes' configs are those of the hub's diffusers
checkpoints (``cvssp/audioldm``, ``cvssp/audioldm-l-full``; tests/test_real_configs.py compares
them). Either way the weights are random, so what it "separates" is not a separation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import (
    ClapTextConfig,
    ClapTextModelWithProjection,
    RobertaTokenizerFast,
    SpeechT5HifiGan,
    SpeechT5HifiGanConfig,
)

from dgmo_pl.testing.tiny.common import MAX_TOKENS, parameter_counts, save_components, tiny_tokenizer

__all__ = ["SIZES", "VAE_SCALING_FACTOR", "build", "full_components", "full_unet_config", "full_vae", "full_vocoder",
           "parameter_counts", "save", "save_audioldm", "save_full_audioldm", "save_tiny_audioldm", "tiny_components",
           "tiny_tokenizer"]

TEXT_WIDTH = 32

#: The sizes :func:`build` makes, and what each is.
SIZES = {
    "tiny": "tiny random AudioLDM",
    "full": "full-size random AudioLDM-S",
    "full-m": "full-size random AudioLDM-M",
    "full-l": "full-size random AudioLDM-L",
}
#: UNet base width (``model_channels``) of AudioLDM-S, -M and -L; block widths are (1, 2, 3, 5) times it.
BASE_WIDTHS = {"full": 128, "full-m": 192, "full-l": 256}
#: AudioLDM-S (ALGORITHM.md section 5): UNet block widths...
FULL_UNET_WIDTHS = (128, 256, 384, 640)
#: ...and attention heads per block, as the hub's UNet configs give them (diffusers'
#: ``attention_head_dim``, which it reads as the number of heads: its naming issue 2011).
FULL_ATTENTION_HEADS = 8
#: The full-size UNet's ``sample_size``: what diffusers' conversion writes (512 // VAE factor 4).
#: Only a record; no code path reads it.
FULL_UNET_SAMPLE_SIZE = 128
#: The VAE's latent scale (``scaling_factor`` of ``cvssp/audioldm``'s ``vae/config.json``, learnt).
VAE_SCALING_FACTOR = 0.9227914214134216
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


def tiny_vae() -> AutoencoderKL:
    """A 3-level VAE: 1 channel in and out, 8 latent channels, factor 4 (``[1, 1024, 64] -> [8, 256, 16]``)."""
    return AutoencoderKL(
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


def tiny_vocoder() -> SpeechT5HifiGan:
    """A narrow HiFi-GAN with AudioLDM's upsampling (64 mels, 160 samples per frame)."""
    return SpeechT5HifiGan(
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
    vae = tiny_vae()
    vocoder = tiny_vocoder()
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


def full_unet_config(base_width: int = 128) -> dict[str, Any]:
    """``UNet2DConditionModel`` arguments of AudioLDM's UNet.

    -S (base width 128, about 185 M parameters), -M (192), -L (256).

    Attention runs over the latent only (``cross_attention_dim`` = block width, no text tokens);
    the CLAP text embedding enters through ``class_labels``, projected and concatenated to the
    time embedding. Every attention has :data:`FULL_ATTENTION_HEADS` heads, as in the hub's
    diffusers checkpoints: their conversion script leaves ``attention_head_dim`` at diffusers'
    default 8, which diffusers reads as the number of heads (so 32 channels per head at width 256,
    80 at 640), where the original AudioLDM code has 32 channels in every head. The loaded real
    model runs with 8 heads, so this one does too; the parameter count and the matrix products'
    FLOPs do not depend on the split.
    """
    widths = tuple(base_width * m for m in (1, 2, 3, 5))
    return {
        "sample_size": FULL_UNET_SAMPLE_SIZE,
        "in_channels": 8,
        "out_channels": 8,
        "block_out_channels": widths,
        "layers_per_block": 2,
        "down_block_types": ("DownBlock2D",) + ("CrossAttnDownBlock2D",) * 3,
        "up_block_types": ("CrossAttnUpBlock2D",) * 3 + ("UpBlock2D",),
        "cross_attention_dim": widths,
        "attention_head_dim": FULL_ATTENTION_HEADS,
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


def full_vae(scaling_factor: float = VAE_SCALING_FACTOR, sample_size: int = 512) -> AutoencoderKL:
    """AudioLDM's VAE: 1 channel in and out, widths (128, 256, 512), 8 latent channels.

    Args:
        scaling_factor: The latent scale, learnt per checkpoint (default ``cvssp/audioldm``'s).
        sample_size: The config's ``sample_size`` (a record only: 512 for AudioLDM, 1024 for AudioLDM 2).
    """
    return AutoencoderKL(
        in_channels=1,
        out_channels=1,
        latent_channels=8,
        block_out_channels=(128, 256, 512),
        layers_per_block=2,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        sample_size=sample_size,
        scaling_factor=scaling_factor,
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


def full_components(seed: int = 0, size: str = "full") -> dict[str, object]:
    """Build the full-size AudioLDM components (``size``: full = S, full-m, full-l) with random weights."""
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer(FULL_MAX_TOKENS)
    return {
        "tokenizer": tokenizer,
        "text_encoder": full_text_encoder(tokenizer),
        "unet": UNet2DConditionModel(**full_unet_config(BASE_WIDTHS[size])),
        "vae": full_vae(),
        "vocoder": full_vocoder(),
        "scheduler": DDIMScheduler(**SCHEDULER_CONFIG),
    }


def build(size: str = "tiny", seed: int = 0) -> dict[str, object]:
    """The components of ``size`` (one of :data:`SIZES`) with seeded random weights."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    return tiny_components(seed) if size == "tiny" else full_components(seed, size)


def save(components: dict[str, object], out_dir: str | Path) -> Path:
    """Write ``components`` to ``out_dir`` in diffusers' AudioLDM layout; returns the folder."""
    return save_components(components, out_dir, "AudioLDMPipeline", _LIBRARIES)


def save_tiny_audioldm(out_dir: str | Path, seed: int = 0) -> Path:
    """Write the tiny model to ``out_dir`` in diffusers' AudioLDM layout; returns the folder."""
    return save(tiny_components(seed), out_dir)


def save_full_audioldm(out_dir: str | Path, seed: int = 0) -> Path:
    """Write the full-size random AudioLDM-S to ``out_dir`` in diffusers' layout; returns the folder."""
    return save(full_components(seed), out_dir)


def save_audioldm(out_dir: str | Path, seed: int = 0, size: str = "tiny") -> Path:
    """Write the random AudioLDM of ``size`` (one of :data:`SIZES`) to ``out_dir``; returns the folder."""
    return save(build(size, seed), out_dir)
