"""Peak memory of separating a long recording: a 10-minute recording against a 1-minute one.

A recording longer than the model's 10.24 s is cut into overlapping windows
(``data.window_overlap``), ``data.windows_per_fit`` windows are optimised together in one fit,
windows are read from the file one at a time and the cross-faded output is streamed to disk; so
peak memory should be bounded by the window batch, not by the recording's length. This prints
one table, every figure measured in this run:

* 44.1 kHz stereo 0 dB mixtures of two real recordings (a dog barking and a man speaking, each
  looped to length and panned to its own place, ``dgmo_pl.testing.mixing.mix_panned``), 16-bit PCM, of
  each duration in ``--minutes`` (1 and 10), each source also written as its own file;
* for each duration and mode, the real command line (``main.py fit --config configs/dgmo.yaml``,
  default ``windows_per_fit`` and ``window_overlap``, few mask steps) in a fresh Python process
  (this script with ``--worker``), so that its peak memory is its own: the peak resident set
  size (``VmHWM`` of ``/proc/self/status``, read by the child at its end; ``getrusage`` would
  carry the parent's peak over fork and exec), the wall time, the windows (from the window
  plan) and fits (window-batch folders of the run), and whether the separated file has the
  input's frames, rate and channels (``soundfile.info``);
* modes: ``true-source`` (``--data.references`` the true dog source, no diffusion model) and
  ``tiny`` (the tiny, randomly initialised AudioLDM of ``dgmo_pl.testing.tiny``, 3 DDIM steps, K = 2,
  references cached in the temporary folder);
* then, per mode, the ratio of the longest recording's peak RSS to the shortest's (the claim:
  within 1.5x).

Usage::

    python benchmarks/long_recording_memory.py                       # 1 and 10 minutes, both modes
    python benchmarks/long_recording_memory.py --minutes 1,3 --modes true-source
    python benchmarks/long_recording_memory.py --threads 0 --keep /tmp/long-recordings

Each fit's trainer and mask module refer to each other; ``separate()`` collects them after
every fit, since Python's collector would otherwise let about 33 MiB per fit (at 4 windows per
fit) pile up across the fits of a long recording.

The child runs PyTorch on one CPU thread unless told otherwise (``--threads 0``: PyTorch's own
count): on a machine whose cores other processes also use, more threads can slow the runs down
many times over (PyTorch's threads waiting on a descheduled sibling), and the wall times are
then one core's.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import yaml  # noqa: E402
from common import peak_rss_mib  # noqa: E402

#: The two recordings mixed: the queried sound (its file is the true-source reference) first.
TARGET = "ovos__dogs-barking__1.wav"
INTERFERER = "whisper__male-speech__1.wav"
QUERY = "dog barking"
SAMPLE_RATE = 44100
CHANNELS = 2
CONFIG = REPO / "configs" / "dgmo.yaml"
MODES = ("true-source", "tiny")
#: Few mask steps, so that a 10-minute recording runs in minutes (2 rounds x 5 Adam steps a fit).
FAST = [
    "--data.steps_per_round", "5", "--data.steps_per_batch", "5", "--trainer.max_epochs", "2",
    "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
]  # fmt: skip
#: The tiny model's reference generation: 3 DDIM steps, K = 2.
TINY = ["--data.ddim_steps", "3", "--data.num_references", "2"]


def shared_audio() -> Path:
    """The folder of shared recordings: ``$DGMO_SHARED_AUDIO`` or ``../shared/audio``."""
    return Path(os.environ.get("DGMO_SHARED_AUDIO", REPO.parent / "shared" / "audio"))


def default_windows() -> tuple[float, int]:
    """``(window_overlap seconds, windows_per_fit)`` of configs/dgmo.yaml (the runs keep them)."""
    data = yaml.safe_load(CONFIG.read_text())["data"]
    return float(data["window_overlap"]), int(data["windows_per_fit"])


# --- inputs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inputs:
    """One duration's files."""

    minutes: float
    mixture: Path
    target: Path  # the dog source alone, the true-source reference
    interferer: Path


def make_inputs(folder: Path, minutes: float, audio: Path) -> Inputs:
    """Write the 44.1 kHz stereo 0 dB mixture of ``minutes`` minutes and its two sources."""
    from dgmo_pl.audio.io import write_audio
    from dgmo_pl.testing.mixing import mix_panned

    stem = f"{minutes:g}min"
    mixture, sources = mix_panned([audio / TARGET, audio / INTERFERER], minutes * 60, SAMPLE_RATE, CHANNELS)
    paths = [folder / f"mixture_{stem}.wav", folder / f"dog_{stem}.wav", folder / f"speech_{stem}.wav"]
    for path, wave in zip(paths, [mixture, sources[0], sources[1]], strict=True):
        write_audio(path, wave, SAMPLE_RATE, "PCM_16")
    return Inputs(minutes, *paths)


