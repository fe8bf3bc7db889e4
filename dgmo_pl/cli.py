"""The command line: ``python main.py fit --config configs/dgmo.yaml``."""

from __future__ import annotations

import contextlib
import copy
import gc
import logging
import pickle
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger

from callbacks import MaskMonitor, SeparatedAudioWriter
from dgmo_pl.data import SeparationDataModule, check_round_reloading
from dgmo_pl.errors import InputError
from dgmo_pl.evaluation.manifest import Row, load_rows
from dgmo_pl.evaluation.metrics import ClapScorer
from dgmo_pl.evaluation.runner import collect, evaluate_rows, markdown, shard, summarise, write_reports
from dgmo_pl.evaluation.shards import launch, single_device_trainer_settings
from dgmo_pl.model import MaskSeparator

#: How each scoring convention compares signals, for the printout.
SCORING_TEXT = {
    "output": "the separated files' rate and channels, full length",
    "dgmo": "16 kHz mono, first 10.24 s",
    "audiosep": "32 kHz mono, full clips",
}

#: Precisions that would store the mask itself in 16 bits (its small Adam updates then vanish).
LOW_PRECISION_WEIGHTS = ("bf16-true", "16-true", "transformer-engine", "transformer-engine-float16")


def check_trainer(trainer: Trainer) -> None:
    """Refuse trainer settings that would break the method or mix runs' outputs."""
    if trainer.logger is None:
        raise InputError(
            "trainer.logger is off, but each run's outputs go in the logger's new version folder: "
            "keep the default logger (TensorBoard)"
        )
    check_round_reloading(trainer)
    precision = str(trainer.precision)
    if precision in LOW_PRECISION_WEIGHTS:
        raise InputError(
            f"trainer.precision {precision} would keep the mask in 16 bits: use bf16-mixed or 16-mixed, "
            "which keep the mask in fp32"
        )


@contextlib.contextmanager
def _quiet_banners() -> Iterator[None]:
    """Silence Lightning's information lines (devices, tips) of a trainer.

    The command line's own trainer has printed them once; a run of many fits (queries, windows,
    evaluation rows) would repeat them for each. Warnings still show.
    """
    rank_zero_log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    level = rank_zero_log.level
    rank_zero_log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        rank_zero_log.setLevel(level)


class DGMOTrainer(Trainer):
    """Lightning's Trainer, plus the ``references`` subcommand's work."""

    def references(self, model: LightningModule, datamodule: LightningDataModule) -> list[Path]:
        """Generate and store the first round's references of every query, without fitting a mask.

        Round 0 depends only on the mixture, so it can run on another machine or ahead of
        time; a later ``fit`` with the same settings finds it in the data module's cache.
        """
        if datamodule.generator is None:
            raise InputError("--data.references are given, so there is nothing to generate: drop them")
        if datamodule.cache.root is None:
            raise InputError("--data.cache_dir is null, so references would not be kept: set a folder")
        datamodule.generator.to(self.strategy.root_device)
        return datamodule.store_first_round()


    def evaluate(
        self,
        model: LightningModule,
        datamodule: LightningDataModule,
        manifest: str,
        output_dir: str | None = None,
        reference_source: Literal["diffusion", "true_source"] = "diffusion",
        clap_model: str | None = "laion/clap-htsat-unfused",
        scoring: Literal["output", "dgmo", "audiosep"] = "output",
    ) -> None:
        """Separate and score every row of a manifest (run as ``main.py evaluate``; see ``DGMOCLI.evaluate``).

        Args:
            model: The mask module's configuration (one fresh module per row and fit).
            datamodule: The data settings; each row gets its mixture and query.
            manifest: A CSV (``mixture``, ``query``, optional ``source``, ``id``) or a folder in
                AudioSep's evaluation layout.
            output_dir: Where rows and reports go (default ``<default_root_dir>/evaluation/<manifest
                name>``); re-running into it skips the rows already done.
            reference_source: ``diffusion`` (DGMO: references from the diffusion model) or
                ``true_source`` (the row's source as the reference, to isolate the mask optimisation).
            clap_model: CLAP model (hub id or folder) for CLAPScore; ``null`` or unloadable: skipped.
            scoring: Where signals are compared: ``output`` (the separated file's rate and
                channels, full length), ``dgmo`` (16 kHz mono, first 10.24 s, as the DGMO paper)
                or ``audiosep`` (32 kHz mono, full clips, as AudioSep).
        """
        raise RuntimeError("evaluate runs through the command line: python main.py evaluate --manifest ...")


