"""Finished work put in place whole: attempts in hidden folders beside their destination, then a rename.

Shared by the evaluation's rows and a batch of recordings: a result is keyed on what made it, an
attempt never touches the finished result it may replace, and the replacement happens only once
the attempt is complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any


def write_text_atomically(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in its folder (never half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def read_record(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None when it is missing, unreadable or not an object."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def fresh_attempt(folder: Path) -> Path:
    """A new hidden folder beside ``folder`` for an attempt at it; earlier unfinished attempts at it removed."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    mine = re.compile(rf"\.{re.escape(folder.name)}\.attempt-[A-Za-z0-9_]{{8}}")  # not another name's attempts
    for stale in folder.parent.glob(f".{folder.name}.attempt-*"):
        if mine.fullmatch(stale.name) and stale.is_dir():
            shutil.rmtree(stale)
    return Path(tempfile.mkdtemp(prefix=f".{folder.name}.attempt-", dir=folder.parent))


def publish(attempt: Path, folder: Path) -> None:
    """Put a finished attempt in ``folder``'s place; an earlier result is removed only once the new one is there."""
    old = None
    if folder.exists():
        old = folder.with_name(f".{folder.name}.replaced-{os.getpid()}-{time.time_ns()}")
        os.replace(folder, old)
    os.replace(attempt, folder)
    if old is not None:
        shutil.rmtree(old)
