"""Several Adam steps per loader batch: the same updates, every step logged, exact statistics, resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import one_fit, scalars
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger

from callbacks import MaskMonitor
from dgmo_pl.fit_data import FitDataModule
from dgmo_pl.model import MaskSeparator
from dgmo_pl.rounds import RoundDataset, steps_in_batch

ROUNDS, STEPS = 2, 23  # 23 steps a round: no grouping below divides it, so last batches take a remainder


def _data(pair: dict[str, Path], steps_per_batch: int, steps: int = STEPS) -> tuple[MaskSeparator, FitDataModule]:
    """A fresh mask and the dog as its own reference: fixed references, so every round serves the same batch."""
    return one_fit(pair["mixture"], [pair["dog"]], steps_per_round=steps, steps_per_batch=steps_per_batch)


def _fit(fit: tuple[MaskSeparator, FitDataModule], root: Path, rounds: int = ROUNDS, ckpt_path: str | None = None,
         **trainer_args: object) -> tuple[MaskSeparator, Trainer]:
    """A real ``Trainer.fit`` of the mask on CPU, quiet; ``trainer_args`` override the defaults."""
    args = {"logger": False, "enable_checkpointing": False, "callbacks": [], **trainer_args}
    trainer = Trainer(max_epochs=rounds, accelerator="cpu", enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=root, reload_dataloaders_every_n_epochs=1, **args)
    module, data = fit
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    return module, trainer


@pytest.fixture(scope="module")
def plain(speech_dog_pair: dict[str, Path]) -> dict[str, object]:
    """A plain PyTorch loop of ROUNDS x STEPS Adam steps on the same batch: logits, losses, mask means."""
    module, data = _data(speech_dog_pair, 1)
    batch = {"mixture_magnitude": data.windows[0].magnitude, "references": data.references(0)}
    optimiser = torch.optim.Adam(module.parameters(), lr=0.01)
    losses, means = [], []
    for _ in range(ROUNDS * STEPS):
        optimiser.zero_grad()
        loss = module.loss(batch)
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
        means.append(float(module.mask().detach().mean()))
    return {"logits": module.mask_logits.detach().clone(), "losses": losses, "means": means}


@pytest.mark.integration
@pytest.mark.parametrize("steps_per_batch", [1, 10])
def test_grouped_steps_make_the_plain_loops_adam_updates(speech_dog_pair: dict[str, Path], tmp_path: Path,
                                                         plain: dict[str, object], steps_per_batch: int) -> None:
    """1 or 10 steps per batch (10, 10, 3 a round): the final mask is bit-identical to the plain loop's."""
    module, trainer = _fit(_data(speech_dog_pair, steps_per_batch), tmp_path)
    assert trainer.global_step == ROUNDS * STEPS
    assert trainer.fit_loop.epoch_loop.batch_progress.total.completed == ROUNDS * -(-STEPS // steps_per_batch)
    assert not torch.equal(plain["logits"], torch.full_like(plain["logits"], 3.0)), "the mask should have moved"
    assert torch.equal(module.mask_logits.detach(), plain["logits"])


@pytest.mark.integration
def test_every_step_loss_and_exact_mask_statistics_are_logged(speech_dog_pair: dict[str, Path], tmp_path: Path,
                                                              plain: dict[str, object]) -> None:
    """4 steps a batch: loss/train at steps 0..45 and mask/mean after steps 0, 5, ... of each round.

    Both carry the plain loop's values at those steps exactly; the statistics of steps 0, 5, 10
    fall inside batches, those of steps 15 and 38 at a batch's end.
    """
    logger = TensorBoardLogger(tmp_path, name="run")
    _fit(_data(speech_dog_pair, 4), tmp_path, logger=logger, log_every_n_steps=1,
         callbacks=[MaskMonitor(every_n_steps=5)])
    loss = scalars(Path(logger.log_dir), "loss/train")
    assert [step for step, _ in loss] == list(range(ROUNDS * STEPS))
    assert [value for _, value in loss] == plain["losses"]
    means = scalars(Path(logger.log_dir), "mask/mean")
    expected = [r * STEPS + i for r in range(ROUNDS) for i in range(0, STEPS, 5)]
    assert [step for step, _ in means] == expected
    assert [value for _, value in means] == [plain["means"][s] for s in expected]


@pytest.mark.integration
def test_loss_follows_log_every_n_steps(speech_dog_pair: dict[str, Path], tmp_path: Path) -> None:
    """With log_every_n_steps 5, loss/train has a point after every 5th step, as Lightning's own logging."""
    logger = TensorBoardLogger(tmp_path, name="run")
    _fit(_data(speech_dog_pair, 4), tmp_path, rounds=1, logger=logger, log_every_n_steps=5)
    assert [step for step, _ in scalars(Path(logger.log_dir), "loss/train")] == [4, 9, 14, 19]


@pytest.mark.integration
def test_resume_from_a_round_checkpoint_continues_the_same_updates(speech_dog_pair: dict[str, Path],
                                                                   tmp_path: Path,
                                                                   plain: dict[str, object]) -> None:
    """Round 1 resumed from round 0's checkpoint ends at the uninterrupted run's mask, logging steps 23..45."""
    first_logger = TensorBoardLogger(tmp_path, name="run")
    _fit(_data(speech_dog_pair, 10), tmp_path, rounds=1, logger=first_logger, enable_checkpointing=True)
    (ckpt,) = (Path(first_logger.log_dir) / "checkpoints").glob("*.ckpt")
    assert ckpt.name == f"epoch=0-step={STEPS}.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert list(state["state_dict"]) == ["mask_logits"]
    (optimiser,) = state["optimizer_states"]
    assert optimiser["state"][0]["step"] == STEPS

    logger = TensorBoardLogger(tmp_path, name="run")
    module, trainer = _fit(_data(speech_dog_pair, 10), tmp_path, ckpt_path=str(ckpt), logger=logger,
                           log_every_n_steps=1)
    assert trainer.global_step == ROUNDS * STEPS
    assert torch.equal(module.mask_logits.detach(), plain["logits"])
    assert [step for step, _ in scalars(Path(logger.log_dir), "loss/train")] == list(range(STEPS, ROUNDS * STEPS))


@pytest.mark.parametrize(("steps", "steps_per_batch", "expected"), [
    (23, 10, [10, 10, 3]),
    (300, 10, [10] * 30),
    (3, 1, [1, 1, 1]),
    (2, 5, [2]),
])
def test_round_dataset_serves_exactly_the_rounds_steps(steps: int, steps_per_batch: int, expected: list[int]) -> None:
    """Each batch's step count is a function of its index in the round; the counts add up to the round's steps."""
    batch = {"references": torch.zeros(1)}
    dataset = RoundDataset(batch, steps, steps_per_batch)
    items = [dataset[i] for i in range(len(dataset))]
    assert [steps_in_batch(i, item["round_steps"], item["steps_per_batch"]) for i, item in enumerate(items)] == expected
    assert all(item["references"] is batch["references"] for item in items)
    with pytest.raises(IndexError):
        dataset[len(dataset)]
    with pytest.raises(IndexError, match=f"batch {len(expected)} of a round of {steps} steps"):
        steps_in_batch(len(expected), steps, steps_per_batch)
    with pytest.raises(ValueError, match="at least 1"):
        RoundDataset(batch, steps, 0)
