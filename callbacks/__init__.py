"""The app's callbacks: views of a separation run that the library does not need (TensorBoard pictures)."""

from callbacks.mask_monitor import MaskMonitor

__all__ = ["MaskMonitor"]
