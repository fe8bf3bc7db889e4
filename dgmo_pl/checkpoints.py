"""Reading a mask checkpoint safely: plain tensors only, and only what dgmo-pl writes."""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from dgmo_pl.errors import InputError

#: The module's own settings in a checkpoint's hyperparameters (sizes and front end are the run's).
MODEL_SETTINGS = ("lr", "mask_init", "threshold", "joint", "residual")


#: What to do about a bad ``--ckpt_path``.
PASS_ANOTHER = "pass a .ckpt from a run's checkpoints/ folder"


def read_checkpoint(path: str | Path, flag: str = "--ckpt_path", advice: str = PASS_ANOTHER) -> dict[str, Any]:
    """Load a mask checkpoint on the CPU without running code from it.

    Args:
        path: The ``.ckpt`` file.
        flag: How error messages name the setting.
        advice: What error messages tell the user to do.

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
            f"are loaded, never pickled code: {advice}"
        ) from None
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not isinstance(state.get("mask_logits"), torch.Tensor):
        raise InputError(
            f"{flag} '{path}' is a torch file but not a dgmo-pl checkpoint (no mask_logits in its state_dict): "
            f"{advice}"
        )
    return checkpoint


def model_settings(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The module settings stored in a checkpoint (learning rate, threshold, joint masks, ...)."""
    hparams = checkpoint.get("hyper_parameters") or {}
    return {k: hparams[k] for k in MODEL_SETTINGS if k in hparams}


def check_mask_shape(
    checkpoint: dict[str, Any], expected: tuple[int, ...], path: str | Path, flag: str = "--ckpt_path",
    advice: str = "pass this run's checkpoint",
) -> None:
    """Refuse a checkpoint whose mask does not have the shape this fit needs ``[S, W, F, T]``."""
    shape = tuple(checkpoint["state_dict"]["mask_logits"].shape)
    if shape != tuple(expected):
        raise InputError(
            f"{flag} '{path}' holds a mask of shape {list(shape)} but this run fits {list(expected)} "
            f"(masks, windows, frequency bins, frames): it was made for another model, query count or "
            f"recording; {advice}"
        )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, writing to a temporary file that replaces the checkpoint when complete.

    A full disk or a kill mid-write never leaves a truncated ``.ckpt`` (or ``last.ckpt``) behind,
    and a failed write is an ``OSError`` that names the file.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        """Write ``checkpoint`` to ``path`` through a temporary file in the same folder."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            super().save_checkpoint(checkpoint, tmp, storage_options)
            os.replace(tmp, path)
        except OSError as err:  # name the checkpoint, not the temporary file (or no file at all)
            Path(tmp).unlink(missing_ok=True)
            raise OSError(err.errno, f"could not write the checkpoint ({err.strerror or err})", str(path)) from None
        except RuntimeError as err:  # torch's writer reports a failed write(2) as a RuntimeError
            Path(tmp).unlink(missing_ok=True)
            raise OSError(f"could not write the checkpoint '{path}' ({str(err).splitlines()[0]})") from None
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
