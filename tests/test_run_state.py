"""The records that let a run be finished, and stopping on signals: fast, without a fit."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from dgmo_pl.cli import how_to_go_on
from dgmo_pl.errors import InputError
from dgmo_pl.interrupt import ResumeCheckpoint, RunInterrupted, StopRequest, stop_on_signals
from dgmo_pl.job import plan_fits
from dgmo_pl.run_state import RunState, differences

IDENTITY = {"mixture": "ab" * 32, "queries": ["dog barking"], "references": {"model": "cvssp/audioldm",
            "generation": {"ddim_steps": 100}}, "seed": 0, "windows": (1, 2)}  # fmt: skip
PLAN = plan_fits(["dog barking"], 3, 2)[0]


def test_differences_name_each_changed_setting_with_both_values() -> None:
    changed = {**IDENTITY, "queries": ["cat"], "references": {"model": "cvssp/audioldm", "generation": {}}}
    assert differences(IDENTITY, changed) == [
        'queries: ["dog barking"] -> ["cat"]', "references.generation.ddim_steps: 100 -> (none)"]
    assert differences(IDENTITY, {**IDENTITY, "mixture": "cd" * 32}) == [
        f'mixture: "{"ab" * 18}... -> "{"cd" * 18}...']
    assert differences(IDENTITY, IDENTITY) == []


def test_a_run_is_recorded_once_and_resumed_only_with_its_identity(tmp_path: Path) -> None:
    RunState.start(tmp_path, IDENTITY)
    assert json.loads((tmp_path / "run.json").read_text())["windows"] == [1, 2]  # as JSON gives it back
    with pytest.raises(InputError, match="already holds a run"):
        RunState.start(tmp_path, IDENTITY)
    assert RunState.resume(tmp_path, IDENTITY).folder == tmp_path  # tuples and lists compare equal
    with pytest.raises(InputError, match=r"was made for another run \(seed: 0 -> 1\): resume it with the settings"):
        RunState.resume(tmp_path, {**IDENTITY, "seed": 1})
    with pytest.raises(InputError, match="holds no readable run.json"):
        RunState.resume(tmp_path / "elsewhere", IDENTITY)


def test_many_differences_are_counted_on_one_line(tmp_path: Path) -> None:
    RunState.start(tmp_path, IDENTITY)
    other = {k: "x" for k in IDENTITY} | {"a": 1, "b": 2}
    with pytest.raises(InputError) as error:
        RunState.resume(tmp_path, other)
    assert "; and 3 more)" in str(error.value) and "\n" not in str(error.value)


def test_a_finished_fit_keeps_its_masks_exactly_and_drops_its_checkpoint(tmp_path: Path) -> None:
    state = RunState.start(tmp_path, IDENTITY)
    assert not state.is_finished(PLAN)
    checkpoint = state.checkpoint(PLAN)
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"state")
    masks = torch.rand(1, 2, 513, 1024)
    state.finish(PLAN, masks)
    assert torch.equal(state.finished_masks(PLAN), masks) and not checkpoint.exists()
    assert [p.name for p in (tmp_path / PLAN.version).iterdir() if p.is_file()] == ["masks.safetensors"]


def test_a_damaged_or_foreign_finished_record_is_refused_with_what_to_do(tmp_path: Path) -> None:
    state = RunState.start(tmp_path, IDENTITY)
    state.finish(PLAN, torch.rand(1, 1, 4, 4))  # one window, but the fit has two
    with pytest.raises(InputError, match=r"holds masks of shape \[1, 1, 4, 4\], not 1 masks of 2 windows: delete it"):
        state.finished_masks(PLAN)
    (tmp_path / PLAN.version / "masks.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(InputError, match="is not a readable record of a finished fit"):
        state.finished_masks(PLAN)


def test_half_written_files_of_a_killed_process_are_removed_and_nothing_else(tmp_path: Path) -> None:
    state = RunState.start(tmp_path, IDENTITY)
    keep = [tmp_path / "q" / "q.wav", tmp_path / "q" / "notes.txt", tmp_path / "run.json"]
    stale = [tmp_path / "q" / ".q.abc123.wav", tmp_path / "q" / "w" / "checkpoints" / ".last.ckpt.x.tmp"]
    for path in keep[:2] + stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    assert sorted(state.remove_temporaries()) == sorted(stale)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in stale)


def test_a_second_process_cannot_run_in_a_locked_folder(tmp_path: Path) -> None:
    state = RunState.start(tmp_path, IDENTITY)
    with state.locked():
        with pytest.raises(InputError, match="is in use by another process"), RunState(tmp_path).locked():
            pass
    with RunState(tmp_path).locked():  # released
        pass
    assert not (tmp_path / ".run.lock").exists()


def test_a_stop_signal_becomes_a_request_and_the_handlers_come_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals(Path("run")) as request:
        os.kill(os.getpid(), signal.SIGTERM)
        assert request.signal_number == signal.SIGTERM
        with pytest.raises(RunInterrupted) as stopped:
            request.check(Path("run/q/checkpoints/last.ckpt"))
    assert signal.getsignal(signal.SIGTERM) is before
    assert stopped.value.exit_status == 143 and stopped.value.folder == Path("run")
    assert str(stopped.value) == "stopped by SIGTERM, its fit saved in 'run/q/checkpoints/last.ckpt'"
    assert not isinstance(stopped.value, Exception)  # ``except Exception`` (a failed row) lets it through


def test_a_second_ctrl_c_stops_at_once() -> None:
    """Not as a KeyboardInterrupt (Lightning turns that into exit status 1): as the run's stop, to resume."""
    with stop_on_signals(Path("run")) as request:
        os.kill(os.getpid(), signal.SIGINT)
        assert request.signal_number == signal.SIGINT
        with pytest.raises(RunInterrupted) as stopped:
            os.kill(os.getpid(), signal.SIGINT)
    assert stopped.value.exit_status == 130 and stopped.value.folder == Path("run")
    assert stopped.value.checkpoint is None


