"""Callbacks with the side effects of a separation run: audio files, per-step losses and TensorBoard views."""

from callbacks.mask_monitor import MaskMonitor
from callbacks.separated_audio import SeparatedAudioWriter
from callbacks.step_loss import StepLossLogger

__all__ = ["MaskMonitor", "SeparatedAudioWriter", "StepLossLogger"]