def plan_windows(mixture: Path, overlap: float) -> int:
    """Windows the run cuts ``mixture`` into (its plan at the model's rate, as ``open_recording`` makes it)."""
    import soundfile as sf

    from dgmo_pl.audio import frontend as fe
    from dgmo_pl.audio.windows import WindowPlan

    spec, info = fe.SpectrogramConfig(), sf.info(str(mixture))
    length = max(1, round(info.frames * spec.sample_rate / info.samplerate))
    return WindowPlan.uniform(length, spec.segment_samples, round(overlap * spec.sample_rate)).num_windows


# --- one run, in a child process ------------------------------------------------------------------


def fit_args(inputs: Inputs, mode: str, work: Path, tiny: Path | None) -> list[str]:
    """``main.py fit`` arguments of one run."""
    args = ["fit", "--config", str(CONFIG), "--data.mixture", str(inputs.mixture), "--data.query", QUERY, *FAST,
            "--trainer.default_root_dir", str(work / "logs")]  # fmt: skip
    if mode == "true-source":
        return [*args, "--data.references", f"[{inputs.target}]"]
    return [*args, "--data.model", str(tiny), *TINY, "--data.cache_dir", str(work / "refs")]


def quiet_logs() -> None:
    """Keep Lightning's info lines, loading bars and warnings out of the child's printout."""
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    with contextlib.suppress(ImportError):
        from diffusers.utils import logging as diffusers_logging
        from transformers.utils import logging as transformers_logging

        diffusers_logging.disable_progress_bar()
        transformers_logging.disable_progress_bar()


def worker(job: str) -> None:
    """The child's side: run ``main([...])`` in-process and print its peak RSS as the last line (JSON)."""
    spec = json.loads(job)
    import torch

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    quiet_logs()
    from dgmo_pl.cli import main as cli_main

    before = peak_rss_mib()
    printout = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(printout):
        cli_main(spec["args"])
    wall = time.perf_counter() - start
    lines = printout.getvalue().splitlines()
    run_dir = next((line.split(": ", 1)[1] for line in lines if line.startswith("run directory: ")), None)
    print(json.dumps({"wall_s": wall, "rss_before_mib": before, "threads": torch.get_num_threads(),
                      "run_dir": run_dir, "peak_rss_mib": peak_rss_mib()}))  # fmt: skip


@dataclass
class Row:
    """One measured run."""

    minutes: float
    mode: str
    windows: int
    fits: int
    wall_s: float
    peak_rss_mib: float
    rss_before_mib: float
    output: str
    output_ok: bool
    threads: int


def query_name() -> str:
    """The query's folder and file name in the run folder (``dog-barking``)."""
    from dgmo_pl.naming import unique_slugs

    return unique_slugs([QUERY])[0]


def check_output(run_dir: Path, mixture: Path) -> tuple[str, bool]:
    """Whether the run's separated file has the mixture's frames, rate and channels."""
    import soundfile as sf

    name = query_name()
    found = sorted(run_dir.glob(f"{name}/{name}.wav"))
    if len(found) != 1:
        return f"no: {len(found)} files {name}/{name}.wav", False
    want, got = sf.info(str(mixture)), sf.info(str(found[0]))
    same = (got.frames, got.samplerate, got.channels) == (want.frames, want.samplerate, want.channels)
    what = f"{got.frames:,} frames, {got.samplerate} Hz, {got.channels} ch"
    return ("yes" if same else f"no: {what}, input {want.frames:,}, {want.samplerate}, {want.channels}"), same


def run_one(inputs: Inputs, mode: str, work: Path, tiny: Path | None, args: argparse.Namespace, overlap: float) -> Row:
    """One ``main.py fit`` in a fresh process (this script with ``--worker``), measured."""
    work.mkdir(parents=True)
    job = json.dumps({"args": fit_args(inputs, mode, work, tiny), "threads": args.threads})
    done = subprocess.run([sys.executable, __file__, "--worker", job], capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-8000:])
        raise SystemExit(f"the {inputs.minutes:g}-minute {mode} run failed (exit status {done.returncode})")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    run_dir = Path(result["run_dir"])
    batches = [p for p in run_dir.glob(f"{query_name()}/windows_*") if p.is_dir()]
    output, ok = check_output(run_dir, inputs.mixture)
    return Row(inputs.minutes, mode, plan_windows(inputs.mixture, overlap), max(1, len(batches)), result["wall_s"],
               result["peak_rss_mib"], result["rss_before_mib"], output, ok, result["threads"])  # fmt: skip


# --- the table ------------------------------------------------------------------------------------


