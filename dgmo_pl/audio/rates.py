"""Carrying a mask from the model's STFT grid to the STFT of a recording at its own rate.

The mask is learned on the model's grid (16 kHz, n_fft 1024, hop 160); to write the output at the
input's rate, it is resampled in frequency and time onto an STFT of the recording with the same
durations at that rate, and applied there. Shapes: ``F`` / ``T`` bins and frames of the source
grid, ``F'`` / ``T'`` of the target grid, ``N`` samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import torch

from dgmo_pl.audio import frontend as fe
from dgmo_pl.audio.frontend import SpectrogramConfig

#: What a mapped mask holds above the source's Nyquist frequency: the mean of the source's top
#: octave ("extend"), 0 ("zero", band-limited output) or 1 ("keep", passed unmasked).
HighBand = Literal["extend", "zero", "keep"]


@dataclass(frozen=True)
class StftGrid:
    """Time-frequency grid of a centred, Hann-windowed STFT.

    Attributes:
        sample_rate: Rate of the signal, in Hz.
        n_fft: FFT size.
        hop_length: Hop between frames, in samples.
        win_length: Hann window length, in samples (at most ``n_fft``).
    """

    sample_rate: int
    n_fft: int
    hop_length: int
    win_length: int

    def __post_init__(self) -> None:
        for name in ("sample_rate", "n_fft", "hop_length", "win_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length {self.win_length} must not exceed n_fft {self.n_fft}")

    @property
    def n_freq(self) -> int:
        """Number of one-sided bins."""
        return self.n_fft // 2 + 1

    def frequencies(self) -> torch.Tensor:
        """Centre frequency of each bin in Hz, ``k * rate / n_fft``: ``[F]`` float64."""
        return torch.arange(self.n_freq, dtype=torch.float64) * (self.sample_rate / self.n_fft)

    def frame_times(self, n_frames: int) -> torch.Tensor:
        """Centre time of each centred frame in seconds, ``j * hop / rate``: ``[T]`` float64."""
        return torch.arange(n_frames, dtype=torch.float64) * (self.hop_length / self.sample_rate)

    def num_frames(self, num_samples: int) -> int:
        """Frames of a centred STFT of ``num_samples`` samples."""
        return num_samples // self.hop_length + 1


def _round(value: float) -> int:
    """Nearest integer, halves rounded up."""
    return math.floor(value + 0.5)


def model_grid(spec: SpectrogramConfig) -> StftGrid:
    """The model's own STFT grid."""
    return StftGrid(spec.sample_rate, spec.n_fft, spec.hop_length, spec.win_length)


def grid_for_rate(spec: SpectrogramConfig, rate: int) -> StftGrid:
    """The model grid's durations at ``rate``.

    ``n_fft`` and ``win_length`` become the even numbers nearest ``n_fft * rate / spec.sample_rate``
    (and ``win_length * ...``), the hop ``round(hop_length * rate / spec.sample_rate)``: 44.1 kHz
    gives n_fft 2822 and hop 441, 48 kHz 3072 and 480, 8 kHz 512 and 80.

    Raises:
        ValueError: ``rate`` is below 1 Hz or too low for a hop of one sample.
    """
    if rate < 1:
        raise ValueError(f"sample rate must be at least 1 Hz, got {rate}")
    if rate == spec.sample_rate:
        return model_grid(spec)
    ratio = rate / spec.sample_rate
    hop = _round(spec.hop_length * ratio)
    n_fft = 2 * _round(spec.n_fft * ratio / 2)
    win_length = 2 * _round(spec.win_length * ratio / 2)
    if hop < 1 or win_length < 2:
        raise ValueError(
            f"sample rate {rate} Hz is too low for the model's STFT ({spec.n_fft} / {spec.hop_length} samples "
            f"at {spec.sample_rate} Hz): the hop would be {hop} samples"
        )
    return StftGrid(rate, n_fft, hop, win_length)


def stft_at(waveform: torch.Tensor, grid: StftGrid) -> torch.Tensor:
    """Centred, reflect-padded, one-sided STFT on ``grid``: ``[..., N] -> [..., F, N // hop + 1]`` complex."""
    return fe.stft_frames(waveform, grid.n_fft, grid.hop_length, grid.win_length)


def istft_at(spectrum: torch.Tensor, grid: StftGrid, length: int) -> torch.Tensor:
    """Inverse of :func:`stft_at`: ``[..., F, T]`` complex ``-> [..., length]``."""
    return fe.istft_frames(spectrum, grid.n_fft, grid.hop_length, grid.win_length, length)


