"""The mask of one mixture-query pair, optimised as a LightningModule (ALGORITHM.md section 3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule

from dgmo_pl.audio.frontend import SpectrogramConfig, diffusion_log_mel, mel_filterbank
from dgmo_pl.errors import InputError


class MaskSeparator(LightningModule):
    """A spectrogram mask fitted so that the masked mixture matches the reference log-mels.

    The mask logits are the module's only parameter, so the optimiser and the checkpoint hold
    nothing else. Rounds are epochs: the data module serves a round's references for
    ``steps_per_round`` steps, then regenerates them from :meth:`thresholded_mask`.

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

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        references = batch["references"]
        estimate = self(batch["mixture_magnitude"])
        # Mean over the K references of the MSE to each.
        loss = F.mse_loss(estimate.float().expand_as(references), references.float())
        self.log("loss/train", loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
