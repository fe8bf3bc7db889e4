"""Pictures for the page: log-magnitude spectrograms, and each output's fitted mask."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

#: Dynamic range shown, in dB below the reference's loudest bin.
FLOOR_DB = 80.0
#: Height of every picture, in pixels (frequency bins are resampled to it).
HEIGHT = 256
#: The widest picture, in pixels (longer recordings are squeezed in time).
MAX_WIDTH = 1000
# Dark to bright, perceptually ordered (close to matplotlib's "magma").
_COLOURS = np.array([[0, 0, 4], [59, 15, 112], [140, 41, 129], [222, 73, 104], [254, 159, 109], [252, 253, 191]],
                    dtype=np.float64)  # fmt: skip


def magnitudes(waveform: torch.Tensor, n_fft: int = 1024, hop: int = 256) -> torch.Tensor:
    """``|STFT|`` of a waveform's channel mean, ``[n_fft // 2 + 1, frames]``.

    Args:
        waveform: ``[channels, samples]`` or ``[samples]``.
        n_fft: FFT size (Hann window of the same length).
        hop: Hop in samples.
    """
    mono = waveform.float().reshape(-1, waveform.shape[-1]).mean(dim=0)
    window = torch.hann_window(n_fft)
    return torch.stft(mono, n_fft, hop, window=window, center=True, return_complex=True).abs()


def colour(values: np.ndarray) -> Image.Image:
    """An RGB picture of ``values`` in [0, 1], ``[bins, frames]``, the lowest bin at the bottom."""
    stops = np.linspace(0.0, 1.0, len(_COLOURS))
    clipped = np.clip(values[::-1], 0.0, 1.0)
    rgb = np.stack([np.interp(clipped, stops, _COLOURS[:, c]) for c in range(3)], axis=-1)
    picture = Image.fromarray(rgb.round().astype(np.uint8), "RGB")
    return picture.resize((min(values.shape[1], MAX_WIDTH), HEIGHT), Image.Resampling.BILINEAR)


def spectrogram_image(magnitude: torch.Tensor, reference: float | None = None) -> Image.Image:
    """A log-magnitude spectrogram, :data:`FLOOR_DB` dB of range below ``reference``.

    Args:
        magnitude: ``|STFT|``, ``[bins, frames]`` (see :func:`magnitudes`).
        reference: The magnitude shown brightest (default: this one's maximum); pass the mixture's
            so that each output is drawn on the mixture's scale.
    """
    top = float(reference if reference is not None else magnitude.max())
    decibels = 20.0 * torch.log10(magnitude.clamp_min(1e-10) / max(top, 1e-10))
    return colour(((decibels + FLOOR_DB) / FLOOR_DB).numpy())


def mask_image(mask: torch.Tensor) -> Image.Image:
    """A fitted mask ``[windows, F, T]`` (the model's grid), the windows side by side: bright where it keeps."""
    windows, bins, frames = mask.shape
    return colour(mask.float().permute(1, 0, 2).reshape(bins, windows * frames).numpy())
