"""The command line: ``python main.py fit --config configs/dgmo.yaml`` (also ``references``, ``evaluate``).

The command line only parses, checks and wires: the work is :func:`~dgmo_pl.separate.separate`
(one run) and :func:`~dgmo_pl.evaluation.runner.evaluate_rows` (one per manifest row).
"""

from __future__ import annotations

import errno
import importlib
import inspect
import shlex
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from jsonargparse import Namespace
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger

from dgmo_pl.batch import PER_RECORDING, recording_key, separate_recordings
from dgmo_pl.checkpoints import AtomicCheckpointIO, check_mask_shape, model_settings, read_checkpoint
from dgmo_pl.checks import check_folder, check_joint, check_trainer
from dgmo_pl.data import SeparationDataModule
from dgmo_pl.errors import InputError
from dgmo_pl.evaluation.manifest import load_rows
from dgmo_pl.evaluation.metrics import ClapScorer
from dgmo_pl.evaluation.runner import (
    SCORING,
    ReferenceMode,
    ScoringName,
    collect,
    evaluate_rows,
    markdown,
    shard,
    summarise,
    write_reports,
)
from dgmo_pl.evaluation.shards import launch, single_device_trainer_settings
from dgmo_pl.interrupt import RunInterrupted
from dgmo_pl.job import FitPlan
from dgmo_pl.model import MaskSeparator
from dgmo_pl.output import OutputSettings
from dgmo_pl.run_state import RUN_RECORD
from dgmo_pl.separate import TRAINER_INVARIANTS, SeparationResult, TrainerFactory, new_run_folder, separate

#: Callback groups an application adds to the command line (``{"monitor": MaskMonitor}``).
AppCallbacks = Mapping[str, type[Callback]]


def with_atomic_checkpoints(plugins: Any) -> list[Any]:
    """The configured trainer plugins, plus :class:`AtomicCheckpointIO` unless one writes checkpoints already."""
    listed = list(plugins) if isinstance(plugins, list | tuple) else [plugins] if plugins else []
    if any(isinstance(p, CheckpointIO) for p in listed):
        return listed
    return [*listed, AtomicCheckpointIO()]


def _one(_: object) -> int:
    return 1


def _logger_class(class_path: str) -> type[Logger]:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


#: Loggers whose folder is ``save_dir/name/version``: each fit can have its own.
FOLDER_LOGGERS = (TensorBoardLogger, CSVLogger)


def check_loggers(configured: Any) -> None:
    """Refuse loggers that cannot give each fit a folder of its own (the outputs go in it)."""
    entries = configured if isinstance(configured, list) else [configured]
    for entry in entries:
        if entry in (None, True):
            continue
        if entry is False:
            raise InputError("trainer.logger is off, but each run's outputs go in the logger's new version folder: "
                             "keep the default logger (TensorBoard) or use CSVLogger")  # fmt: skip
        cls = _logger_class(entry.class_path)
        if not (isinstance(cls, type) and issubclass(cls, FOLDER_LOGGERS)):
            raise InputError(
                f"trainer.logger {entry.class_path} is not supported: each fit logs (and writes its outputs) in a "
                "folder of its own, which TensorBoardLogger (the default) and CSVLogger give; use one of them"
            )


def fit_loggers(configured: Any, folder: Path, version: str) -> list[Logger]:
    """Fresh loggers of one fit, as configured (``trainer.logger``), each in ``<folder>/<version>``.

    Every configured logger (TensorBoard by default) is built again with its own settings, except
    where it writes: ``save_dir`` the run folder, ``name`` empty and ``version`` the fit's, for
    the loggers that take them (TensorBoard, CSV).
    """
    entries = configured if isinstance(configured, list) else [configured]
    loggers = []
    for entry in entries:
        if entry in (None, True):
            entry = Namespace(class_path="lightning.pytorch.loggers.TensorBoardLogger",
                              init_args=Namespace(default_hp_metric=False))  # fmt: skip
        cls = _logger_class(entry.class_path)
        accepted = inspect.signature(cls).parameters
        where = {"save_dir": str(folder), "name": "", "version": version}
        settings = dict(vars(entry.get("init_args") or Namespace()))
        settings.update({k: v for k, v in where.items() if k in accepted})
        loggers.append(cls(**settings))
    return loggers


