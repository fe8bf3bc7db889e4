"""One round of mask optimisation as a dataset: the round's batch, served once per optimiser step group."""

from __future__ import annotations

import math

import torch
from torch.utils.data import Dataset


class RoundDataset(Dataset):
    """The same batch for ``steps`` optimiser steps, grouped ``steps_per_batch`` to a loader batch.

    Each item is the round's batch plus ``"steps"``: how many optimiser steps the module takes
    on it (``steps_per_batch``, the last item takes the remainder), so that the round makes
    exactly ``steps`` steps whatever the grouping.

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
        steps = min(self.steps_per_batch, self.steps - index * self.steps_per_batch)
        return {**self.batch, "steps": steps}