def _positions(
    count: int, numerator: int, denominator: int, size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Interpolation taps of the points ``i * numerator / denominator`` on ``[0, size - 1]``.

    Computed in exact integer arithmetic, so that a whole position has weight exactly 0 on its
    upper neighbour; positions past ``size - 1`` are clamped to it.

    Returns:
        ``(lower, upper, weight)``: ``[count]`` int64 indices and the float64 weight of ``upper``.
    """
    scaled = torch.arange(count, dtype=torch.int64) * numerator
    lower = torch.div(scaled, denominator, rounding_mode="floor")
    weight = (scaled - lower * denominator).double() / denominator
    past = lower >= size - 1
    lower = lower.clamp(max=size - 1)
    weight = weight.masked_fill(past, 0.0)
    upper = (lower + 1).clamp(max=size - 1)
    return lower, upper, weight


def _lerp_along(
    values: torch.Tensor, dim: int, taps: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """Linear interpolation of ``values`` along ``dim`` at the taps of :func:`_positions`."""
    lower, upper, weight = (t.to(values.device) for t in taps)
    shape = [1] * values.dim()
    shape[dim] = -1
    out = values.index_select(dim, lower)
    return out.lerp_(values.index_select(dim, upper), weight.to(values.dtype).reshape(shape))


def map_mask(
    mask: torch.Tensor,
    source: StftGrid,
    target: StftGrid,
    n_frames: int,
    high_band: HighBand = "extend",
) -> torch.Tensor:
    """Carry a mask from one STFT grid to another: ``[..., F, T] -> [..., F', n_frames]``.

    Linear interpolation in frequency between the source bins' centre frequencies, and in time
    between the source frames' centre times, clamped at the ends. Target bins above the source's
    Nyquist frequency get, per frame, the mean of the source mask over its top octave
    ("extend", which keeps masks that sum to one over a leading axis summing to one), 0 ("zero")
    or 1 ("keep"). The same grid and frame count give the mask back exactly.

    Args:
        mask: ``[..., F, T]`` on ``source``, any leading axes.
        source: Grid of ``mask``.
        target: Grid to carry it to.
        n_frames: Frames wanted on ``target``.
        high_band: What to put above the source's Nyquist frequency.

    Returns:
        ``[..., F', n_frames]`` in ``mask``'s dtype.

    Raises:
        ValueError: An unknown ``high_band``, ``n_frames < 1``, or a mask that does not match
            ``source``.
    """
    if high_band not in get_args(HighBand):
        raise ValueError(f"unknown high_band {high_band!r}: pass one of {', '.join(get_args(HighBand))}")
    if n_frames < 1:
        raise ValueError(f"n_frames must be at least 1, got {n_frames}")
    if mask.dim() < 2 or mask.shape[-2] != source.n_freq or mask.shape[-1] < 1:
        raise ValueError(
            f"mask must be [..., {source.n_freq}, T] for the source grid (n_fft {source.n_fft}), "
            f"got shape {list(mask.shape)}"
        )
    n_freq, n_source_frames = mask.shape[-2:]
    # Frame j' at j' * hop' / rate' seconds lies at source frame j' * hop' * rate / (rate' * hop).
    times = _positions(
        n_frames, target.hop_length * source.sample_rate, target.sample_rate * source.hop_length, n_source_frames
    )
    # Bin k' at k' * rate' / n_fft' Hz lies at source bin k' * rate' * n_fft / (n_fft' * rate); it is
    # above the source's Nyquist frequency where 2 * k' * rate' > rate * n_fft'.
    in_band = min(target.n_freq, source.sample_rate * target.n_fft // (2 * target.sample_rate) + 1)
    bins = _positions(in_band, target.sample_rate * source.n_fft, target.n_fft * source.sample_rate, n_freq)
    # Interpolate first along the axis that leaves the smaller intermediate tensor.
    if in_band * n_source_frames <= n_freq * n_frames:
        low = _lerp_along(_lerp_along(mask, -2, bins), -1, times)
    else:
        low = _lerp_along(_lerp_along(mask, -1, times), -2, bins)
    above = target.n_freq - in_band
    if not above:
        return low
    if high_band == "extend":
        octave = -(-source.n_fft // 4)  # the top octave: bins k >= n_fft / 4, from rate / 4 to rate / 2
        top = _lerp_along(mask[..., octave:, :].mean(dim=-2, keepdim=True), -1, times)
    else:
        top = mask.new_full((*mask.shape[:-2], 1, n_frames), 0.0 if high_band == "zero" else 1.0)
    return torch.cat([low, top.expand(*top.shape[:-2], above, n_frames)], dim=-2)
