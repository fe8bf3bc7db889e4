"""The checks every run passes before any work: trainer settings and the folders it will write.

The command line, :func:`~dgmo_pl.separate.separate` and the evaluation call these, so a bad
setting or path gives the same one-line :class:`~dgmo_pl.errors.InputError` whichever way in.
"""

from __future__ import annotations

import os
from pathlib import Path

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import Timer

from dgmo_pl.errors import InputError

#: Precisions that would store the mask itself in 16 bits (its small Adam updates then vanish).
LOW_PRECISION_WEIGHTS = ("bf16-true", "16-true", "transformer-engine", "transformer-engine-float16")


def check_folder(path: str | os.PathLike, flag: str) -> Path:
    """``path`` as a folder a run can create or write into; otherwise an InputError naming it.

    Refused: an existing file at ``path`` or at one of its parents, and a nearest existing
    folder that is not writable.
    """
    path = Path(path).expanduser()
    for candidate in (path, *path.parents):
        if not (candidate.exists() or candidate.is_symlink()):
            continue
        if not candidate.is_dir():
            if candidate == path:
                raise InputError(f"{flag} '{path}' is a file, not a folder: pass a folder (created if missing)")
            raise InputError(f"{flag} '{path}' lies inside '{candidate}', which is a file: pass a folder path")
        if not os.access(candidate, os.W_OK | os.X_OK):
            raise InputError(f"{flag} '{path}': '{candidate}' is not writable: pass a folder you can write to")
        break
    return path


def check_joint(joint: bool, residual: bool, queries: int) -> None:
    """Joint masks partition the mixture among two or more outputs: queries, or one query and the residual."""
    if joint and queries < 2 and not residual:
        raise InputError("--model.joint true needs two or more queries, or --model.residual true: "
                         "pass --data.queries, or drop --model.joint")


def check_round_reloading(reload_every_n_epochs: int) -> None:
    """Rounds are epochs: the trainer must ask for a new data loader (new references) every epoch."""
    if reload_every_n_epochs != 1:
        raise InputError(
            f"trainer.reload_dataloaders_every_n_epochs is {reload_every_n_epochs}, but the references are "
            "regenerated every round (epoch): set it to 1"
        )


def check_trainer(trainer: Trainer) -> None:
    """Refuse trainer settings that would break the method, loop without end, or do nothing."""
    check_round_reloading(trainer.reload_dataloaders_every_n_epochs)
    if trainer.fast_dev_run:
        raise InputError(
            "trainer.fast_dev_run would write an unfinished mask as the output: drop it (for a quick try of "
            "the machinery, use configs/tiny.yaml)"
        )
    rounds = trainer.max_epochs
    if rounds is None or rounds < 1:
        raise InputError(
            f"trainer.max_epochs {rounds} must be at least 1: it is the number of rounds (the paper's 3); "
            "fix --trainer.max_epochs"
        )
    if trainer.max_steps != -1:
        raise InputError(
            f"trainer.max_steps {trainer.max_steps} would stop the rounds part-way: leave it at -1 and set "
            "--trainer.max_epochs (rounds) and --data.steps_per_round"
        )
    if trainer.overfit_batches:
        raise InputError(f"trainer.overfit_batches {trainer.overfit_batches} would cut every round short: set it to 0")
    limit = trainer.limit_train_batches
    if limit is not None and not (isinstance(limit, float) and limit == 1.0):  # an int 1 means one batch
        raise InputError(
            f"trainer.limit_train_batches {limit} would cut every round short: leave it at 1.0 and set "
            "--data.steps_per_round"
        )
    if any(isinstance(callback, Timer) for callback in trainer.callbacks):
        raise InputError("trainer.max_time would stop the rounds part-way: leave it unset")
    if trainer.log_every_n_steps < 1:
        raise InputError(f"trainer.log_every_n_steps {trainer.log_every_n_steps} must be at least 1: fix it")
    if trainer.accumulate_grad_batches != 1 or trainer.gradient_clip_val:
        raise InputError(
            "trainer.accumulate_grad_batches and trainer.gradient_clip_val do not apply: the mask takes one "
            "Adam step per loss (manual optimisation); leave them at 1 and null"
        )
    precision = str(trainer.precision)
    if precision in LOW_PRECISION_WEIGHTS:
        raise InputError(
            f"trainer.precision {precision} would keep the mask in 16 bits: use bf16-mixed or 16-mixed, "
            "which keep the mask in fp32"
        )
