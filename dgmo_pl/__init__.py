"""dgmo-pl: zero-shot, language-queried audio source separation (DGMO) as a Lightning fit loop."""

from dgmo_pl.data import SeparationDataModule
from dgmo_pl.model import MaskSeparator

__all__ = ["MaskSeparator", "SeparationDataModule"]
