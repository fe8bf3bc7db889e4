"""The command line: ``python main.py fit --config configs/dgmo.yaml``."""

from __future__ import annotations

import copy
import gc
import sys
import warnings
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger

from callbacks import MaskMonitor, SeparatedAudioWriter
from dgmo_pl.data import SeparationDataModule, check_round_reloading
from dgmo_pl.errors import InputError
from dgmo_pl.model import MaskSeparator

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


class DGMOCLI(LightningCLI):
    """LightningCLI with DGMO's links, defaults, always-on callbacks and one fit per query."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {**LightningCLI.subcommands(), "references": {"model", "datamodule"}}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
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
        """Fit the masks of every query and window batch, each fit with its own module and trainer.

        Independent masks: one fit per query and window batch; joint masks: one fit per window
        batch for all queries. The run folder is the one the configured logger would use
        (``<root>/lightning_logs/version_N``); each query (or the joint fit, ``joint``) logs to
        TensorBoard, checkpoints and writes its audio in ``<run folder>/<name>/``, and, when the
        recording takes several fits, each window batch logs in ``<name>/windows_<a>-<b>/``.
        """
        run_dir = Path(self.trainer.log_dir)
        queries = range(len(datamodule.queries))
        joint = bool(model.hparams.joint)
        groups = [list(queries)] if joint else [[q] for q in queries]
        batches = datamodule.window_batches
        pristine = copy.deepcopy(model)  # every fit starts from the configured, untrained module
        for g, group in enumerate(groups):
            if g:  # fresh callbacks (their per-query state), built from the same configuration
                self.config_init = self.parser.instantiate(self.config)
            name = "joint" if joint else datamodule.names[group[0]]
            for b, windows in enumerate(batches):
                version = name if len(batches) == 1 else f"{name}/windows_{windows[0] + 1}-{windows[-1] + 1}"
                logger = TensorBoardLogger(run_dir, name="", version=version, default_hp_metric=False)
                trainer = self.instantiate_trainer(logger=logger)
                check_trainer(trainer)
                datamodule.select(group, b)
                model = copy.deepcopy(pristine)
                trainer.fit(model, datamodule=datamodule, **kwargs)
                # A finished fit's trainer, module and optimiser refer to each other: free their
                # tensors now, or they pile up across the fits of a long recording until Python's
                # collector runs.
                del trainer, model
                gc.collect()
        print(f"run directory: {run_dir}")
        for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
            print(f"  wrote {path}")
        cache = datamodule.cache
        if datamodule.generator is not None and cache.root is not None:
            print(f"reference cache {cache.root}: {cache.hits} entries found, {cache.misses + cache.rejected} computed")

    def before_references(self) -> None:
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
