"""Auffusion's own file formats: ``condition_config.json`` and the condition adapters.

Auffusion (github happylittlecat2333/Auffusion) conditions a Stable-Diffusion UNet on one or more
text encoders, each followed by an adapter (a linear map to the UNet's cross-attention width and
a layer norm). The model folder lists them in ``condition_config.json``; each adapter is a folder
with ``config.json`` and ``condition_adapter.pt`` (its state dict).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import hf_hub_download
from torch import nn

CONDITION_CONFIG = "condition_config.json"
ADAPTER_CONFIG = "config.json"
ADAPTER_WEIGHTS = "condition_adapter.pt"
#: Tokens per condition when ``condition_config.json`` does not say (CLIP's context).
DEFAULT_MAX_LENGTH = 77


@dataclass(frozen=True)
class ConditionEntry:
    """One text condition of ``condition_config.json``.

    Attributes:
        text_encoder: Subfolder with the text encoder and its tokenizer.
        adapter: Subfolder with the condition adapter.
        max_length: Tokens the encoder's output is zero-padded or cropped to.
    """

    text_encoder: str
    adapter: str
    max_length: int = DEFAULT_MAX_LENGTH


def parse_condition_config(text: str) -> list[ConditionEntry]:
    """The conditions listed in a ``condition_config.json``.

    Raises:
        ValueError: Not a non-empty JSON list of objects with ``text_encoder_name`` and
            ``condition_adapter_name`` (``json.JSONDecodeError`` is a ``ValueError``).
    """
    items = json.loads(text)
    if not isinstance(items, list) or not items:
        raise ValueError(f"{CONDITION_CONFIG} must be a non-empty JSON list of conditions, got {type(items).__name__}")
    entries = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"condition {i} of {CONDITION_CONFIG} is a {type(item).__name__}, not an object")
        names = {key: item.get(key) for key in ("text_encoder_name", "condition_adapter_name")}
        bad = [key for key, name in names.items() if not isinstance(name, str) or not name]
        if bad:
            raise ValueError(f"condition {i} of {CONDITION_CONFIG} lacks {' and '.join(bad)}")
        max_length = item.get("condition_max_length", DEFAULT_MAX_LENGTH)
        if not isinstance(max_length, int) or max_length < 1:
            raise ValueError(
                f"condition {i} of {CONDITION_CONFIG} has condition_max_length {max_length!r}, not a positive integer"
            )
        entries.append(ConditionEntry(names["text_encoder_name"], names["condition_adapter_name"], max_length))
    return entries


def model_file(model: str, path: str) -> Path:
    """A file of ``model`` (local folder or hub id, through the hub cache) as a local path.

    Raises:
        OSError: The file does not exist or cannot be fetched (offline: not in the cache).
    """
    if Path(model).is_dir():
        local = Path(model) / path
        if not local.is_file():
            raise FileNotFoundError(f"no file {path}")
        return local
    folder, _, name = path.rpartition("/")
    try:
        return Path(hf_hub_download(model, name, subfolder=folder or None))
    except ValueError as err:  # an invalid id, or an offline cache miss in some hub versions
        raise OSError(str(err)) from None


class ConditionAdapter(nn.Module):
    """Maps text hidden states to the UNet's width: ``[B, L, condition_dim] -> [B, L, cross_attention_dim]``.

    Args:
        config: At least ``condition_dim`` and ``cross_attention_dim``; every key is written back
            by :meth:`save_pretrained`.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        for key in ("condition_dim", "cross_attention_dim"):
            if not isinstance(config.get(key), int) or config[key] < 1:
                raise ValueError(f"the condition adapter's {key} is {config.get(key)!r}, not a positive integer")
        self.config = dict(config)
        self.proj = nn.Linear(config["condition_dim"], config["cross_attention_dim"])
        self.norm = nn.LayerNorm(config["cross_attention_dim"])

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[B, L, condition_dim] -> [B, L, cross_attention_dim]``."""
        return self.norm(self.proj(hidden))

    @classmethod
    def from_files(cls, config_file: Path, weights_file: Path) -> ConditionAdapter:
        """Build from ``config.json`` and load ``condition_adapter.pt``.

        Raises:
            OSError: A file is unreadable.
            ValueError: The config or weights do not fit (``json.JSONDecodeError`` included).
        """
        config = json.loads(Path(config_file).read_text())
        if not isinstance(config, dict):
            raise ValueError(f"{config_file} holds a {type(config).__name__}, not an object")
        adapter = cls(config)
        state = torch.load(weights_file, map_location="cpu", weights_only=True)
        try:
            adapter.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(f"the adapter weights do not fit its config: {str(err).splitlines()[0]}") from None
        return adapter.eval()

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> ConditionAdapter:
        """Load an adapter folder (``config.json`` + ``condition_adapter.pt``)."""
        return cls.from_files(Path(folder) / ADAPTER_CONFIG, Path(folder) / ADAPTER_WEIGHTS)

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write ``config.json`` and ``condition_adapter.pt``; returns the folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ADAPTER_CONFIG).write_text(json.dumps(self.config, indent=2) + "\n")
        torch.save(self.state_dict(), folder / ADAPTER_WEIGHTS)
        return folder