class DGMOTrainer(Trainer):
    """Lightning's Trainer, plus the ``references`` subcommand's work."""

    def references(self, model: MaskSeparator, datamodule: SeparationDataModule) -> list[Path]:
        """Generate and store the first round's references of every query, without fitting a mask.

        Round 0 depends only on the mixture, so it can run on another machine or ahead of
        time; a later ``fit`` with the same settings finds it in the data module's cache.
        """
        if not datamodule.generates:
            raise InputError("--data.references are given, so there is nothing to generate: drop them")
        if datamodule.cache.root is None:
            raise InputError("--data.cache_dir is null, so references would not be kept: set a folder")
        separation = datamodule.separation()
        separation.source.to(self.strategy.root_device)
        return separation.source.store_first_round(separation.recording)


class DGMOCLI(LightningCLI):
    """LightningCLI with DGMO's arguments and links; ``fit`` runs :func:`~dgmo_pl.separate.separate`.

    Args:
        *args: LightningCLI's.
        app_callbacks: Callback classes of the application, each an argument group of its own
            (``{"monitor": MaskMonitor}`` gives ``--monitor.every_n_steps``), made fresh for every fit.
        **kwargs: LightningCLI's.
    """

    def __init__(self, *args: Any, app_callbacks: AppCallbacks | None = None, **kwargs: Any) -> None:
        self.app_callbacks = dict(app_callbacks or {})
        #: Trainer settings that override the configured ones in every fit (an evaluation's shards).
        self.fit_settings: dict[str, Any] = {}
        #: The ``--ckpt_path`` checkpoint, read once (see :meth:`_parse_ckpt_path`).
        self.checkpoint: dict[str, Any] | None = None
        super().__init__(*args, **kwargs)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """The subcommands: Lightning's, plus ``references``."""
        return {**LightningCLI.subcommands(), "references": {"model", "datamodule"}}

    def _parse_ckpt_path(self) -> None:
        """Read ``--ckpt_path`` safely (plain tensors only) and take the module's settings from it.

        As LightningCLI does, the checkpoint's settings (learning rate, threshold, joint masks)
        replace the configured ones; the mask's sizes and front end are the run's own, checked
        against the checkpoint before the fit (:meth:`before_fit`).
        """
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not ckpt_path or not Path(ckpt_path).is_file():
            return  # none, or a name ("last") or a missing file: before_fit says which
        self.checkpoint = read_checkpoint(ckpt_path)
        if settings := model_settings(self.checkpoint):
            self.config = self.parser.parse_object({subcommand: {"model": settings}}, self.config)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Add DGMO's argument groups, links and defaults."""
        parser.add_class_arguments(OutputSettings, "audio")
        parser.add_argument(
            "--output_dir", type=str | None, default=None,
            help="a folder to write into (created if missing) instead of a new version folder; re-running into it "
                 "skips the recordings (evaluate: rows) already done with the same settings",
        )  # fmt: skip
        parser.add_argument(
            "--resume", type=str | None, default=None,
            help="finish the run in this folder (one that was stopped or killed), with the settings it was started "
                 "with: finished fits are kept, the interrupted one resumes from its checkpoint",
        )  # fmt: skip
        parser.add_argument(
            "--checkpoint_every", type=int, default=50,
            help="save each fit's resume checkpoint (checkpoints/last.ckpt) every this many optimiser steps; "
                 "0: only when Ctrl-C or SIGTERM stops the run",
        )  # fmt: skip
        for key, callback in self.app_callbacks.items():
            parser.add_lightning_class_args(callback, key)
        parser.link_arguments("data.spec", "model.spec", apply_on="instantiate")
        # The configured module is one mask of one window; the loop sizes each fit's module
        # (MaskSeparator.sized), so its sizes are never typed on the command line.
        for size in ("model.masks", "model.windows"):
            parser.link_arguments("data.spec", size, compute_fn=_one, apply_on="instantiate")
        parser.set_defaults({
            "trainer.max_epochs": 3,  # rounds
            "trainer.log_every_n_steps": 1,
            "trainer.default_root_dir": "logs",
            **{f"trainer.{k}": v for k, v in TRAINER_INVARIANTS.items()},
        })  # fmt: skip

    @staticmethod
    def run_settings(c: Namespace) -> dict[str, Any]:
        """The settings a recording's result depends on, beyond the recording itself and its queries."""
        data = {k: v for k, v in c.data.as_dict().items() if k not in PER_RECORDING}
        return {"model": c.model.as_dict(), "data": data, "audio": c.audio.as_dict(), "rounds": c.trainer.max_epochs,
                "precision": str(c.trainer.precision), "seed": c.seed_everything}  # fmt: skip

    def _section(self, config: Namespace) -> Namespace:
        """The subcommand's part of a parsed configuration (all of it without subcommands)."""
        return config[self.subcommand] if self.subcommand else config

    def fit_trainers(self, folder: Path) -> TrainerFactory:
        """Builds each fit's trainer from the configuration, with fresh callbacks and loggers in ``folder``."""

        def make(plan: FitPlan, extra: list[Callback]) -> Trainer:
            init = self._section(self.parser.instantiate(self.config))
            config = {**init["trainer"], **TRAINER_INVARIANTS, **self.fit_settings}
            config["logger"] = fit_loggers(self._section(self.config)["trainer"]["logger"], folder, plan.version)
            configured = config.get("callbacks") or []
            configured = list(configured) if isinstance(configured, list | tuple) else [configured]
            config["callbacks"] = [*configured, *extra]
            config["default_root_dir"] = str(folder)  # nothing of a fit (hpc checkpoints) outside the run folder
            config["plugins"] = with_atomic_checkpoints(config.get("plugins"))
            return self._instantiate_trainer(config, [init[key] for key in self.app_callbacks])

        return make

    def trainer_identity(self) -> dict[str, Any]:
        """The trainer settings a run's result depends on (for its record in the run folder)."""
        trainer = self._section(self.config)["trainer"]
        return {"rounds": trainer.max_epochs, "precision": str(self.trainer.precision)}  # as resolved: "32-true"

    def run(self, model: MaskSeparator, datamodule: SeparationDataModule, folder: Path,
            ckpt_path: str | None = None, resume: bool = False) -> SeparationResult:  # fmt: skip
        """Separate the configured recording into ``folder`` (see :func:`~dgmo_pl.separate.separate`)."""
        section = self._section(self.config)
        settings = self._section(self.config_init)["audio"]
        return separate(datamodule.separation(), model, self.fit_trainers(folder), folder, settings,
                        ckpt_path=ckpt_path, resume=resume, identity=self.trainer_identity(),
                        checkpoint_every=section.get("checkpoint_every") or 0)  # fmt: skip

    def before_fit(self) -> None:
        """Check the settings and every input before any work starts (bad input leaves no partial run)."""
        check_trainer(self.trainer)
        check_folder(self.trainer.log_dir, "the run folder (--trainer.default_root_dir or the logger's save_dir)")
        check_loggers(self.config[self.subcommand]["trainer"]["logger"])
        ckpt_path = self.config[self.subcommand].get("ckpt_path")
        self._check_resume(ckpt_path)
        if ckpt_path in ("last", "best", "hpc", "registry"):
            raise InputError(
                f"--ckpt_path {ckpt_path} cannot resume a run: every run has a new folder, with no {ckpt_path} "
                "checkpoint in it; pass the .ckpt file of the fit to resume"
            )
        if ckpt_path and not Path(ckpt_path).is_file():
            raise InputError(f"checkpoint '{ckpt_path}' does not exist: pass an existing --ckpt_path")
        if ckpt_path and len(self.datamodule.queries) > 1 and not self.model.hparams.joint:
            raise InputError(
                f"--ckpt_path resumes one query's mask, but {len(self.datamodule.queries)} queries were given: "
                "pass the query of that checkpoint with --data.query"
            )
        check_joint(bool(self.model.hparams.joint), bool(self.model.hparams.residual), len(self.datamodule.queries))
        if output_dir := self.config[self.subcommand].get("output_dir"):
            check_folder(output_dir, "--output_dir")
        if self.datamodule.batch or output_dir:
            if ckpt_path:
                raise InputError("--ckpt_path resumes one fit: with --output_dir or several recordings, re-run into "
                                 "the same --output_dir instead (finished recordings are kept)")  # fmt: skip
            self.datamodule.recordings()  # every listed file exists, or the folder has audio
            if self.datamodule.generates:
                self.datamodule.provider()  # the model, loaded once for every recording
            return
        separation = self.datamodule.separation()
        plans = separation.plans(bool(self.model.hparams.joint), bool(self.model.hparams.residual))
        if ckpt_path and len(plans) > 1:
            raise InputError(
                f"--ckpt_path resumes one fit, but the mixture takes {len(plans)} fits of "
                f"{self.datamodule.hparams.windows_per_fit} windows: resume a recording that fits in one "
                "(raise --data.windows_per_fit)"
            )
        if ckpt_path and self.checkpoint is not None:
            spec = separation.spec
            check_mask_shape(self.checkpoint, (plans[0].masks, len(plans[0].windows), spec.n_freq, spec.n_frames),
                             ckpt_path)  # fmt: skip

    def _check_resume(self, ckpt_path: str | None) -> None:
        """Refuse ``--resume`` with what it cannot go with, or a folder that holds no run."""
        section = self.config[self.subcommand]
        if (every := section.get("checkpoint_every")) is not None and every < 0:
            raise InputError(f"--checkpoint_every {every} must be 0 (only on Ctrl-C or SIGTERM) or a number of steps")
        if not (resume := section.get("resume")):
            return
        if self.datamodule.batch or section.get("output_dir"):
            raise InputError("--resume finishes one recording's run; with --output_dir or several recordings, re-run "
                             "into the same --output_dir instead (finished recordings are kept)")  # fmt: skip
        if not (Path(resume) / RUN_RECORD).is_file():
            raise InputError(f"--resume '{resume}' is not a run folder (no {RUN_RECORD} in it): pass the folder a "
                             "fit printed as 'run directory: ...'")  # fmt: skip

    def run_folder(self) -> Path:
        """The run's new folder, claimed atomically: ``<save_dir>/<name>/version_<N>``, or the logger's version.

        A version given explicitly (``--trainer.logger.version``) must not exist yet: a run never
        writes into an earlier run's folder.
        """
        configured = self.config[self.subcommand]["trainer"]["logger"]
        first = configured[0] if isinstance(configured, list) else configured
        version = first.get("init_args", {}).get("version") if isinstance(first, Namespace) else None
        if version is None:
            return new_run_folder(Path(self.trainer.log_dir).parent)
        folder = Path(self.trainer.log_dir)
        try:
            folder.mkdir(parents=True)
        except FileExistsError:
            raise InputError(
                f"run folder '{folder}' exists (--trainer.logger.version {version}): a run never writes "
                "into an earlier one's folder; choose another version or drop it"
            ) from None
        return folder

    def fit(self, model: MaskSeparator, datamodule: SeparationDataModule, ckpt_path: str | None = None,
            **kwargs: Any) -> None:  # fmt: skip
        """Separate the recording into a new run folder, then list what was written."""
        output_dir = self.config[self.subcommand].get("output_dir")
        if datamodule.batch or output_dir:
            self.fit_recordings(model, datamodule, Path(output_dir) if output_dir else self.run_folder())
            return
        resume = self.config[self.subcommand].get("resume")
        if resume:
            self.save_config_kwargs["overwrite"] = True  # a resumed fit's config.yaml is written again, with resume
        run_dir = Path(resume) if resume else self.run_folder()
        result = self.run(model, datamodule, run_dir, ckpt_path, resume=bool(resume))
        print(f"run directory: {run_dir}")
        if resume and not result.fitted:
            print(f"  the run was already complete ({result.kept} fits): nothing to do")
            return
        if resume:
            print(f"  resumed: {result.kept} finished fits kept, {result.fitted} run")
        for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
            print(f"  wrote {path}")
        cache = datamodule.cache
        if datamodule.generates and cache.root is not None:
            print(f"reference cache {cache.root}: {cache.hits} entries found, {cache.misses + cache.rejected} computed")

    def fit_recordings(self, model: MaskSeparator, datamodule: SeparationDataModule, output: Path) -> None:
        """Separate every recording with every query into ``output/<recording>/``; exit status 1 if one failed."""
        settings = self._section(self.config_init)["audio"]
        queries, references = datamodule.queries, datamodule.reference_files or None
        common = self.run_settings(self._section(self.config))

        def run(path: Path, folder: Path) -> None:
            separation = datamodule.separation_of(str(path), queries, references)
            separate(separation, model, self.fit_trainers(folder), folder, settings)

        def key(path: Path) -> str:
            return recording_key(path, queries, common)

        try:
            report = separate_recordings(datamodule.recordings(), output, run, key)
        except RunInterrupted as stop:  # finished recordings are kept: the same command goes on
            raise stop.to_rerun() from None
        print(f"run directory: {output}")
        print(f"  {len(report.done)} separated, {len(report.skipped)} already done, {len(report.failed)} failed")
        if report.failed:
            names = ", ".join(name for name, _ in report.failed[:5])
            print(f"error: {len(report.failed)} recordings failed ({names}); see the lines above", file=sys.stderr)
            raise SystemExit(1)

    def before_references(self) -> None:
        """Check every input before generating references."""
        self.datamodule.separation()

    def references(self, model: MaskSeparator, datamodule: SeparationDataModule) -> None:
        """Generate and store round 0's references (see :meth:`DGMOTrainer.references`)."""
        for path in self.trainer.references(model, datamodule):
            print(f"stored {path}")


