"""The callback that hands each fit's final masks (and last references) to the run's output sink."""

from __future__ import annotations

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only

from dgmo_pl.job import FitPlan
from dgmo_pl.output import OutputSink


def deliver(sink: OutputSink, plan: FitPlan, masks: torch.Tensor, linear: bool) -> None:
    """Add fit ``plan``'s windows of every output under its masks ``[S, W, F, T]`` (finish them after the last).

    ``linear``: the masks are a joint partition, applied to the STFT itself (see :class:`OutputSink`).
    """
    for name, mask in zip(plan.outputs, masks, strict=True):
        sink.add(plan.group, name, plan.windows, mask, linear)
        if plan.last:
            sink.finish(plan.group, name)


class SeparatedAudioWriter(Callback):
    """Writes one fit's windows of each output into ``sink`` when the fit ends.

    The fit's windows of every output (its queries', and a joint fit's residual) go in under the
    module's thresholded masks; when the fit holds the recording's last window, the outputs are
    complete and the sink moves them into place. The last round's references (the data
    module's ``round_references``) are vocoded into ``references/`` when the sink is asked to
    write them. Only rank zero writes.

    Args:
        sink: The run's output sink (owned by the loop, shared by its fits).
        plan: The fit this callback belongs to.
    """

    def __init__(self, sink: OutputSink, plan: FitPlan) -> None:
        self.sink, self.plan = sink, plan

    @rank_zero_only
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Add this fit's windows of every output to the sink (and finish them after the last window)."""
        plan = self.plan
        deliver(self.sink, plan, pl_module.output_masks().cpu(), bool(pl_module.hparams.get("joint", False)))
        references = getattr(trainer.datamodule, "round_references", None)
        if self.sink.settings.write_references and references is not None:
            names = plan.outputs[: len(plan.queries)]
            self.sink.add_references(plan.group, names, plan.windows, references.cpu())
