"""Writes the separated audio (and the vocoded references) when the fit ends."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only

from dgmo_pl.audio.frontend import resynthesise
from dgmo_pl.audio.io import write_audio


#: Names Windows reserves for devices, whatever the extension.
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


def slugify(text: str, fallback: str = "separated", max_length: int = 60) -> str:
    """A file-name-safe version of ``text`` on every file system: lowercase ASCII, digits, dashes."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:max_length].strip("-") or fallback
    return f"{slug}-sound" if slug in _RESERVED else slug


class SeparatedAudioWriter(Callback):
    """At the end of the fit, writes ``<run dir>/separated/<query>.wav`` (16-bit, model rate).

    The estimate is the mixture's magnitude under the final thresholded mask, with the
    mixture's phase. When the diffusion model has a vocoder, the last round's references are
    written too, as ``separated/references/<query>_<k>.wav``. Every file of the run is listed
    at the end.

    Args:
        write_references: Also write the vocoded references when a vocoder is available.
    """

    def __init__(self, write_references: bool = True) -> None:
        self.write_references = write_references
        self.written: list[Path] = []

    @rank_zero_only
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        data = trainer.datamodule
        out_dir = Path(trainer.log_dir) / "separated"
        name = slugify(data.query or data.mixture.path.stem)
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
        self._report(Path(trainer.log_dir))

    @staticmethod
    def _report(run_dir: Path) -> None:
        print(f"run directory: {run_dir}")
        for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
            print(f"  wrote {path}")