class EvaluateCLI(DGMOCLI):
    """``main.py evaluate``: separate and score every row of a manifest, each row one :func:`separate` run.

    The same configuration as ``fit`` (``--config configs/dgmo.yaml``, ``--model.*``, ``--data.*``,
    ``--trainer.*``), plus the evaluation's own options; the mixture, query and references of each
    run come from the manifest's row.
    """

    def __init__(self, args: ArgsType = None, **kwargs: Any) -> None:
        super().__init__(MaskSeparator, SeparationDataModule, trainer_class=DGMOTrainer, args=args, run=False,
                         **kwargs)  # fmt: skip

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """DGMO's arguments, plus the manifest and how rows are scored."""
        super().add_arguments_to_parser(parser)
        parser.add_argument("--manifest", type=str, required=True,
                            help="a CSV (mixture, query, optional source, id) or a folder in AudioSep's layout")
        parser.add_argument("--reference_source", type=ReferenceMode, default="diffusion",
                            help="diffusion (DGMO) or true_source (the row's source as the reference)")
        parser.add_argument("--clap_model", type=str | None, default="laion/clap-htsat-unfused",
                            help="CLAP model (hub id or folder) for CLAPScore; null or unloadable: skipped")
        conventions = "; ".join(f"{name}: {scoring.text}" for name, scoring in SCORING.items())
        parser.add_argument("--scoring", type=ScoringName, default="output",
                            help=f"where signals are compared: {conventions}")

    def _row_settings(self, scorer: ClapScorer | None) -> dict[str, Any]:
        """Every setting a row's result depends on (a row scored under other settings is done again)."""
        c = self.config
        return {**self.run_settings(c), "reference_source": c.reference_source,
                "clap_model": c.clap_model if scorer else None}  # fmt: skip

    def evaluate(self) -> None:
        """Evaluate the manifest; exit status 1 if any row failed."""
        check_trainer(self.trainer)
        c = self.config
        if c.resume:
            raise InputError("evaluate goes on by itself: run the same command again (with the same --output_dir) "
                             "and the rows already scored are kept; drop --resume")  # fmt: skip
        check_loggers(c.trainer.logger)
        check_joint(bool(self.model.hparams.joint), bool(self.model.hparams.residual), 1)  # a row: one query
        rows = load_rows(c.manifest)
        output = check_folder(
            c.output_dir or Path(self.trainer.default_root_dir) / "evaluation" / Path(c.manifest).stem,
            "--output_dir" if c.output_dir else "--trainer.default_root_dir",
        )
        if c.reference_source == "true_source" and (missing := [r.id for r in rows if r.source is None]):
            raise InputError(f"--reference_source true_source needs a source for every row; rows {missing[:5]} "
                             "have none: add a source column or use --reference_source diffusion")
        scorer = ClapScorer.load(c.clap_model) if c.clap_model else None
        if c.clap_model and scorer is None:
            print(f"CLAPScore skipped: {ClapScorer.last_error}")
        data, settings = self.datamodule, self.config_init["audio"]

        def separate_row(row: Any, folder: Path) -> Path:
            sources = [[str(row.source)]] if c.reference_source == "true_source" else None
            separation = data.separation_of(str(row.mixture), [row.query], sources)
            result = separate(separation, self.model, self.fit_trainers(folder), folder, settings)
            return result.outputs[separation.names[0]]

        trainer = c.trainer
        fabric = launch(trainer.accelerator, trainer.devices, trainer.num_nodes)
        if fabric.world_size > 1:
            self.fit_settings = single_device_trainer_settings(fabric)
        mine = shard(rows, fabric.global_rank, fabric.world_size)
        try:
            evaluate_rows(mine, output, separate_row, scorer, process=fabric.global_rank, scoring=c.scoring,
                          settings=self._row_settings(scorer))  # fmt: skip
        except RunInterrupted as stop:  # scored rows are kept: the same command goes on
            raise stop.to_rerun() from None
        fabric.barrier()
        if fabric.global_rank:
            return  # rank 0 merges and reports
        results = collect(rows, output)
        summary = summarise(results)
        for path in write_reports(results, summary, output, c.scoring):
            print(f"wrote {path}")
        print(f"scored: {c.scoring} ({SCORING[c.scoring].text})")
        print(markdown(summary))
        if failed := [r["id"] for r in results if r["status"] != "ok"]:
            print(f"error: {len(failed)} of {len(rows)} rows failed ({', '.join(failed[:5])}); see results.csv")
            raise SystemExit(1)


