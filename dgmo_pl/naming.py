"""Names for output files and folders that are readable, portable and unique within a run."""

from __future__ import annotations

import re

#: Names Windows reserves for devices, whatever the extension.
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


def slugify(text: str, fallback: str = "separated", max_length: int = 60) -> str:
    """A file-name-safe version of ``text`` on every file system: lowercase ASCII, digits, dashes."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:max_length].strip("-") or fallback
    return f"{slug}-sound" if slug in _RESERVED else slug


def unique_slugs(texts: list[str]) -> list[str]:
    """One slug per text; texts that slugify alike get ``-2``, ``-3``... in order."""
    seen: dict[str, int] = {}
    slugs = []
    for text in texts:
        slug = slugify(text)
        seen[slug] = seen.get(slug, 0) + 1
        while seen[slug] > 1 and f"{slug}-{seen[slug]}" in seen:
            seen[slug] += 1
        slugs.append(slug if seen[slug] == 1 else f"{slug}-{seen[slug]}")
        seen.setdefault(slugs[-1], 1)
    return slugs
