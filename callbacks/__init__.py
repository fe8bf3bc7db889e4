"""Callbacks with the side effects of a separation run: audio files and TensorBoard views."""

from callbacks.mask_monitor import MaskMonitor
from callbacks.separated_audio import SeparatedAudioWriter

__all__ = ["MaskMonitor", "SeparatedAudioWriter"]
