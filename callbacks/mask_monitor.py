"""TensorBoard views of the mask converging: statistics every few steps, pictures every round."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from dgmo_pl.audio.frontend import diffusion_log_mel, from_model_layout
from dgmo_pl.errors import InputError


def _picture(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``[rows, cols]`` values to a grey image in [0, 1], row 0 (lowest frequency) at the bottom."""
    return ((x.float() - low) / max(high - low, 1e-8)).clamp(0, 1).flip(0).cpu()


class MaskMonitor(Callback):
    """Logs mask statistics and, at the end of each round, images of the mask and log-mels.

    Scalars: ``mask/mean`` and ``mask/above_half`` (fraction of bins above 0.5) of the mask
    after Adam steps 0, ``every_n_steps``, ``2 * every_n_steps``, ... of each round, logged at
    those steps' numbers (``trainer.global_step`` counts Adam steps, as ``loss/train`` does);
    ``mask/change_since_last_round`` (mean absolute change of the thresholded mask) at each
    round's end. Images (TensorBoard only): ``round/mask``, ``round/mixture``,
    ``round/estimate`` and ``round/mean_reference`` log-mels (first query, first window of the fit).

    The images come from the round's loader batch (its mixture magnitude and references) and the
    module (its masks and front end): the monitor reads nothing else of the fit.

    A loader batch may hold several Adam steps. The statistics stay exact per step: the mask
    after a step inside a batch is read in ``on_before_optimizer_step`` of the next step (the
    update has not happened yet), and after the batch's last step in ``on_train_batch_end``.

    Args:
        every_n_steps: Step interval of the mask statistics (each costs a pass over the mask:
            at 1 it adds about a third to a CPU step).
    """

    def __init__(self, every_n_steps: int = 10) -> None:
        if every_n_steps < 1:
            raise InputError(f"every_n_steps must be at least 1, got {every_n_steps}: fix --monitor.every_n_steps")
        self.every_n_steps = every_n_steps
        self._last_round_mask: torch.Tensor | None = None
        self._batch: Mapping[str, torch.Tensor] | None = None
        self._round_start = 0  # Adam steps taken before this round
        self._batch_start = 0  # Adam steps taken before this batch

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Start the step count of the first round."""
        self._last_round_mask = pl_module.thresholded_mask()

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Start a round's step count."""
        self._round_start = trainer.global_step

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: object, batch_idx: int
    ) -> None:
        """Remember where the batch's steps start, and the round's mixture and references."""
        self._batch_start = trainer.global_step
        if isinstance(batch, Mapping):
            self._batch = batch

    def on_before_optimizer_step(
        self, trainer: Trainer, pl_module: LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        """Count the Adam step."""
        # global_step counts completed steps: the mask is the one after step global_step - 1.
        self._after_step(trainer, pl_module)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: object, batch: object, batch_idx: int
    ) -> None:
        """Log the mask statistics of the steps that fall on the interval."""
        self._after_step(trainer, pl_module)

    def _after_step(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Log the statistics of the mask after step ``global_step - 1`` if it is one of this batch's and due."""
        step = trainer.global_step - 1
        if step < self._batch_start or (step - self._round_start) % self.every_n_steps:
            return
        with torch.no_grad():
            mask = pl_module.mask()
            stats = {"mask/mean": float(mask.mean()), "mask/above_half": float((mask > 0.5).float().mean())}
        # Straight to the loggers: a metric given to self.log would be repeated at every step.
        for logger in trainer.loggers:
            logger.log_metrics(stats, step=step)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Log the round's mask change and images."""
        mask = pl_module.thresholded_mask()
        change = (mask - self._last_round_mask).abs().mean()
        self._last_round_mask = mask
        for logger in trainer.loggers:
            logger.log_metrics({"mask/change_since_last_round": float(change)}, step=trainer.global_step)
        self._log_images(trainer, pl_module, mask)

    @rank_zero_only
    def _log_images(self, trainer: Trainer, pl_module: LightningModule, mask: torch.Tensor) -> None:
        loggers = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        if not loggers or self._batch is None:
            return
        # The first query's mask on the fit's first window.
        mask = mask[0, 0]
        magnitude = self._batch["mixture_magnitude"][:1].to(mask.device)
        spec = pl_module.spec
        with torch.no_grad():  # log-mels [M, T] (low frequencies first), whatever the model's layout
            mixture = from_model_layout(diffusion_log_mel(magnitude, pl_module.mel_basis, spec), spec)[0]
            estimate = from_model_layout(diffusion_log_mel(magnitude * mask, pl_module.mel_basis, spec), spec)[0]
        reference = from_model_layout(self._batch["references"][0, 0].float().mean(0, keepdim=True), spec)[0]
        low, high = float(mixture.min()), float(mixture.max())
        images = {
            "round/mask": _picture(mask, 0.0, 1.0),
            "round/mixture": _picture(mixture, low, high),
            "round/estimate": _picture(estimate, low, high),
            "round/mean_reference": _picture(reference, low, high),
        }
        for logger in loggers:
            for tag, image in images.items():
                logger.experiment.add_image(tag, image, trainer.current_epoch, dataformats="HW")
