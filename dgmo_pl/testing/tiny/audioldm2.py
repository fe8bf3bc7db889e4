"""Seeded, randomly initialised AudioLDM 2 components, offline: tiny, or the real sizes.

Written by ``python -m dgmo_pl.tiny OUT_DIR --backbone audioldm2 [--size tiny|full|full-large]``.

AudioLDM 2 conditions its UNet on two token sequences: 8 vectors that a GPT-2 generates from the
projected CLAP and FLAN-T5 embeddings of the prompt (``encoder_hidden_states``), and the T5 token
embeddings themselves (``encoder_hidden_states_1``, with their attention mask). Its front end, VAE
and vocoder are AudioLDM's.

``tiny``: every tensor the diffusion sampler sees has the real shape (latent ``[8, 256, 16]`` of a
``[1, 1024, 64]`` log-mel, 8 generated GPT-2 vectors), only the widths are small, so every code
path runs in seconds on a CPU. ``full`` / ``full-large``: the architectures of ``cvssp/audioldm2``
(UNet about 350 M parameters, 1.12 G in all) and ``cvssp/audioldm2-large`` (UNet about 720 M, 1.49 G
in all), for measuring speed and memory, which do not depend on the weights' values. Either way
the weights are random, so what such a model "separates" is not a separation.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import torch
from diffusers import DDIMScheduler
from diffusers.pipelines.audioldm2 import AudioLDM2ProjectionModel, AudioLDM2UNet2DConditionModel
from transformers import (
    ClapConfig,
    ClapFeatureExtractor,
    ClapModel,
    GPT2Config,
    GPT2LMHeadModel,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)

from dgmo_pl.testing.tiny.audioldm import (
    ROBERTA_VOCAB_SIZE,
    SCHEDULER_CONFIG,
    full_vae,
    full_vocoder,
    tiny_vae,
    tiny_vocoder,
)
from dgmo_pl.testing.tiny.common import MAX_TOKENS, parameter_counts, save_components, tiny_tokenizer

__all__ = ["SIZES", "build", "full_components", "full_unet_config", "parameter_counts", "save", "tiny_components",
           "tiny_t5_tokenizer", "tiny_unet_config"]

#: The sizes :func:`build` makes, and what each is.
SIZES = {
    "tiny": "tiny random AudioLDM 2",
    "full": "full-size random AudioLDM 2 (cvssp/audioldm2)",
    "full-large": "full-size random AudioLDM 2 large (cvssp/audioldm2-large)",
}
#: Vectors the GPT-2 generates per prompt (the UNet's ``encoder_hidden_states`` length).
GENERATED_TOKENS = 8
#: The full size's widths: UNet blocks, CLAP projection, GPT-2, FLAN-T5-large.
FULL_UNET_WIDTHS = (128, 256, 384, 640)
FULL_CLAP_WIDTH = 512
FULL_GPT2_WIDTH = 768
FULL_T5_WIDTH = 1024
#: CLAP's audio tower in ``cvssp/audioldm2`` and ``-large`` (their ``text_encoder/config.json``): an
#: HTSAT with 12 blocks in its third stage, 128 channels widening to 1024 (transformers' default
#: is 6 blocks, 96 to 768). The pipeline loads the whole ClapModel, so it takes memory, although
#: only the text tower runs.
FULL_CLAP_AUDIO: dict[str, Any] = {"depths": [2, 2, 12, 2], "hidden_size": 1024, "patch_embeds_hidden_size": 128}
#: The VAE's latent scale (``scaling_factor`` of ``cvssp/audioldm2``'s ``vae/config.json``, learnt)
#: and its config's ``sample_size`` (a record only); the architecture is AudioLDM's VAE.
VAE_SCALING_FACTOR = 0.4110932946205139
VAE_SAMPLE_SIZE = 1024
#: The full sizes' UNet attention: the width of what each transformer of an attention block
#: attends to (``None``: self-attention only; 768: the GPT-2 vectors; 1024: the T5 tokens), and
#: the layers per transformer. The original AudioLDM 2 adds a self-attention transformer before
#: those of its ``context_dim`` list, which is ``[768, 1024]``, and ``[768, 1024, None]`` with
#: depth 2 for the large model.
FULL_ATTENTION: dict[str, tuple[list[int | None], int]] = {
    "full": ([None, FULL_GPT2_WIDTH, FULL_T5_WIDTH], 1),
    "full-large": ([None, FULL_GPT2_WIDTH, FULL_T5_WIDTH, None], 2),
}
#: Tokens per text of the full-size tokenizers: RoBERTa's limit (CLAP), and the 128 T5 tokens
#: hard-coded in the original AudioLDM 2.
FULL_CLAP_TOKENS = 512
FULL_T5_TOKENS = 128
#: FLAN-T5's vocabulary size: the full-size embedding table has the real model's shape, although
#: the offline tokenizer emits only its few ids.
T5_VOCAB_SIZE = 32128
#: The tiny widths.
TINY_WIDTH = 32

#: Each component's (library, class) in ``model_index.json``, as diffusers writes them.
LIBRARIES = {
    "vae": ("diffusers", "AutoencoderKL"),
    "text_encoder": ("transformers", "ClapModel"),
    "text_encoder_2": ("transformers", "T5EncoderModel"),
    "projection_model": ("audioldm2", "AudioLDM2ProjectionModel"),
    "language_model": ("transformers", "GPT2LMHeadModel"),
    "tokenizer": ("transformers", "RobertaTokenizer"),
    "tokenizer_2": ("transformers", "T5Tokenizer"),
    "feature_extractor": ("transformers", "ClapFeatureExtractor"),
    "unet": ("audioldm2", "AudioLDM2UNet2DConditionModel"),
    "scheduler": ("diffusers", "DDIMScheduler"),
    "vocoder": ("transformers", "SpeechT5HifiGan"),
}


# --- tokenizers ------------------------------------------------------------------------------


def tiny_t5_tokenizer(max_length: int = MAX_TOKENS) -> T5Tokenizer:
    """A T5 (Unigram) tokenizer built in memory: pad 0, eos 1, unk 2, then characters (134 tokens).

    Args:
        max_length: The tokenizer's ``model_max_length`` (T5 texts are padded to the longest).
    """
    specials = ["<pad>", "</s>", "<unk>", "\u2581"]
    characters = [c for c in string.printable if not c.isspace()]
    word_starts = ["\u2581" + c for c in string.ascii_lowercase + string.digits]
    pieces = specials + characters + word_starts
    # Word starts score higher than bare characters, so a word begins with its "▁x" piece.
    scores = [0.0] * len(specials) + [-2.0] * len(characters) + [-1.0] * len(word_starts)
    return T5Tokenizer(vocab=list(zip(pieces, scores, strict=True)), extra_ids=0, model_max_length=max_length)


# --- tiny ------------------------------------------------------------------------------------


def tiny_unet_config() -> dict[str, Any]:
    """``AudioLDM2UNet2DConditionModel`` arguments of the tiny UNet: real latent shape, small widths.

    Attention (self, GPT-2 stream, T5 stream) only at the coarsest level keeps it fast on a CPU.
    """
    return {
        "sample_size": 256,
        "in_channels": 8,
        "out_channels": 8,
        "block_out_channels": (8, 16, 32),
        "layers_per_block": 1,
        "norm_num_groups": 8,
        "down_block_types": ("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        "cross_attention_dim": [[None, TINY_WIDTH, TINY_WIDTH]] * 3,
        "attention_head_dim": 2,
    }


def tiny_clap(tokenizer_length: int, pad_token_id: int) -> ClapModel:
    """A tiny CLAP: 2-layer text tower, 2-stage HTSAT audio tower, 32-d projection."""
    text = {
        "vocab_size": tokenizer_length,
        "hidden_size": TINY_WIDTH,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": MAX_TOKENS + 2,
        "pad_token_id": pad_token_id,
        "projection_dim": TINY_WIDTH,
    }
    audio = {
        "spec_size": 64,
        "window_size": 4,
        "num_mel_bins": 64,
        "depths": [1, 1],
        "num_attention_heads": [2, 2],
        "hidden_size": 16,
        "patch_size": 2,
        "patch_stride": 2,
        "patch_embed_input_channels": 4,
        "intermediate_size": 32,
        "projection_dim": TINY_WIDTH,
    }
    return ClapModel(ClapConfig(text_config=text, audio_config=audio, projection_dim=TINY_WIDTH))


def tiny_t5(vocab_size: int) -> T5EncoderModel:
    """A 2-layer gated-GELU T5 encoder, 32 wide."""
    return T5EncoderModel(
        T5Config(
            vocab_size=vocab_size, d_model=TINY_WIDTH, d_ff=64, d_kv=16, num_heads=2, num_layers=2,
            feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
        )
    )  # fmt: skip


def gpt2(width: int, layers: int, heads: int, positions: int, vocab_size: int) -> GPT2LMHeadModel:
    """The language model that generates :data:`GENERATED_TOKENS` vectors (only its hidden states are used)."""
    config = GPT2Config(
        n_embd=width, n_layer=layers, n_head=heads, n_positions=positions, vocab_size=vocab_size,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    config.max_new_tokens = GENERATED_TOKENS
    return GPT2LMHeadModel(config)


def tiny_components(seed: int = 0) -> dict[str, object]:
    """Build the tiny components with a fixed seed."""
    torch.manual_seed(seed)
    tokenizer, tokenizer_2 = tiny_tokenizer(), tiny_t5_tokenizer()
    # Room for the CLAP vector, the T5 tokens (each with start/end vectors) and the generated ones.
    positions = 2 * MAX_TOKENS + GENERATED_TOKENS
    return {
        "vae": tiny_vae(),
        "text_encoder": tiny_clap(len(tokenizer), tokenizer.pad_token_id),
        "text_encoder_2": tiny_t5(len(tokenizer_2)),
        "projection_model": AudioLDM2ProjectionModel(TINY_WIDTH, TINY_WIDTH, TINY_WIDTH),
        "language_model": gpt2(TINY_WIDTH, layers=2, heads=2, positions=positions, vocab_size=64),
        "tokenizer": tokenizer,
        "tokenizer_2": tokenizer_2,
        "feature_extractor": ClapFeatureExtractor(),
        "unet": AudioLDM2UNet2DConditionModel(**tiny_unet_config()),
        "scheduler": DDIMScheduler(**SCHEDULER_CONFIG),
        "vocoder": tiny_vocoder(),
    }


# --- full size -------------------------------------------------------------------------------


def full_unet_config(size: str = "full") -> dict[str, Any]:
    """``AudioLDM2UNet2DConditionModel`` arguments of AudioLDM 2's UNet (full: 347 M parameters, full-large: 718 M).

    Each attention block runs a transformer per entry of :data:`FULL_ATTENTION`: self-attention
    only (``None``), cross-attention to the GPT-2 vectors (768 wide) and to the T5 tokens (1024
    wide). diffusers reads ``attention_head_dim`` as the number of heads (its naming issue 2011);
    the count of parameters does not depend on it.
    """
    attends_to, layers = FULL_ATTENTION[size]
    return {
        "sample_size": 256,
        "in_channels": 8,
        "out_channels": 8,
        "block_out_channels": FULL_UNET_WIDTHS,
        "layers_per_block": 2,
        "down_block_types": ("DownBlock2D",) + ("CrossAttnDownBlock2D",) * 3,
        "up_block_types": ("CrossAttnUpBlock2D",) * 3 + ("UpBlock2D",),
        "cross_attention_dim": [attends_to] * len(FULL_UNET_WIDTHS),
        "transformer_layers_per_block": layers,
        "attention_head_dim": 8,
    }


def full_clap(pad_token_id: int) -> ClapModel:
    """AudioLDM 2's CLAP: RoBERTa-base text tower, the larger HTSAT audio tower (:data:`FULL_CLAP_AUDIO`), 512-d."""
    text = {
        "vocab_size": ROBERTA_VOCAB_SIZE,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "max_position_embeddings": FULL_CLAP_TOKENS + 2,
        "type_vocab_size": 1,
        "pad_token_id": pad_token_id,
        "projection_dim": FULL_CLAP_WIDTH,
    }
    return ClapModel(ClapConfig(text_config=text, audio_config=FULL_CLAP_AUDIO, projection_dim=FULL_CLAP_WIDTH))


