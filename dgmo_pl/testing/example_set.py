"""A small evaluation set built from real recordings: 0 dB two-source mixtures with known sources.

Usage: ``python scripts/make_eval_set.py OUT_DIR [--pairs N] [--seed S] [--shared DIR]``.
"""

from __future__ import annotations

import csv
import itertools
import os
import random
from pathlib import Path

from dgmo_pl.audio import frontend as fe
from dgmo_pl.audio.io import write_audio
from dgmo_pl.errors import InputError
from dgmo_pl.naming import slugify
from dgmo_pl.testing.mixing import mix_sources

__all__ = ["DEFAULT_SHARED", "Recording", "choose_pairs", "make_eval_set", "read_labels"]

#: The folder of real recordings (with its ``manifest.csv``): ``$DGMO_SHARED_AUDIO``, or
#: ``shared/audio`` beside the checkout.
DEFAULT_SHARED = Path(
    os.environ.get("DGMO_SHARED_AUDIO", Path(__file__).resolve().parents[2].parent / "shared" / "audio")
)

#: Columns of the manifest written.
COLUMNS = ("id", "mixture", "query", "source")

#: One recording of the shared folder: its file and its label (e.g. "dogs barking").
Recording = tuple[Path, str]


def read_labels(shared: str | os.PathLike) -> list[Recording]:
    """The recordings listed in ``shared/manifest.csv`` (columns ``file`` and ``label``).

    Raises:
        InputError: The manifest is missing or lacks those columns, or a file it lists is missing.
    """
    shared = Path(shared)
    manifest = shared / "manifest.csv"
    if not manifest.is_file():
        raise InputError(
            f"recordings manifest '{manifest}' does not exist: pass --shared, the folder of recordings "
            "with a manifest.csv (columns file, label)"
        )
    with manifest.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not {"file", "label"} <= set(reader.fieldnames or ()):
            raise InputError(
                f"recordings manifest '{manifest}', line 1: columns {reader.fieldnames}, expected file and label: "
                "fix its header"
            )
        recordings = []
        for row in reader:
            path = shared / row["file"].strip()
            if not path.is_file():
                raise InputError(
                    f"recordings manifest '{manifest}', line {reader.line_num}: file '{path}' does not exist: "
                    "fix the manifest or restore the file"
                )
            recordings.append((path, row["label"].strip()))
    return recordings


def choose_pairs(recordings: list[Recording], pairs: int, seed: int) -> list[tuple[Recording, Recording]]:
    """``pairs`` distinct pairs of recordings with different labels, ``(queried, other)``, chosen by ``seed``.

    The same recordings, count and seed always give the same pairs.

    Raises:
        InputError: ``pairs`` is below 1 or more than the distinct pairs available.
    """
    candidates = [(a, b) for a, b in itertools.combinations(sorted(recordings), 2) if a[1] != b[1]]
    if not 1 <= pairs <= len(candidates):
        raise InputError(
            f"pairs must be between 1 and {len(candidates)} (pairs of recordings with different labels), "
            f"got {pairs}: pass another --pairs"
        )
    rng = random.Random(seed)
    return [pair if rng.random() < 0.5 else pair[::-1] for pair in rng.sample(candidates, pairs)]


def make_eval_set(
    out_dir: str | os.PathLike, pairs: int = 6, seed: int = 0, shared: str | os.PathLike = DEFAULT_SHARED
) -> Path:
    """Write a small evaluation set of 0 dB two-source mixtures of the shared recordings.

    Each mixture is two recordings with different labels, each mixed to mono, resampled to
    16 kHz, looped or cut to 10.24 s and scaled to equal RMS, their sum peaking at 0.5
    (:func:`dgmo_pl.testing.mixing.mix_sources`); the first is the queried source, its label the query.
    Files are 16-bit WAV:

    * ``out_dir/mixtures/<id>.wav``: the mixture;
    * ``out_dir/sources/<id>.wav``: the queried source;
    * ``out_dir/others/<id>.wav``: the other source (mixture = source + other);
    * ``out_dir/manifest.csv``: columns ``id, mixture, query, source``, paths relative to
      ``out_dir`` (read it with :func:`dgmo_pl.evaluation.manifest.read_manifest`).

    Ids read ``<nn>-<query>-vs-<other label>``, e.g. ``01-dogs-barking-vs-male-speech``.

    Args:
        out_dir: Folder to write (created if needed; files of the same names are replaced).
        pairs: Number of mixtures.
        seed: Chooses the pairs and which of each pair is queried.
        shared: Folder of recordings with a ``manifest.csv`` (columns ``file``, ``label``).

    Returns:
        The path of the manifest written.

    Raises:
        InputError: The shared folder or its manifest is missing or malformed, or ``pairs`` is
            out of range.
    """
    out = Path(out_dir)
    spec = fe.SpectrogramConfig()
    rows = []
    for n, ((queried, query), (other, other_label)) in enumerate(choose_pairs(read_labels(shared), pairs, seed), 1):
        row_id = f"{n:02d}-{slugify(query)}-vs-{slugify(other_label)}"
        mixture, sources = mix_sources([queried, other], spec)
        write_audio(out / "mixtures" / f"{row_id}.wav", mixture, spec.sample_rate)
        write_audio(out / "sources" / f"{row_id}.wav", sources[0], spec.sample_rate)
        write_audio(out / "others" / f"{row_id}.wav", sources[1], spec.sample_rate)
        rows.append(
            {"id": row_id, "mixture": f"mixtures/{row_id}.wav", "query": query, "source": f"sources/{row_id}.wav"}
        )
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return manifest
