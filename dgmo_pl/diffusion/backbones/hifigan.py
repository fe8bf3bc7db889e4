"""A HiFi-GAN generator (V1 layout) that reads and writes the original checkpoints' weight-norm format.

The original HiFi-GAN code (and Auffusion's copy of it) stores every convolution in weight-norm
form (``weight_g``, ``weight_v``) in ``vocoder.pt = {"generator": state_dict}`` beside a
``config.json`` of its hyperparameters. This module builds the same network from plain
convolutions: the weight-norm factors are folded into plain weights (``g * v / ||v||``) on
loading, as the original does before inference, and split again on saving.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: Slope of the leaky ReLUs inside the generator (the one before ``conv_post`` uses PyTorch's 0.01).
LRELU_SLOPE = 0.1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "vocoder.pt"
#: The hyperparameters the generator is built from.
REQUIRED_KEYS = (
    "num_mels",
    "upsample_rates",
    "upsample_kernel_sizes",
    "upsample_initial_channel",
    "resblock",
    "resblock_kernel_sizes",
    "resblock_dilation_sizes",
)


def _same_padding(kernel_size: int, dilation: int = 1) -> int:
    return (kernel_size * dilation - dilation) // 2


class ResBlock1(nn.Module):
    """Residual block type "1": per dilation, two convolutions (dilated, then plain) and a skip."""

    def __init__(self, channels: int, kernel_size: int, dilations: list[int]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=_same_padding(kernel_size, d))
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, padding=_same_padding(kernel_size)) for _ in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, T] -> [B, C, T]``."""
        for dilated, plain in zip(self.convs1, self.convs2, strict=True):
            x = x + plain(F.leaky_relu(dilated(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return x


class ResBlock2(nn.Module):
    """Residual block type "2": per dilation, one dilated convolution and a skip."""

    def __init__(self, channels: int, kernel_size: int, dilations: list[int]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=_same_padding(kernel_size, d))
            for d in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, T] -> [B, C, T]``."""
        for conv in self.convs:
            x = x + conv(F.leaky_relu(x, LRELU_SLOPE))
        return x


def _upsampler(channels: int, rate: int, kernel_size: int) -> nn.ConvTranspose1d:
    """A transposed convolution that multiplies the length by exactly ``rate``."""
    excess = kernel_size - rate
    if excess < 0:
        raise ValueError(f"upsample kernel size {kernel_size} is smaller than its rate {rate}: fix the vocoder config")
    # An odd excess cannot be split evenly: pad one more and give the sample back at the end.
    padding, extra = (excess // 2, 0) if excess % 2 == 0 else (excess // 2 + 1, 1)
    return nn.ConvTranspose1d(channels, channels // 2, kernel_size, rate, padding=padding, output_padding=extra)


class HifiGan(nn.Module):
    """HiFi-GAN generator: log-mel ``[B, num_mels, T]`` to waveform ``[B, 1, T * prod(upsample_rates)]`` in [-1, 1].

    Args:
        config: The original ``config.json`` hyperparameters (see :data:`REQUIRED_KEYS`; other
            keys are kept and written back by :meth:`save_pretrained`).

    Raises:
        ValueError: A hyperparameter is missing or inconsistent.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = self.check_config(config)
        rates, kernels = config["upsample_rates"], config["upsample_kernel_sizes"]
        width = int(config["upsample_initial_channel"])
        block = ResBlock1 if str(config["resblock"]) == "1" else ResBlock2
        self.num_kernels = len(config["resblock_kernel_sizes"])
        self.conv_pre = nn.Conv1d(int(config["num_mels"]), width, 7, padding=3)
        pairs = enumerate(zip(rates, kernels, strict=True))
        self.ups = nn.ModuleList(_upsampler(width // 2**i, u, k) for i, (u, k) in pairs)
        self.resblocks = nn.ModuleList(
            block(width // 2 ** (i + 1), k, list(d))
            for i in range(len(rates))
            for k, d in zip(config["resblock_kernel_sizes"], config["resblock_dilation_sizes"], strict=True)
        )
        self.conv_post = nn.Conv1d(width // 2 ** len(rates), 1, 7, padding=3)

    @staticmethod
    def check_config(config: dict[str, Any]) -> dict[str, Any]:
        """Return ``config`` if it can build a generator; raise ``ValueError`` naming what is wrong."""
        missing = [key for key in REQUIRED_KEYS if key not in config]
        if missing:
            raise ValueError(f"the HiFi-GAN config lacks {', '.join(missing)}: use the vocoder's original config.json")
        if len(config["upsample_rates"]) != len(config["upsample_kernel_sizes"]):
            raise ValueError(
                f"upsample_rates {config['upsample_rates']} and upsample_kernel_sizes "
                f"{config['upsample_kernel_sizes']} differ in length: fix the vocoder config"
            )
        if str(config["resblock"]) not in ("1", "2"):
            raise ValueError(f"resblock must be '1' or '2', got {config['resblock']!r}: fix the vocoder config")
        if len(config["resblock_kernel_sizes"]) != len(config["resblock_dilation_sizes"]):
            raise ValueError(
                "resblock_kernel_sizes and resblock_dilation_sizes differ in length: fix the vocoder config"
            )
        return dict(config)

    @property
    def hop_length(self) -> int:
        """Output samples per input frame."""
        return math.prod(self.config["upsample_rates"])

    @property
    def dtype(self) -> torch.dtype:
        """The weights' dtype."""
        return self.conv_pre.weight.dtype

    @property
    def device(self) -> torch.device:
        """The weights' device."""
        return self.conv_pre.weight.device

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """``[B, num_mels, T] -> [B, 1, T * hop_length]``."""
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            blocks = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            x = sum(block(x) for block in blocks) / self.num_kernels
        return torch.tanh(self.conv_post(F.leaky_relu(x)))

    # --- the original checkpoint format ----------------------------------------------------

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> HifiGan:
        """Load a vocoder folder: ``config.json`` and ``vocoder.pt`` (see :meth:`from_files`)."""
        return cls.from_files(Path(folder) / CONFIG_NAME, Path(folder) / WEIGHTS_NAME)

    @classmethod
    def from_files(cls, config_file: Path, weights_file: Path) -> HifiGan:
        """Build from a ``config.json`` and load a ``vocoder.pt`` (``{"generator": state_dict}``, weight-norm or plain).

        Raises:
            OSError: A file is missing or unreadable.
            ValueError: The config or the weights do not fit together (``json.JSONDecodeError`` included).
        """
        config = json.loads(Path(config_file).read_text())
        if not isinstance(config, dict):
            raise ValueError(f"{config_file} holds a {type(config).__name__}, not an object of hyperparameters")
        model = cls(config)
        model.load_weight_norm_state_dict(torch.load(weights_file, map_location="cpu", weights_only=True))
        return model.eval()

    def load_weight_norm_state_dict(self, checkpoint: dict[str, Any]) -> None:
        """Load ``{"generator": state_dict}`` (or the bare state dict), folding weight norm into the weights.

        Raises:
            ValueError: Names or shapes differ from this generator's.
        """
        if not isinstance(checkpoint, dict):
            raise ValueError(f"the vocoder weights are a {type(checkpoint).__name__}, not a state dict")
        state = fold_weight_norm(checkpoint.get("generator", checkpoint))
        try:
            self.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(f"the vocoder weights do not fit its config.json: {str(err).splitlines()[0]}") from None

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write ``config.json`` and ``vocoder.pt`` in the original weight-norm format; returns the folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_NAME).write_text(json.dumps(self.config, indent=2) + "\n")
        torch.save({"generator": unfold_weight_norm(self.state_dict(), self)}, folder / WEIGHTS_NAME)
        return folder


# Weight norm as stored by torch.nn.utils.weight_norm (legacy) and by its parametrization.
_NORM_SUFFIXES = {
    ".weight_g": ".weight_v",
    ".parametrizations.weight.original0": ".parametrizations.weight.original1",
}


def fold_weight_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace each weight-norm pair ``(g, v)`` by the plain weight ``g * v / ||v||``.

    The norm runs over the axes where ``g`` has size 1 (all but the weight-norm axis), so any
    ``dim`` the norm was applied with folds correctly. Other entries pass through.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for g_suffix, v_suffix in _NORM_SUFFIXES.items():
            if key.endswith(v_suffix):
                break
            if key.endswith(g_suffix):
                stem = key[: -len(g_suffix)]
                v = state[stem + v_suffix].float()
                axes = [i for i in range(v.dim()) if value.dim() != v.dim() or value.shape[i] == 1]
                norm = torch.linalg.vector_norm(v, dim=axes, keepdim=True) if axes else v.abs()
                out[stem + ".weight"] = (value.float() * v / norm).to(state[stem + v_suffix].dtype)
                break
        else:
            out[key] = value
    return out


def unfold_weight_norm(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Split each convolution's weight into weight norm ``(weight_g, weight_v)`` over axis 0, as originally stored."""
    convs = {name for name, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d))}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        stem = key.removesuffix(".weight")
        if stem != key and stem in convs:
            out[stem + ".weight_g"] = torch.linalg.vector_norm(value, dim=list(range(1, value.dim())), keepdim=True)
            out[stem + ".weight_v"] = value.clone()
        else:
            out[key] = value.clone()
    return out
