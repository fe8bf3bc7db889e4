"""The command line: ``python main.py fit --config configs/dgmo.yaml``."""

from __future__ import annotations

import sys
import warnings

from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI

from callbacks import MaskMonitor, SeparatedAudioWriter
from dgmo_pl.data import SeparationDataModule
from dgmo_pl.errors import InputError
from dgmo_pl.model import MaskSeparator


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
        # Read every input before anything is written, so bad input leaves no partial run.
        self.datamodule.load()


def main(args: ArgsType = None) -> None:
    """Run the command line; user mistakes end with a one-line message and exit status 2."""
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    try:
        DGMOCLI(MaskSeparator, SeparationDataModule, args=args, save_config_kwargs={"overwrite": False})
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
