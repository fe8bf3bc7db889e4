"""The diffusion models' front ends (ALGORITHM.md section 1) as pure functions.

No function keeps state between calls: normalisation returns its statistics and the caller passes
them back to undo it. Shapes: ``B`` batch, ``N`` samples, ``F`` frequency bins (``n_fft // 2 + 1``),
``T`` STFT frames, ``M`` mel bins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
import torchaudio.functional as AF

#: Floor of the mel magnitudes before the logarithm, and of the phase denominator.
EPS = 1e-5

#: How log-mels are laid out for a diffusion model: AudioLDM's time-major ``[1, T, M]`` log-mel,
#: or an image ``[1, M, T]`` in [0, 1] with high frequencies on top (Auffusion).
Layout = Literal["time-major", "image"]


@dataclass(frozen=True)
class SpectrogramConfig:
    """Front-end settings of a diffusion model; the defaults are AudioLDM's (the paper's).

    Attributes:
        sample_rate: Rate the model works at, in Hz.
        segment_seconds: Length of the segment the model sees (shorter audio is zero-padded,
            longer audio cropped).
        n_fft: FFT size of the STFT.
        hop_length: STFT hop in samples.
        win_length: Hann window length in samples.
        n_mels: Number of mel bins (Slaney scale and normalisation).
        f_min: Lowest mel frequency in Hz.
        f_max: Highest mel frequency in Hz.
        n_frames: STFT frames kept for the mask and the diffusion input.
        peak: Peak absolute value after normalisation.
        layout: How the model sees a log-mel (see :data:`Layout`).
        image_max: With the ``image`` layout, the magnitude mapped to 1 (``EPS`` maps to 0).
    """

    sample_rate: int = 16000
    segment_seconds: float = 10.24
    n_fft: int = 1024
    hop_length: int = 160
    win_length: int = 1024
    n_mels: int = 64
    f_min: float = 0.0
    f_max: float = 8000.0
    n_frames: int = 1024
    peak: float = 0.5
    layout: Layout = "time-major"
    image_max: float = 200.0

    @property
    def n_freq(self) -> int:
        """Number of one-sided STFT bins."""
        return self.n_fft // 2 + 1

    @property
    def segment_samples(self) -> int:
        """Segment length in samples (163,840 for the defaults)."""
        return round(self.segment_seconds * self.sample_rate)


class NormStats(NamedTuple):
    """What :func:`normalise` removed: the mean, and the peak after removing it."""

    mean: float
    peak: float


def to_mono(waveform: torch.Tensor) -> torch.Tensor:
    """Average the channels: ``[C, N] -> [N]``."""
    return waveform.mean(dim=0)


def resample(waveform: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """Band-limited resampling along the last axis: ``[..., N] -> [..., N * new / orig]``."""
    if orig_rate == new_rate:
        return waveform
    return AF.resample(waveform, orig_rate, new_rate)


def fit_length(waveform: torch.Tensor, length: int) -> torch.Tensor:
    """Zero-pad or crop the last axis to ``length``: ``[..., N] -> [..., length]``.

    Cropping keeps the beginning, as the reference implementation does.
    """
    n = waveform.shape[-1]
    if n >= length:
        return waveform[..., :length]
    return F.pad(waveform, (0, length - n))


def normalise(waveform: torch.Tensor, peak: float = 0.5) -> tuple[torch.Tensor, NormStats]:
    """Remove the mean and scale to a peak absolute value of ``peak``: ``[N] -> [N]``.

    Returns:
        The normalised waveform and the statistics that :func:`denormalise` needs.
    """
    mean = waveform.mean()
    centred = waveform - mean
    top = centred.abs().amax()
    if not top > 0:
        raise ValueError("cannot normalise a constant signal")
    return centred * (peak / top), NormStats(float(mean), float(top))


def denormalise(waveform: torch.Tensor, stats: NormStats, peak: float = 0.5) -> torch.Tensor:
    """Undo :func:`normalise` with the statistics it returned: ``[..., N] -> [..., N]``."""
    return waveform * (stats.peak / peak) + stats.mean


def stft_frames(waveform: torch.Tensor, n_fft: int, hop_length: int, win_length: int) -> torch.Tensor:
    """Centred, reflect-padded, one-sided Hann STFT: ``[..., N] -> [..., n_fft // 2 + 1, N // hop + 1]`` complex."""
    lead = waveform.shape[:-1]
    frames = torch.stft(
        waveform.reshape(-1, waveform.shape[-1]),
        n_fft=n_fft,
        hop_length=hop_length,
        win_length=win_length,
        window=torch.hann_window(win_length, device=waveform.device, dtype=waveform.dtype),
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    return frames.reshape(*lead, *frames.shape[-2:])


def istft_frames(spectrum: torch.Tensor, n_fft: int, hop_length: int, win_length: int, length: int) -> torch.Tensor:
    """Inverse of :func:`stft_frames`: ``[..., F, T]`` complex ``-> [..., length]``."""
    lead = spectrum.shape[:-2]
    waveform = torch.istft(
        spectrum.reshape(-1, *spectrum.shape[-2:]),
        n_fft=n_fft,
        hop_length=hop_length,
        win_length=win_length,
        window=torch.hann_window(win_length, device=spectrum.device, dtype=spectrum.real.dtype),
        center=True,
        length=length,
    )
    return waveform.reshape(*lead, length)


def stft(waveform: torch.Tensor, spec: SpectrogramConfig) -> torch.Tensor:
    """The model's STFT (:func:`stft_frames` with ``spec``'s sizes): ``[..., N] -> [..., F, N // hop + 1]`` complex."""
    return stft_frames(waveform, spec.n_fft, spec.hop_length, spec.win_length)


def istft(spectrum: torch.Tensor, spec: SpectrogramConfig, length: int) -> torch.Tensor:
    """Inverse of :func:`stft`: ``[..., F, T] complex -> [..., length]``."""
    return istft_frames(spectrum, spec.n_fft, spec.hop_length, spec.win_length, length)


def magnitude_and_phase(spectrum: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split an STFT into magnitude and unit phase: ``[..., F, T] -> ([..., F, T], [..., F, T])``.

    The phase is ``X / (|X| + 1e-5)``, as in the reference implementation.
    """
    magnitude = spectrum.abs()
    return magnitude, spectrum / (magnitude + EPS)


def mel_filterbank(spec: SpectrogramConfig) -> torch.Tensor:
    """Slaney-scale, Slaney-normalised mel filterbank (librosa's default): ``[F, M]``."""
    return AF.melscale_fbanks(
        n_freqs=spec.n_freq,
        f_min=spec.f_min,
        f_max=spec.f_max,
        n_mels=spec.n_mels,
        sample_rate=spec.sample_rate,
        norm="slaney",
        mel_scale="slaney",
    )


def log_mel(magnitude: torch.Tensor, filterbank: torch.Tensor) -> torch.Tensor:
    """Log of the mel-projected magnitude: ``[..., F, T], [F, M] -> [..., M, T]``."""
    mel = torch.matmul(filterbank.transpose(0, 1).to(magnitude.dtype), magnitude)
    return torch.log(torch.clamp(mel, min=EPS))


def fit_frames(log_mels: torch.Tensor, n_frames: int) -> torch.Tensor:
    """Crop, or pad with silence (``log(1e-5)``), the last axis to ``n_frames``: ``[..., T] -> [..., n_frames]``."""
    t = log_mels.shape[-1]
    if t >= n_frames:
        return log_mels[..., :n_frames]
    return F.pad(log_mels, (0, n_frames - t), value=math.log(EPS))


def to_model_layout(log_mels: torch.Tensor, spec: SpectrogramConfig) -> torch.Tensor:
    """Lay log-mels out as the diffusion model sees them: ``[B, M, T] -> [B, 1, H, W]``.

    Frames are cropped or padded with silence to ``spec.n_frames`` first. ``time-major``:
    ``[B, 1, n_frames, M']``, the last mel bin dropped when ``M`` is odd (``M' = M - M % 2``).
    ``image``: ``[B, 1, M, n_frames]``, rescaled from ``[log(EPS), log(image_max)]`` to [0, 1]
    (clamped) and flipped so that the highest frequency is the first row.
    """
    x = fit_frames(log_mels, spec.n_frames)
    if spec.layout == "image":
        low, high = math.log(EPS), math.log(spec.image_max)
        x = ((x.clamp(low, high) - low) / (high - low)).flip(-2)
        return x.unsqueeze(-3)
    x = x.transpose(-1, -2)
    if x.shape[-1] % 2:
        x = x[..., :-1]
    return x.unsqueeze(-3)


def from_model_layout(layout: torch.Tensor, spec: SpectrogramConfig) -> torch.Tensor:
    """Inverse of :func:`to_model_layout` (up to its clamp and dropped bin): ``[B, 1, H, W] -> [B, M', n_frames]``."""
    x = layout.squeeze(-3)
    if spec.layout == "image":
        low, high = math.log(EPS), math.log(spec.image_max)
        return x.flip(-2) * (high - low) + low
    return x.transpose(-1, -2)


def diffusion_log_mel(magnitude: torch.Tensor, filterbank: torch.Tensor, spec: SpectrogramConfig) -> torch.Tensor:
    """Magnitude STFT to the diffusion model's log-mel layout: ``[B, F, T] -> [B, 1, H, W]``.

    See :func:`to_model_layout`.
    """
    return to_model_layout(log_mel(magnitude, filterbank), spec)


def prepare_waveform(waveform: torch.Tensor, sample_rate: int, spec: SpectrogramConfig) -> torch.Tensor:
    """Mix to mono, resample to the model's rate, pad/crop to one segment: ``[C, N] -> [S]``."""
    mono = resample(to_mono(waveform), sample_rate, spec.sample_rate)
    return fit_length(mono, spec.segment_samples)


def resynthesise(
    magnitude: torch.Tensor, phase: torch.Tensor, stats: NormStats, spec: SpectrogramConfig
) -> torch.Tensor:
    """Waveform from a (masked) magnitude and the mixture's phase: ``[B, F, T'], [B, F, T] -> [B, S]``.

    Frames of ``phase`` beyond the ``T'`` frames of ``magnitude`` are restored as zeros; the
    result is de-normalised with the mixture's statistics.
    """
    missing = phase.shape[-1] - magnitude.shape[-1]
    full = F.pad(magnitude, (0, missing)) if missing > 0 else magnitude[..., : phase.shape[-1]]
    waveform = istft(full.to(phase.real.dtype) * phase, spec, spec.segment_samples)
    return denormalise(waveform, stats, spec.peak)
