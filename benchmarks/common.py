"""Measurement helpers shared by the benchmark scripts."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

MIB = 1024 * 1024


def peak_rss_mib() -> float:
    """This process's peak resident set size so far, MiB.

    On Linux, ``VmHWM`` of ``/proc/self/status``: ``resource.getrusage``'s ``ru_maxrss`` carries
    the parent's peak over fork and exec, so a child of a large parent would report the parent's.
    Elsewhere ``ru_maxrss`` (bytes on macOS, KiB otherwise).
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024
