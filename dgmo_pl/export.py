"""Writes the separated audio (and the vocoded references) as the fits of a recording end."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only

from dgmo_pl.audio.frontend import resynthesise
from dgmo_pl.audio.io import SUBTYPES, AudioWriter, Subtype, write_audio
from dgmo_pl.audio.rates import HighBand, grid_for_rate, istft_at, map_mask, model_grid, stft_at
from dgmo_pl.audio.windows import OverlapAdd, WindowPlan
from dgmo_pl.naming import unique_slugs
from dgmo_pl.recording import model_segment, read_window

#: Rate and channels of the separated files: the input's, or the model's 16 kHz mono (the paper's).
OutputRate = Literal["input", "model"]


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


class SeparatedAudioWriter(Callback):
    """Writes ``<query>.wav`` per query when the fit of a recording's last window ends.

    Each window's output is the mixture under that window's final (thresholded) mask, with the
    mixture's phase; windows are cross-faded into one file of the input's length
    (:class:`~dgmo_pl.audio.windows.OverlapAdd`), streamed to disk as they come (memory does
    not grow with the recording's length) and moved into place only when complete. With
    ``sample_rate: input`` (default) the mask learnt on the model's 16 kHz grid is carried to
    each channel's STFT at the input's rate (:func:`~dgmo_pl.audio.rates.map_mask`), so the file
    has the input's rate and channels; ``high_band`` says what happens above 8 kHz, where the
    model hears nothing. With ``model`` the file is 16 kHz mono, as in the paper (also what
    ``input`` gives for a 16 kHz mono input). Joint masks are applied to the mixture's STFT
    itself, so that the files add up to the mixture. A joint fit with a residual also writes
    ``residual.wav``. When the diffusion model has a vocoder, each window's last-round
    references are written too, as ``references/<query>_<k>.wav`` (``<query>_w<i>_<k>.wav``
    for several windows).

    Files go to the trainer's log folder, or its parent when the recording takes several fits
    (each window batch then logs in a subfolder).

    Args:
        write_references: Also write the vocoded references when a vocoder is available.
        sample_rate: ``input`` (the input's rate and channels) or ``model`` (16 kHz mono).
        high_band: Above 8 kHz at the input's rate: ``extend`` (each frame's mask over 4-8 kHz,
            averaged), ``zero`` (removed, as a 16 kHz output would) or ``keep`` (passed unmasked).
        subtype: Sample format of the separated files: ``PCM_16``, ``PCM_24`` or ``FLOAT``.
    """

    def __init__(
        self,
        write_references: bool = True,
        sample_rate: OutputRate = "input",
        high_band: HighBand = "extend",
        subtype: Subtype = "PCM_16",
    ) -> None:
        if sample_rate not in ("input", "model"):
            raise ValueError(f"sample_rate must be 'input' or 'model', got {sample_rate!r}: fix --audio.sample_rate")
        if high_band not in ("extend", "zero", "keep"):
            raise ValueError(
                f"high_band must be 'extend', 'zero' or 'keep', got {high_band!r}: fix --audio.high_band"
            )
        if subtype not in SUBTYPES:
            raise ValueError(f"subtype must be one of {', '.join(SUBTYPES)}, got {subtype!r}: fix --audio.subtype")
        self.write_references = write_references
        self.subtype = subtype
        self.sample_rate = sample_rate
        self.high_band = high_band
        self.written: list[Path] = []
        self._open: dict[Path, _Output] = {}

    @staticmethod
    def folder(trainer: Trainer) -> Path:
        """Where the current fit's files go."""
        data = trainer.datamodule
        log_dir = Path(trainer.log_dir)
        return log_dir.parent if len(data.window_batches) > 1 else log_dir

    def _at_model_rate(self, data) -> bool:
        info = data.recording.info
        return self.sample_rate == "model" or (info.sample_rate == data.spec.sample_rate and info.channels == 1)

    def _window_output(self, data, window: int, mask: torch.Tensor, linear: bool) -> torch.Tensor:
        """The mixture's window under ``mask`` (``[F, T]``, model grid): ``[C, window samples]``.

        At the model's rate and not ``linear``: the paper's resynthesis (normalised magnitude
        under the mask, the mixture's unit phase, de-normalised). Otherwise the window's STFT
        at the output rate under the carried mask, which is linear in the mask: masks that add
        up to one give outputs that add up to the mixture.
        """
        if self._at_model_rate(data):
            if not linear:
                mixture = data.window(window)
                return resynthesise(mixture.magnitude * mask, mixture.phase, mixture.stats, data.spec)
            audio, grid = model_segment(data.recording, window, data.spec)[None], model_grid(data.spec)
        else:
            audio = read_window(data.recording, window)
            grid = grid_for_rate(data.spec, data.recording.info.sample_rate)
        spectrum = stft_at(audio, grid)
        carried = map_mask(mask, model_grid(data.spec), grid, spectrum.shape[-1], self.high_band)
        return istft_at(spectrum * carried, grid, audio.shape[-1])

    def _output(self, path: Path, data) -> _Output:
        if path not in self._open:
            if self._at_model_rate(data):
                plan, rate, channels = data.recording.plan, data.spec.sample_rate, 1
            else:
                info = data.recording.info
                plan, rate, channels = data.recording.source_plan, info.sample_rate, info.channels
            self._open[path] = _Output(path, plan, rate, channels, self.subtype)
        return self._open[path]

    @rank_zero_only
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Write this fit's separated windows (and references) once the fit ends."""
        data = trainer.datamodule
        folder = self.folder(trainer)
        masks = [(data.names[q], m) for q, m in zip(data.fit_queries, pl_module.thresholded_mask().cpu(), strict=True)]
        residual = pl_module.residual_mask()
        if residual is not None:
            masks.append((unique_slugs([*data.queries, "residual"])[-1], residual.cpu()[0]))
        linear = bool(pl_module.hparams.get("joint", False))
        for name, mask in masks:
            output = self._output(folder / f"{name}.wav", data)
            for w, window in enumerate(data.fit_windows):
                output.join.add(window, self._window_output(data, window, mask[w], linear))
            if data.is_last_window_batch():
                self.written.append(self._open.pop(output.path).finish())
        if self.write_references:
            self._write_references(data, folder)

    def _write_references(self, data, folder: Path) -> None:
        if data.generator is None or data.references is None:
            return
        several = data.recording.num_windows > 1
        for q, per_window in zip(data.fit_queries, data.references, strict=True):
            for window, refs in zip(data.fit_windows, per_window, strict=True):
                audio = data.generator.vocode(refs)
                if audio is None:
                    return
                stem = f"{data.names[q]}_w{window + 1}" if several else data.names[q]
                for k, wave in enumerate(audio.cpu()):
                    peak = wave.abs().amax().clamp(min=1.0)  # vocoders can overshoot [-1, 1]
                    path = folder / "references" / f"{stem}_{k}.wav"
                    self.written.append(write_audio(path, wave / peak, data.spec.sample_rate))

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        """Remove the partial files of a failed run (nothing half-written is left behind)."""
        for output in self._open.values():
            output.abort(exception)
        self._open.clear()
