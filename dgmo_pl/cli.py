"""The command line: ``python main.py fit --config configs/dgmo.yaml``."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

from lightning.pytorch import Trainer
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI

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


class DGMOCLI(LightningCLI):
    """LightningCLI with DGMO's links, defaults and always-on callbacks."""

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
        self.datamodule.load()


def main(args: ArgsType = None) -> None:
    """Run the command line; user mistakes end with a one-line message and exit status 2."""
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    try:
        DGMOCLI(MaskSeparator, SeparationDataModule, args=args, save_config_kwargs={"overwrite": False})
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
