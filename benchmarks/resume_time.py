"""Time to finish a killed 10-minute recording with ``--resume``, against redoing it.

A 10-minute recording is 78 windows: 20 fits of 4 windows per query. This kills a run with
SIGKILL at a chosen point (by default 45 of the 60 optimiser steps into fit 16 of 20, so
that the fit's last checkpoint, at step 40 with ``--checkpoint_every 20``, is 5 steps behind), then
measures, each the real command line in its own process, one after the other:

* ``uninterrupted``: the whole run, from nothing (its own empty reference cache);
* ``until killed``: the run that is killed (its own cache);
* ``resume``: ``--resume`` of the killed run's folder (its cache, as a user would have it);
* ``redo``: the whole run again after the kill, as before ``--resume`` existed (the killed run's
  cache, so round 0's references of the finished fits are found there).

It checks that the resumed run's separated file equals the uninterrupted run's, byte for byte,
and prints the wall times, the ratio of resume to redo, and the date and commit. The mixture is
44.1 kHz stereo (dogs and speech, looped and panned, ``dgmo_pl.testing.mixing.mix_panned``); the
model is the tiny random AudioLDM (3 DDIM steps, K = 2), so the diffusion model's share of the
time is far smaller than a real one's: with a real model the fits redone cost more, and resume
saves more.

Usage::

    python benchmarks/resume_time.py                   # 10 minutes, killed in fit 16 of 20
    python benchmarks/resume_time.py --minutes 2 --fit 4 --step 45
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

QUERY = "dog barking"
SETTINGS = [
    "--data.query", QUERY, "--data.ddim_steps", "3", "--data.num_references", "2", "--data.steps_per_round", "20",
    "--data.steps_per_batch", "5", "--trainer.max_epochs", "3", "--checkpoint_every", "20",
    "--audio.write_references", "false", "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
]  # fmt: skip


def commit() -> str:
    """The checkout's commit (with ``+changes`` when the tree differs from it)."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                           cwd=REPO).stdout.strip()  # fmt: skip
    return head.stdout.strip() + ("+changes" if dirty else "")


def make_inputs(folder: Path, minutes: float) -> tuple[Path, Path]:
    """The mixture file and the tiny model's folder."""
    from dgmo_pl.audio.io import write_audio
    from dgmo_pl.testing.mixing import mix_panned
    from dgmo_pl.testing.tiny import save_tiny_audioldm

    audio = Path(os.environ.get("DGMO_SHARED_AUDIO", REPO.parent / "shared" / "audio"))
    mixture, _ = mix_panned([audio / "ovos__dogs-barking__1.wav", audio / "whisper__male-speech__1.wav"],
                            minutes * 60, 44100)  # fmt: skip
    return write_audio(folder / "mixture.wav", mixture, 44100), save_tiny_audioldm(folder / "tiny-audioldm")


def fit(args: list[str], threads: int) -> tuple[float, int, str]:
    """``main.py fit`` in a new process: wall seconds, exit status, standard error's tail."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)} if threads else dict(os.environ)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "main.py", "fit", "--config", "configs/dgmo.yaml", *args],
                          capture_output=True, text=True, env=env, cwd=REPO)  # fmt: skip
    return time.perf_counter() - start, done.returncode, done.stderr[-3000:]


def separated(root: Path) -> str:
    """The SHA-256 of the separated file of the run under ``root``."""
    (run,) = (root / "lightning_logs").glob("version_*")
    slug = QUERY.replace(" ", "-")
    return hashlib.sha256((run / slug / f"{slug}.wav").read_bytes()).hexdigest()


def main() -> None:
    """Run the four measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--fit", type=int, default=16, help="the fit (1-based) in which the run is killed")
    parser.add_argument("--step", type=int, default=45, help="the optimiser step of that fit after which it is")
    parser.add_argument("--threads", type=int, default=1, help="PyTorch CPU threads of each run (0: its own count)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dgmo-resume-") as tmp:
        work = Path(tmp)
        mixture, model = make_inputs(work, options.minutes)
        common = ["--data.mixture", str(mixture), "--data.model", str(model), *SETTINGS]

        def run(name: str, *extra: str) -> float:
            seconds, status, stderr = fit([*common, *extra], options.threads)
            killed = "--trainer.callbacks+" in extra
            if status != (-9 if killed else 0):
                raise SystemExit(f"{name}: exit status {status}\n{stderr}")
            print(f"  {name}: {seconds:.1f} s", flush=True)
            return seconds

        from dgmo_pl.audio.frontend import SpectrogramConfig
        from dgmo_pl.recording import open_recording

        windows = open_recording(str(mixture), SpectrogramConfig(), 2.56).num_windows
        fits = -(-windows // 4)
        first = (options.fit - 1) * 4 + 1
        version = f"{QUERY.replace(' ', '-')}/windows_{first}-{min(first + 3, windows)}"
        stopper = {"class_path": "dgmo_pl.testing.signals.SignalAtStep",
                   "init_args": {"signal": "SIGKILL", "step": options.step, "fit": version}}  # fmt: skip
        print(f"{options.minutes:g} minutes at 44.1 kHz stereo: {windows} windows, {fits} fits of 4; killed after "
              f"step {options.step} of 60 in fit {options.fit} ({version})", flush=True)  # fmt: skip
        whole = run("uninterrupted", "--trainer.default_root_dir", str(work / "a"), "--data.cache_dir",
                    str(work / "cache-a"))  # fmt: skip
        cache = ["--data.cache_dir", str(work / "cache-b")]
        lost = run("until killed", "--trainer.default_root_dir", str(work / "b"), *cache,
                   "--trainer.callbacks+", json.dumps(stopper))  # fmt: skip
        (folder,) = (work / "b" / "lightning_logs").glob("version_*")
        resume = run("resume", "--trainer.default_root_dir", str(work / "b"), *cache, "--resume", str(folder))
        redo = run("redo", "--trainer.default_root_dir", str(work / "c"), *cache)
        same = separated(work / "a") == separated(work / "b") == separated(work / "c")
    print()
    print(f"date {datetime.date.today().isoformat()}, commit {commit()}, {options.threads or 'default'} thread(s)")
    print("| run | wall time |")
    print("| --- | --- |")
    for name, seconds in [("uninterrupted", whole), ("until killed", lost), ("resume", resume), ("redo", redo)]:
        print(f"| {name} | {seconds:.1f} s |")
    print(f"resume / redo: {resume / redo:.2f} ({redo / resume:.1f}x faster); resumed file identical to the "
          f"uninterrupted one: {same}")  # fmt: skip


if __name__ == "__main__":
    main()
