"""Progress of a separation as it runs: which round, references or mask steps, as a fraction of the fit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

#: Takes the fraction of the current fit done (0 to 1) and what is happening.
Report = Callable[[float, str], None]


class ProgressReporter(Callback):
    """Reports each fit's progress: a round's references are made before its first step (each epoch's loader).

    Args:
        report: Called with the fraction done and a description.
    """

    def __init__(self, report: Report) -> None:
        self.report, self.fits = report, 0

    @staticmethod
    def _rounds(trainer: Trainer) -> int:
        return int(trainer.max_epochs or 1)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """A fit starts: its first round's references are made next."""
        self.fits += 1
        self.report(0.0, f"fit {self.fits}, round 1/{self._rounds(trainer)}: generating references")

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:  # fmt: skip
        """A batch of mask steps is done."""
        rounds, batches = self._rounds(trainer), max(int(trainer.num_training_batches), 1)
        done = (trainer.current_epoch * batches + batch_idx + 1) / (rounds * batches)
        self.report(done, f"fit {self.fits}, round {trainer.current_epoch + 1}/{rounds}: fitting the mask")

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """A round ends: the next round's references are made next."""
        rounds = self._rounds(trainer)
        if trainer.current_epoch + 1 < rounds:
            self.report((trainer.current_epoch + 1) / rounds,
                        f"fit {self.fits}, round {trainer.current_epoch + 2}/{rounds}: generating references")
