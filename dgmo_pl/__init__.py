"""dgmo-pl: zero-shot, language-queried audio source separation (DGMO) as a Lightning fit loop.

The public classes are imported on first use, after checking that torch and torchaudio load
together, so that ``import dgmo_pl`` stays light and a broken install is reported in one line.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "MaskSeparator": "dgmo_pl.model",
    "OutputSettings": "dgmo_pl.output",
    "Separation": "dgmo_pl.job",
    "SeparationOutput": "dgmo_pl.api",
    "Separator": "dgmo_pl.api",
    "SeparationDataModule": "dgmo_pl.data",
    "separate": "dgmo_pl.separate",
    "trainer_factory": "dgmo_pl.separate",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'dgmo_pl' has no attribute {name!r}")
    from dgmo_pl.environment import require_torchaudio

    require_torchaudio()
    return getattr(importlib.import_module(_PUBLIC[name]), name)