def check_config_files(argv: list[str]) -> None:
    """Refuse a ``--config`` file that is missing or not YAML, naming the file, line and column."""
    paths = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--config"]
    paths += [arg.removeprefix("--config=") for arg in argv if arg.startswith("--config=")]
    for path in paths:
        if Path(path).suffix.lower() not in (".yaml", ".yml", ".json") and not Path(path).exists():
            continue  # an inline YAML string (``--config '{trainer: {max_epochs: 1}}'``): jsonargparse parses it
        if not Path(path).is_file():
            raise InputError(f"--config '{path}' does not exist: pass a YAML file such as configs/dgmo.yaml")
        try:
            yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise InputError(f"--config '{path}' is not UTF-8 text: pass a YAML file") from None
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise InputError(f"--config '{path}'{where}: not valid YAML ({problem}): fix that line") from None


def describe_os_error(err: OSError) -> str:
    """A file-system failure in one line: what failed, where, and what to do."""
    what = err.strerror or str(err)
    where = f" '{err.filename}'" if err.filename else ""
    advice = {
        errno.ENOSPC: "free some space, or write elsewhere (--trainer.default_root_dir, --data.cache_dir)",
        errno.EFBIG: "a file size limit was reached (ulimit -f): raise it, or write elsewhere",
        errno.EACCES: "check the permissions of that folder, or write elsewhere",
        errno.EPERM: "check the permissions of that folder, or write elsewhere",
        errno.EROFS: "the file system is read-only: write elsewhere (--trainer.default_root_dir)",
    }.get(err.errno, "check the free space and permissions of the folders the run writes")
    return f"{what}{where}: {advice}; nothing partial was kept"


