"""The callback that hands each fit's final masks (and last references) to the run's output sink."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only

from dgmo_pl.job import FitPlan
from dgmo_pl.output import OutputSink


class SeparatedAudioWriter(Callback):
    """Writes one fit's windows of each output into ``sink`` when the fit ends.

    The fit's windows of every output (its queries', and a joint fit's residual) go in under the
    module's thresholded masks; when the fit holds the recording's last window, the outputs are
    complete and the sink moves them into place. The last round's references (the loader's last
    batch) are vocoded into ``references/`` when the sink is asked to write them. Only rank zero
    writes.

    Args:
        sink: The run's output sink (owned by the loop, shared by its fits).
        plan: The fit this callback belongs to.
    """

    def __init__(self, sink: OutputSink, plan: FitPlan) -> None:
        self.sink, self.plan = sink, plan
        self._references: torch.Tensor | None = None

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: object, batch_idx: int
    ) -> None:
        """Keep the round's references (the last round's are written at the end)."""
        if isinstance(batch, Mapping) and "references" in batch:
            self._references = batch["references"]

    @rank_zero_only
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Add this fit's windows of every output to the sink (and finish them after the last window)."""
        plan = self.plan
        masks = pl_module.thresholded_mask().cpu()
        residual = pl_module.residual_mask()
        if residual is not None:
            masks = torch.cat([masks, residual.cpu()])
        linear = bool(pl_module.hparams.get("joint", False))
        for name, mask in zip(plan.outputs, masks, strict=True):
            self.sink.add(plan.group, name, plan.windows, mask, linear)
            if plan.last:
                self.sink.finish(plan.group, name)
        if self.sink.settings.write_references and self._references is not None:
            names = plan.outputs[: len(plan.queries)]
            self.sink.add_references(plan.group, names, plan.windows, self._references.cpu())
