"""Mixtures of real recordings with known sources, for tests, benchmarks and examples."""

from __future__ import annotations

from pathlib import Path

import torch

from dgmo_pl.audio import frontend as fe
from dgmo_pl.audio.io import read_audio


def load_source(path: str | Path, spec: fe.SpectrogramConfig) -> torch.Tensor:
    """One segment of a recording at the model's rate, looped if short, at unit RMS: ``-> [S]``."""
    waveform, rate = read_audio(path, "source")
    mono = fe.resample(fe.to_mono(waveform), rate, spec.sample_rate)
    repeats = -(-spec.segment_samples // mono.shape[-1])
    segment = mono.repeat(repeats)[: spec.segment_samples]
    return segment / segment.pow(2).mean().sqrt()


def mix_sources(
    paths: list[str | Path], spec: fe.SpectrogramConfig = fe.SpectrogramConfig(), peak: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Equal-RMS (0 dB) mixture of recordings, scaled to ``peak``.

    Returns:
        ``(mixture [S], sources [len(paths), S])``, with ``mixture == sources.sum(0)``.
    """
    sources = torch.stack([load_source(p, spec) for p in paths])
    scale = peak / sources.sum(0).abs().amax()
    sources = sources * scale
    return sources.sum(0), sources
