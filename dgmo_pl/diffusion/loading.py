"""Loading a diffusion model's components from a hub id or a local folder, with errors that say what to do."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import snapshot_download
from huggingface_hub.utils import validate_repo_id
from safetensors import SafetensorError
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from dgmo_pl.diffusion.cache import folder_signature
from dgmo_pl.errors import InputError

#: A real tokenizer has tens of thousands of entries; offline, a hub load can silently return ~5.
MIN_VOCAB_SIZE = 100


class ModelLoadError(InputError):
    """The diffusion model could not be loaded from where the user pointed."""


def _hub_cache() -> str:
    return os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.join(Path.home(), ".cache", "huggingface")), "hub"
    )


def _where(model: str) -> str:
    if Path(model).is_dir():
        return f"local folder '{Path(model).resolve()}'"
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")
    mode = "the local hub cache only (HF_HUB_OFFLINE is set)" if offline else "the Hugging Face hub"
    return f"{mode} (cache: {_hub_cache()}); no local folder named '{model}' exists"


def is_hub_id(model: str) -> bool:
    """Whether ``model`` names a hub repository rather than a local folder."""
    try:
        validate_repo_id(model)
    except ValueError:
        return False
    return True


def advice(model: str) -> str:
    """What the user can do when ``model`` cannot be loaded."""
    if Path(model).is_dir():
        return (
            f"the folder '{model}' is incomplete or damaged: re-create it (`python -m dgmo_pl.tiny DIR` for "
            "a tiny model) or download it again, then pass it with `--data.model`"
        )
    if not is_hub_id(model):
        return (
            f"'{model}' is neither an existing folder nor a hub id: check the path, or pass a hub id "
            "such as cvssp/audioldm or a folder in diffusers layout with `--data.model`"
        )
    return (
        "to use a local copy, download it where there is network access "
        f"(`hf download {model} --local-dir DIR`) and pass `--data.model DIR`, "
        "or fill the hub cache and set HF_HUB_OFFLINE=1"
    )


def pipeline_name(model: str) -> str | None:
    """The ``_class_name`` of a local folder's ``model_index.json`` (``None``: no readable index)."""
    try:
        name = json.loads((Path(model) / "model_index.json").read_text()).get("_class_name")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    return name if isinstance(name, str) else None


def check_model_folder(model: str, backbone: str, pipelines: tuple[str, ...]) -> None:
    """Check that a local ``model`` folder holds one of ``pipelines``; hub ids pass unchecked.

    Raises:
        ModelLoadError: The folder has no ``model_index.json`` or it names another pipeline.
    """
    folder = Path(model)
    if not folder.exists():
        return
    if not (folder / "model_index.json").is_file():
        raise ModelLoadError(
            f"model folder '{model}' is not a diffusers {backbone} model (no model_index.json): "
            "pass a folder saved in diffusers layout, e.g. one made by `python -m dgmo_pl.tiny DIR`"
        )
    name = pipeline_name(model)
    if name not in pipelines:
        raise ModelLoadError(
            f"model folder '{model}' holds a {name or 'unknown'} model, not a {backbone} model "
            f"({', '.join(pipelines)}): pass a {backbone} folder, or set --data.backbone to the backbone "
            "that matches it"
        )


def has_part(model: str, subfolder: str) -> bool:
    """Whether ``model`` has ``subfolder`` (a hub id is assumed to have it; loading will tell)."""
    return not Path(model).is_dir() or (Path(model) / subfolder).is_dir()


#: What loading a damaged or foreign component raises: missing or truncated files, bad JSON, a pickled
#: ``.bin`` holding more than tensors (refused by torch's weights-only loading: no code runs from it).
LOAD_ERRORS = (OSError, ValueError, json.JSONDecodeError, pickle.UnpicklingError, EOFError, RuntimeError,
               SafetensorError)  # fmt: skip


def load_part(cls: Any, model: str, subfolder: str, backbone: str, **kwargs: Any) -> Any:
    """``cls.from_pretrained(model, subfolder=...)``, or a :class:`ModelLoadError` that says what to do."""
    try:
        return cls.from_pretrained(model, subfolder=subfolder, **kwargs)
    except LOAD_ERRORS as err:
        raise load_error(model, subfolder, backbone, err) from None


def load_error(model: str, subfolder: str, backbone: str, err: BaseException) -> ModelLoadError:
    """The error of a component that could not be loaded: which, from where, why, and what to do."""
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return ModelLoadError(
        f"could not load the '{subfolder}' of {backbone} model '{model}' from {_where(model)} "
        f"({reason}); {advice(model)}"
    )


def load_tokenizer(model: str, subfolder: str, backbone: str) -> PreTrainedTokenizerBase:
    """A tokenizer, refused when nearly empty (what a failed offline hub load can silently return)."""
    tokenizer = load_part(AutoTokenizer, model, subfolder, backbone)
    if len(tokenizer) < MIN_VOCAB_SIZE:
        raise ModelLoadError(
            f"the tokenizer of {backbone} model '{model}' from {_where(model)} has only "
            f"{len(tokenizer)} tokens (a failed offline download returns a near-empty one); {advice(model)}"
        )
    return tokenizer


def freeze(module: torch.nn.Module) -> torch.nn.Module:
    """Put ``module`` in eval mode with no trainable parameters."""
    module.eval()
    module.requires_grad_(False)
    return module


def model_revision(model: str, pinned: str | None = None) -> str:
    """What identifies the weights of ``model`` in cache keys.

    ``pinned`` when given (``--data.model_revision``); else a hub snapshot's commit, or a local
    folder's file names, sizes and modification times (:func:`~dgmo_pl.diffusion.cache.folder_signature`:
    no file is read, however large the folder).

    Raises:
        ModelLoadError: A hub id that is not in the local hub cache.
    """
    if pinned:
        return f"pinned:{pinned}"
    if Path(model).is_dir():
        return f"files:{folder_signature(model)}"
    try:
        folder = Path(snapshot_download(model, local_files_only=True))
    except (OSError, ValueError) as err:
        message = f"cannot find the snapshot of '{model}' in the hub cache ({err}); {advice(model)}"
        raise ModelLoadError(message) from None
    return f"commit:{folder.name}"