class DGMOCLI(LightningCLI):
    """LightningCLI with DGMO's links, defaults, always-on callbacks and one fit per query."""

    #: Trainer settings that override the configured ones in every fit (the evaluation's shards).
    fit_settings: dict[str, Any] = {}

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """The subcommands: Lightning's, plus ``references`` and ``evaluate``."""
        return {
            **LightningCLI.subcommands(),
            "references": {"model", "datamodule"},
            "evaluate": {"model", "datamodule"},
        }

    def _parse_ckpt_path(self) -> None:
        """Refuse a ``--ckpt_path`` that is not a checkpoint, with a named error.

        LightningCLI reads the checkpoint's hyperparameters first: a file that is not a checkpoint
        is a user mistake, named, not a traceback.
        """
        try:
            super()._parse_ckpt_path()
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError) as err:
            ckpt_path = self.config[self.config.subcommand].get("ckpt_path")
            raise InputError(
                f"--ckpt_path '{ckpt_path}' is not a readable checkpoint ({type(err).__name__}): pass a .ckpt "
                "from a run's checkpoints/ folder"
            ) from None

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Add DGMO's argument groups and links."""
        parser.add_lightning_class_args(SeparatedAudioWriter, "audio")
        parser.add_lightning_class_args(MaskMonitor, "monitor")
        parser.link_arguments("data.spec", "model.spec", apply_on="instantiate")
        parser.set_defaults(
            {
                "trainer.max_epochs": 3,  # rounds
                "trainer.log_every_n_steps": 1,
                # Each round (epoch) asks the data module for fresh references.
                "trainer.reload_dataloaders_every_n_epochs": 1,
                "trainer.default_root_dir": "logs",
            }
        )

    def before_fit(self) -> None:
        """Check the settings before any work starts."""
        # Check everything before the first file is written, so bad input leaves no partial run.
        check_trainer(self.trainer)
        ckpt_path = self.config[self.subcommand].get("ckpt_path")
        if ckpt_path and ckpt_path not in ("last", "best", "hpc", "registry") and not Path(ckpt_path).is_file():
            raise InputError(f"checkpoint '{ckpt_path}' does not exist: pass an existing --ckpt_path")
        if ckpt_path and len(self.datamodule.queries) > 1 and not self.model.hparams.joint:
            raise InputError(
                f"--ckpt_path resumes one query's mask, but {len(self.datamodule.queries)} queries were given: "
                "pass the query of that checkpoint with --data.query"
            )
        if self.model.hparams.joint and len(self.datamodule.queries) < 2 and not self.model.hparams.residual:
            raise InputError("--model.joint true needs two or more queries, or --model.residual true: "
                             "pass --data.queries, or drop --model.joint")
        self.datamodule.load()
        batches = len(self.datamodule.window_batches)
        if ckpt_path and batches > 1:
            raise InputError(
                f"--ckpt_path resumes one fit, but the mixture takes {batches} fits of "
                f"{self.datamodule.hparams.windows_per_fit} windows: resume a recording that fits in one "
                "(raise --data.windows_per_fit)"
            )

    def fit(self, model: MaskSeparator, datamodule: SeparationDataModule, **kwargs: Any) -> None:
        """Fit the masks of every query and window batch (see :meth:`fit_all`), then list the files."""
        run_dir = Path(self.trainer.log_dir)
        self.fit_all(model, datamodule, run_dir, **kwargs)
        print(f"run directory: {run_dir}")
        for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
            print(f"  wrote {path}")
        cache = datamodule.cache
        if datamodule.generator is not None and cache.root is not None:
            print(f"reference cache {cache.root}: {cache.hits} entries found, {cache.misses + cache.rejected} computed")

    def fit_all(self, model: MaskSeparator, datamodule: SeparationDataModule, run_dir: Path, **kwargs: Any) -> None:
        """Fit the masks of every query and window batch, each fit with its own module and trainer.

        Independent masks: one fit per query and window batch; joint masks: one fit per window
        batch for all queries. Each query (or the joint fit, ``joint``) logs to TensorBoard,
        checkpoints and writes its audio in ``<run_dir>/<name>/``, and, when the recording takes
        several fits, each window batch logs in ``<name>/windows_<a>-<b>/``. ``run_dir`` is the
        folder the configured logger would use (``<root>/lightning_logs/version_N``) for ``fit``.
        """
        queries = range(len(datamodule.queries))
        joint = bool(model.hparams.joint)
        groups = [list(queries)] if joint else [[q] for q in queries]
        batches = datamodule.window_batches
        pristine = copy.deepcopy(model)  # every fit starts from the configured, untrained module
        for group in groups:
            # Fresh callbacks (their per-query state), built from the same configuration.
            self.config_init = self.parser.instantiate(self.config)
            name = "joint" if joint else datamodule.names[group[0]]
            for b, windows in enumerate(batches):
                version = name if len(batches) == 1 else f"{name}/windows_{windows[0] + 1}-{windows[-1] + 1}"
                logger = TensorBoardLogger(run_dir, name="", version=version, default_hp_metric=False)
                with _quiet_banners():
                    trainer = self.instantiate_trainer(logger=logger, **self.fit_settings)
                    check_trainer(trainer)
                    datamodule.select(group, b)
                    model = copy.deepcopy(pristine)
                    trainer.fit(model, datamodule=datamodule, **kwargs)
                # A finished fit's trainer, module and optimiser refer to each other: free their
                # tensors now, or they pile up across the fits of a long recording until Python's
                # collector runs.
                del trainer, model
                gc.collect()

    def before_evaluate(self) -> None:
        """Check the evaluation's settings before any row runs."""
        check_trainer(self.trainer)

    def evaluate(
        self,
        model: MaskSeparator,
        datamodule: SeparationDataModule,
        manifest: str,
        output_dir: str | None = None,
        reference_source: str = "diffusion",
        clap_model: str | None = "laion/clap-htsat-unfused",
        scoring: str = "output",
    ) -> None:
        """Evaluate a manifest (see :meth:`DGMOTrainer.evaluate`); exit status 1 if any row failed."""
        rows = load_rows(manifest)
        if reference_source == "true_source" and (missing := [r.id for r in rows if r.source is None]):
            raise InputError(f"--reference_source true_source needs a source for every row; rows {missing[:5]} "
                             "have none: add a source column or use --reference_source diffusion")
        root = Path(self.trainer.default_root_dir)
        output = Path(output_dir) if output_dir else root / "evaluation" / Path(manifest).stem
        scorer = ClapScorer.load(clap_model) if clap_model else None
        if clap_model and scorer is None:
            print(f"CLAPScore skipped: {ClapScorer.last_error}")

        def separate(row: Row, folder: Path) -> Path:
            sources = [str(row.source)] if reference_source == "true_source" else None
            data = datamodule.for_recording(str(row.mixture), row.query, sources)
            data.load()
            self.fit_all(model, data, folder)
            return folder / data.names[0] / f"{data.names[0]}.wav"

        trainer_config = self.config[self.subcommand]["trainer"]
        fabric = launch(trainer_config["accelerator"], trainer_config["devices"], trainer_config["num_nodes"])
        if fabric.world_size > 1:
            self.fit_settings = single_device_trainer_settings(fabric)
        mine = shard(rows, fabric.global_rank, fabric.world_size)
        evaluate_rows(mine, output, separate, scorer, process=fabric.global_rank, scoring=scoring)
        fabric.barrier()
        if fabric.global_rank:
            return  # rank 0 merges and reports
        results = collect(rows, output)
        summary = summarise(results)
        for path in write_reports(results, summary, output, scoring):
            print(f"wrote {path}")
        print(f"scored: {scoring} ({SCORING_TEXT[scoring]})")
        print(markdown(summary))
        if failed := [r["id"] for r in results if r["status"] != "ok"]:
            print(f"error: {len(failed)} of {len(rows)} rows failed ({', '.join(failed[:5])}); see results.csv")
            raise SystemExit(1)

    def before_references(self) -> None:
        """Check the settings before generating references."""
        self.datamodule.load()

    def references(self, model: MaskSeparator, datamodule: SeparationDataModule) -> None:
        """Generate and store round 0's references (see :meth:`DGMOTrainer.references`)."""
        for path in self.trainer.references(model, datamodule):
            print(f"stored {path}")


def main(args: ArgsType = None) -> None:
    """Run the command line; user mistakes end with a one-line message and exit status 2."""
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    try:
        DGMOCLI(
            MaskSeparator,
            SeparationDataModule,
            trainer_class=DGMOTrainer,
            args=args,
            save_config_kwargs={"overwrite": False},
            auto_configure_optimizers=False,
        )
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
