"""The loop over fits, ``separate()``: plans, a user's logger, checkpoints that rebuild, failures that leave nothing."""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import REPO, fit, outputs_from_checkpoint

from dgmo_pl.audio.io import write_audio
from dgmo_pl.data import SeparationDataModule
from dgmo_pl.job import plan_fits
from dgmo_pl.model import MaskSeparator
from dgmo_pl.separate import separate, trainer_factory
from dgmo_pl.testing.mixing import mix_panned

QUERIES = ["dog barking", "man speaking"]
FAST = ["--model.lr", "0.1", "--data.steps_per_round", "20", "--trainer.max_epochs", "1"]


# --- plans (fast) ------------------------------------------------------------------------------


def test_independent_plans_run_each_query_over_every_window_batch() -> None:
    plans = plan_fits(QUERIES, num_windows=5, windows_per_fit=2)
    assert [(p.queries, p.windows) for p in plans] == [
        ((0,), (0, 1)), ((0,), (2, 3)), ((0,), (4,)), ((1,), (0, 1)), ((1,), (2, 3)), ((1,), (4,))]
    assert [p.version for p in plans[:3]] == [
        "dog-barking/windows_1-2", "dog-barking/windows_3-4", "dog-barking/windows_5-5"]
    assert [(p.first, p.last) for p in plans[:3]] == [(True, False), (False, False), (False, True)]
    assert {p.group for p in plans} == {"dog-barking", "man-speaking"} and all(p.masks == 1 for p in plans)


def test_a_joint_plan_fits_all_queries_and_names_the_residual_apart_from_them() -> None:
    (plan,) = plan_fits(["residual", "dog"], num_windows=1, windows_per_fit=4, joint=True, residual=True)
    assert plan.queries == (0, 1) and plan.group == plan.version == "joint" and plan.first and plan.last
    assert plan.outputs == ("residual", "dog", "residual-2") and plan.masks == 3


