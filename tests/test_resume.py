"""Interrupting runs for real (SIGKILL, SIGTERM, Ctrl-C in a child process) and finishing them with ``--resume``.

The run: 2 queries over a 25 s recording (3 windows, 2 a fit: 4 fits), references from the tiny
diffusion model with no cache, so a resumed run must regenerate them exactly. Every resumed
run must end with the uninterrupted run's files, byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import QUIET, REPO, configs, main, run_dirs, tiny_args

from dgmo_pl.audio.io import write_audio
from dgmo_pl.checkpoints import read_checkpoint
from dgmo_pl.diffusion.provider import ReferenceProvider
from dgmo_pl.testing.mixing import mix_panned

QUERIES = ["dog barking", "man speaking"]
FITS = ["dog-barking/windows_1-2", "dog-barking/windows_3-3", "man-speaking/windows_1-2", "man-speaking/windows_3-3"]
#: 3 rounds of 5 steps, 2 steps a batch (the last batch of a round takes 1): steps 2, 4, 5, 7, ..., 15.
STEPS = 15
SETTINGS = ["--data.queries", json.dumps(QUERIES), "--data.windows_per_fit", "2", "--data.steps_per_batch", "2",
            "--checkpoint_every", "2", "--data.cache_dir", "null", "--trainer.max_epochs", "3"]


@pytest.fixture(scope="module")
def mixture(shared_audio: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """25 s of dogs and speech at 16 kHz, mono: 3 windows of 10.24 s."""
    audio, _ = mix_panned([shared_audio / "ovos__dogs-barking__1.wav", shared_audio / "whisper__male-speech__1.wav"],
                          25.0, 16000, channels=1)
    return write_audio(tmp_path_factory.mktemp("resume") / "mixture.wav", audio, 16000)


def _args(tiny_model: Path, mixture: Path, root: Path, *extra: str) -> list[str]:
    return ["fit", *configs(), "--trainer.default_root_dir", str(root), *QUIET, *tiny_args(tiny_model),
            "--data.mixture", str(mixture), *SETTINGS, *extra]


@pytest.fixture(scope="module")
def uninterrupted(tiny_model: Path, mixture: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("uninterrupted")
    main(_args(tiny_model, mixture, root))
    (run,) = run_dirs(root)
    return run


def _audio(run: Path) -> dict[str, str]:
    """SHA-256 of every audio file of a run (outputs and vocoded references), by relative path."""
    return {p.relative_to(run).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run.rglob("*.wav")) if not p.name.startswith(".")}


def _leftovers(run: Path) -> list[str]:
    """Half-written files: hidden temporaries of outputs, checkpoints and records."""
    return [p.name for p in run.rglob(".*") if p.is_file()]


def _interrupt(tiny_model: Path, mixture: Path, root: Path, signal_name: str, step: int, fit: str):
    """Run the fit in a child process that sends itself ``signal_name`` after ``step`` of ``fit``."""
    stopper = {"class_path": "dgmo_pl.testing.signals.SignalAtStep",
               "init_args": {"signal": signal_name, "step": step, "fit": fit}}
    argv = [sys.executable, "main.py", *_args(tiny_model, mixture, root), "--trainer.callbacks+", json.dumps(stopper)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600, cwd=REPO)


def _resume(tiny_model: Path, mixture: Path, root: Path, run: Path, capsys: pytest.CaptureFixture) -> str:
    capsys.readouterr()
    main(_args(tiny_model, mixture, root, "--resume", str(run)))
    return capsys.readouterr().out


# Seeded kill points: (signal, fit, step).
POINTS = [(name, *random.Random(seed).choice([(f, s) for f in FITS for s in range(1, STEPS + 1)]))
          for seed, name in [(0, "SIGKILL"), (1, "SIGKILL"), (2, "SIGTERM"), (3, "SIGINT")]]
POINTS.append(("SIGTERM", FITS[0], STEPS))  # after the fit's very last step: its checkpoint is complete
POINTS.append(("SIGTERM", FITS[2], 10))  # after the last batch of a round: the next round starts on resume


@pytest.mark.slow
@pytest.mark.parametrize(("signal_name", "fit", "step"), POINTS)
def test_an_interrupted_run_resumes_to_the_uninterrupted_files(
    tiny_model: Path, mixture: Path, uninterrupted: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
    signal_name: str, fit: str, step: int,
) -> None:
    done = _interrupt(tiny_model, mixture, tmp_path, signal_name, step, fit)
    (run,) = run_dirs(tmp_path)
    if signal_name == "SIGKILL":
        assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    else:
        # Stopped cleanly: the shell's status for the signal, a line saying how to finish, a checkpoint at
        # the step where it stopped, and no half-written file.
        assert done.returncode == 128 + signal.Signals[signal_name], done.stderr[-3000:]
        line = done.stderr.strip().splitlines()[-1]
        assert line.startswith(f"error: stopped by {signal_name}") and line.endswith(f"--resume {run}"), line
        assert "Traceback" not in done.stderr
        checkpoint = read_checkpoint(run / fit / "checkpoints" / "last.ckpt")
        assert checkpoint["global_step"] == next(s for s in (2, 4, 5, 7, 9, 10, 12, 14, 15) if s >= step)
        assert _leftovers(run) == []
        unfinished = {f.split("/")[0] for f in FITS[FITS.index(fit):]}
        assert not any((run / group / f"{group}.wav").exists() for group in unfinished)
    kept = FITS.index(fit)
    assert sorted(p.parent.relative_to(run).as_posix() for p in run.rglob("masks.safetensors")) == FITS[:kept]

    out = _resume(tiny_model, mixture, tmp_path, run, capsys)
    assert f"resumed: {kept} finished fits kept, {len(FITS) - kept} run" in out
    assert _audio(run) == _audio(uninterrupted)
    assert _leftovers(run) == [] and list(run.rglob("last.ckpt")) == []


@pytest.mark.slow
def test_a_kill_at_any_moment_resumes_to_the_uninterrupted_files(
    tiny_model: Path, mixture: Path, uninterrupted: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """SIGKILL from outside after a seeded delay: wherever it lands (loading, generating, fitting, writing)."""
    argv = [sys.executable, "main.py", *_args(tiny_model, mixture, tmp_path)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    child = subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not list(tmp_path.rglob("masks.safetensors")) and time.monotonic() < deadline:
            time.sleep(0.05)  # until the first fit is finished
        time.sleep(random.Random(4).uniform(0.0, 3.0))
    finally:
        child.kill()
        child.wait(timeout=60)
    (run,) = run_dirs(tmp_path)
    finished = len(list(run.rglob("masks.safetensors")))
    assert child.returncode == -signal.SIGKILL and 1 <= finished < len(FITS)  # killed mid-run, not after it
    _resume(tiny_model, mixture, tmp_path, run, capsys)
    assert _audio(run) == _audio(uninterrupted)


@pytest.mark.integration
def test_resuming_a_finished_run_does_nothing_and_says_so(
    tiny_model: Path, mixture: Path, uninterrupted: Path, capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    generated = []
    original = ReferenceProvider.references
    monkeypatch.setattr(ReferenceProvider, "references", lambda *a, **k: generated.append(1) or original(*a, **k))
    before = {p: p.stat().st_mtime_ns for p in uninterrupted.rglob("*") if p.is_file()}
    out = _resume(tiny_model, mixture, uninterrupted.parents[1], uninterrupted, capsys)
    assert "the run was already complete (4 fits): nothing to do" in out
    assert generated == []
    assert {p: p.stat().st_mtime_ns for p in uninterrupted.rglob("*") if p.is_file()} == before


@pytest.mark.integration
@pytest.mark.parametrize(("change", "named"), [
    (["--data.queries", '["dog barking", "woman singing"]'], 'queries: ["dog barking", "man speaking"] -> '),
    (["--data.ddim_steps", "5"], "references.generation.ddim_steps: 4 -> 5"),
    (["--seed_everything", "7"], "seed: 0 -> 7"),
    (["--trainer.max_epochs", "2"], "rounds: 3 -> 2"),
    (["--model.lr", "0.02"], "masks.lr: 0.01 -> 0.02"),
    (["--data.window_overlap", "1.0"], "windows.starts: [0, 122880, 245760] -> [0, 147840, "),
])
def test_resume_refuses_a_run_made_otherwise(
    tiny_model: Path, mixture: Path, uninterrupted: Path, capsys: pytest.CaptureFixture, change: list[str],
    named: str,
) -> None:
    before = _audio(uninterrupted)
    with pytest.raises(SystemExit) as exit_info:
        main([*_args(tiny_model, mixture, uninterrupted.parents[1], "--resume", str(uninterrupted)), *change])
    assert exit_info.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"error: --resume '{uninterrupted}' was made for another run (") and named in line, line
    assert _audio(uninterrupted) == before


@pytest.mark.integration
def test_resume_refuses_another_mixture_and_another_model(
    tiny_model: Path, mixture: Path, uninterrupted: Path, capsys: pytest.CaptureFixture, tmp_path: Path,
) -> None:
    other = write_audio(tmp_path / "mixture.wav", torch.rand(1, 25 * 16000) - 0.5, 16000)
    args = _args(tiny_model, other, uninterrupted.parents[1], "--resume", str(uninterrupted))
    with pytest.raises(SystemExit):
        main(args)
    assert "mixture: " in capsys.readouterr().err
    model = tmp_path / "model"
    model.symlink_to(tiny_model, target_is_directory=True)
    with pytest.raises(SystemExit):
        main([*_args(tiny_model, mixture, uninterrupted.parents[1], "--resume", str(uninterrupted)),
              "--data.model", str(model)])
    assert "references.model: " in capsys.readouterr().err


@pytest.mark.integration
def test_resume_refuses_a_checkpoint_that_carries_code(
    tiny_model: Path, mixture: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
) -> None:
    """A ``last.ckpt`` planted in a run folder is read weights-only: its code never runs."""
    done = _interrupt(tiny_model, mixture, tmp_path, "SIGTERM", 3, FITS[0])
    assert done.returncode == 128 + signal.SIGTERM, done.stderr[-2000:]
    (run,) = run_dirs(tmp_path)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"state_dict": {"mask_logits": torch.zeros(1)}, "x": Payload()}, run / FITS[0] / "checkpoints/last.ckpt")
    with pytest.raises(SystemExit) as exit_info:
        main(_args(tiny_model, mixture, tmp_path, "--resume", str(run)))
    assert exit_info.value.code == 2
    assert "is not a readable checkpoint" in capsys.readouterr().err and not marker.exists()


@pytest.mark.integration
def test_resume_refuses_a_folder_that_holds_no_run_and_what_it_cannot_go_with(
    tiny_model: Path, mixture: Path, uninterrupted: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
) -> None:
    cases = [
        (["--resume", str(tmp_path)], f"--resume '{tmp_path}' is not a run folder (no run.json in it)"),
        (["--resume", str(uninterrupted), "--output_dir", str(tmp_path / "out")], "re-run into the same --output_dir"),
        (["--checkpoint_every", "-1"], "--checkpoint_every -1 must be 0"),
    ]
    for extra, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(_args(tiny_model, mixture, tmp_path, *extra))
        assert exit_info.value.code == 2 and message in capsys.readouterr().err, extra


# --- evaluation: a row interrupted mid-fit is done again on the next run, finished rows kept ---------------


def _evaluate_args(manifest: Path, output: Path) -> list[str]:
    return ["evaluate", *configs(), *QUIET, "--data.cache_dir", "null", "--data.steps_per_round", "5",
            "--data.steps_per_batch", "2", "--trainer.max_epochs", "2", "--manifest", str(manifest),
            "--reference_source", "true_source", "--clap_model", "null", "--output_dir", str(output)]


def _rows(output: Path) -> dict[str, object]:
    """Each published row's audio (SHA-256) and records (less the output's path, which names the folder)."""
    found: dict[str, object] = {}
    for path in sorted((output / "rows").rglob("*")):
        if any(part.startswith(".") for part in path.relative_to(output).parts):
            continue  # an unfinished attempt
        if path.suffix == ".wav":
            found[path.relative_to(output).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.suffix == ".json":
            found[path.relative_to(output).as_posix()] = json.loads(path.read_text()) | {"output": None}
    return found


@pytest.mark.slow
@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGTERM"])
def test_an_evaluation_stopped_mid_row_goes_on_to_the_same_results(
    speech_dog_pair: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture, signal_name: str,
) -> None:
    pair = speech_dog_pair
    manifest = tmp_path / "set.csv"
    manifest.write_text(f"mixture,query,source,id\n{pair['mixture']},dog barking,{pair['dog']},r1\n"
                        f"{pair['mixture']},man speaking,{pair['speech']},r2\n")
    main(_evaluate_args(manifest, tmp_path / "whole"))

    output = tmp_path / "stopped"
    stopper = {"class_path": "dgmo_pl.testing.signals.SignalAtStep",
               "init_args": {"signal": signal_name, "step": 3, "fit": "man-speaking"}}
    argv = [sys.executable, "main.py", *_evaluate_args(manifest, output), "--trainer.callbacks+", json.dumps(stopper)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
    assert done.returncode == (-signal.SIGKILL if signal_name == "SIGKILL" else 143), done.stderr[-2000:]
    if signal_name == "SIGTERM":
        line = done.stderr.strip().splitlines()[-1]
        assert line.startswith("error: stopped by SIGTERM") and "run the same command again: python main.py evaluate" \
            in line, line
    finished = _rows(output)
    assert set(finished) == {p for p in _rows(tmp_path / "whole") if p.startswith("rows/r1/")}  # r2 not published

    capsys.readouterr()
    main(_evaluate_args(manifest, output))
    assert _rows(output) == _rows(tmp_path / "whole")
    assert {k: v for k, v in _rows(output).items() if k.startswith("rows/r1/")} == finished  # r1 kept as it was
    whole = (tmp_path / "whole" / "results.csv").read_text().replace(str(tmp_path / "whole"), str(output))
    assert (output / "results.csv").read_text() == whole
