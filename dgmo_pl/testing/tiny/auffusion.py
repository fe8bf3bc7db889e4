"""Seeded, randomly initialised Auffusion models, offline: tiny, or the real size.

Written by ``python -m dgmo_pl.tiny OUT_DIR --backbone auffusion [--size tiny|full]``, in the
layout of the released ``auffusion/auffusion`` folders: ``vae/``, ``unet/``, ``scheduler/``,
``text_encoder_0/`` (CLIP text model and its tokenizer), ``condition_adapter_0/``,
``vocoder/`` (HiFi-GAN ``config.json`` + ``vocoder.pt``), ``condition_config.json`` and
``model_index.json``.

``tiny``: the pipeline sees the real shapes (spectrogram image [3, 256, 1024], VAE factor 8,
latents [4, 32, 128], 77 condition tokens, 256-mel vocoder with hop 160); only the widths are
small. ``full``: the real architecture (Stable Diffusion 1.5's UNet and VAE, CLIP ViT-L/14's text
encoder, a HiFi-GAN V1-size vocoder), to measure speed and memory. The weights are random either
way: what such a model "separates" is not a separation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

from dgmo_pl.diffusion.backbones.auffusion_parts import CONDITION_CONFIG, DEFAULT_MAX_LENGTH, ConditionAdapter
from dgmo_pl.diffusion.backbones.hifigan import HifiGan
from dgmo_pl.testing.tiny.common import parameter_counts, save_components

__all__ = ["SIZES", "build", "clip_tokenizer", "parameter_counts", "save"]

#: The sizes :func:`build` makes, and what each is.
SIZES = {"tiny": "tiny random Auffusion", "full": "full-size random Auffusion"}
TEXT_ENCODER, ADAPTER = "text_encoder_0", "condition_adapter_0"
#: Stable Diffusion 1.5's scheduler (Auffusion's is a PNDM config of it; the sampler reads it as DDIM).
#: ``clip_sample`` is ignored by PNDM but read by DDIM, which would otherwise clip its x0 predictions.
SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
}
#: CLIP ViT-L/14's vocabulary size (the offline tokenizer emits only its first 514 ids).
CLIP_VOCAB_SIZE = 49408
#: HiFi-GAN at V1 size for 256 mels and hop 160 = 5 * 4 * 2 * 2 * 2 (Auffusion's released config
#: was not at hand: these are V1's widths with kernels fitted to the rates).
FULL_VOCODER: dict[str, Any] = {
    "resblock": "1",
    "num_mels": 256,
    "upsample_rates": [5, 4, 2, 2, 2],
    "upsample_kernel_sizes": [11, 8, 4, 4, 4],
    "upsample_initial_channel": 512,
    "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
    "sampling_rate": 16000,
    "n_fft": 2048,
    "win_size": 1024,
    "hop_size": 160,
    "fmin": 0,
    "fmax": 8000,
}


def clip_tokenizer() -> CLIPTokenizer:
    """A byte-level CLIP tokenizer built in memory: the 256 byte symbols, alone and word-final, and no merges."""
    symbols = sorted(set(bytes_to_unicode().values()))
    tokens = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[], model_max_length=DEFAULT_MAX_LENGTH)


def _text_encoder(tokenizer: CLIPTokenizer, **sizes: Any) -> CLIPTextModel:
    ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in
           (("bos_token_id", "<|startoftext|>"), ("eos_token_id", "<|endoftext|>"), ("pad_token_id", "<|endoftext|>"))}
    config = CLIPTextConfig(max_position_embeddings=DEFAULT_MAX_LENGTH, hidden_act="quick_gelu", **ids, **sizes)
    return CLIPTextModel(config)


def _adapter(condition_dim: int, cross_attention_dim: int) -> ConditionAdapter:
    return ConditionAdapter({"condition_dim": condition_dim, "cross_attention_dim": cross_attention_dim,
                             "condition_type": "clip-vit-large-patch14_text"})


def tiny_components(seed: int = 0) -> dict[str, object]:
    """Tiny components with the real shapes (see the module docstring), seeded."""
    torch.manual_seed(seed)
    tokenizer = clip_tokenizer()
    text_encoder = _text_encoder(tokenizer, vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                 num_hidden_layers=2, num_attention_heads=2, projection_dim=16)
    unet = UNet2DConditionModel(
        sample_size=(32, 128),
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        # Attention only at the coarsest level keeps the tiny model fast on a CPU.
        down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 8, 16, 16),  # 4 levels: factor 8, as the real VAE
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        sample_size=256,
        mid_block_add_attention=False,  # 4096-token attention at [32, 128] would dominate the CPU time
    )
    vocoder = HifiGan({**FULL_VOCODER, "upsample_initial_channel": 32, "resblock_kernel_sizes": [3],
                       "resblock_dilation_sizes": [[1, 3, 5]]})
    return {
        "tokenizer": tokenizer,
        TEXT_ENCODER: text_encoder,
        ADAPTER: _adapter(16, 32),
        "unet": unet,
        "vae": vae,
        "vocoder": vocoder,
        "scheduler": PNDMScheduler(**SCHEDULER_CONFIG),
    }


def full_components(seed: int = 0) -> dict[str, object]:
    """Auffusion's real architecture with random weights, seeded.

    UNet: Stable Diffusion 1.5's (4 channels, widths 320-640-1280-1280, 2 layers per block, 8
    heads, cross-attention 768; about 860 M parameters). VAE: SD's (3 channels, widths
    128-256-512-512, 4 latent channels, scaling 0.18215; about 84 M). Text encoder: CLIP
    ViT-L/14's (768 wide, 12 layers, 12 heads; about 123 M). Adapter 768 -> 768. Vocoder:
    :data:`FULL_VOCODER`.
    """
    torch.manual_seed(seed)
    tokenizer = clip_tokenizer()
    text_encoder = _text_encoder(tokenizer, vocab_size=CLIP_VOCAB_SIZE, hidden_size=768, intermediate_size=3072,
                                 num_hidden_layers=12, num_attention_heads=12, projection_dim=768)
    unet = UNet2DConditionModel(
        sample_size=(32, 128),
        in_channels=4,
        out_channels=4,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=768,
        attention_head_dim=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        sample_size=512,
        scaling_factor=0.18215,
    )
    return {
        "tokenizer": tokenizer,
        TEXT_ENCODER: text_encoder,
        ADAPTER: _adapter(768, 768),
        "unet": unet,
        "vae": vae,
        "vocoder": HifiGan(FULL_VOCODER),
        "scheduler": PNDMScheduler(**SCHEDULER_CONFIG),
    }


def build(size: str = "tiny", seed: int = 0) -> dict[str, object]:
    """The components of ``size`` (one of :data:`SIZES`) with seeded random weights."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    return tiny_components(seed) if size == "tiny" else full_components(seed)