def how_to_go_on(argv: list[str], stop: RunInterrupted, seed: int) -> str:
    """How to finish a stopped run: the same command with ``--resume <folder>`` and its seed.

    An evaluation or a folder of recordings goes on by running the same command again.
    """
    program = "dgmo-pl" if Path(sys.argv[0]).name == "dgmo-pl" else "python main.py"
    if stop.rerun:
        return f"to go on, run the same command again: {shlex.join([*program.split(), *argv])}"
    if stop.folder is None:
        return "nothing was saved: run it again"
    kept, skip = [], False
    for arg in argv:  # an earlier --resume or seed gives way to this run's
        if skip or arg in ("--resume", "--seed_everything") or arg.startswith(("--resume=", "--seed_everything=")):
            skip = arg in ("--resume", "--seed_everything")
            continue
        kept.append(arg)
    resume = [*kept, "--seed_everything", str(seed), "--resume", str(stop.folder)]
    return f"to finish it, run: {shlex.join([*program.split(), *resume])}"


def main(args: ArgsType = None, app_callbacks: AppCallbacks | None = None) -> None:
    """Run the command line; user mistakes end with a one-line message and exit status 2.

    A failure of the file system (a full disk, a read-only folder) ends with one line and exit
    status 1; the atomic writers have removed what was half written. A run stopped by Ctrl-C or
    SIGTERM ends with a line saying how to finish it, and the shell's status for that signal
    (130, 143).

    Args:
        args: The arguments (default: ``sys.argv[1:]``); ``evaluate ...`` runs :class:`EvaluateCLI`.
        app_callbacks: The application's callback groups (see :class:`DGMOCLI`).
    """
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    argv = list(sys.argv[1:] if args is None else args) if not isinstance(args, dict) else None
    options = {"save_config_kwargs": {"overwrite": False}, "auto_configure_optimizers": False,
               "app_callbacks": app_callbacks}  # fmt: skip
    try:
        check_config_files(argv or [])
        if argv and argv[0] == "evaluate":
            EvaluateCLI(argv[1:], **options).evaluate()
        else:
            DGMOCLI(MaskSeparator, SeparationDataModule, trainer_class=DGMOTrainer, args=args,
                    parser_kwargs={"epilog": "evaluate a manifest: evaluate --help"}, **options)  # fmt: skip
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except RunInterrupted as err:
        print(f"error: {err}; {how_to_go_on(argv or [], err, torch.initial_seed())}", file=sys.stderr)
        raise SystemExit(err.exit_status) from None
    except OSError as err:
        print(f"error: {describe_os_error(err)}", file=sys.stderr)
        raise SystemExit(1) from None
