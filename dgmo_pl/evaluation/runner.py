"""Evaluating a manifest: separate each row, score it, keep the results on disk, summarise.

Each row's results live in ``<output>/rows/<id>/``: the separation run, and ``metrics.json``
(written last, atomically) once the row is done, or ``error.json`` if it failed. A re-run skips
the rows whose ``metrics.json`` was made from the same files, query and settings, and does the
others again, so an interrupted evaluation finishes where it stopped and a changed row is never
reported with its old scores. Ids are plain names (checked), so nothing outside ``rows/`` is
touched. Rows are sharded across processes by index (``rank::world``); any process can
then merge what is on disk into the reports.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import statistics
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch

from dgmo_pl.audio import frontend as fe
from dgmo_pl.audio.io import read_audio
from dgmo_pl.evaluation.manifest import Row, check_id
from dgmo_pl.evaluation.metrics import ClapScorer, separation_metrics
from dgmo_pl.publish import file_digest, fresh_attempt, publish, read_record, write_text_atomically

#: Separates one row into a folder; returns the separated file.
Separate = Callable[[Row, Path], Path]
#: Per-row metrics, in report order.
METRICS = ("sdr", "sdri", "si_sdr", "si_sdri", "clap_score")
#: How the separated files' references are made in an evaluation: by the diffusion model (DGMO)
#: or from each row's true source (isolates the mask optimisation).
ReferenceMode = Literal["diffusion", "true_source"]
#: The scoring conventions' names (see :data:`SCORING`).
ScoringName = Literal["output", "dgmo", "audiosep"]


class Scoring(NamedTuple):
    """Where a scoring convention compares signals (ALGORITHM.md section 4: say which).

    Attributes:
        rate: Sample rate in Hz (None: the separated file's).
        mono: Whether both signals are mixed to mono.
        seconds: Seconds kept from the start (None: all).
        text: The convention in words, for reports.
    """

    rate: int | None
    mono: bool
    seconds: float | None
    text: str


#: The scoring conventions, the one table of them.
SCORING: dict[str, Scoring] = {
    "output": Scoring(None, False, None, "the separated files' rate and channels, full length"),
    "dgmo": Scoring(16_000, True, 10.24, "16 kHz mono, first 10.24 s (the DGMO paper's)"),
    "audiosep": Scoring(32_000, True, None, "32 kHz mono, full clips (AudioSep's)"),
}


def row_folder(output: Path, row: Row) -> Path:
    """The folder of one row's outputs under ``output``: ``rows/<id>`` (ids are checked plain names)."""
    check_id(row.id, f"row {row.id!r}")
    return output / "rows" / row.id


def row_key(row: Row, settings: Mapping[str, Any], scoring: str) -> str:
    """What a row's result depends on, as a digest: its files' contents, query, the settings and scoring."""
    what = {
        "id": row.id, "query": row.query, "mixture": file_digest(row.mixture),
        "source": file_digest(row.source) if row.source is not None else None,
        "settings": settings, "scoring": scoring,
    }  # fmt: skip
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


def _finished(folder: Path, key: str, row: Row) -> bool:
    """Whether the row's folder holds a readable result made from exactly this key (else it is done again)."""
    path = folder / "metrics.json"
    if not path.is_file():
        return False
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        print(f"warning: '{path}' is unreadable ({type(err).__name__}): row {row.id} is separated again")
        return False
    if not isinstance(record, dict) or record.get("key") != key:
        print(f"row {row.id} changed since it was scored (its files, query or the settings): separated again")
        return False
    return True


def shard(rows: list[Row], rank: int, world: int) -> list[Row]:
    """The rows process ``rank`` of ``world`` evaluates: every ``world``-th from ``rank``."""
    return rows[rank::world]


def aligned(estimate: Path, other: Path, what: str, scoring: str = "output") -> tuple[torch.Tensor, torch.Tensor]:
    """``(estimate, other)`` at one rate, with the same channels and length: ``[C, N]`` each.

    With ``scoring`` ``output``, ``other`` (the mixture or the true source) is resampled to the
    estimate's rate, and if the channel counts differ both are mixed to mono; ``dgmo`` and
    ``audiosep`` bring both to their convention's rate, mono (and length). Both are then cut to
    the shorter length.
    """
    return _align(*read_audio(estimate, "separated file"), *read_audio(other, what), scoring)


def _align(
    est: torch.Tensor, est_rate: int, ref: torch.Tensor, ref_rate: int, scoring: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`aligned` on waveforms already read: ``[C, N]`` each, with their rates."""
    rate, mono, seconds, _ = SCORING[scoring]
    rate = rate or est_rate
    est, ref = fe.resample(est, est_rate, rate), fe.resample(ref, ref_rate, rate)
    if mono or est.shape[0] != ref.shape[0]:
        est, ref = est.mean(0, keepdim=True), ref.mean(0, keepdim=True)
    n = min(est.shape[-1], ref.shape[-1], round(seconds * rate) if seconds else est.shape[-1])
    return est[..., :n].double(), ref[..., :n].double()


def score_row(row: Row, separated: Path, scorer: ClapScorer | None, scoring: str = "output") -> dict[str, float]:
    """The row's metrics: SDR, SDRi, SI-SDR, SI-SDRi against its true source (if any), CLAPScore (if a model)."""
    metrics: dict[str, float] = {}
    audio, rate = read_audio(separated, "separated file")
    if row.source is not None:
        estimate, source = _align(audio, rate, *read_audio(row.source, "source"), scoring)
        _, mixture = _align(audio, rate, *read_audio(row.mixture, "mixture"), scoring)
        metrics.update(separation_metrics(mixture.float(), source.float(), estimate.float()))
    if scorer is not None:
        metrics["clap_score"] = scorer.score(audio.mean(0), rate, row.query)
    return metrics


def evaluate_rows(
    rows: list[Row], output: Path, separate: Separate, scorer: ClapScorer | None, process: int = 0,
    scoring: str = "output", settings: Mapping[str, Any] | None = None,
) -> None:
    """Separate and score each row not yet done, recording failures instead of stopping.

    A row is done when ``rows/<id>/metrics.json`` is readable and was made from the same files
    (by content), query, ``settings`` and ``scoring``; otherwise it is separated again, into a
    fresh folder beside it that replaces the old one only once complete (a finished result is
    never deleted before its replacement is in place). ``process`` (the evaluating process's
    rank) and the ``scoring`` convention (see :data:`SCORING`) are recorded with each result.
    """
    for row in rows:
        folder = row_folder(output, row)
        key = row_key(row, settings or {}, scoring)
        if _finished(folder, key, row):
            continue
        attempt = fresh_attempt(folder)
        try:
            separated = separate(row, attempt)
            record = {"id": row.id, "query": row.query, "output": str(folder / separated.relative_to(attempt)),
                      "process": process, "scoring": scoring, "key": key,
                      **score_row(row, separated, scorer, scoring)}  # fmt: skip
            write_text_atomically(attempt / "metrics.json", json.dumps(record, indent=2))
        except Exception as err:  # noqa: BLE001 - every failure is recorded and counted, never dropped
            error = {"id": row.id, "query": row.query, "error": f"{type(err).__name__}: {err}",
                     "traceback": traceback.format_exc(), "key": key}  # fmt: skip
            write_text_atomically(attempt / "error.json", json.dumps(error, indent=2))
            print(f"row {row.id} failed: {error['error']}")
        publish(attempt, folder)


def collect(rows: list[Row], output: Path) -> list[dict[str, Any]]:
    """Every row's result from disk, in manifest order: metrics, or the error, or ``missing``."""
    results = []
    for row in rows:
        folder = row_folder(output, row)
        if (record := read_record(folder / "metrics.json")) is not None:
            results.append({"status": "ok", **record})
        elif (error := read_record(folder / "error.json")) is not None:
            results.append({"id": row.id, "query": row.query, "status": "failed", "error": error.get("error", "?")})
        else:
            results.append({"id": row.id, "query": row.query, "status": "failed", "error": "not evaluated"})
    return results


def summarise(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per metric: mean, median and count over the rows that have it; then the failures."""
    summary = []
    for metric in METRICS:
        values = [r[metric] for r in results if r["status"] == "ok" and metric in r]
        if values:
            summary.append({"metric": metric, "mean": statistics.fmean(values),
                            "median": statistics.median(values), "count": len(values)})  # fmt: skip
    failures = sum(r["status"] != "ok" for r in results)
    summary.append({"metric": "failures", "mean": math.nan, "median": math.nan, "count": failures})
    return summary


def _csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def markdown(summary: list[dict[str, Any]]) -> str:
    """The summary as a Markdown table."""
    lines = ["| metric | mean | median | count |", "| --- | ---: | ---: | ---: |"]
    for s in summary:
        if s["metric"] == "failures":
            lines.append(f"| failures | | | {s['count']} |")
        else:
            lines.append(f"| {s['metric']} | {s['mean']:.3f} | {s['median']:.3f} | {s['count']} |")
    return "\n".join(lines) + "\n"


def write_reports(
    results: list[dict[str, Any]], summary: list[dict[str, Any]], output: Path, scoring: str = "output"
) -> list[Path]:
    """Write the evaluation's reports.

    ``results.csv`` (one line per row), ``summary.csv``, ``summary.md`` (saying how signals were
    compared) and TensorBoard scalars.
    """
    columns = ["id", "query", "status", *METRICS, "output", "error"]
    paths = [
        write_text_atomically(output / "results.csv", _csv(results, columns)),
        write_text_atomically(output / "summary.csv", _csv(summary, ["metric", "mean", "median", "count"])),
        write_text_atomically(output / "summary.md", f"Scored: {scoring} ({SCORING[scoring].text})\n\n"
                              f"{markdown(summary)}"),
    ]
    _tensorboard(results, summary, output / "tensorboard")
    return paths


def _tensorboard(results: list[dict[str, Any]], summary: list[dict[str, Any]], folder: Path) -> None:
    """Per-row metrics at the row's index, and the summary's means (step 0), in a fresh event file."""
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(folder)) as writer:
        for index, result in enumerate(results):
            for metric in METRICS:
                if result["status"] == "ok" and metric in result:
                    writer.add_scalar(f"rows/{metric}", result[metric], index)
        for s in summary:
            value = s["count"] if s["metric"] == "failures" else s["mean"]
            writer.add_scalar(f"summary/{s['metric']}", value, 0)
        writer.add_text("summary", markdown(summary), 0)
