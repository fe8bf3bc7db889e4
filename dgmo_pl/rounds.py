"""One round of mask optimisation as a dataset: the round's batch, served once per optimiser step group."""

from __future__ import annotations

import math

import torch
from torch.utils.data import Dataset


def steps_in_batch(batch_idx: int, steps: int, steps_per_batch: int) -> int:
    """Optimiser steps of a round's loader batch ``batch_idx``: ``steps_per_batch``, the last one the remainder.

    A function of the batch's index in the round (which Lightning restores with a checkpoint),
    not of the loader's position, so that a fit resumed in the middle of a round takes exactly
    the steps the uninterrupted fit takes.
    """
    if not 0 <= batch_idx < math.ceil(steps / steps_per_batch):
        raise IndexError(f"batch {batch_idx} of a round of {steps} steps, {steps_per_batch} a batch")
    return min(steps_per_batch, steps - batch_idx * steps_per_batch)


class RoundDataset(Dataset):
    """The same batch for ``steps`` optimiser steps, grouped ``steps_per_batch`` to a loader batch.

    Every item is the round's batch plus ``"round_steps"`` and ``"steps_per_batch"``, from which
    the module takes :func:`steps_in_batch` steps on loader batch ``batch_idx``, so that the
    round makes exactly ``steps`` steps whatever the grouping. The items are all alike, so a
    loader restarted mid-round (a resumed fit) serves the same data.

    Args:
        batch: The round's tensors (mixture magnitude, references), already on the training device.
        steps: Optimiser steps in the round.
        steps_per_batch: Optimiser steps per loader batch.
    """

    def __init__(self, batch: dict[str, torch.Tensor], steps: int, steps_per_batch: int = 1) -> None:
        if steps < 1 or steps_per_batch < 1:
            raise ValueError(f"steps ({steps}) and steps_per_batch ({steps_per_batch}) must be at least 1")
        self.batch, self.steps, self.steps_per_batch = batch, steps, steps_per_batch

    def __len__(self) -> int:
        return math.ceil(self.steps / self.steps_per_batch)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        return {**self.batch, "round_steps": self.steps, "steps_per_batch": self.steps_per_batch}
