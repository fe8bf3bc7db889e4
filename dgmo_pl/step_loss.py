"""Writes the loss of every optimiser step to the loggers, however many steps a batch holds."""

from __future__ import annotations

from collections.abc import Mapping

from lightning.pytorch import Callback, LightningModule, Trainer


class StepLossLogger(Callback):
    """Logs ``loss/train`` at the number of each optimiser step, one point per step.

    :class:`~dgmo_pl.model.MaskSeparator` takes several Adam steps per ``training_step`` and
    returns their losses as ``outputs["losses"]``, so ``self.log`` (one value per batch) cannot
    log them at their own steps. This callback writes each to the loggers at step
    ``s = global_step - n + i`` for the batch's ``i``-th of ``n`` steps, so step ``s``'s point is
    the loss from which Adam update ``s`` (counted from 0 over the whole fit, as
    ``trainer.global_step`` counts them) was taken. It keeps Lightning's conventions: a point
    every ``trainer.log_every_n_steps`` steps (when ``(s + 1)`` is a multiple), with the epoch
    beside it.

    The module returns it from ``configure_callbacks``, so it is on in every fit of the module;
    it takes no arguments (a configured copy in the trainer's callbacks would be replaced).
    """

    tag = "loss/train"

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: object, batch: object, batch_idx: int
    ) -> None:
        """Log each of the batch's step losses at its own step."""
        losses = outputs.get("losses") if isinstance(outputs, Mapping) else None
        if losses is None or not trainer.loggers:
            return
        values = losses.tolist()  # one device sync per batch, not per step
        first = trainer.global_step - len(values)
        for step, value in enumerate(values, start=first):
            if (step + 1) % trainer.log_every_n_steps == 0:
                self._write(trainer, {self.tag: value, "epoch": trainer.current_epoch}, step)

    @staticmethod
    def _write(trainer: Trainer, metrics: dict[str, float], step: int) -> None:
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
