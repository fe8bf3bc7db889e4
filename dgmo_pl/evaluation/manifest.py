"""Evaluation sets: which mixture to separate, with which query, against which true source.

Two sources of rows:

* :func:`read_manifest`: this project's CSV manifest (``mixture``, ``query``, optional
  ``source`` and ``id`` columns), for any set of recordings.
* :func:`read_audiosep`: the pre-mixed LASS benchmark released with AudioSep (Liu et al.,
  "Separate Anything You Describe"): AudioCaps, VGGSound, MUSIC, ESC-50, AudioSet and Clotho,
  read from the metadata CSVs and clip folders laid out as AudioSep's own evaluators expect them.

:func:`load_rows` picks one from the path: a ``.csv`` file or a folder.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from dgmo_pl.errors import InputError
from dgmo_pl.naming import unique_slugs

__all__ = [
    "AUDIOSEP_BENCHMARKS",
    "Row",
    "audiosep_benchmarks",
    "check_id",
    "load_rows",
    "read_audiosep",
    "read_manifest",
]

#: Columns a manifest must have.
REQUIRED_COLUMNS = ("mixture", "query")
#: What a row id may be: a plain name (it names the row's folder), never a path.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=,+-]{0,119}")
#: Names Windows reserves for devices (an id names a folder on any file system).
_RESERVED_IDS = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


def check_id(row_id: str, where: str) -> str:
    """``row_id`` if it is a plain name; otherwise an InputError that says where it is and why.

    A manifest is untrusted input: its ids become folder names under the evaluation's output, so
    an id must not be a path (``../x``, ``.``, ``a/b``) or anything a file system treats specially.
    """
    if not ID_PATTERN.fullmatch(row_id) or row_id.split(".")[0].lower() in _RESERVED_IDS:
        raise InputError(
            f"{where}: id {row_id!r} is not a plain name (1 to 120 letters, digits and . _ = , + -, starting with "
            "a letter or digit; ids name folders, never paths): rename it"
        )
    return row_id


@dataclass(frozen=True)
class Row:
    """One separation task of an evaluation set.

    Attributes:
        id: Name of the task, unique within its set (readable; safe in file names for the
            manifests this package writes).
        mixture: Audio file to separate (absolute, or as resolved from the manifest's folder).
        query: Text naming the sound to separate.
        source: The true queried source, time-aligned with the mixture; ``None`` when unknown
            (reference-free metrics only).
    """

    id: str
    mixture: Path
    query: str
    source: Path | None = None


# --- CSV plumbing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Record:
    """One data row of a CSV file: its cells and the (last) line it ends on."""

    line: int
    cells: list[str]


def _read_csv(path: Path, what: str) -> tuple[_Record, Iterator[_Record]]:
    """The header (names stripped) and the non-blank data rows of a CSV file.

    Raises:
        InputError: The file is missing, a folder, not UTF-8 text, not CSV, or has no header.
    """
    if path.is_dir():
        raise InputError(f"{what} '{path}' is a folder: pass the path of a .csv file")
    if not path.is_file():
        raise InputError(f"{what} '{path}' does not exist: pass the path of an existing .csv file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise InputError(f"{what} '{path}' is not UTF-8 text ({err.reason}): save it as UTF-8 CSV") from None
    reader = csv.reader(text.splitlines(keepends=True))
    try:
        header = next((row for row in reader if any(cell.strip() for cell in row)), None)
    except csv.Error as err:
        raise InputError(f"{what} '{path}', line {reader.line_num}: not valid CSV ({err}): fix that line") from None
    if header is None:
        raise InputError(f"{what} '{path}' is empty: write a header line (e.g. mixture,query,source) and rows")

    def records() -> Iterator[_Record]:
        try:
            for cells in reader:
                if any(cell.strip() for cell in cells):
                    yield _Record(reader.line_num, cells)
        except csv.Error as err:
            raise InputError(f"{what} '{path}', line {reader.line_num}: not valid CSV ({err}): fix that line") from None

    return _Record(reader.line_num, [name.strip() for name in header]), records()


def _existing_file(path: Path, csv_path: Path, line: int, column: str, what: str) -> Path:
    """``path`` if it is a file; otherwise an InputError naming the CSV file, line and column."""
    if path.is_file():
        return path
    problem = "is a folder" if path.is_dir() else "does not exist"
    raise InputError(
        f"{what} '{csv_path}', line {line}: {column} file '{path}' {problem}: "
        "fix the path (relative paths are read from the CSV file's folder) or add the file"
    )


def _check_unique_ids(ids: Sequence[str], lines: Sequence[int], csv_path: Path, what: str) -> None:
    """Raise an InputError naming both lines of the first id that occurs twice."""
    first: dict[str, int] = {}
    for row_id, line in zip(ids, lines, strict=True):
        if row_id in first:
            raise InputError(
                f"{what} '{csv_path}', line {line}: id {row_id!r} is already used on line {first[row_id]}: "
                "give every row its own id"
            )
        first[row_id] = line


# --- the project's manifest ---------------------------------------------------------------------


def _default_ids(texts: Sequence[str], taken: set[str]) -> list[str]:
    """Unique slugs of ``texts`` that also avoid the ids in ``taken`` (given explicitly)."""
    ids = []
    for slug in unique_slugs(list(texts)):
        candidate, n = slug, 1
        while candidate in taken:
            n += 1
            candidate = f"{slug}-{n}"
        taken.add(candidate)
        ids.append(candidate)
    return ids


def read_manifest(path: str | os.PathLike) -> list[Row]:
    """Read an evaluation manifest: a CSV file with a header line.

    Columns (names are matched without regard to case or surrounding spaces; others are
    ignored):

    * ``mixture`` (required): audio file to separate.
    * ``query`` (required): text naming the sound to separate.
    * ``source`` (optional): the true queried source; an empty cell means unknown.
    * ``id`` (optional): name of the row; an empty cell (or no column) gets a readable id made
      of the mixture's file stem and the query (``mix01-dog-barking``), with ``-2``, ``-3``...
      added where that would repeat an id.

    Relative paths are read from the folder holding the manifest.

    Args:
        path: The manifest file.

    Returns:
        The rows, in file order.

    Raises:
        InputError: The file is missing or not CSV; it lacks a required column (the message
            lists the columns found); it has no rows; a row has an empty mixture or query cell; an
            id repeats or is not a plain name (:func:`check_id`);
            or a mixture or source file does not exist. Each names the file and the line.
    """
    path = Path(path)
    what = "manifest"
    head, records = _read_csv(path, what)
    header = head.cells
    columns = {name.lower(): i for i, name in reversed(list(enumerate(header)))}
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        found = ", ".join(repr(name) for name in header if name) or "none"
        absent = " or ".join(repr(name) for name in missing)
        raise InputError(
            f"{what} '{path}', line {head.line}: no {absent} column (columns found: {found}): "
            "the header must name at least the columns mixture and query"
        )
    folder = path.parent

    def cell(cells: list[str], column: str) -> str:
        i = columns.get(column)
        return cells[i].strip() if i is not None and i < len(cells) else ""

    lines: list[int] = []
    given_ids: list[str] = []
    mixtures: list[Path] = []
    queries: list[str] = []
    sources: list[Path | None] = []
    for record in records:
        for column in REQUIRED_COLUMNS:
            if not cell(record.cells, column):
                raise InputError(f"{what} '{path}', line {record.line}: the {column} cell is empty: fill it in")
        mixture = folder / Path(cell(record.cells, "mixture")).expanduser()
        mixtures.append(_existing_file(mixture, path, record.line, "mixture", what))
        source = cell(record.cells, "source")
        sources.append(
            _existing_file(folder / Path(source).expanduser(), path, record.line, "source", what) if source else None
        )
        queries.append(cell(record.cells, "query"))
        given_ids.append(cell(record.cells, "id"))
        lines.append(record.line)

    explicit = [(row_id, line) for row_id, line in zip(given_ids, lines, strict=True) if row_id]
    for row_id, line in explicit:
        check_id(row_id, f"{what} '{path}', line {line}")
    _check_unique_ids([i for i, _ in explicit], [line for _, line in explicit], path, what)
    unnamed = [k for k, row_id in enumerate(given_ids) if not row_id]
    generated = _default_ids([f"{mixtures[k].stem} {queries[k]}" for k in unnamed], {i for i, _ in explicit})
    ids = list(given_ids)
    for k, row_id in zip(unnamed, generated, strict=True):
        ids[k] = row_id
    rows = [Row(i, m, q, s) for i, m, q, s in zip(ids, mixtures, queries, sources, strict=True)]
    return _check_not_empty(rows, path, what)


# --- AudioSep's benchmark -----------------------------------------------------------------------

#: A metadata row turned into (id, mixture, query, source) with paths relative to the clip folder.
_Parse = Callable[[list[str], int], tuple[str, PurePosixPath, str, PurePosixPath]]


@dataclass(frozen=True)
class _Benchmark:
    """How one benchmark of AudioSep's evaluation set is laid out.

    Attributes:
        name: Folder of its clips under ``data/``, stem of its metadata CSV, prefix of its ids.
        title: The data set's usual name.
        header: The first columns its metadata CSV must have, in order.
        parse: Turns a data row into ``(id, mixture, query, source)``.
    """

    name: str
    title: str
    header: tuple[str, ...]
    parse: _Parse

    @property
    def metadata(self) -> str:
        """File name of the metadata CSV."""
        return f"{self.name}_eval.csv"


def _indexed_pair(name: str) -> _Parse:
    """Rows ``idx,caption,...`` whose clips are ``mixture-<idx>.wav`` and ``segment-<idx>.wav``."""

    def parse(cells: list[str], line: int) -> tuple[str, PurePosixPath, str, PurePosixPath]:
        idx = cells[0].strip()
        mixture, source = PurePosixPath(f"mixture-{idx}.wav"), PurePosixPath(f"segment-{idx}.wav")
        return f"{name}-{idx}", mixture, cells[1].strip(), source

    return parse


def _under(path: str, folder: str) -> PurePosixPath:
    """``path`` relative to the clip folder: the part after its last ``folder`` component, if any."""
    parts = PurePosixPath(path.strip().replace("\\", "/")).parts
    if folder in parts:
        parts = parts[len(parts) - parts[::-1].index(folder):]
    return PurePosixPath(*parts)


def _parse_vggsound(cells: list[str], line: int) -> tuple[str, PurePosixPath, str, PurePosixPath]:
    file_id, mix_wav, s0_wav, s0_text = (cell.strip() for cell in cells[:4])
    return f"vggsound-{file_id}", _under(mix_wav, "vggsound"), s0_text, _under(s0_wav, "vggsound")


_AUDIOSET_NAME = re.compile(r"class_id=(\d+),index=(\d+)")


def _parse_audioset(cells: list[str], line: int) -> tuple[str, PurePosixPath, str, PurePosixPath]:
    # src_wav is the source clip and noise_wav the *mixture* ("...,mixture.wav") in this file.
    _, caption, src_wav, noise_wav = (cell.strip() for cell in cells[:4])
    found = _AUDIOSET_NAME.search(src_wav)
    row_id = f"audioset-{found[1]}-{found[2]}" if found else f"audioset-line{line}"
    return row_id, _under(noise_wav, "audioset"), caption, _under(src_wav, "audioset")


#: The benchmarks of AudioSep's evaluation set, in the order of its README's results.
_BENCHMARKS = (
    _Benchmark("audiocaps", "AudioCaps", ("idx", "caption"), _indexed_pair("audiocaps")),
    _Benchmark("vggsound", "VGGSound", ("file_id", "mix_wav", "s0_wav", "s0_text"), _parse_vggsound),
    _Benchmark("music", "MUSIC", ("idx", "caption"), _indexed_pair("music")),
    _Benchmark("esc50", "ESC-50", ("idx", "caption"), _indexed_pair("esc50")),
    _Benchmark("audioset", "AudioSet", ("idx", "caption", "src_wav", "noise_wav"), _parse_audioset),
    _Benchmark("clotho", "Clotho", ("idx", "caption"), _indexed_pair("clotho")),
)

#: Names of the benchmarks :func:`read_audiosep` reads.
AUDIOSEP_BENCHMARKS: tuple[str, ...] = tuple(b.name for b in _BENCHMARKS)


def _layouts(folder: Path) -> list[tuple[Path, Path]]:
    """Where ``(metadata folder, data folder)`` may lie for a ``folder`` the user names.

    In order: an AudioSep checkout (``evaluation/metadata``, ``evaluation/data``), its
    ``evaluation`` folder (``metadata``, ``data``), its ``evaluation/data`` folder (metadata in
    the sibling ``metadata``), and a flat folder holding the CSVs beside the clip folders.
    """
    return [
        (folder / "evaluation" / "metadata", folder / "evaluation" / "data"),
        (folder / "metadata", folder / "data"),
        (folder.parent / "metadata", folder),
        (folder, folder),
    ]


def _locate(folder: Path) -> tuple[dict[str, tuple[Path, Path]], list[str]]:
    """Find each benchmark's metadata CSV and clip folder under ``folder``.

    Returns:
        ``({name: (metadata csv, clip folder)}, notes)``: the notes say which metadata files were
        found without their clip folder.
    """
    found: dict[str, tuple[Path, Path]] = {}
    notes: list[str] = []
    for bench in _BENCHMARKS:
        for metadata_dir, data_dir in _layouts(folder):
            csv_path, clips = metadata_dir / bench.metadata, data_dir / bench.name
            if csv_path.is_file() and clips.is_dir():
                found[bench.name] = (csv_path, clips)
                break
        else:
            notes += [
                f"'{metadata_dir / bench.metadata}' is there but its clip folder '{data_dir / bench.name}' is not"
                for metadata_dir, data_dir in _layouts(folder)
                if (metadata_dir / bench.metadata).is_file()
            ][:1]
    return found, notes


def audiosep_benchmarks(folder: str | os.PathLike) -> list[str]:
    """Names of the AudioSep benchmarks (see :data:`AUDIOSEP_BENCHMARKS`) present in ``folder``.

    A benchmark is present when its metadata CSV (``<name>_eval.csv``) and its clip folder
    (``<name>/``) are found in one of the places :func:`read_audiosep` looks.
    """
    found, _ = _locate(Path(folder).expanduser())
    return [name for name in AUDIOSEP_BENCHMARKS if name in found]


def _read_benchmark(bench: _Benchmark, csv_path: Path, clips: Path) -> list[Row]:
    """Rows of one benchmark, its files checked."""
    what = f"{bench.title} metadata"
    head, records = _read_csv(csv_path, what)
    header = head.cells
    start = header[: len(bench.header)]
    if tuple(name.lower() for name in start) != bench.header:
        raise InputError(
            f"{what} '{csv_path}', line {head.line}: header starts with {','.join(start) or 'nothing'}, "
            f"expected {','.join(bench.header)}: pass the metadata CSV released with AudioSep's evaluation set"
        )
    rows, lines = [], []
    for record in records:
        if len(record.cells) < len(bench.header):
            raise InputError(
                f"{what} '{csv_path}', line {record.line}: {len(record.cells)} columns, expected at least "
                f"{len(bench.header)} ({','.join(bench.header)}): fix that line"
            )
        row_id, mixture, query, source = bench.parse(record.cells, record.line)
        check_id(row_id, f"{what} '{csv_path}', line {record.line}")
        if not query:
            raise InputError(
                f"{what} '{csv_path}', line {record.line}: the query ({bench.header[1]}) is empty: fill it in"
            )
        rows.append(Row(
            id=row_id,
            mixture=_existing_file(clips / mixture, csv_path, record.line, "mixture", what),
            query=query,
            source=_existing_file(clips / source, csv_path, record.line, "source", what),
        ))
        lines.append(record.line)
    _check_unique_ids([row.id for row in rows], lines, csv_path, what)
    return rows


def _check_not_empty(rows: list[Row], path: Path, what: str) -> list[Row]:
    if not rows:
        raise InputError(f"{what} '{path}' has a header but no rows: add one line per mixture and query")
    return rows


def read_audiosep(folder: str | os.PathLike, benchmarks: Sequence[str] | None = None) -> list[Row]:
    """Read AudioSep's evaluation set (the LASS benchmark of "Separate Anything You Describe").

    The layout is the one AudioSep's evaluators (``evaluation/evaluate_*.py`` in the
    Audio-AGI/AudioSep repository) read: the metadata CSVs in ``evaluation/metadata/`` and the
    pre-mixed clips, downloaded separately, in ``evaluation/data/<name>/``:

    * ``audiocaps_eval.csv`` (``idx,caption,labels,src_wav,noise_wav``): clips
      ``data/audiocaps/mixture-<idx>.wav`` and ``segment-<idx>.wav`` (the source); query: the
      caption. Ids ``audiocaps-<idx>``.
    * ``vggsound_eval.csv`` (``file_id,mix_wav,s0_wav,s0_text,s1_wav,s1_text``): clips at the
      paths in ``mix_wav`` and ``s0_wav`` (the source), relative to ``data/vggsound/``
      (e.g. ``data/vggsound/data/mix_wav/<file_id>.wav``); query: ``s0_text``. Ids
      ``vggsound-<file_id>``.
    * ``music_eval.csv`` and ``esc50_eval.csv`` (``idx,caption,src_wav,noise_wav``): clips
      ``data/<name>/mixture-<idx>.wav`` and ``segment-<idx>.wav``; query: the instrument or
      class name in ``caption``. Ids ``music-<idx>``, ``esc50-<idx>``.
    * ``audioset_eval.csv`` (``idx,caption,src_wav,noise_wav``): ``src_wav`` is the source and
      ``noise_wav`` the mixture, both given from the checkout's root
      (``evaluation/data/audioset/class_id=<k>/class_id=<k>,index=<i>,source.wav``) and read
      here from ``data/audioset/``; query: the class label in ``caption``. Ids
      ``audioset-<k>-<i>``. (AudioSep's own evaluator walks the class folders instead and
      reports the mean over classes of each class's median.)
    * ``clotho_eval.csv`` (``idx,caption,src_wav,noise_wav1,...``): clips
      ``data/clotho/mixture-<idx>.wav`` and ``segment-<idx>.wav``; query: the caption. Ids
      ``clotho-<idx>``.

    The clips are 32 kHz in AudioSep's release, which scores them mono at 32 kHz.

    ``folder`` may be an AudioSep checkout, its ``evaluation`` folder, its ``evaluation/data``
    folder (metadata read from the sibling ``metadata`` folder), or one folder holding the CSVs
    beside the clip folders. A benchmark counts as present when both its CSV and its clip
    folder are there.

    Args:
        folder: Where the benchmark lies (see above).
        benchmarks: Names among :data:`AUDIOSEP_BENCHMARKS` to read; ``None`` reads every one
            present.

    Returns:
        The rows of the benchmarks read, benchmark by benchmark in the order of
        :data:`AUDIOSEP_BENCHMARKS`, each in its CSV's order; every row has a source.

    Raises:
        InputError: ``folder`` does not exist or holds no benchmark (the message says what was
            looked for); a benchmark asked for is unknown or absent; a metadata file has another
            header; or a clip it names does not exist (naming the CSV and line).
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        problem = "is a file" if folder.exists() else "does not exist"
        raise InputError(
            f"AudioSep evaluation folder '{folder}' {problem}: pass an AudioSep checkout or its evaluation/ "
            "folder with the evaluation data in evaluation/data/, or a manifest .csv"
        )
    if benchmarks is not None:
        unknown = [name for name in benchmarks if name not in AUDIOSEP_BENCHMARKS]
        if unknown:
            raise InputError(
                f"unknown AudioSep benchmark {', '.join(map(repr, unknown))}: "
                f"pick among {', '.join(AUDIOSEP_BENCHMARKS)}"
            )
    found, notes = _locate(folder)
    if not found:
        looked = "; ".join(f"'{m}/<name>_eval.csv' with '{d}/<name>/'" for m, d in _layouts(folder))
        extra = f" ({'; '.join(notes)})" if notes else ""
        raise InputError(
            f"no AudioSep benchmark found in '{folder}'{extra}: looked for {looked}, for <name> in "
            f"{', '.join(AUDIOSEP_BENCHMARKS)}. Pass an AudioSep checkout (or its evaluation/ folder) with the "
            "evaluation data downloaded into evaluation/data/, as AudioSep's README describes, or a manifest .csv"
        )
    wanted = list(AUDIOSEP_BENCHMARKS) if benchmarks is None else list(dict.fromkeys(benchmarks))
    absent = [name for name in wanted if name not in found]
    if benchmarks is not None and absent:
        raise InputError(
            f"AudioSep benchmark {', '.join(map(repr, absent))} not found in '{folder}' (found: "
            f"{', '.join(n for n in AUDIOSEP_BENCHMARKS if n in found)}): download its clips into data/<name>/ "
            "beside metadata/<name>_eval.csv, or leave it out"
        )
    by_name = {bench.name: bench for bench in _BENCHMARKS}
    rows: list[Row] = []
    for name in (n for n in AUDIOSEP_BENCHMARKS if n in wanted and n in found):
        rows += _read_benchmark(by_name[name], *found[name])
    return _check_not_empty(rows, folder, "AudioSep evaluation folder")


def load_rows(path: str | os.PathLike) -> list[Row]:
    """Rows of an evaluation set, a manifest or a benchmark folder.

    A ``.csv`` file is a manifest (:func:`read_manifest`), a folder AudioSep's benchmark
    (:func:`read_audiosep`).

    Raises:
        InputError: ``path`` does not exist, is a file other than ``.csv``, or what the reader
            raises.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        return read_audiosep(path)
    if path.suffix.lower() == ".csv":
        return read_manifest(path)
    problem = "does not exist" if not path.exists() else "is not a .csv file"
    raise InputError(
        f"evaluation set '{path}' {problem}: pass a manifest .csv (columns mixture, query, source, id) "
        "or a folder holding AudioSep's evaluation set"
    )