def print_table(rows: list[Row], minutes: list[float]) -> None:
    """The one table of results, then the longest / shortest peak RSS ratio of each mode."""
    shortest, longest = min(minutes), max(minutes)
    base = {r.mode: r.peak_rss_mib for r in rows if r.minutes == shortest}
    print(f"| duration | mode | windows | fits | wall s | peak RSS MiB | ratio to {shortest:g}-minute | output ok |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        print(f"| {r.minutes:g} min | {r.mode} | {r.windows} | {r.fits} | {r.wall_s:.1f} | {r.peak_rss_mib:,.0f} | "
              f"{r.peak_rss_mib / base[r.mode]:.2f}x | {r.output} |")  # fmt: skip
    print()
    for mode in dict.fromkeys(r.mode for r in rows):
        if longest == shortest:
            break
        long_peak = next(r.peak_rss_mib for r in rows if r.mode == mode and r.minutes == longest)
        print(f"{mode}: {longest:g}-minute / {shortest:g}-minute peak RSS: {long_peak / base[mode]:.2f}x "
              "(target <= 1.5x)")  # fmt: skip
    before = ", ".join(f"{r.minutes:g} min {r.mode} {r.rss_before_mib:,.0f}" for r in rows)
    print(f"\n(peak RSS of each child after its imports, before main(): {before} MiB)")


# --- command line ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", default="1,10", help="comma-separated durations in minutes (default 1,10)")
    parser.add_argument("--modes", default=",".join(MODES),
                        help=f"comma-separated, of {', '.join(MODES)} (default both)")  # fmt: skip
    parser.add_argument("--keep", type=Path, default=None, help="write the files here and keep them (default: a "
                        "temporary folder, removed at the end)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1,
                        help="PyTorch CPU threads in the child (default 1; 0: PyTorch's own)")  # fmt: skip
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # one run, in a child
    args = parser.parse_args(argv)
    if args.worker:
        return args
    try:
        args.minutes = sorted({float(m) for m in args.minutes.split(",")})
    except ValueError:
        parser.error(f"--minutes must be comma-separated numbers, got {args.minutes!r}")
    if not args.minutes or min(args.minutes) <= 0 or not all(math.isfinite(m) for m in args.minutes):
        parser.error("--minutes must be positive")
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not args.modes or any(m not in MODES for m in args.modes):
        parser.error(f"--modes must list some of {', '.join(MODES)}, got {','.join(args.modes)!r}")
    if args.threads < 0:
        parser.error("--threads must be 0 (PyTorch's own) or more")
    if args.keep is not None and args.keep.exists() and any(args.keep.iterdir()):
        parser.error(f"--keep {args.keep} exists and is not empty: pass a new or empty folder")
    audio = shared_audio()
    missing = [name for name in (TARGET, INTERFERER) if not (audio / name).is_file()]
    if missing:
        parser.error(f"{', '.join(missing)} not found in {audio}: set DGMO_SHARED_AUDIO to the shared audio folder")
    return args


def main(argv: list[str] | None = None) -> None:
    """Make the recordings, run each duration and mode in its own process, print the table."""
    args = parse_args(argv)
    if args.worker:
        return worker(args.worker)
    # Lightning in the child survives SIGTERM; ending this process with an exception makes
    # subprocess.run kill the child and the temporary folder be removed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    started = time.perf_counter()
    overlap, per_fit = default_windows()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="dgmo-long-"))
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    try:
        tiny = None
        if "tiny" in args.modes:
            from dgmo_pl.testing.tiny import save_tiny_audioldm

            quiet_logs()
            with contextlib.redirect_stderr(io.StringIO()):  # its loading bars
                tiny = save_tiny_audioldm(folder / "tiny")
        inputs = [make_inputs(folder, m, shared_audio()) for m in args.minutes]
        print(f"wrote the recordings at {time.perf_counter() - started:.0f} s", file=sys.stderr)
        for mode in args.modes:
            for item in inputs:
                rows.append(run_one(item, mode, folder / f"{mode}_{item.minutes:g}min", tiny, args, overlap))
                print(f"{item.minutes:g} min {mode}: {rows[-1].peak_rss_mib:,.0f} MiB, {rows[-1].wall_s:.0f} s "
                      f"(at {time.perf_counter() - started:.0f} s)", file=sys.stderr)  # fmt: skip
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    import torch

    threads = ",".join(str(t) for t in sorted({r.threads for r in rows})) + ("" if args.threads else " (PyTorch's own)")
    print(f"\nLong-recording peak memory: {SAMPLE_RATE} Hz stereo 0 dB mixtures (dog barking + male speech), "
          f"window_overlap {overlap:g} s, windows_per_fit {per_fit}, 2 rounds x 5 mask steps per fit, "
          f"{threads} CPU thread(s) in each run, torch {torch.__version__}\n")
    print_table(rows, args.minutes)
    print(f"\n(total run time {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
