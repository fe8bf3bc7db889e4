"""Reading a mask checkpoint safely: plain tensors only, and only what dgmo-pl writes."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from dgmo_pl.errors import InputError

#: The module's own settings in a checkpoint's hyperparameters (sizes and front end are the run's).
MODEL_SETTINGS = ("lr", "mask_init", "threshold", "joint", "residual")


def read_checkpoint(path: str | Path, flag: str = "--ckpt_path") -> dict[str, Any]:
    """Load a mask checkpoint on the CPU without running code from it.

    Args:
        path: The ``.ckpt`` file.
        flag: How error messages name the setting.

    Returns:
        The checkpoint: ``state_dict`` with ``mask_logits``, ``hyper_parameters``, optimiser state, ...

    Raises:
        InputError: The file is not readable as plain tensors (``torch.load(weights_only=True)``: a
            file that needs pickled objects is refused, never unpickled), or holds no mask.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError, zipfile.BadZipFile,
            OSError) as err:  # fmt: skip
        reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        raise InputError(
            f"{flag} '{path}' is not a readable checkpoint ({type(err).__name__}: {reason}); only plain tensors "
            "are loaded, never pickled code: pass a .ckpt from a run's checkpoints/ folder"
        ) from None
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not isinstance(state.get("mask_logits"), torch.Tensor):
        raise InputError(
            f"{flag} '{path}' is a torch file but not a dgmo-pl checkpoint (no mask_logits in its state_dict): "
            "pass a .ckpt from a run's checkpoints/ folder"
        )
    return checkpoint


def model_settings(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The module settings stored in a checkpoint (learning rate, threshold, joint masks, ...)."""
    hparams = checkpoint.get("hyper_parameters") or {}
    return {k: hparams[k] for k in MODEL_SETTINGS if k in hparams}


def check_mask_shape(checkpoint: dict[str, Any], expected: tuple[int, ...], path: str | Path) -> None:
    """Refuse a checkpoint whose mask does not have the shape this fit needs ``[S, W, F, T]``."""
    shape = tuple(checkpoint["state_dict"]["mask_logits"].shape)
    if shape != tuple(expected):
        raise InputError(
            f"--ckpt_path '{path}' holds a mask of shape {list(shape)} but this run fits {list(expected)} "
            "(masks, windows, frequency bins, frames): it was made for another model, query count or "
            "recording; pass this run's checkpoint"
        )
