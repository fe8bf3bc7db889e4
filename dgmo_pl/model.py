"""The mask of one mixture-query pair, optimised as a LightningModule (ALGORITHM.md section 3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule
from lightning.pytorch.core.optimizer import LightningOptimizer

from callbacks.step_loss import StepLossLogger
from dgmo_pl.audio.frontend import SpectrogramConfig, diffusion_log_mel, mel_filterbank
from dgmo_pl.errors import InputError


class MaskSeparator(LightningModule):
    """A spectrogram mask fitted so that the masked mixture matches the reference log-mels.

    The mask logits are the module's only parameter, so the optimiser and the checkpoint hold
    nothing else. Rounds are epochs: the data module serves a round's references for
    ``steps_per_round`` steps, then regenerates them from :meth:`thresholded_mask`.

    Optimisation is manual: each loader batch carries ``"steps"``, the number of Adam steps to
    take on it, so that Lightning's per-batch work is shared by several steps. The updates are
    the same, in the same order, whatever the grouping. ``trainer.global_step`` counts Adam
    steps. The loss of every step goes to the loggers at that step's number through
    :class:`~callbacks.step_loss.StepLossLogger` (see :meth:`configure_callbacks`).

    Args:
        lr: Adam learning rate (one optimiser for all rounds; its state carries over).
        mask_init: Initial mask logit (sigmoid(3.0) is about 0.95).
        threshold: After each round, mask values at or above it count as 1.0.
        spec: The front end; linked from the data module, not set by hand.
    """

    def __init__(
        self,
        lr: float = 0.01,
        mask_init: float = 3.0,
        threshold: float = 0.9,
        spec: SpectrogramConfig = SpectrogramConfig(),
    ) -> None:
        super().__init__()
        if not lr > 0:
            raise InputError(f"lr {lr} must be positive: fix --model.lr")
        if not 0.0 < threshold <= 1.0:
            raise InputError(f"threshold {threshold} must be in (0, 1]: fix --model.threshold")
        self.save_hyperparameters(ignore=["spec"])
        self.automatic_optimization = False
        self.spec = spec
        self.mask_logits = torch.nn.Parameter(torch.full((1, spec.n_freq, spec.n_frames), float(mask_init)))
        self.register_buffer("mel_basis", mel_filterbank(spec), persistent=False)

    def mask(self) -> torch.Tensor:
        """The soft mask in (0, 1): ``[1, F, T]``."""
        return torch.sigmoid(self.mask_logits)

    @torch.no_grad()
    def thresholded_mask(self) -> torch.Tensor:
        """The mask with values ``>= threshold`` set to 1, as used between rounds and for output.

        The logits themselves are not changed, as in the reference implementation.
        """
        mask = self.mask().float()
        return torch.where(mask >= self.hparams.threshold, torch.ones_like(mask), mask)

    def forward(self, mixture_magnitude: torch.Tensor) -> torch.Tensor:
        """Log-mel of the masked mixture: ``[1, F, T] -> [1, 1, T, M]``."""
        return diffusion_log_mel(mixture_magnitude * self.mask(), self.mel_basis, self.spec.n_frames)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean over the K references of the MSE between each and the masked mixture's log-mel."""
        references = batch["references"]
        estimate = self(batch["mixture_magnitude"])
        return F.mse_loss(estimate.float().expand_as(references), references.float())

    def training_step(self, batch: dict[str, torch.Tensor | int], batch_idx: int) -> dict[str, torch.Tensor]:
        """Take ``batch["steps"]`` Adam steps (1 when absent) on the batch.

        Returns:
            ``{"losses": [steps]}``: the detached loss of each step, in order, for
            :class:`~callbacks.step_loss.StepLossLogger`. The last one is logged for the progress
            bar only.
        """
        optimiser = self.optimizers()
        losses = torch.stack([self._adam_step(optimiser, batch) for _ in range(int(batch.get("steps", 1)))])
        self.log("loss/train", losses[-1], on_step=True, on_epoch=False, prog_bar=True, logger=False)
        return {"losses": losses}

    def _adam_step(self, optimiser: LightningOptimizer, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """One Adam update through Lightning (precision plugin, hooks, step count); returns its loss."""
        loss = self.loss(batch)
        optimiser.zero_grad()
        self.manual_backward(loss)
        optimiser.step()
        return loss.detach()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    def configure_callbacks(self) -> list[Callback]:
        """The callback that logs each step's loss: it is part of how this module logs."""
        return [StepLossLogger()]
