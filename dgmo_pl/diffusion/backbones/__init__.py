"""The text-to-audio diffusion models DGMO can use, behind one interface (:class:`Backbone`).

A backbone is chosen in the config (``data.backbone``, a ``class_path``), or else inferred from the
model: a local folder's ``model_index.json``, or a known hub id.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dgmo_pl.diffusion.backbones.audioldm import AudioLDM
from dgmo_pl.diffusion.backbones.audioldm2 import AudioLDM2
from dgmo_pl.diffusion.backbones.auffusion import Auffusion
from dgmo_pl.diffusion.backbones.base import Backbone, Condition, cat_conditions, map_condition
from dgmo_pl.diffusion.loading import ModelLoadError, advice, is_hub_id, pipeline_name

__all__ = ["BACKBONES", "AudioLDM", "AudioLDM2", "Auffusion", "Backbone", "Condition", "cat_conditions",
           "infer_backbone", "load_backbone", "map_condition"]

#: Every backbone shipped, by name.
BACKBONES: dict[str, type[Backbone]] = {cls.__name__: cls for cls in (AudioLDM, AudioLDM2, Auffusion)}


def _choices() -> str:
    return ", ".join(f"{name} ({', '.join(cls.pipelines)})" for name, cls in BACKBONES.items())


def infer_backbone(model: str) -> Backbone:
    """The backbone of ``model``: from a folder's ``model_index.json``, or a known hub id.

    Raises:
        ModelLoadError: The folder names an unsupported pipeline, or the id is not a known one.
    """
    if Path(model).is_dir():
        name = pipeline_name(model)
        for cls in BACKBONES.values():
            if name in cls.pipelines and cls.accepts_folder(model):
                return cls()
        what = f"a {name} model" if name else "no readable model_index.json"
        raise ModelLoadError(
            f"model folder '{model}' holds {what}, which no backbone supports: supported are {_choices()}; "
            "pass a folder of one of them with --data.model, or set --data.backbone if its index is wrong"
        )
    if not is_hub_id(model):
        raise ModelLoadError(f"cannot find the diffusion model '{model}': {advice(model)}")
    for cls in BACKBONES.values():
        if cls.recognises(model):
            return cls()
    raise ModelLoadError(
        f"cannot tell which backbone model '{model}' is: set --data.backbone to one of "
        f"{', '.join(BACKBONES)} (e.g. `--data.backbone AudioLDM2`), or pass a local folder with a model_index.json"
    )


def load_backbone(model: str, backbone: Backbone | None = None, dtype: torch.dtype = torch.float32) -> Backbone:
    """Load ``model`` into ``backbone`` (inferred when ``None``) and return it."""
    backbone = backbone if backbone is not None else infer_backbone(model)
    backbone.load(model, dtype)
    return backbone
