"""A callback that signals its own process at a chosen step: interrupting a run at a known point, for tests.

Added to a command line with::

    --trainer.callbacks+='{"class_path": "dgmo_pl.testing.signals.SignalAtStep",
                           "init_args": {"signal": "SIGKILL", "step": 7, "fit": "man-speaking/windows_3-3"}}'
"""

from __future__ import annotations

import os
import signal as signals
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer


class SignalAtStep(Callback):
    """Sends ``signal`` to this process after the batch that reaches optimiser step ``step`` of fit ``fit``.

    Args:
        signal: A signal's name (``SIGKILL``, ``SIGTERM``, ``SIGINT``).
        step: The fit's optimiser step (``trainer.global_step``) after which to send it.
        fit: The fit's folder relative to the run folder (its logger version), or None for any fit.
    """

    def __init__(self, signal: str, step: int, fit: str | None = None) -> None:
        self.signal, self.step, self.fit = signals.Signals[signal], step, fit
        self.sent = False

    def _is_the_fit(self, trainer: Trainer) -> bool:
        if self.fit is None:
            return True
        log_dir = trainer.log_dir
        return log_dir is not None and Path(log_dir).as_posix().endswith(f"/{self.fit}")

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Send the signal once, at the chosen step of the chosen fit."""
        if not self.sent and trainer.global_step >= self.step and self._is_the_fit(trainer):
            self.sent = True
            os.kill(os.getpid(), self.signal)
