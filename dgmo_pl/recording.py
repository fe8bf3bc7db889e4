"""A recording of any length, rate and channels, and the model's view of each of its windows.

The model sees 10.24 s at 16 kHz, mono. A longer recording is cut into windows of that length
with overlap (:class:`~dgmo_pl.audio.windows.WindowPlan`); each window is read from the file on
its own (memory does not grow with the recording's length), mixed to mono, resampled,
normalised and analysed exactly as the paper's single segment is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from dgmo_pl.audio import frontend as fe
from dgmo_pl.audio.io import SILENCE_PEAK, AudioInfo, read_frames, scan_audio
from dgmo_pl.audio.windows import WindowPlan
from dgmo_pl.diffusion.cache import tensor_digest
from dgmo_pl.errors import InputError


@dataclass(frozen=True)
class Recording:
    """An audio file and where its windows lie.

    Attributes:
        path: The file.
        info: Its frames, rate and channels.
        plan: The windows at the model's rate (each ``spec.segment_samples`` long).
        source_plan: The same windows at the file's own rate.
        what: How error messages name it (``"mixture"``, ``"reference"``).
    """

    path: Path
    info: AudioInfo
    plan: WindowPlan
    source_plan: WindowPlan
    what: str

    @property
    def num_windows(self) -> int:
        """How many windows the recording is cut into."""
        return self.plan.num_windows

    @property
    def seconds(self) -> float:
        """The recording's duration in seconds."""
        return self.info.frames / self.info.sample_rate


def open_recording(path: str, spec: fe.SpectrogramConfig, overlap_seconds: float, what: str = "mixture") -> Recording:
    """Check an audio file (streaming through it once) and plan its windows.

    Raises:
        InputError: The file is unusable (see :func:`~dgmo_pl.audio.io.scan_audio`).
    """
    info = scan_audio(path, what, mono=True)
    length = max(1, round(info.frames * spec.sample_rate / info.sample_rate))
    plan = WindowPlan.uniform(length, spec.segment_samples, round(overlap_seconds * spec.sample_rate))
    return Recording(Path(path), info, plan, plan.at_rate(spec.sample_rate, info.sample_rate, info.frames), what)


def aligned_recording(path: str, mixture: Recording, spec: fe.SpectrogramConfig) -> Recording:
    """Open a recording time-aligned with ``mixture`` (a true source), windowed as the mixture is.

    Raises:
        InputError: The file is unusable or its duration differs from the mixture's by more than a hop.
    """
    info = scan_audio(path, "reference")
    length = round(info.frames * spec.sample_rate / info.sample_rate)
    if abs(length - mixture.plan.length) > spec.hop_length:
        raise InputError(
            f"reference '{path}' lasts {info.frames / info.sample_rate:.3f} s but mixture '{mixture.path}' lasts "
            f"{mixture.seconds:.3f} s: pass references time-aligned with the mixture and of the same length"
        )
    source_plan = mixture.plan.at_rate(spec.sample_rate, info.sample_rate, info.frames)
    return Recording(Path(path), info, mixture.plan, source_plan, "reference")


def read_window(recording: Recording, index: int) -> torch.Tensor:
    """Window ``index`` at the file's rate and channels, zero-padded past the end: ``[C, window]``."""
    plan = recording.source_plan
    return read_frames(recording.path, plan.starts[index], plan.window, recording.what)


def model_segment(recording: Recording, index: int, spec: fe.SpectrogramConfig) -> torch.Tensor:
    """Window ``index`` as the model hears it: mono, at the model's rate, one segment: ``[S]``."""
    mono = fe.to_mono(read_window(recording, index))
    return fe.fit_length(fe.resample(mono, recording.info.sample_rate, spec.sample_rate), spec.segment_samples)


@dataclass
class Mixture:
    """One window of a mixture, prepared for separation.

    Attributes:
        path: Where it was read from.
        magnitude: Magnitude STFT of the normalised segment, ``[1, F, n_frames]``.
        phase: Unit phase of all STFT frames, ``[1, F, T]`` complex.
        stats: The normalisation statistics, to undo it on the output.
        num_samples: Length of the whole recording at the model's rate.
        digest: Identifies the prepared content (part of the reference cache's keys).
        index: Which window of the recording it is.
    """

    path: Path
    magnitude: torch.Tensor
    phase: torch.Tensor
    stats: fe.NormStats
    num_samples: int
    digest: str
    index: int = 0


def normalise_segment(segment: torch.Tensor, spec: fe.SpectrogramConfig) -> tuple[torch.Tensor, fe.NormStats]:
    """:func:`~dgmo_pl.audio.frontend.normalise`, except that a silent window is only centred.

    A silent window inside a longer recording is legitimate (a pause); scaling its noise floor
    up to the peak would make the model hear noise that is not there.
    """
    mean = segment.mean()
    if not (segment - mean).abs().amax() >= SILENCE_PEAK:
        return segment - mean, fe.NormStats(float(mean), spec.peak)
    return fe.normalise(segment, spec.peak)


def load_window(recording: Recording, index: int, spec: fe.SpectrogramConfig) -> Mixture:
    """Read, mix down, resample, normalise and analyse window ``index`` of a mixture."""
    normalised, stats = normalise_segment(model_segment(recording, index, spec), spec)
    magnitude, phase = fe.magnitude_and_phase(fe.stft(normalised, spec))
    return Mixture(
        recording.path, magnitude[None, :, : spec.n_frames], phase[None], stats, recording.plan.length,
        tensor_digest(normalised), index,
    )  # fmt: skip


def load_mixture(path: str, spec: fe.SpectrogramConfig) -> Mixture:
    """The first window of a mixture file (the whole mixture when it lasts at most one segment)."""
    return load_window(open_recording(path, spec, 0.0), 0, spec)


def reference_log_mel(
    reference: Recording, mixture: Mixture, spec: fe.SpectrogramConfig, filterbank: torch.Tensor
) -> torch.Tensor:
    """Log-mel of a true source's window, scaled as the mixture's window was: ``-> [1, 1, T, M]``.

    Args:
        reference: The source, from :func:`aligned_recording`.
        mixture: The mixture's window of the same index.
        spec: The front end.
        filterbank: Its mel filterbank, ``[F, M]``.
    """
    segment = model_segment(reference, mixture.index, spec)
    scaled = (segment - mixture.stats.mean) * (spec.peak / mixture.stats.peak)
    magnitude = fe.stft(scaled, spec).abs()[None]
    return fe.diffusion_log_mel(magnitude, filterbank, spec)
