"""A tiny, randomly initialised CLAP written offline, for testing CLAPScore without the hub.

Usage: ``python -m dgmo_pl.testing.tiny_clap OUT_DIR [--seed N]``.

The model has LAION CLAP's architecture (HTS-AT audio tower, RoBERTa text tower) at toy widths;
its feature extractor is LAION's (48 kHz, 64 mel bins, 10 s windows), so every code path of
:class:`dgmo_pl.evaluation.metrics.ClapScorer` runs as with the real model, in well under a
second. Its scores mean nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor

from dgmo_pl.testing.tiny import tiny_tokenizer

#: Tokens per text of the tiny tokenizer (longer texts are truncated).
MAX_TOKENS = 32
#: Width of the joint audio-text embedding.
EMBED_WIDTH = 16


def tiny_clap(seed: int = 0) -> tuple[ClapModel, ClapProcessor]:
    """Build the tiny CLAP model and its processor with a fixed seed."""
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer(MAX_TOKENS)
    config = ClapConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 32,
            "max_position_embeddings": MAX_TOKENS + 2,
            "pad_token_id": tokenizer.pad_token_id,
            "projection_dim": EMBED_WIDTH,
        },
        audio_config={
            "hidden_size": 32,
            "patch_embeds_hidden_size": 16,
            "depths": [1, 1],
            "num_attention_heads": [1, 2],
            "projection_dim": EMBED_WIDTH,
            "enable_fusion": False,
        },
        projection_dim=EMBED_WIDTH,
    )
    model = ClapModel(config).eval()
    # LAION's front end: 48 kHz, 64 mel bins from 50 Hz to 14 kHz, 10 s windows, repeat-padding.
    extractor = ClapFeatureExtractor(
        feature_size=64, sampling_rate=48_000, hop_length=480, max_length_s=10, fft_window_size=1024,
        frequency_min=50, frequency_max=14_000, truncation="rand_trunc", padding="repeatpad",
    )
    return model, ClapProcessor(feature_extractor=extractor, tokenizer=tokenizer)


def save_tiny_clap(folder: str | Path, seed: int = 0) -> Path:
    """Write the tiny CLAP (model and processor) to ``folder`` with ``save_pretrained``.

    ``ClapScorer.load(folder)`` then loads it offline.

    Returns:
        The folder.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    model, processor = tiny_clap(seed)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m dgmo_pl.testing.tiny_clap OUT_DIR [--seed N]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="folder to write (created if needed)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = parser.parse_args(argv)
    print(f"wrote a tiny random CLAP (scores mean nothing) to {save_tiny_clap(args.out_dir, args.seed)}")


if __name__ == "__main__":
    main()
