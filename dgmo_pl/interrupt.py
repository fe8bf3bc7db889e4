"""Stopping a run on Ctrl-C (SIGINT) or SIGTERM after the current step, with a checkpoint to resume from.

A cluster sends SIGTERM some time before it kills a job; a person presses Ctrl-C. Either way the
run finishes the optimiser steps of the batch in progress, saves the fit's resume checkpoint,
removes its unfinished output files and ends with :class:`RunInterrupted`, which the command
line turns into a line saying how to resume and a non-zero exit status.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

#: The signals that stop a run cleanly.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunInterrupted(BaseException):  # noqa: N818 - named for what happened, like KeyboardInterrupt
    """A run stopped by a signal, its progress saved.

    A ``BaseException``, like ``KeyboardInterrupt``: the handlers that record a failed fit or
    evaluation row and go on (``except Exception``) let it through.

    Args:
        signal_number: The signal that stopped the run.
        folder: The run folder, to resume (None: nothing to resume).
        checkpoint: The resume checkpoint of the interrupted fit (None: stopped between fits, or at
            once by a second Ctrl-C: the fit goes on from its last periodic checkpoint).
        rerun: The work goes on by running the same command again (an evaluation, a folder of
            recordings: finished items are kept, an interrupted one is done again).
    """

    def __init__(
        self, signal_number: int, folder: Path | None = None, checkpoint: Path | None = None, rerun: bool = False
    ) -> None:
        self.signal_number, self.folder, self.checkpoint, self.rerun = signal_number, folder, checkpoint, rerun
        saved = f", its fit saved in '{checkpoint}'" if checkpoint is not None and not rerun else ""
        super().__init__(f"stopped by {signal.Signals(signal_number).name}{saved}")

    def to_rerun(self) -> RunInterrupted:
        """The same stop, for work that goes on by running the same command again."""
        return RunInterrupted(self.signal_number, rerun=True)

    @property
    def exit_status(self) -> int:
        """The shell's status for a process ended by this signal: 128 + its number (130 for Ctrl-C)."""
        return 128 + self.signal_number


class StopRequest:
    """Whether a stop signal has arrived during the run in ``folder`` (see :func:`stop_on_signals`).

    Attributes:
        folder: The run folder.
        signal_number: The first stop signal received, or None.
    """

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder
        self.signal_number: int | None = None

    def check(self, checkpoint: Path | None = None) -> None:
        """Raise :class:`RunInterrupted` if a stop signal has arrived."""
        if self.signal_number is not None:
            raise RunInterrupted(self.signal_number, self.folder, checkpoint)


@contextlib.contextmanager
def stop_on_signals(folder: Path | None = None) -> Iterator[StopRequest]:
    """Turn SIGINT and SIGTERM into a :class:`StopRequest` while the block runs; restore the handlers after.

    A second Ctrl-C stops at once (:class:`RunInterrupted` without a new checkpoint: the fit goes
    on from its last periodic one). A SIGINT ignored by the parent (a background job) stays
    ignored. Outside the main thread (a web app's worker) signals cannot be handled, and the
    request is never set.
    """
    request = StopRequest(folder)
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handle(signal_number: int, frame: Any) -> None:
        if request.signal_number is not None and signal_number == signal.SIGINT:
            raise RunInterrupted(signal_number, request.folder)  # not KeyboardInterrupt: Lightning would exit(1)
        if request.signal_number is None:
            request.signal_number = signal_number
            name = signal.Signals(signal_number).name
            print(f"\n{name} received: stopping after the current step and saving a checkpoint "
                  "(Ctrl-C again stops at once, without one)", file=sys.stderr, flush=True)  # fmt: skip

    previous = {number: signal.getsignal(number) for number in STOP_SIGNALS}
    # Leave alone a handler installed outside Python (None) and an inherited SIG_IGN.
    previous = {number: handler for number, handler in previous.items() if handler not in (None, signal.SIG_IGN)}
    for number in previous:
        signal.signal(number, handle)
    try:
        yield request
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


class ResumeCheckpoint(Callback):
    """Saves a fit's resume checkpoint every ``every_n_steps`` optimiser steps, and when a signal stops the run.

    The checkpoint holds everything a resumed fit needs to take the same steps as the
    uninterrupted one: the mask and Adam's state, the loops' progress, and the data module's
    current round of references (:meth:`~dgmo_pl.fit_data.FitDataModule.state_dict`). It is
    written through the trainer's checkpoint writer (atomic: write, then rename).

    Args:
        path: The checkpoint file (``<fit folder>/checkpoints/last.ckpt``).
        every_n_steps: Save after the batch that reaches each multiple of this many steps (0: only on a signal).
        request: The run's stop request.
    """

    def __init__(self, path: Path, every_n_steps: int, request: StopRequest) -> None:
        if every_n_steps < 0:
            raise ValueError(f"every_n_steps must be 0 (never) or more, got {every_n_steps}")
        self.path, self.every_n_steps, self.request = path, every_n_steps, request

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Save when a multiple of ``every_n_steps`` was reached in this batch, or a stop was asked for.

        A stop after the fit's very last batch lets the fit end (its outputs and record are
        written; the loop stops before the next fit), so that its last round's end is not skipped.
        """
        step, taken = trainer.global_step, len(outputs["losses"]) if isinstance(outputs, dict) else 1
        crossed = self.every_n_steps and step // self.every_n_steps > (step - taken) // self.every_n_steps
        if crossed or self.request.signal_number is not None:
            trainer.save_checkpoint(self.path, weights_only=False)  # the whole state: a fit resumes from it
        last = trainer.current_epoch == trainer.max_epochs - 1 and batch_idx == trainer.num_training_batches - 1
        if not last:
            self.request.check(self.path)
