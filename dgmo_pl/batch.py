"""Many recordings in one run: every audio file of a folder (or a list), each separated with every query.

Each recording gets a folder of its own under the run, named by its path relative to the input
folder (``sub/take1/``), holding what a single run holds (``<query>/<query>.wav``, logs,
checkpoints). A recording is done when its folder's ``done.json`` was made from the same file
(by content), queries and settings; re-running into the same folder skips it. A recording that
fails is reported and the others go on.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dgmo_pl.errors import InputError
from dgmo_pl.publish import file_digest, fresh_attempt, publish, read_record, write_text_atomically

#: File endings taken from an input folder (what libsndfile reads).
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au", ".caf", ".w64",
                  ".rf64")  # fmt: skip


def list_recordings(mixture: str | Sequence[str]) -> list[tuple[str, Path]]:
    """``(name, file)`` of each recording: a folder's audio files, or the files of a list, in order.

    Names are paths relative to the folder without the ending (``sub/take1``); the ending is kept
    where two files would share a name (``take1.wav``, ``take1.flac``). Hidden files and folders
    are left out.

    Raises:
        InputError: A listed file does not exist, or the folder holds no audio file.
    """
    if isinstance(mixture, str):
        folder = Path(mixture).expanduser()
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
                       and not any(part.startswith(".") for part in p.relative_to(folder).parts))  # fmt: skip
        if not files:
            raise InputError(
                f"--data.mixture folder '{folder}' holds no audio file ({', '.join(AUDIO_SUFFIXES)}): "
                "pass a folder of recordings"
            )
        relative = [p.relative_to(folder) for p in files]
    else:
        files = [Path(f).expanduser() for f in mixture]
        if missing := [str(f) for f in files if not f.is_file()]:
            raise InputError(f"--data.mixture lists '{missing[0]}', which does not exist: list existing audio files")
        relative = [Path(f.name) for f in files]
    stems = [r.with_suffix("").as_posix() for r in relative]
    names = [stem if stems.count(stem) == 1 else r.as_posix() for stem, r in zip(stems, relative, strict=True)]
    if len(set(names)) < len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise InputError(f"--data.mixture lists two files named '{twice}': give each recording its own file name")
    return list(zip(names, files, strict=True))


#: Data settings that name one recording's inputs, not how it is separated (left out of a recording's key).
PER_RECORDING = ("mixture", "query", "queries", "references", "cache_dir")


def recording_key(path: Path, queries: Sequence[str], settings: dict[str, object]) -> str:
    """A digest of what a recording's result depends on: the file's content, its queries and the settings."""
    what = {"mixture": file_digest(path), "queries": list(queries), "settings": settings}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class BatchReport:
    """What a batch did: recordings separated, skipped (already done), and failed (with the error)."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def separate_recordings(
    recordings: Sequence[tuple[str, Path]], output: Path, run: Callable[[Path, Path], object],
    key: Callable[[Path], str],
) -> BatchReport:
    """Run ``run(file, folder)`` for each recording not yet done in ``output``; failures are reported, not raised.

    Each attempt runs in a hidden folder beside the recording's and replaces it only when complete.

    Args:
        recordings: ``(name, file)`` pairs (see :func:`list_recordings`).
        output: The run folder.
        run: Separates one file into a folder.
        key: What a file's result depends on (its content and the settings), as a digest.
    """
    report = BatchReport()
    for name, path in recordings:
        folder = output / name
        digest = key(path)
        record = read_record(folder / "done.json")
        if record is not None and record.get("key") == digest:
            report.skipped.append(name)
            continue
        attempt = fresh_attempt(folder)
        try:
            run(path, attempt)
        except Exception as err:  # noqa: BLE001 - one recording's failure never stops the others
            shutil.rmtree(attempt, ignore_errors=True)
            message = str(err) if isinstance(err, InputError) else f"{type(err).__name__}: {err}"
            print(f"error: {path}: {message}", file=sys.stderr)
            report.failed.append((name, message))
            continue
        write_text_atomically(attempt / "done.json", json.dumps({"key": digest, "mixture": str(path)}, indent=2))
        publish(attempt, folder)
        report.done.append(name)
    return report
