"""Writes the separated audio (and the vocoded references) when the fit ends."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only

from dgmo_pl.audio.frontend import resynthesise
from dgmo_pl.audio.io import write_audio


class SeparatedAudioWriter(Callback):
    """At the end of the fit, writes ``<query folder>/<query>.wav`` (16-bit, model rate).

    The estimate is the mixture's magnitude under the final thresholded mask, with the
    mixture's phase. When the diffusion model has a vocoder, the last round's references are
    written too, as ``references/<query>_<k>.wav``; the query folder is the trainer's log folder.

    Args:
        write_references: Also write the vocoded references when a vocoder is available.
    """

    def __init__(self, write_references: bool = True) -> None:
        self.write_references = write_references
        self.written: list[Path] = []

    @rank_zero_only
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        data = trainer.datamodule
        out_dir = Path(trainer.log_dir)
        name = data.name
        mask = pl_module.thresholded_mask().cpu()
        waveform = resynthesise(data.mixture.magnitude * mask, data.mixture.phase, data.mixture.stats, data.spec)
        self.written = [write_audio(out_dir / f"{name}.wav", waveform[0], data.spec.sample_rate)]
        if self.write_references and data.generator is not None and data.references is not None:
            audio = data.generator.vocode(data.references)
            if audio is not None:
                for k, wave in enumerate(audio.cpu()):
                    peak = wave.abs().amax().clamp(min=1.0)  # vocoders can overshoot [-1, 1]
                    path = out_dir / "references" / f"{name}_{k}.wav"
                    self.written.append(write_audio(path, wave / peak, data.spec.sample_rate))