def test_an_ignored_sigint_stays_ignored() -> None:
    """A background job inherits SIGINT ignored: a run there does not start stopping on it."""
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with stop_on_signals() as request:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            assert request.signal_number is None
    finally:
        signal.signal(signal.SIGINT, before)


def test_signals_are_left_alone_outside_the_main_thread() -> None:
    seen = []

    def run() -> None:
        with stop_on_signals() as request:
            seen.append((signal.getsignal(signal.SIGTERM), request.signal_number))

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    assert seen == [(signal.getsignal(signal.SIGTERM), None)]


class _Trainer:
    def __init__(self) -> None:
        self.global_step, self.saved = 0, []
        self.current_epoch, self.max_epochs, self.num_training_batches = 0, 3, 10

    def save_checkpoint(self, path: Path, weights_only: bool | None = None) -> None:
        self.saved.append(self.global_step)


def test_resume_checkpoints_are_saved_at_each_multiple_of_the_steps_and_on_a_stop() -> None:
    trainer, request = _Trainer(), StopRequest(Path("run"))
    callback = ResumeCheckpoint(Path("last.ckpt"), 4, request)
    for taken in [3, 3, 3, 1, 5]:  # batches of several steps: steps 3, 6, 9, 10, 15
        trainer.global_step += taken
        callback.on_train_batch_end(trainer, None, {"losses": torch.zeros(taken)}, None, 0)
    assert trainer.saved == [6, 9, 15]  # passed 4, 8 and 12 (and 16 is not reached)
    request.signal_number = signal.SIGINT
    trainer.global_step += 1
    with pytest.raises(RunInterrupted) as stopped:
        callback.on_train_batch_end(trainer, None, {"losses": torch.zeros(1)}, None, 0)
    assert trainer.saved[-1] == 16 and stopped.value.checkpoint == Path("last.ckpt")
    trainer.current_epoch, trainer.global_step = 2, 30  # the fit's very last batch: saved, and the fit may end
    callback.on_train_batch_end(trainer, None, {"losses": torch.zeros(1)}, None, 9)
    assert trainer.saved[-1] == 30
    never = ResumeCheckpoint(Path("last.ckpt"), 0, StopRequest())
    never.on_train_batch_end(trainer, None, {"losses": torch.zeros(1)}, None, 0)
    assert trainer.saved[-1] == 30
    with pytest.raises(ValueError, match="every_n_steps must be 0"):
        ResumeCheckpoint(Path("x"), -1, request)


def test_the_way_to_finish_a_stopped_run_is_the_same_command_with_its_seed_and_resume(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.argv", ["main.py"])
    argv = ["fit", "--config", "configs/dgmo.yaml", "--data.query", "dog barking", "--resume", "logs/old",
            "--seed_everything", "3"]
    stop = RunInterrupted(signal.SIGTERM, Path("logs/run"))
    assert how_to_go_on(argv, stop, 42) == (
        "to finish it, run: python main.py fit --config configs/dgmo.yaml --data.query 'dog barking' "
        "--seed_everything 42 --resume logs/run")
    again = RunInterrupted(signal.SIGINT, Path("x"), Path("x/last.ckpt")).to_rerun()
    assert str(again) == "stopped by SIGINT" and again.folder is None
    assert how_to_go_on(["evaluate", "--manifest", "m.csv"], again, 0) == (
        "to go on, run the same command again: python main.py evaluate --manifest m.csv")
    assert how_to_go_on(["fit"], RunInterrupted(signal.SIGINT), 0) == "nothing was saved: run it again"
    monkeypatch.setattr("sys.argv", ["/usr/bin/dgmo-pl"])
    assert how_to_go_on(["fit", "--resume=x"], stop, 0) == (
        "to finish it, run: dgmo-pl fit --seed_everything 0 --resume logs/run")


def test_the_data_modules_round_travels_in_its_state() -> None:
    from dgmo_pl.fit_data import FitDataModule

    references = torch.rand(1, 2, 4, 1, 8, 4)
    source = SimpleNamespace(follows_masks=True, references=lambda *a, **k: pytest.fail("generated again"))
    windows = [SimpleNamespace(digest="w1"), SimpleNamespace(digest="w2")]
    data = FitDataModule(SimpleNamespace(source=source, queries=("dog barking",)), PLAN, lambda: None)
    data._windows = windows  # prepared windows, without a recording
    assert data.state_dict() == {} and data.round_references is None
    data.load_state_dict({"round": torch.tensor(1), "references": references, "fit": ["dog barking", "w1", "w9"]})
    assert data.round_references is None  # made for another recording: not taken
    data.load_state_dict({"round": torch.tensor(1), "references": references, "fit": ["dog barking", "w1", "w2"]})
    assert data.references(1) is references and data.round_references is references
    state = data.state_dict()
    assert int(state["round"]) == 1 and torch.equal(state["references"], references)
    assert state["fit"] == ["dog barking", "w1", "w2"]