def full_t5() -> T5EncoderModel:
    """FLAN-T5-large's encoder: 1024 wide, 24 layers, 16 heads of 64, gated-GELU 2816."""
    return T5EncoderModel(
        T5Config(
            vocab_size=T5_VOCAB_SIZE, d_model=FULL_T5_WIDTH, d_ff=2816, d_kv=64, num_heads=16, num_layers=24,
            feed_forward_proj="gated-gelu", tie_word_embeddings=False, pad_token_id=0, eos_token_id=1,
            decoder_start_token_id=0,
        )
    )  # fmt: skip


def full_components(seed: int = 0, size: str = "full") -> dict[str, object]:
    """Build the full-size AudioLDM 2 components (``size``: full or full-large) with random weights."""
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer(FULL_CLAP_TOKENS)
    return {
        "vae": full_vae(VAE_SCALING_FACTOR, VAE_SAMPLE_SIZE),
        "text_encoder": full_clap(tokenizer.pad_token_id),
        "text_encoder_2": full_t5(),
        "projection_model": AudioLDM2ProjectionModel(FULL_CLAP_WIDTH, FULL_T5_WIDTH, FULL_GPT2_WIDTH),
        "language_model": gpt2(FULL_GPT2_WIDTH, layers=12, heads=12, positions=1024, vocab_size=50257),
        "tokenizer": tokenizer,
        "tokenizer_2": tiny_t5_tokenizer(FULL_T5_TOKENS),
        "feature_extractor": ClapFeatureExtractor(),
        "unet": AudioLDM2UNet2DConditionModel(**full_unet_config(size)),
        "scheduler": DDIMScheduler(**SCHEDULER_CONFIG),
        "vocoder": full_vocoder(),
    }


# --- the builder contract --------------------------------------------------------------------


def build(size: str = "tiny", seed: int = 0) -> dict[str, object]:
    """The components of ``size`` (one of :data:`SIZES`) with seeded random weights."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    return tiny_components(seed) if size == "tiny" else full_components(seed, size)


def save(components: dict[str, object], out_dir: str | Path) -> Path:
    """Write ``components`` to ``out_dir`` in diffusers' AudioLDM 2 layout; returns the folder.

    Components left out (e.g. the vocoder) are left out of the index too.
    """
    libraries = {name: lib for name, lib in LIBRARIES.items() if name in components}
    return save_components(components, out_dir, "AudioLDM2Pipeline", libraries)
