"""Loading AudioLDM's diffusers components from a hub id or a local folder."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import snapshot_download
from huggingface_hub.utils import validate_repo_id
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import AutoTokenizer, ClapTextModelWithProjection, PreTrainedTokenizerBase, SpeechT5HifiGan

from dgmo_pl.diffusion.cache import folder_digest
from dgmo_pl.errors import InputError

#: ``model_index.json`` class names accepted as an AudioLDM (v1) folder.
AUDIOLDM_PIPELINES = ("AudioLDMPipeline",)
#: A real RoBERTa vocabulary has 50,265 entries; offline, a hub load can silently return ~5.
MIN_VOCAB_SIZE = 100


class ModelLoadError(InputError):
    """The diffusion model could not be loaded from where the user pointed."""


@dataclass
class AudioLDMComponents:
    """The frozen parts of an AudioLDM model (vocoder optional: only needed to listen)."""

    vae: AutoencoderKL
    unet: UNet2DConditionModel
    text_encoder: ClapTextModelWithProjection
    tokenizer: PreTrainedTokenizerBase
    scheduler: DDIMScheduler
    vocoder: SpeechT5HifiGan | None = None


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


def _is_hub_id(model: str) -> bool:
    try:
        validate_repo_id(model)
    except ValueError:
        return False
    return True


def _advice(model: str) -> str:
    if Path(model).is_dir():
        return (
            f"the folder '{model}' is incomplete or damaged: re-create it (`python -m dgmo_pl.tiny DIR` for "
            "the tiny model) or download it again, then pass it with `--data.model`"
        )
    if not _is_hub_id(model):
        return (
            f"'{model}' is neither an existing folder nor a hub id: check the path, or pass a hub id "
            "such as cvssp/audioldm or a folder in diffusers layout with `--data.model`"
        )
    return (
        "to use a local copy, download it where there is network access "
        f"(`hf download {model} --local-dir DIR`) and pass `--data.model DIR`, "
        "or fill the hub cache and set HF_HUB_OFFLINE=1"
    )


def check_model_folder(model: str) -> None:
    """Check that a local ``model`` folder is a diffusers AudioLDM; hub ids pass unchecked.

    Raises:
        ModelLoadError: The folder has no ``model_index.json`` or it names another pipeline.
    """
    folder = Path(model)
    if not folder.exists():
        return
    index = folder / "model_index.json"
    if not index.is_file():
        raise ModelLoadError(
            f"model folder '{model}' is not a diffusers AudioLDM (no model_index.json): "
            "pass a folder saved in diffusers layout, e.g. one made by `python -m dgmo_pl.tiny DIR`"
        )
    try:
        name = json.loads(index.read_text()).get("_class_name")
    except (json.JSONDecodeError, AttributeError):
        name = None
    if name not in AUDIOLDM_PIPELINES:
        raise ModelLoadError(
            f"model folder '{model}' holds a {name or 'unknown'} model, not an AudioLDM "
            f"({', '.join(AUDIOLDM_PIPELINES)}): pass an AudioLDM folder or hub id such as cvssp/audioldm"
        )


def _load(cls: Any, model: str, subfolder: str, **kwargs: Any) -> Any:
    try:
        return cls.from_pretrained(model, subfolder=subfolder, **kwargs)
    except (OSError, ValueError, json.JSONDecodeError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelLoadError(
            f"could not load the '{subfolder}' of AudioLDM model '{model}' from {_where(model)} "
            f"({reason}); {_advice(model)}"
        ) from None


def freeze(module: torch.nn.Module) -> torch.nn.Module:
    """Put ``module`` in eval mode with no trainable parameters."""
    module.eval()
    module.requires_grad_(False)
    return module


def load_audioldm(model: str, dtype: torch.dtype = torch.float32) -> AudioLDMComponents:
    """Load and freeze AudioLDM's components with ``from_pretrained``.

    Args:
        model: A hub id (``cvssp/audioldm``) or a local folder in diffusers layout.
        dtype: Weights' dtype of the networks.

    Raises:
        ModelLoadError: A component cannot be loaded, or the tokenizer came back nearly empty.
    """
    check_model_folder(model)
    tokenizer = _load(AutoTokenizer, model, "tokenizer")
    if len(tokenizer) < MIN_VOCAB_SIZE:
        raise ModelLoadError(
            f"the tokenizer of AudioLDM model '{model}' from {_where(model)} has only "
            f"{len(tokenizer)} tokens (a failed offline download returns a near-empty one); {_advice(model)}"
        )
    parts = {
        "vae": _load(AutoencoderKL, model, "vae", torch_dtype=dtype, low_cpu_mem_usage=False),
        "unet": _load(UNet2DConditionModel, model, "unet", torch_dtype=dtype, low_cpu_mem_usage=False),
        "text_encoder": _load(ClapTextModelWithProjection, model, "text_encoder", dtype=dtype),
    }
    has_vocoder = not Path(model).is_dir() or (Path(model) / "vocoder").is_dir()
    vocoder = _load(SpeechT5HifiGan, model, "vocoder", dtype=dtype) if has_vocoder else None
    for module in (*parts.values(), vocoder):
        if module is not None:
            freeze(module)
    scheduler = _load(DDIMScheduler, model, "scheduler")
    return AudioLDMComponents(tokenizer=tokenizer, scheduler=scheduler, vocoder=vocoder, **parts)


def model_revision(model: str) -> str:
    """What identifies the weights of ``model``: a hub snapshot's commit, or a folder's content digest.

    Raises:
        ModelLoadError: A hub id that is not in the local hub cache.
    """
    if Path(model).is_dir():
        return f"sha256:{folder_digest(model)}"
    try:
        folder = Path(snapshot_download(model, local_files_only=True))
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"cannot find the snapshot of '{model}' in the hub cache ({err}); {_advice(model)}") from None
    return f"commit:{folder.name}"
