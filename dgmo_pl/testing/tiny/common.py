"""What every random-model builder shares: an offline tokenizer, parameter counts, the diffusers folder."""

from __future__ import annotations

import json
from pathlib import Path

import diffusers
import torch
from transformers import RobertaTokenizerFast
from transformers.convert_slow_tokenizer import bytes_to_unicode

#: Tokens per text of the tiny tokenizers.
MAX_TOKENS = 32


def tiny_tokenizer(max_length: int = MAX_TOKENS) -> RobertaTokenizerFast:
    """A byte-level RoBERTa tokenizer built in memory: special tokens plus the 256 byte symbols.

    Args:
        max_length: The tokenizer's ``model_max_length`` (texts are padded to it).
    """
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    symbols = specials + sorted(set(bytes_to_unicode().values())) + ["<mask>"]
    vocab = {token: i for i, token in enumerate(symbols)}
    return RobertaTokenizerFast(vocab=vocab, merges=[], model_max_length=max_length)


def parameter_counts(components: dict[str, object]) -> dict[str, int]:
    """Number of parameters of each network among ``components``."""
    return {
        name: sum(p.numel() for p in part.parameters())
        for name, part in components.items()
        if isinstance(part, torch.nn.Module)
    }


def save_components(
    components: dict[str, object], out_dir: str | Path, pipeline: str, libraries: dict[str, tuple[str, str]]
) -> Path:
    """Write each component with ``save_pretrained`` under its name, and a ``model_index.json``.

    Args:
        components: Name -> object with ``save_pretrained``.
        out_dir: The folder (created if needed).
        pipeline: The index's ``_class_name`` (how the backbone is recognised).
        libraries: Name -> (library, class) of each component, as diffusers writes them.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, component in components.items():
        component.save_pretrained(out / name)
    index = {"_class_name": pipeline, "_diffusers_version": diffusers.__version__}
    index.update({name: list(lib) for name, lib in libraries.items()})
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    return out
