"""The mask module: its only parameter, its loss, thresholding and precision."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import one_fit
from lightning.pytorch import Callback, Trainer

from dgmo_pl.audio.frontend import diffusion_log_mel
from dgmo_pl.model import MaskSeparator


def test_the_mask_is_the_only_parameter_and_all_the_optimiser_sees() -> None:
    """One parameter, [1, 1, 513, 1024] (one mask, one window) at sigmoid(3.0); the optimiser holds exactly it."""
    module = MaskSeparator()
    assert [(n, tuple(p.shape)) for n, p in module.named_parameters()] == [("mask_logits", (1, 1, 513, 1024))]
    assert torch.allclose(module.mask(), torch.sigmoid(torch.tensor(3.0)).expand(1, 1, 513, 1024))
    (group,) = module.configure_optimizers().param_groups
    assert group["params"] == [module.mask_logits] and group["lr"] == 0.01
    assert list(module.state_dict()) == ["mask_logits"]


def test_thresholded_mask_sets_high_values_to_one_and_keeps_logits() -> None:
    """Values >= 0.9 become 1.0, others stay; the logits are untouched."""
    module = MaskSeparator()
    logits = torch.tensor([-2.0, 0.0, 2.0, 2.2, 5.0])  # sigmoid: 0.12, 0.5, 0.881, 0.900, 0.993
    with torch.no_grad():
        module.mask_logits[0, 0, 0, :5] = logits
    mask = module.thresholded_mask()[0, 0, 0, :5]
    assert torch.allclose(mask[:3], torch.sigmoid(logits[:3]))
    assert torch.equal(mask[3:], torch.ones(2))
    assert torch.equal(module.mask_logits[0, 0, 0, :5], logits)


def test_loss_is_the_mean_mse_over_references() -> None:
    """The step's loss averages the MSE to each of the K references (one query, one window)."""
    module = MaskSeparator()
    torch.manual_seed(0)
    magnitude = torch.rand(1, 513, 1024)
    references = torch.randn(3, 1, 1024, 64)
    estimate = diffusion_log_mel(magnitude * module.mask()[0], module.mel_basis, module.spec)
    expected = torch.stack([(estimate - r).pow(2).mean() for r in references]).mean()
    loss = module.loss({"mixture_magnitude": magnitude, "references": references[None, None]})
    assert torch.allclose(loss, expected, rtol=1e-5)


class _StepLosses(Callback):
    """Collects the per-step losses that training_step returns."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer: Trainer, pl_module: MaskSeparator, outputs: dict, batch: dict,
                           batch_idx: int) -> None:
        self.losses.extend(outputs["losses"].tolist())


def _fit_losses(
    precision: str, pair: dict[str, Path], root: Path, steps: int = 100
) -> tuple[list[float], MaskSeparator]:
    module, data = one_fit(pair["mixture"], [pair["dog"]], steps_per_round=steps)
    collected = _StepLosses()
    trainer = Trainer(max_epochs=1, precision=precision, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, default_root_dir=root,
                      reload_dataloaders_every_n_epochs=1, callbacks=[collected])
    trainer.fit(module, datamodule=data)
    assert trainer.global_step == steps
    return collected.losses, module


@pytest.mark.integration
def test_bf16_mixed_precision_keeps_an_fp32_mask_and_tracks_fp32(speech_dog_pair: dict[str, Path],
                                                                tmp_path: Path) -> None:
    """Under Lightning's bf16-mixed (manual optimisation, grouped steps) the mask stays fp32 and the
    loss follows the fp32 run."""
    full, _ = _fit_losses("32-true", speech_dog_pair, tmp_path)
    mixed, module = _fit_losses("bf16-mixed", speech_dog_pair, tmp_path)
    assert module.mask_logits.dtype == torch.float32
    assert len(full) == len(mixed) == 100
    assert full[-1] < 0.97 * full[0]
    assert max(abs(a - b) / a for a, b in zip(full, mixed)) < 0.01


def _sized(joint: bool = False, residual: bool = False, masks: int = 1, windows: int = 1) -> MaskSeparator:
    """A module sized [masks, windows, F, T], with random logits."""
    module = MaskSeparator(joint=joint, residual=residual, masks=masks, windows=windows)
    torch.manual_seed(1)
    with torch.no_grad():
        module.mask_logits.copy_(torch.randn(masks, windows, 513, 1024) * 3)
    return module


def test_windows_fitted_together_get_the_gradients_they_would_get_alone() -> None:
    """The loss sums the windows' losses, so each window's gradient is its own loss's gradient."""
    together = _sized(windows=2)
    torch.manual_seed(2)
    magnitude = torch.rand(2, 513, 1024)
    references = torch.randn(1, 2, 3, 1, 1024, 64) - 4
    together.loss({"mixture_magnitude": magnitude, "references": references}).backward()
    for w in range(2):
        alone = MaskSeparator()
        alone.mask_logits = torch.nn.Parameter(together.mask_logits.detach()[:, w : w + 1].clone())
        alone.loss({"mixture_magnitude": magnitude[w : w + 1], "references": references[:, w : w + 1]}).backward()
        assert torch.allclose(together.mask_logits.grad[:, w], alone.mask_logits.grad[:, 0], rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("residual", [False, True])
def test_joint_masks_partition_every_bin_before_and_after_thresholding(residual: bool) -> None:
    """Joint masks add up to one per bin, and still do once thresholded (confident bins one-hot)."""
    module = _sized(joint=True, residual=residual, masks=2 + residual, windows=2)
    assert torch.allclose(module.mask().sum(0), torch.ones(2, 513, 1024), atol=1e-6)
    outputs = module.thresholded_mask()
    assert outputs.shape == (2, 2, 513, 1024)
    total = outputs.sum(0) + (module.residual_mask()[0] if residual else 0)
    assert torch.allclose(total, torch.ones(2, 513, 1024), atol=1e-6)
    confident = module.mask().amax(0) >= 0.9
    assert confident.any() and (~confident).any()
    assert set(outputs[:, confident].unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(outputs[:, ~confident], module.mask()[:2, ~confident].detach())


def test_residual_mask_only_in_a_joint_fit() -> None:
    """Independent masks have no residual; a joint fit without one neither."""
    assert _sized().residual_mask() is None
    assert _sized(joint=True, masks=2).residual_mask() is None
    assert _sized(joint=True, residual=True, masks=2).residual_mask().shape == (1, 1, 513, 1024)
