"""The loop over a run's fits: one plain function that the CLI, evaluation, benchmarks and tests call."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch import Callback, LightningDataModule, Trainer
from lightning.pytorch.loggers import Logger, TensorBoardLogger

from dgmo_pl.checkpoints import AtomicCheckpointIO
from dgmo_pl.checks import check_folder, check_joint, check_trainer
from dgmo_pl.export import SeparatedAudioWriter
from dgmo_pl.fit_data import FitDataModule, MaskReader
from dgmo_pl.job import FitPlan, Separation
from dgmo_pl.model import MaskSeparator
from dgmo_pl.output import OutputSettings, OutputSink

#: Builds a fit's trainer, given the fit and the callbacks the loop adds (the audio writer).
TrainerFactory = Callable[[FitPlan, list[Callback]], Trainer]
#: Builds a fit's data module.
DataFactory = Callable[[Separation, FitPlan, MaskReader], LightningDataModule]
#: Builds a fit's loggers in the run folder, under the fit's version (sub-folder).
LoggerFactory = Callable[[Path, str], "list[Logger]"]

#: Trainer settings the method needs in every fit (rounds are epochs with fresh references).
TRAINER_INVARIANTS: dict[str, Any] = {"reload_dataloaders_every_n_epochs": 1}


@dataclass(frozen=True)
class SeparationResult:
    """What a run wrote.

    Attributes:
        folder: The run folder.
        outputs: Each separated file, by output name (``<query>`` or ``residual``).
        written: Every audio file written (separated files and vocoded references), in order.
    """

    folder: Path
    outputs: dict[str, Path]
    written: list[Path]


@contextlib.contextmanager
def quiet_banners() -> Iterator[None]:
    """Silence Lightning's information lines (devices, tips) for the fits of a run; warnings still show.

    A run of many fits (queries, windows, evaluation rows) would repeat them for each.
    """
    rank_zero_log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    level = rank_zero_log.level
    rank_zero_log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        rank_zero_log.setLevel(level)


def new_run_folder(base: str | Path) -> Path:
    """Create and return ``<base>/version_<N>``, the next free N, atomically.

    Two runs started at the same moment into one root get different folders: the folder is
    claimed by ``mkdir``, which only one process can win (Lightning's own numbering only looks).
    """
    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name[8:]) for p in base.glob("version_*") if p.name[8:].isdigit()]
    number = max(taken, default=-1) + 1
    while True:
        folder = base / f"version_{number}"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            number += 1


def tensorboard_loggers(folder: Path, version: str) -> list[Logger]:
    """The default loggers of a fit: TensorBoard in ``<folder>/<version>/``."""
    return [TensorBoardLogger(folder, name="", version=version, default_hp_metric=False)]


def trainer_factory(
    folder: Path, loggers: LoggerFactory | None = tensorboard_loggers, callbacks: Callable[[], list[Callback]] = list,
    **settings: Any,
) -> TrainerFactory:
    """A trainer factory for :func:`separate` from Python: Lightning's Trainer with these settings.

    Args:
        folder: The run folder (each fit logs in its version's sub-folder).
        loggers: Makes a fit's loggers (default: TensorBoard; None: no logging).
        callbacks: Makes a fit's own callbacks (fresh for each fit).
        **settings: Trainer arguments (``max_epochs`` is the number of rounds, 3 by default).
    """
    if reserved := sorted({"logger", "callbacks", "default_root_dir"} & settings.keys()):
        raise ValueError(f"trainer_factory sets {', '.join(reserved)} itself: pass loggers= or callbacks= instead")
    settings = {"max_epochs": 3, "log_every_n_steps": 1, "enable_model_summary": False, **settings}
    plugins = list(settings.pop("plugins", None) or [])
    if not any(isinstance(p, CheckpointIO) for p in plugins):
        plugins.append(AtomicCheckpointIO())

    def make(plan: FitPlan, extra: list[Callback]) -> Trainer:
        return Trainer(
            logger=loggers(folder, plan.version) if loggers else False, callbacks=[*callbacks(), *extra],
            default_root_dir=folder, plugins=plugins, **{**settings, **TRAINER_INVARIANTS},
        )  # fmt: skip

    return make


def separate(
    separation: Separation,
    model: MaskSeparator,
    make_trainer: TrainerFactory,
    folder: str | Path,
    settings: OutputSettings = OutputSettings(),
    make_data: DataFactory = FitDataModule,
    ckpt_path: str | None = None,
) -> SeparationResult:
    """Separate a recording: fit the masks of every query group and window batch, then write the outputs.

    Steps, for each fit of :meth:`Separation.plans` (one per query and window batch; joint masks:
    one per window batch for all queries):

    1. a fresh module, ``model`` sized for the fit (``model`` itself is never fitted);
    2. a data module for exactly that fit (``make_data``), reading the module's masks between rounds;
    3. a trainer for that fit (``make_trainer``), given the audio writer of the fit;
    4. ``trainer.fit``; the writer puts the fit's windows into the run's output sink, which
       moves each file into place once its last window is in.

    Each fit's trainer is checked (:func:`~dgmo_pl.checks.check_trainer`) before it runs, and the
    folder before anything. If a fit fails, the unfinished files are removed (earlier complete
    files stay) and the error propagates.

    Args:
        separation: The run (recording, queries, reference source).
        model: The configured module (its settings; sized afresh per fit).
        make_trainer: Builds each fit's trainer (its loggers in ``<folder>/<plan.version>``).
        folder: The run folder: outputs go to ``<folder>/<plan.group>/``.
        settings: How the separated files are made.
        make_data: Builds each fit's data module.
        ckpt_path: A checkpoint to resume (a run of a single fit).

    Returns:
        The files written.
    """
    folder = check_folder(folder, "the run folder")
    if model.spec != separation.spec:
        raise ValueError(
            f"the module's front end ({model.spec.n_freq} bins, {model.spec.sample_rate} Hz) is not the model's "
            f"({separation.spec.n_freq} bins, {separation.spec.sample_rate} Hz): build it with spec=separation.spec"
        )
    joint, residual = bool(model.hparams.joint), bool(model.hparams.residual)
    check_joint(joint, residual, len(separation.queries))
    plans = separation.plans(joint, residual)
    if ckpt_path is not None and len(plans) > 1:
        raise ValueError(f"a checkpoint resumes one fit, but this run takes {len(plans)}")
    sink = OutputSink(separation.recording, separation.spec, folder, settings, separation.source.vocode)
    try:
        for plan in plans:
            _fit(separation, plan, model, make_trainer, make_data, sink, ckpt_path)
        if sink.unfinished:
            raise RuntimeError(
                f"{len(sink.unfinished)} outputs were not completed ({sink.unfinished[0].name}, ...): the trainer "
                "factory must give each trainer the callbacks the loop passes it"
            )
    except BaseException as error:
        sink.abort(error)
        raise
    outputs = {plan_output: sink.path(plan.group, plan_output) for plan in plans for plan_output in plan.outputs}
    return SeparationResult(folder, outputs, list(sink.written))


def _fit(
    separation: Separation, plan: FitPlan, model: MaskSeparator, make_trainer: TrainerFactory,
    make_data: DataFactory, sink: OutputSink, ckpt_path: str | None,
) -> None:
    """Run one fit with objects made for it alone."""
    module = model.sized(plan.masks, len(plan.windows))
    data = make_data(separation, plan, module.thresholded_mask)
    trainer = None
    try:
        with quiet_banners():
            trainer = make_trainer(plan, [SeparatedAudioWriter(sink, plan)])
            check_trainer(trainer)
            trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    finally:
        # A fit's trainer, module and optimiser refer to each other: free their tensors now (after a
        # failure too), or they pile up across fits and evaluation rows until Python's collector runs.
        del trainer, module, data
        gc.collect()
