"""The loop over a run's fits: one plain function that the CLI, evaluation, benchmarks and tests call."""

from __future__ import annotations

import contextlib
import gc
import logging
import signal
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch import Callback, LightningDataModule, Trainer
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException

from dgmo_pl.checkpoints import AtomicCheckpointIO, check_mask_shape, read_checkpoint
from dgmo_pl.checks import check_folder, check_joint, check_trainer
from dgmo_pl.export import SeparatedAudioWriter, deliver
from dgmo_pl.fit_data import FitDataModule, MaskReader
from dgmo_pl.interrupt import ResumeCheckpoint, RunInterrupted, StopRequest, stop_on_signals
from dgmo_pl.job import FitPlan, Separation
from dgmo_pl.model import MaskSeparator
from dgmo_pl.output import OutputSettings, OutputSink
from dgmo_pl.publish import file_digest
from dgmo_pl.run_state import RunState

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
        fitted: Fits run (or finished) by this call.
        kept: Fits that a resumed run found finished, and kept.
        plans: The run's fits, in order (their masks: :meth:`~dgmo_pl.run_state.RunState.output_masks`).
    """

    folder: Path
    outputs: dict[str, Path]
    written: list[Path]
    fitted: int = 0
    kept: int = 0
    plans: tuple[FitPlan, ...] = ()


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


def run_identity(
    separation: Separation, model: MaskSeparator, settings: OutputSettings, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """What a run's result depends on, recorded in its folder (a resume must match it).

    The mixture's content and its windows, the queries, the reference source (model, revision,
    generation settings; or the true sources' contents), the masks' settings, how the recording
    is cut into fits, the seed and the output settings; plus ``extra`` (the trainer's rounds and
    precision, a starting checkpoint's digest).
    """
    module = {k: model.hparams[k] for k in ("lr", "mask_init", "threshold", "joint", "residual")}
    return {
        "mixture": file_digest(separation.recording.path), "queries": list(separation.queries),
        "windows": asdict(separation.recording.plan),
        "references": separation.source.identity(), "masks": module, "front_end": asdict(separation.spec),
        "windows_per_fit": separation.windows_per_fit, "steps_per_round": separation.steps_per_round,
        "steps_per_batch": separation.steps_per_batch, "seed": torch.initial_seed(), "output": asdict(settings),
        **(extra or {}),
    }  # fmt: skip


def separate(
    separation: Separation,
    model: MaskSeparator,
    make_trainer: TrainerFactory,
    folder: str | Path,
    settings: OutputSettings = OutputSettings(),
    make_data: DataFactory = FitDataModule,
    ckpt_path: str | None = None,
    *,
    resume: bool = False,
    identity: Mapping[str, Any] | None = None,
    checkpoint_every: int = 0,
) -> SeparationResult:
    """Separate a recording: fit the masks of every query group and window batch, then write the outputs.

    Steps, for each fit of :meth:`Separation.plans` (one per query and window batch; joint masks:
    one per window batch for all queries):

    1. a fresh module, ``model`` sized for the fit (``model`` itself is never fitted);
    2. a data module for exactly that fit (``make_data``), reading the module's masks between rounds;
    3. a trainer for that fit (``make_trainer``), given the audio writer of the fit and its
       resume checkpoint (:class:`~dgmo_pl.interrupt.ResumeCheckpoint`);
    4. ``trainer.fit``; the writer puts the fit's windows into the run's output sink, which
       moves each file into place once its last window is in;
    5. the fit's output masks are recorded in its folder (:class:`~dgmo_pl.run_state.RunState`),
       and its resume checkpoint removed.

    The run's identity (:func:`run_identity`) is recorded in the folder first. With ``resume``,
    the folder's run must have the same identity; its finished fits are not run again (their
    masks go back into the outputs that are not complete yet), an interrupted fit resumes from
    its checkpoint, and the rest run as usual: the files are those of the uninterrupted run.

    SIGINT and SIGTERM stop the run after the current step with a checkpoint
    (:class:`~dgmo_pl.interrupt.RunInterrupted`). Each fit's trainer is checked
    (:func:`~dgmo_pl.checks.check_trainer`) before it runs, and the folder before anything. If a
    fit fails or is stopped, the unfinished files are removed (earlier complete files stay) and
    the error propagates.

    Args:
        separation: The run (recording, queries, reference source).
        model: The configured module (its settings; sized afresh per fit).
        make_trainer: Builds each fit's trainer (its loggers in ``<folder>/<plan.version>``).
        folder: The run folder: outputs go to ``<folder>/<plan.group>/``.
        settings: How the separated files are made.
        make_data: Builds each fit's data module.
        ckpt_path: A checkpoint to start the fit from (a run of a single fit; a resumed run goes on
            from its own checkpoint when it has one).
        resume: Finish the run in ``folder`` instead of starting one.
        identity: Settings the result depends on beyond those of ``separation``, ``model`` and
            ``settings`` (the trainer's rounds and precision), for the run's record.
        checkpoint_every: Save each fit's resume checkpoint every this many optimiser steps
            (0: only when a signal stops the run).

    Returns:
        The files written, and how many fits ran or were kept.
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
        raise ValueError(f"a checkpoint starts one fit, but this run takes {len(plans)}")
    start = {"start": file_digest(Path(ckpt_path))} if ckpt_path is not None else {}
    record = run_identity(separation, model, settings, {**(identity or {}), **start})
    state = RunState.resume(folder, record) if resume else RunState.start(folder, record)
    sink = OutputSink(separation.recording, separation.spec, folder, settings, separation.source.vocode)
    fitted = kept = 0
    with state.locked(), stop_on_signals(folder) as stop:
        if resume:
            state.remove_temporaries()
        finished = {plan for plan in plans if resume and state.is_finished(plan)}
        # A group's files were published when all its fits had finished; otherwise they are assembled
        # again, the finished fits' masks read one fit at a time (memory must not grow with the length).
        complete = {p.group for p in plans} - {p.group for p in plans if p not in finished}
        try:
            for plan in plans:
                stop.check()
                if plan in finished:
                    kept += 1
                    if plan.group not in complete:
                        deliver(sink, plan, state.finished_masks(plan), joint)
                    continue
                fit = _Fit(separation, plan, make_trainer, make_data, sink, stop, checkpoint_every)
                state.finish(plan, fit.run(model, ckpt_path, state.checkpoint(plan), resume))  # checkpoint removed
                fitted += 1
            if sink.unfinished:
                raise RuntimeError(
                    f"{len(sink.unfinished)} outputs were not completed ({sink.unfinished[0].name}, ...): the trainer "
                    "factory must give each trainer the callbacks the loop passes it"
                )
        except BaseException as error:
            sink.abort(error)
            raise
    outputs = {plan_output: sink.path(plan.group, plan_output) for plan in plans for plan_output in plan.outputs}
    return SeparationResult(folder, outputs, list(sink.written), fitted, kept, tuple(plans))


@dataclass(frozen=True)
class _Fit:
    """One fit of a run, with objects made for it alone."""

    separation: Separation
    plan: FitPlan
    make_trainer: TrainerFactory
    make_data: DataFactory
    sink: OutputSink
    stop: StopRequest
    checkpoint_every: int

    def run(self, model: MaskSeparator, ckpt_path: str | None, checkpoint: Path, resume: bool) -> torch.Tensor:
        """Fit (from ``ckpt_path``, or when resuming from ``checkpoint`` if it exists); returns the output masks."""
        plan = self.plan
        module = model.sized(plan.masks, len(plan.windows))
        if resume and checkpoint.is_file():
            shape = tuple(module.mask_logits.shape)
            what, advice = "the resume checkpoint", f"delete it to fit {plan.version} again from its start"
            check_mask_shape(read_checkpoint(checkpoint, what, advice), shape, checkpoint, what, advice)
            ckpt_path = str(checkpoint)
        data = self.make_data(self.separation, plan, module.thresholded_mask)
        trainer = None
        try:
            with quiet_banners(), warnings.catch_warnings():
                # A round's loader serves one batch again and again, and a batch's steps follow its index in
                # the round (which the checkpoint holds), so a loader restarted mid-round serves the same fit.
                warnings.filterwarnings("ignore", ".*resuming from a checkpoint that ended before the epoch ended.*")
                if ckpt_path is not None:  # a resumed fit's folder holds its earlier checkpoints, as it should
                    warnings.filterwarnings("ignore", ".*Checkpoint directory .* exists and is not empty.*")
                writer = SeparatedAudioWriter(self.sink, plan)
                trainer = self.make_trainer(plan, [writer, ResumeCheckpoint(checkpoint, self.checkpoint_every,
                                                                            self.stop)])  # fmt: skip
                check_trainer(trainer)
                try:
                    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path, weights_only=True)
                except SIGTERMException:  # Lightning's own stop, when SIGTERM came after this step's callbacks
                    saved = checkpoint if checkpoint.is_file() else None
                    raise RunInterrupted(signal.SIGTERM, self.stop.folder, saved) from None
            return module.output_masks().cpu()
        finally:
            # A fit's trainer, module and optimiser refer to each other: free their tensors now (after a
            # failure too), or they pile up across fits and evaluation rows until Python's collector runs.
            del trainer, module, data
            gc.collect()
