"""Running the command line in-process and reading what a run left behind."""

from __future__ import annotations

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dgmo_pl.cli import main

REPO = Path(__file__).resolve().parents[1]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def fit(root: Path, *args: str, config: str = "configs/dgmo.yaml") -> Path:
    """Run ``main.py fit`` in-process with outputs under ``root``; returns the new run folder."""
    before = set(run_dirs(root))
    main(["fit", "--config", str(REPO / config), "--trainer.default_root_dir", str(root),
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
