"""The data of exactly one fit: its mixture windows and, every round, their references."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from dgmo_pl.checks import check_round_reloading
from dgmo_pl.job import FitPlan, Separation
from dgmo_pl.recording import Mixture, load_window
from dgmo_pl.rounds import RoundDataset

#: Gives the fitted module's current output masks, ``[Q, W, F, T]`` (the previous round's, at a round's start).
MaskReader = Callable[[], torch.Tensor]


class FitDataModule(LightningDataModule):
    """Serves one fit's rounds: the windows' mixture magnitude and the round's references.

    Made fresh for each fit by the loop and never re-pointed at other queries or windows. Round
    ``r``'s references are asked of the run's reference source when the trainer reloads the
    loader at the round's start; from round 1 on they follow the masks that ``masks`` reads
    (the fitted module's output masks).

    The current round's references are part of the fit's checkpoints (:meth:`state_dict`): a fit
    resumed in the middle of a round needs the references that followed the masks of the
    round's start, which the checkpoint's masks no longer are.

    Args:
        separation: The run.
        plan: This fit.
        masks: Reads the current output masks of the fitted queries, ``[Q, W, F, T]``.
    """

    def __init__(self, separation: Separation, plan: FitPlan, masks: MaskReader) -> None:
        super().__init__()
        self.separation, self.plan, self.masks = separation, plan, masks
        self._windows: list[Mixture] | None = None
        self._fixed: torch.Tensor | None = None
        self._round: tuple[int, torch.Tensor] | None = None  # (round, its references), the last served

    @property
    def windows(self) -> list[Mixture]:
        """The fit's mixture windows, prepared (read once per fit)."""
        if self._windows is None:
            sep = self.separation
            self._windows = [load_window(sep.recording, w, sep.spec) for w in self.plan.windows]
        return self._windows

    def setup(self, stage: str) -> None:
        """Put the reference source's networks on the fit's device."""
        if self.trainer is not None:
            check_round_reloading(self.trainer.reload_dataloaders_every_n_epochs)
            self.separation.source.to(self.trainer.strategy.root_device)

    @property
    def round_references(self) -> torch.Tensor | None:
        """The references of the round served last, ``[Q, W, K, 1, T, M]`` (None before the first)."""
        return self._round[1] if self._round is not None else None

    def _fit_key(self) -> list[str]:
        """What the references were made for: the fit's queries and its windows' contents."""
        return [*(self.separation.queries[q] for q in self.plan.queries), *(w.digest for w in self.windows)]

    def state_dict(self) -> dict[str, Any]:
        """The current round and its references, for the fit's checkpoint (plain tensors and strings)."""
        if self._round is None:
            return {}
        return {"round": torch.tensor(self._round[0]), "references": self._round[1].detach().cpu(),
                "fit": self._fit_key()}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back the round and its references of a checkpoint made for this fit (a resumed fit serves them again).

        Those of a checkpoint made for other queries or another recording are not taken: the
        round's references are generated again.
        """
        if "round" in state and state.get("fit") == self._fit_key():
            self._round = (int(state["round"]), state["references"])

    def references(self, round_index: int) -> torch.Tensor:
        """Round ``round_index``'s references: ``[Q, W, K, 1, T, M]``."""
        if self._round is not None and self._round[0] == round_index:
            return self._round[1]
        self._round = (round_index, self._references(round_index))
        return self._round[1]

    def _references(self, round_index: int) -> torch.Tensor:
        source = self.separation.source
        if not source.follows_masks:
            if self._fixed is None:
                self._fixed = source.references(round_index, self.plan.queries, self.windows, None)
            return self._fixed
        masks = self.masks() if round_index > 0 else None
        rounds = self.trainer.max_epochs if self.trainer is not None else None
        return source.references(round_index, self.plan.queries, self.windows, masks, rounds)

    def train_dataloader(self) -> DataLoader:
        """The current round's loader (rebuilt every round)."""
        round_index = self.trainer.current_epoch if self.trainer is not None else 0
        # Placed on the training device once per round, so the steps copy nothing.
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        magnitude = torch.cat([w.magnitude for w in self.windows])
        batch = {"mixture_magnitude": magnitude.to(device), "references": self.references(round_index).to(device)}
        sep = self.separation
        return DataLoader(RoundDataset(batch, sep.steps_per_round, sep.steps_per_batch), batch_size=None)
