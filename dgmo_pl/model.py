"""The masks of one mixture and its queries, optimised as a LightningModule (ALGORITHM.md section 3)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule
from lightning.pytorch.core.optimizer import LightningOptimizer

from dgmo_pl.audio.frontend import SpectrogramConfig, diffusion_log_mel, mel_filterbank
from dgmo_pl.errors import InputError
from dgmo_pl.rounds import steps_in_batch
from dgmo_pl.step_loss import StepLossLogger


class MaskSeparator(LightningModule):
    """Spectrogram masks fitted so that the masked mixture matches the reference log-mels.

    The mask logits are the module's only parameter, so the optimiser and the checkpoint hold
    nothing else. Rounds are epochs: the data module serves a round's references for
    ``steps_per_round`` steps, then regenerates them from :meth:`thresholded_mask`.

    The logits have shape ``[S, W, F, T]``: ``W`` windows of the recording fitted together (a
    recording longer than the model's segment is cut into windows), and ``S`` masks per window:
    one query's (the paper's independent masks), or, with ``joint``, one per query plus, with
    ``residual``, one for everything else. Joint masks are a softmax over ``S``: per bin they
    add up to one, so the outputs add up to the mixture. ``masks`` and ``windows`` are set per
    fit by the loop (:meth:`sized`); they and the front end are saved with the other
    hyperparameters, so ``MaskSeparator.load_from_checkpoint`` rebuilds any fit's module.

    The loss is the sum over queries and windows of the mean over K references of the MSE to
    each, so that each window's mask gets the gradient it would get alone (and, Adam being
    per-element, the same updates).

    Optimisation is manual: each loader batch carries the round's step count and the steps per
    batch, and batch ``batch_idx`` takes :func:`~dgmo_pl.rounds.steps_in_batch` Adam steps, so
    that Lightning's per-batch work is shared by several steps. The updates are
    the same, in the same order, whatever the grouping. ``trainer.global_step`` counts Adam
    steps. The loss of every step goes to the loggers at that step's number through
    :class:`~dgmo_pl.step_loss.StepLossLogger` (see :meth:`configure_callbacks`).

    Args:
        lr: Adam learning rate (one optimiser for all rounds; its state carries over).
        mask_init: Initial mask logit (sigmoid(3.0) is about 0.95; joint masks start equal).
        threshold: After each round, mask values at or above it count as 1.0; in a joint
            partition, a bin where one mask reaches it goes wholly to that mask (so the masks
            still add up to one).
        joint: Optimise the masks of all queries together as a partition of the mixture.
        residual: With ``joint``, add an "everything else" mask (and output).
        spec: The front end; linked from the data module, not set by hand (a checkpoint stores
            its fields, and gives them back as a mapping).
        masks: ``S``, masks per window (one per query of the fit, plus a residual).
        windows: ``W``, windows fitted together.
    """

    def __init__(
        self,
        lr: float = 0.01,
        mask_init: float = 3.0,
        threshold: float = 0.9,
        joint: bool = False,
        residual: bool = False,
        spec: SpectrogramConfig | Mapping[str, Any] = SpectrogramConfig(),
        masks: int = 1,
        windows: int = 1,
    ) -> None:
        super().__init__()
        if not (lr > 0 and math.isfinite(lr)):
            raise InputError(f"lr {lr} must be positive: fix --model.lr")
        if not math.isfinite(mask_init):
            raise InputError(f"mask_init {mask_init} must be a finite number (a logit; 3.0 is the paper's): "
                             "fix --model.mask_init")
        if not 0.0 < threshold <= 1.0:
            raise InputError(f"threshold {threshold} must be in (0, 1]: fix --model.threshold")
        if residual and not joint:
            raise InputError("residual is true but joint is false: the residual is part of a joint partition, "
                             "set --model.joint true or drop --model.residual")
        if masks < 1 or windows < 1 or (not joint and masks != 1):
            raise ValueError(f"masks ({masks}) and windows ({windows}) must be at least 1, masks 1 unless joint")
        spec = spec if isinstance(spec, SpectrogramConfig) else SpectrogramConfig(**spec)
        self.save_hyperparameters(ignore=["spec"])
        # Plain values, so that checkpoints load with torch.load(weights_only=True).
        self.hparams["spec"] = asdict(spec)
        self.automatic_optimization = False
        self.spec = spec
        self.mask_logits = torch.nn.Parameter(self._initial_logits(masks, windows))
        self.register_buffer("mel_basis", mel_filterbank(spec), persistent=False)

    def _initial_logits(self, masks: int, windows: int) -> torch.Tensor:
        return torch.full((masks, windows, self.spec.n_freq, self.spec.n_frames), float(self.hparams.mask_init))

    def sized(self, masks: int, windows: int) -> MaskSeparator:
        """A fresh module with these settings, for a fit of ``masks`` masks over ``windows`` windows."""
        hp = self.hparams
        return type(self)(hp.lr, hp.mask_init, hp.threshold, hp.joint, hp.residual, self.spec, masks, windows)

    def _query_masks(self, masks: torch.Tensor) -> torch.Tensor:
        """The queries' masks among ``masks`` (``[S, ...]``): all but a joint fit's residual."""
        return masks[: masks.shape[0] - int(self.hparams.joint and self.hparams.residual)]

    def mask(self) -> torch.Tensor:
        """The soft masks in (0, 1): ``[S, W, F, T]`` (joint: summing to one over ``S``)."""
        if self.hparams.joint:
            return torch.softmax(self.mask_logits, dim=0)
        return torch.sigmoid(self.mask_logits)

    @torch.no_grad()
    def output_masks(self) -> torch.Tensor:
        """All masks after thresholding, residual included: ``[S, W, F, T]``.

        Independent masks: values ``>= threshold`` set to 1, the logits themselves unchanged, as
        in the reference implementation. Joint masks: where one mask of a bin reaches the
        threshold, the bin goes wholly to it (a one-hot partition), which is the same rule for
        masks that must add up to one.
        """
        mask = self.mask().float()
        confident = mask.amax(dim=0, keepdim=True) >= self.hparams.threshold
        if self.hparams.joint:
            winner = F.one_hot(mask.argmax(dim=0), mask.shape[0]).movedim(-1, 0).to(mask.dtype)
            return torch.where(confident, winner, mask)
        return torch.where(mask >= self.hparams.threshold, torch.ones_like(mask), mask)

    def thresholded_mask(self) -> torch.Tensor:
        """Each query's mask as used between rounds and for output: ``[Q, W, F, T]`` (see :meth:`output_masks`)."""
        return self._query_masks(self.output_masks())

    def residual_mask(self) -> torch.Tensor | None:
        """The "everything else" mask of a joint fit with a residual, ``[1, W, F, T]``; else None."""
        return self.output_masks()[-1:] if self.hparams.joint and self.hparams.residual else None

    def forward(self, mixture_magnitude: torch.Tensor) -> torch.Tensor:
        """Log-mel of the mixture under each query's mask: ``[W, F, T] -> [Q, W, 1, T, M]``."""
        masks = self._query_masks(self.mask())
        masked = (mixture_magnitude * masks).flatten(0, 1)
        log_mel = diffusion_log_mel(masked, self.mel_basis, self.spec)
        return log_mel.unflatten(0, masks.shape[:2])

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sum over queries and windows of the mean MSE to the K references.

        ``batch["mixture_magnitude"]`` is ``[W, F, T]``, ``batch["references"]`` ``[Q, W, K, 1, T, M]``.
        """
        references = batch["references"].float()
        estimate = self(batch["mixture_magnitude"]).float().unsqueeze(2)  # [Q, W, 1, 1, T, M]
        return (estimate - references).pow(2).mean(dim=(2, 3, 4, 5)).sum()

    def training_step(self, batch: dict[str, torch.Tensor | int], batch_idx: int) -> dict[str, torch.Tensor]:
        """Take this batch's Adam steps (:func:`~dgmo_pl.rounds.steps_in_batch`; 1 without a step count).

        Returns:
            ``{"losses": [steps]}``: the detached loss of each step, in order, for
            :class:`~dgmo_pl.step_loss.StepLossLogger`. The last one is logged for the progress
            bar only.
        """
        optimiser = self.optimizers()
        counted = "round_steps" in batch
        steps = steps_in_batch(batch_idx, int(batch["round_steps"]), int(batch["steps_per_batch"])) if counted else 1
        losses = torch.stack([self._adam_step(optimiser, batch) for _ in range(steps)])
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
        """Adam over the mask, one optimiser for every round."""
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    def configure_callbacks(self) -> list[Callback]:
        """The callback that logs each step's loss: it is part of how this module logs."""
        return [StepLossLogger()]
