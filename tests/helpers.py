"""Running the command line in-process and reading what a run left behind."""

from __future__ import annotations

from pathlib import Path

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from callbacks import MaskMonitor
from dgmo_pl.cli import main as cli_main
from dgmo_pl.data import SeparationDataModule
from dgmo_pl.fit_data import FitDataModule
from dgmo_pl.model import MaskSeparator
from dgmo_pl.output import OutputSink
from dgmo_pl.recording import open_recording

REPO = Path(__file__).resolve().parents[1]
#: The application's callback groups, as ``main.py`` adds them.
APP_CALLBACKS = {"monitor": MaskMonitor}
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def main(args: list[str]) -> None:
    """The command line in-process, as ``python main.py`` runs it (with the app's callbacks)."""
    cli_main(args, APP_CALLBACKS)


def configs(*names: str) -> list[str]:
    """``--config`` arguments: ``configs/dgmo.yaml``, then each overlay (``backbone/auffusion``)."""
    paths = [REPO / "configs" / "dgmo.yaml", *(REPO / "configs" / f"{name}.yaml" for name in names)]
    return [arg for path in paths for arg in ("--config", str(path))]


def fit(root: Path, *args: str, overlays: tuple[str, ...] = ()) -> Path:
    """Run ``main.py fit`` in-process with outputs under ``root``; returns the new run folder.

    ``overlays`` name configuration files applied on ``configs/dgmo.yaml`` (``("backbone/auffusion",)``).
    """
    before = set(run_dirs(root))
    main(["fit", *configs(*overlays), "--trainer.default_root_dir", str(root),
          "--data.cache_dir", str(root / "references"), *QUIET, *args])
    (new,) = set(run_dirs(root)) - before
    return new


def run_dirs(root: Path) -> list[Path]:
    """The run folders under ``root``."""
    return sorted(p for p in (root / "lightning_logs").glob("version_*") if p.is_dir())


def tiny_args(model: Path, ddim_steps: int = 4, steps_per_round: int = 5) -> list[str]:
    """Overrides that make a run on the tiny model quick."""
    return ["--data.model", str(model), "--data.ddim_steps", str(ddim_steps),
            "--data.steps_per_round", str(steps_per_round)]


def scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    """``(step, value)`` pairs of a TensorBoard scalar."""
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def images(run_dir: Path, tag: str) -> list[int]:
    """Steps at which a TensorBoard image was logged."""
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return [e.step for e in acc.Images(tag)]


def one_fit(mixture: Path, references: list[Path], **settings: object) -> tuple[MaskSeparator, FitDataModule]:
    """A fresh module and the data module of the single fit of a one-window recording, true sources as references."""
    data = SeparationDataModule(mixture=str(mixture), references=[str(r) for r in references], **settings)
    separation = data.separation()
    (plan,) = separation.plans()
    module = MaskSeparator()
    return module, FitDataModule(separation, plan, module.thresholded_mask)


def outputs_from_checkpoint(ckpt: Path, mixture: Path, folder: Path, names: list[str]) -> dict[str, Path]:
    """Rebuild a fit's module from its checkpoint alone and write its outputs anew (the default audio settings).

    The fit must cover the whole recording (all its windows); ``names`` are its outputs in mask order.
    """
    module = MaskSeparator.load_from_checkpoint(ckpt, map_location="cpu")
    recording = open_recording(str(mixture), module.spec, SeparationDataModule().hparams.window_overlap)
    masks = module.thresholded_mask()
    if (residual := module.residual_mask()) is not None:
        masks = torch.cat([masks, residual])
    sink = OutputSink(recording, module.spec, folder)
    for name, mask in zip(names, masks, strict=True):
        sink.add("", name, range(recording.num_windows), mask, bool(module.hparams.joint))
        sink.finish("", name)
    return {name: sink.path("", name) for name in names}