_LIBRARIES = {
    "vae": ("diffusers", "AutoencoderKL"),
    "unet": ("diffusers", "UNet2DConditionModel"),
    "scheduler": ("diffusers", "PNDMScheduler"),
}


def save(components: dict[str, object], out_dir: str | Path) -> Path:
    """Write ``components`` to ``out_dir`` in the released Auffusion layout; returns the folder."""
    parts = {name: part for name, part in components.items() if name != "tokenizer"}
    out = save_components(parts, out_dir, "AuffusionPipeline", _LIBRARIES)
    components["tokenizer"].save_pretrained(out / TEXT_ENCODER)
    # SD 1.5's PNDM scheduler config carries clip_sample false for DDIM; PNDM itself cannot take it.
    scheduler_file = out / "scheduler" / "scheduler_config.json"
    scheduler = {**json.loads(scheduler_file.read_text()), "clip_sample": False}
    scheduler_file.write_text(json.dumps(scheduler, indent=2) + "\n")
    adapter = components[ADAPTER].config
    condition = {
        "text_encoder_name": TEXT_ENCODER,
        "condition_adapter_name": ADAPTER,
        "condition_type": "clip-vit-large-patch14_text",
        "condition_max_length": DEFAULT_MAX_LENGTH,
        "condition_dim": adapter["condition_dim"],
        "cross_attention_dim": adapter["cross_attention_dim"],
    }
    (out / CONDITION_CONFIG).write_text(json.dumps([condition], indent=4) + "\n")
    return out
