"""A folder of stored tensors, each under a key that names everything that determined it.

An entry is one safetensors file named by the SHA-256 of its key (canonical JSON). The file's
metadata repeats the key and a checksum of the tensors, so a damaged file, a truncated one or
one that belongs to another key is recognised, reported and replaced rather than used.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

#: Bump when what is stored, or how keys are built, changes meaning.
FORMAT_VERSION = 1


def tensor_digest(tensor: torch.Tensor) -> str:
    """SHA-256 of a tensor's dtype, shape and bytes (bit-exact identity, device-independent)."""
    data = tensor.detach().cpu().contiguous()
    digest = hashlib.sha256(f"{data.dtype}{tuple(data.shape)}".encode())
    digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def folder_signature(folder: str | Path) -> str:
    """SHA-256 over every file's relative path, size and modification time in ``folder`` (contents unread).

    What identifies a local model folder in cache keys: cheap for a folder of several gigabytes,
    and changed by any file replaced, added, removed, renamed or rewritten (as ``make`` and
    ``rsync`` decide). Pin an identity of your own with ``--data.model_revision``.
    """
    root = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(root).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()


def _canonical(key: Mapping[str, Any]) -> str:
    return json.dumps({"format": FORMAT_VERSION, **key}, sort_keys=True, separators=(",", ":"))


def key_digest(key: Mapping[str, Any]) -> str:
    """SHA-256 of a key's canonical JSON: the entry's name."""
    return hashlib.sha256(_canonical(key).encode()).hexdigest()


def _checksum(tensors: Mapping[str, torch.Tensor]) -> str:
    return hashlib.sha256("".join(f"{n}:{tensor_digest(tensors[n])}" for n in sorted(tensors)).encode()).hexdigest()


class TensorCache:
    """Stores and finds tensors by key; a disabled cache (``root=None``) stores nothing.

    Args:
        root: The folder of entries (created on first store), or ``None`` to disable.

    Attributes:
        hits, misses, rejected: Counts of lookups found, not found, and found but unusable.
    """

    def __init__(self, root: str | Path | None) -> None:
        self.root = Path(root) if root is not None else None
        self.hits = self.misses = self.rejected = 0

    def path(self, key: Mapping[str, Any]) -> Path | None:
        """Where the entry of ``key`` lives (``None`` when disabled)."""
        if self.root is None:
            return None
        return self.root / f"{key_digest(key)[:40]}.safetensors"

    def load(self, key: Mapping[str, Any]) -> dict[str, torch.Tensor] | None:
        """The tensors stored under ``key``, or ``None`` if absent or unusable (with a warning)."""
        path = self.path(key)
        if path is None or not path.is_file():
            self.misses += 1
            return None
        tensors, problem = self._read(path, key)
        if problem is None:
            self.hits += 1
            return tensors
        self.rejected += 1
        warnings.warn(f"ignoring cache entry '{path}' ({problem}); computing it again", stacklevel=2)
        return None

    @staticmethod
    def _read(path: Path, key: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], str | None]:
        """The entry at ``path`` and what is wrong with it for ``key`` (``None``: nothing)."""
        try:
            tensors = load_file(path)
            with safe_open(path, "pt") as file:
                meta = file.metadata() or {}
        except (SafetensorError, OSError, ValueError, RuntimeError) as err:
            return {}, f"unreadable: {err}"
        if meta.get("key") != _canonical(key):
            return tensors, "stored for other settings"
        if meta.get("checksum") != _checksum(tensors):
            return tensors, "contents do not match their checksum"
        if not all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point()):
            return tensors, "non-finite values"
        return tensors, None

    def store(self, key: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> Path | None:
        """Write ``tensors`` under ``key`` atomically (a partial file is never left behind)."""
        path = self.path(key)
        if path is None:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
        meta = {"key": _canonical(key), "checksum": _checksum(tensors)}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata=meta)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path
