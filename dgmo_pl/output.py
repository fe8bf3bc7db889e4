"""The separated files of a run, assembled across its fits: cross-faded windows, written atomically."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from dgmo_pl.audio.frontend import SpectrogramConfig, resynthesise
from dgmo_pl.audio.io import SUBTYPES, AudioWriter, Subtype, write_audio
from dgmo_pl.audio.rates import HighBand, grid_for_rate, istft_at, map_mask, model_grid, stft_at
from dgmo_pl.audio.windows import OverlapAdd, WindowPlan
from dgmo_pl.errors import InputError
from dgmo_pl.recording import Recording, load_window, model_segment, read_window

#: Rate and channels of the separated files: the input's, or the model's 16 kHz mono (the paper's).
OutputRate = Literal["input", "model"]
#: Waveforms of reference log-mels, ``[K, 1, H, W] -> [K, N]`` (None: no vocoder).
Vocoder = Callable[[torch.Tensor], "torch.Tensor | None"]


@dataclass(frozen=True)
class OutputSettings:
    """How the separated files are made (the command line's ``--audio`` group).

    Attributes:
        write_references: Also write each window's last-round references, vocoded, when the
            diffusion model has a vocoder.
        sample_rate: ``input`` (the input's rate and channels) or ``model`` (16 kHz mono, the paper's).
        high_band: Above 8 kHz at the input's rate: ``extend`` (each frame's mask over 4-8 kHz,
            averaged), ``zero`` (removed, as a 16 kHz output would) or ``keep`` (passed unmasked).
        subtype: Sample format of the separated files: ``PCM_16``, ``PCM_24`` or ``FLOAT``.
    """

    write_references: bool = True
    sample_rate: OutputRate = "input"
    high_band: HighBand = "extend"
    subtype: Subtype = "PCM_16"

    def __post_init__(self) -> None:
        if self.sample_rate not in ("input", "model"):
            raise InputError(
                f"sample_rate must be 'input' or 'model', got {self.sample_rate!r}: fix --audio.sample_rate"
            )
        if self.high_band not in ("extend", "zero", "keep"):
            raise InputError(
                f"high_band must be 'extend', 'zero' or 'keep', got {self.high_band!r}: fix --audio.high_band"
            )
        if self.subtype not in SUBTYPES:
            raise InputError(
                f"subtype must be one of {', '.join(SUBTYPES)}, got {self.subtype!r}: fix --audio.subtype"
            )


class _Output:
    """One separated file being assembled window by window, streamed to a temporary file."""

    def __init__(self, path: Path, plan: WindowPlan, sample_rate: int, channels: int, subtype: Subtype) -> None:
        self.path = path
        self.file = AudioWriter(path, sample_rate, channels, subtype).__enter__()
        self.join = OverlapAdd(plan, channels, self.file.write)

    def finish(self) -> Path:
        self.join.finish()
        self.file.__exit__(None, None, None)
        return self.path

    def abort(self, error: BaseException) -> None:
        self.file.__exit__(type(error), error, error.__traceback__)


class OutputSink:
    """Assembles a recording's separated files from its fits' masks, and writes them.

    Each window's output is the mixture under that window's final mask, with the mixture's
    phase; windows are cross-faded into one file of the input's length
    (:class:`~dgmo_pl.audio.windows.OverlapAdd`), streamed to a temporary file as they come
    (memory does not grow with the recording's length) and moved into place only when the last
    window is in (:meth:`finish`); :meth:`abort` removes what is unfinished. With
    ``sample_rate: input`` the mask learnt on the model's 16 kHz grid is carried to each
    channel's STFT at the input's rate (:func:`~dgmo_pl.audio.rates.map_mask`); at the model's
    rate and mono (``model``, or a 16 kHz mono input) the paper's resynthesis is used, except
    for ``linear`` (joint) masks, applied to the STFT itself so that the outputs add up to the
    mixture.

    Args:
        recording: The mixture.
        spec: The model's front end.
        folder: The run folder; a fit's files go to its group's sub-folder.
        settings: How files are made.
        vocode: The reference source's vocoder (for :meth:`add_references`).
    """

    def __init__(
        self, recording: Recording, spec: SpectrogramConfig, folder: Path, settings: OutputSettings = OutputSettings(),
        vocode: Vocoder | None = None,
    ) -> None:
        self.recording, self.spec, self.folder, self.settings, self.vocode = recording, spec, folder, settings, vocode
        self.written: list[Path] = []
        self._open: dict[Path, _Output] = {}

    @property
    def at_model_rate(self) -> bool:
        """Whether the files are at the model's rate, mono."""
        info = self.recording.info
        model_rate_mono = info.sample_rate == self.spec.sample_rate and info.channels == 1
        return self.settings.sample_rate == "model" or model_rate_mono

    def window_output(self, window: int, mask: torch.Tensor, linear: bool) -> torch.Tensor:
        """The mixture's window ``window`` under ``mask`` (``[F, T]``, model grid): ``[C, window samples]``."""
        if self.at_model_rate:
            if not linear:
                mixture = load_window(self.recording, window, self.spec)
                return resynthesise(mixture.magnitude * mask, mixture.phase, mixture.stats, self.spec)
            audio, grid = model_segment(self.recording, window, self.spec)[None], model_grid(self.spec)
        else:
            audio = read_window(self.recording, window)
            grid = grid_for_rate(self.spec, self.recording.info.sample_rate)
        spectrum = stft_at(audio, grid)
        carried = map_mask(mask, model_grid(self.spec), grid, spectrum.shape[-1], self.settings.high_band)
        return istft_at(spectrum * carried, grid, audio.shape[-1])

    def _output(self, path: Path) -> _Output:
        if path not in self._open:
            if self.at_model_rate:
                plan, rate, channels = self.recording.plan, self.spec.sample_rate, 1
            else:
                info = self.recording.info
                plan, rate, channels = self.recording.source_plan, info.sample_rate, info.channels
            self._open[path] = _Output(path, plan, rate, channels, self.settings.subtype)
        return self._open[path]

    def path(self, group: str, name: str) -> Path:
        """Where output ``name`` of fit group ``group`` is written."""
        return self.folder / group / f"{name}.wav"

    def add(self, group: str, name: str, windows: Sequence[int], masks: torch.Tensor, linear: bool) -> None:
        """Add windows ``windows`` of output ``name`` under their masks ``[W, F, T]``."""
        output = self._output(self.path(group, name))
        for window, mask in zip(windows, masks, strict=True):
            output.join.add(window, self.window_output(window, mask, linear))

    def finish(self, group: str, name: str) -> Path:
        """Complete output ``name`` (all its windows are in) and move it into place."""
        path = self._open.pop(self.path(group, name)).finish()
        self.written.append(path)
        return path

    def add_references(
        self, group: str, names: Sequence[str], windows: Sequence[int], references: torch.Tensor
    ) -> None:
        """Write the vocoded references ``[Q, W, K, 1, T, M]`` of queries ``names`` over ``windows``.

        As ``references/<query>_<k>.wav``, or ``<query>_w<i>_<k>.wav`` when the recording has
        several windows. Nothing is written without a vocoder.
        """
        if self.vocode is None:
            return
        several = self.recording.num_windows > 1
        for name, per_window in zip(names, references, strict=True):
            for window, refs in zip(windows, per_window, strict=True):
                audio = self.vocode(refs)
                if audio is None:
                    return
                stem = f"{name}_w{window + 1}" if several else name
                for k, wave in enumerate(audio.cpu()):
                    peak = wave.abs().amax().clamp(min=1.0)  # vocoders can overshoot [-1, 1]
                    path = self.folder / group / "references" / f"{stem}_{k}.wav"
                    self.written.append(write_audio(path, wave / peak, self.spec.sample_rate))

    @property
    def unfinished(self) -> list[Path]:
        """The outputs still waiting for windows."""
        return list(self._open)

    def abort(self, error: BaseException) -> None:
        """Remove the unfinished outputs' temporary files (nothing half-written is left behind)."""
        for output in self._open.values():
            output.abort(error)
        self._open.clear()