def test_the_library_never_imports_the_app() -> None:
    """No module of dgmo_pl imports callbacks/ (the app's) or main.py."""
    pattern = re.compile(r"^\s*(from|import)\s+(callbacks|main)\b", re.MULTILINE)
    offenders = [str(p) for p in (REPO / "dgmo_pl").rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


# --- whole runs ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_pair(shared_audio: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 25 s (three-window) 16 kHz mono 0 dB mixture of dogs and speech, with both sources."""
    out = tmp_path_factory.mktemp("long")
    mixture, sources = mix_panned(
        [shared_audio / "ovos__dogs-barking__1.wav", shared_audio / "whisper__male-speech__1.wav"], 25.0, 16000, 1
    )
    return {"mixture": write_audio(out / "mixture.wav", mixture, 16000),
            "dog": write_audio(out / "dog.wav", sources[0], 16000),
            "speech": write_audio(out / "speech.wav", sources[1], 16000)}  # fmt: skip


def _true_sources(pair: dict[str, Path]) -> list[str]:
    return ["--data.mixture", str(pair["mixture"]), "--data.queries", json.dumps(QUERIES),
            "--data.references", json.dumps([[str(pair["dog"])], [str(pair["speech"])]])]  # fmt: skip


@pytest.mark.integration
def test_a_csv_logger_writes_metrics_csv_in_each_fits_folder(long_pair: dict[str, Path], tmp_path: Path) -> None:
    """``--trainer.logger CSVLogger``: each fit (query, window batch) has its metrics.csv, and no TensorBoard file."""
    run = fit(tmp_path, *_true_sources(long_pair), *FAST, "--data.windows_per_fit", "2",
              "--trainer.logger", "CSVLogger", "--trainer.logger.save_dir", str(tmp_path))
    for name in ("dog-barking", "man-speaking"):
        for windows in ("windows_1-2", "windows_3-3"):
            with open(run / name / windows / "metrics.csv", newline="") as handle:
                rows = list(csv.DictReader(handle))
            losses = [int(r["step"]) for r in rows if r.get("loss/train")]
            assert losses == list(range(20)), (name, windows)
        assert (run / name / f"{name}.wav").is_file()
    assert not list(run.rglob("events.out.tfevents*"))


@pytest.mark.integration
def test_a_joint_three_window_checkpoint_rebuilds_the_same_masks(long_pair: dict[str, Path], tmp_path: Path) -> None:
    """A joint fit of 2 queries + residual over 3 windows: the checkpoint alone remakes all three files exactly."""
    run = fit(tmp_path, *_true_sources(long_pair), *FAST, "--data.windows_per_fit", "3", "--model.joint", "true",
              "--model.residual", "true")
    (ckpt,) = (run / "joint" / "checkpoints").glob("*.ckpt")
    module = MaskSeparator.load_from_checkpoint(ckpt, map_location="cpu")
    assert tuple(module.mask_logits.shape) == (3, 3, 513, 1024)
    names = ["dog-barking", "man-speaking", "residual"]
    remade = outputs_from_checkpoint(ckpt, long_pair["mixture"], tmp_path / "remade", names)
    for name in names:
        written = sf.read(str(run / "joint" / f"{name}.wav"), dtype="int16")[0]
        assert np.array_equal(sf.read(str(remade[name]), dtype="int16")[0], written), name


@pytest.mark.integration
def test_separate_from_python_writes_the_outputs_and_returns_them(long_pair: dict[str, Path], tmp_path: Path) -> None:
    """No command line: settings, a Separation, a module and a trainer factory; one file of the input's length."""
    data = SeparationDataModule(mixture=str(long_pair["mixture"]), query="dog barking",
                                references=[str(long_pair["dog"])], steps_per_round=20, cache_dir=None)
    separation = data.separation()
    trainers = trainer_factory(tmp_path, max_epochs=1, enable_progress_bar=False, enable_checkpointing=False)
    result = separate(separation, MaskSeparator(lr=0.1, spec=separation.spec), trainers, tmp_path)
    assert result.outputs == {"dog-barking": tmp_path / "dog-barking" / "dog-barking.wav"}
    assert result.written == [result.outputs["dog-barking"]]
    assert sf.info(str(result.outputs["dog-barking"])).frames == sf.info(str(long_pair["mixture"])).frames
    assert (tmp_path / "dog-barking" / "hparams.yaml").is_file()  # three windows, one fit (4 per fit)


@pytest.mark.integration
def test_a_failed_fit_leaves_no_partial_file(long_pair: dict[str, Path], tmp_path: Path) -> None:
    """The last window batch's fit fails: the half-assembled output (and its temporary file) is removed."""
    data = SeparationDataModule(mixture=str(long_pair["mixture"]), query="dog barking",
                                references=[str(long_pair["dog"])], steps_per_round=5, windows_per_fit=1,
                                cache_dir=None)  # fmt: skip
    separation = data.separation()
    make = trainer_factory(tmp_path, max_epochs=1, enable_progress_bar=False, enable_checkpointing=False)

    def failing(plan, callbacks):
        if plan.last:
            raise RuntimeError("out of memory (simulated)")
        return make(plan, callbacks)

    with pytest.raises(RuntimeError, match="simulated"):
        separate(separation, MaskSeparator(spec=separation.spec), failing, tmp_path)
    assert not [p for p in tmp_path.rglob("*.wav")]
    assert (tmp_path / "dog-barking" / "windows_2-2").is_dir()  # the earlier fits ran


# --- resuming one fit from the command line --------------------------------------------------------


@pytest.mark.integration
def test_a_fit_resumed_from_its_round_checkpoint_ends_with_the_uninterrupted_file(
    speech_dog_pair: dict[str, Path], tmp_path: Path
) -> None:
    """One round, then ``--ckpt_path`` for the second: the same separated file, byte for byte, as two rounds at once."""
    args = ["--data.mixture", str(speech_dog_pair["mixture"]), "--data.references",
            json.dumps([str(speech_dog_pair["dog"])]), "--model.lr", "0.1", "--data.steps_per_round", "10"]
    whole = fit(tmp_path / "whole", *args, "--trainer.max_epochs", "2")
    first = fit(tmp_path / "first", *args, "--trainer.max_epochs", "1")
    (ckpt,) = (first / "dog-barking" / "checkpoints").glob("*.ckpt")
    resumed = fit(tmp_path / "resumed", *args, "--trainer.max_epochs", "2", "--ckpt_path", str(ckpt))
    name = Path("dog-barking") / "dog-barking.wav"
    assert (resumed / name).read_bytes() == (whole / name).read_bytes()
    assert (resumed / name).read_bytes() != (first / name).read_bytes()


@pytest.mark.integration
def test_a_checkpoint_of_another_recording_is_refused_by_its_mask_shape(
    speech_dog_pair: dict[str, Path], long_pair: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A three-window fit's checkpoint given to a one-window run: one line naming both shapes, exit 2, no run."""
    long_run = fit(tmp_path / "long", "--data.mixture", str(long_pair["mixture"]), "--data.references",
                   json.dumps([str(long_pair["dog"])]), *FAST)
    (ckpt,) = (long_run / "dog-barking" / "checkpoints").glob("*.ckpt")
    root = tmp_path / "short"
    with pytest.raises(SystemExit) as exit_:
        fit(root, "--data.mixture", str(speech_dog_pair["mixture"]), "--data.references",
            json.dumps([str(speech_dog_pair["dog"])]), *FAST, "--ckpt_path", str(ckpt))
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"error: --ckpt_path '{ckpt}' holds a mask of shape [1, 3, 513, 1024] but this run fits "
                   "[1, 1, 513, 1024] (masks, windows, frequency bins, frames): it was made for another model, "
                   "query count or recording; pass this run's checkpoint")
    assert not list(root.rglob("*.wav"))


# --- concurrent runs ------------------------------------------------------------------------------------


@pytest.mark.integration
def test_two_runs_started_together_get_their_own_folders_and_the_same_outputs(
    tiny_model: Path, speech_dog_pair: dict[str, Path], tmp_path: Path
) -> None:
    """Two processes into one root and one reference cache at once, then one alone: three folders, one result."""
    import subprocess
    import sys

    from helpers import tiny_args

    def command(root: Path) -> list[str]:
        return [sys.executable, "-m", "dgmo_pl", "fit", "--config", str(REPO / "configs/dgmo.yaml"),
                "--trainer.default_root_dir", str(root), "--data.cache_dir", str(root / "references"),
                *tiny_args(tiny_model, ddim_steps=4, steps_per_round=5), "--trainer.max_epochs", "2",
                "--data.mixture", str(speech_dog_pair["mixture"]), "--trainer.enable_progress_bar", "false"]

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    together = [subprocess.Popen(command(tmp_path / "shared"), env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(2)]  # fmt: skip
    outcomes = [p.communicate(timeout=600) for p in together]
    assert [p.returncode for p in together] == [0, 0], [err[-1500:] for _, err in outcomes]
    alone = subprocess.run(command(tmp_path / "alone"), env=env, capture_output=True, text=True, timeout=600)
    assert alone.returncode == 0, alone.stderr[-1500:]
    runs = sorted((tmp_path / "shared" / "lightning_logs").glob("version_*"))
    assert [r.name for r in runs] == ["version_0", "version_1"]
    (reference,) = (tmp_path / "alone" / "lightning_logs").glob("version_*")
    name = Path("dog-barking") / "dog-barking.wav"
    assert all((run / name).read_bytes() == (reference / name).read_bytes() for run in runs)
