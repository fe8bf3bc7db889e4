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


def looped_source(path: str | Path, seconds: float, sample_rate: int) -> torch.Tensor:
    """A recording, mixed to mono, resampled to ``sample_rate`` and looped to ``seconds``, at unit RMS: ``-> [N]``."""
    waveform, rate = read_audio(path, "source")
    mono = fe.resample(fe.to_mono(waveform), rate, sample_rate)
    length = round(seconds * sample_rate)
    looped = mono.repeat(-(-length // mono.shape[-1]))[:length]
    return looped / looped.pow(2).mean().sqrt()


def mix_panned(
    paths: list[str | Path], seconds: float, sample_rate: int, channels: int = 2, peak: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Equal-RMS (0 dB) mixture of looped recordings, each panned to its own place, scaled to ``peak``.

    Source ``i`` of ``S`` sits at angle ``(i + 1) / (S + 1) * pi / 2`` of a constant-power pan
    (left gain ``cos``, right gain ``sin``; mono for one channel), so stereo sources differ
    between channels.

    Returns:
        ``(mixture [C, N], sources [S, C, N])``, with ``mixture == sources.sum(0)``.
    """
    mono = torch.stack([looped_source(p, seconds, sample_rate) for p in paths])
    if channels == 1:
        sources = mono[:, None]
    elif channels == 2:
        angles = torch.arange(1, len(paths) + 1) / (len(paths) + 1) * (torch.pi / 2)
        gains = torch.stack([angles.cos(), angles.sin()], dim=1) * 2**0.5  # [S, 2], unit RMS per source
        sources = mono[:, None] * gains[..., None]
    else:
        raise ValueError(f"channels must be 1 or 2, got {channels}")
    sources = sources * (peak / sources.sum(0).abs().amax())
    return sources.sum(0), sources
