"""What the page accepts: the checks on a request's recording and queries, before any work starts."""

from __future__ import annotations

import math
from pathlib import Path

from dgmo_pl.audio.io import scan_audio
from dgmo_pl.errors import InputError

#: Queries a request may hold: the page has this many output slots, plus the residual's.
MAX_QUERIES = 4


def parse_queries(text: str | None) -> list[str]:
    """The queries of the page's text box: one a line, blank lines dropped, spaces trimmed.

    Raises:
        InputError: No query, or more than :data:`MAX_QUERIES`.
    """
    queries = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not queries:
        raise InputError('no query: type what to separate, e.g. "dog barking" (one query a line)')
    if len(queries) > MAX_QUERIES:
        raise InputError(f"{len(queries)} queries: the page separates at most {MAX_QUERIES} at once")
    return queries


def check_recording(path: str | Path | None, max_seconds: float) -> float:
    """Check the uploaded or recorded file as a run would, and its length against the app's limit.

    Args:
        path: The file the page received (None when nothing was uploaded).
        max_seconds: The longest recording the app takes (``--max-seconds``).

    Returns:
        The recording's length in seconds.

    Raises:
        InputError: No file, not audio (or empty, silent, truncated), or longer than ``max_seconds``.
    """
    if path is None:
        raise InputError("no recording: upload an audio file or record one first")
    info = scan_audio(path, "recording")
    seconds = info.frames / info.sample_rate
    if seconds > max_seconds:
        raise InputError(f"the recording is {seconds:.1f} s long: this app takes at most {max_seconds:g} s "
                         "(--max-seconds); trim it, or use `dgmo-pl fit` for long recordings")  # fmt: skip
    return seconds


def whole_number(name: str, value: float | None, minimum: int = 1) -> int:
    """A setting of the page as a whole number of at least ``minimum``.

    Raises:
        InputError: Empty, not whole, or below ``minimum``.
    """
    if value is None or not math.isfinite(value) or value != int(value) or value < minimum:
        raise InputError(f"{name} is {value}: it must be a whole number of at least {minimum}")
    return int(value)
