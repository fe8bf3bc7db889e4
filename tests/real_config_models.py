"""The real checkpoints' configs (``tests/real_configs/``), and tiny models that carry their real parts.

:func:`save_with_real_parts` writes a model folder whose scheduler, VAE and vocoder are built from
the real configs of ``cvssp/audioldm`` or ``cvssp/audioldm2`` (random weights), and whose UNet and
text encoders are the tiny builder's: the real VAE has the tiny model's 8 latent channels and
factor 4, so the tiny UNet takes its latents as they are. See ``real_configs/SOURCES.md`` for how
sure each config is (AudioLDM's scheduler config is reconstructed, its UNet config inferred).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from diffusers import AutoencoderKL, DDIMScheduler
from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

from dgmo_pl.testing.tiny import audioldm, audioldm2

REAL_CONFIGS = Path(__file__).resolve().parent / "real_configs"
#: Backbone name of ``python -m dgmo_pl.tiny`` -> (its real configs' folder, its builder module).
MODELS: dict[str, tuple[str, ModuleType]] = {
    "audioldm": ("cvssp-audioldm", audioldm),
    "audioldm2": ("cvssp-audioldm2", audioldm2),
}


def real_config_path(model: str, part: str) -> Path:
    """The config file of ``part`` of ``model`` (a folder of ``real_configs``, e.g. ``cvssp-audioldm``).

    Args:
        model: The model's folder under ``real_configs``.
        part: A component folder (``unet``, ``vae``, ...), or ``model_index``.
    """
    if part == "model_index":
        return REAL_CONFIGS / model / "model_index.json"
    # One JSON file per component; its name may carry an INFERRED / RECONSTRUCTED mark.
    (path,) = (REAL_CONFIGS / model / part).glob("*.json")
    return path


def real_config(model: str, part: str) -> dict[str, Any]:
    """The parsed config of ``part`` of ``model`` (see :func:`real_config_path`)."""
    return json.loads(real_config_path(model, part).read_text())


def real_parts(model: str, seed: int = 0) -> dict[str, object]:
    """The scheduler, VAE and vocoder of ``model``'s real configs, with seeded random weights."""
    torch.manual_seed(seed)
    return {
        "scheduler": DDIMScheduler.from_config(real_config(model, "scheduler")),
        "vae": AutoencoderKL.from_config(real_config(model, "vae")),
        "vocoder": SpeechT5HifiGan(SpeechT5HifiGanConfig.from_dict(real_config(model, "vocoder"))),
    }


def save_with_real_parts(out_dir: str | Path, backbone: str, seed: int = 0) -> Path:
    """Write the tiny ``backbone`` model with the real scheduler, VAE and vocoder to ``out_dir``.

    Args:
        out_dir: The folder (created if needed).
        backbone: ``audioldm`` (``cvssp/audioldm``'s configs) or ``audioldm2`` (``cvssp/audioldm2``'s).
        seed: Seed of the random weights.

    Returns:
        The folder, in the backbone's diffusers layout.
    """
    model, module = MODELS[backbone]
    return module.save({**module.build("tiny", seed), **real_parts(model, seed)}, out_dir)
