"""Untrusted and accidental inputs: one clear line, a non-zero exit, nothing deleted, overwritten or half-written.

The cases follow the classes of issue 19: manifest ids that are paths, stale or broken evaluation
state, settings that loop forever or do nothing, paths of the wrong kind, files that are not what
they claim, output promises, and file-system failures. Most run the checks directly (fast tier);
those marked ``integration`` run the command line and compare every file of a prepared folder
(an earlier run, and a file planted beside the output) before and after.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger

from dgmo_pl.audio.io import AudioWriter, scan_audio
from dgmo_pl.checkpoints import AtomicCheckpointIO, check_mask_shape, read_checkpoint
from dgmo_pl.checks import check_folder, check_trainer
from dgmo_pl.cli import check_config_files, describe_os_error
from dgmo_pl.data import SeparationDataModule
from dgmo_pl.errors import InputError
from dgmo_pl.evaluation.manifest import Row, read_manifest
from dgmo_pl.evaluation.runner import collect, evaluate_rows
from dgmo_pl.model import MaskSeparator


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones included) with its SHA-256."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def _wav(path: Path, seconds: float = 1.0, subtype: str = "PCM_16") -> Path:
    noise = np.random.default_rng(0).normal(0, 0.1, round(16000 * seconds)).astype(np.float32)
    sf.write(str(path), noise, 16000, subtype=subtype)
    return path


# --- 1. manifest ids are names, never paths ------------------------------------------------------------


@pytest.mark.parametrize("row_id", ["../x", ".", "..", "a/b", "a\\b", "/etc", ".hidden", "con", "NUL.txt",
                                    "x" * 121, "two words", "-dash", "rows/../../x"])
def test_a_manifest_id_that_is_not_a_plain_name_is_refused(row_id: str, tmp_path: Path) -> None:
    mixture = _wav(tmp_path / "mix.wav")
    manifest = tmp_path / "m.csv"
    manifest.write_text(f'mixture,query,id\n{mixture.name},dog,"{row_id}"\n')
    with pytest.raises(InputError) as err:
        read_manifest(manifest)
    assert str(err.value).startswith(f"manifest '{manifest}', line 2: id {row_id!r} is not a plain name")


@pytest.mark.parametrize("row_id", ["row-1", "audioset-12-3", "a.b_c", "vggsound-abc=1,2"])
def test_plain_ids_are_kept(row_id: str, tmp_path: Path) -> None:
    mixture = _wav(tmp_path / "mix.wav")
    manifest = tmp_path / "m.csv"
    manifest.write_text(f'mixture,query,id\n{mixture.name},dog,"{row_id}"\n')
    assert [r.id for r in read_manifest(manifest)] == [row_id]


def test_a_manifest_with_a_header_and_no_rows_is_refused(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("mixture,query,source\n")
    with pytest.raises(InputError, match=r"has a header but no rows: add one line per mixture and query"):
        read_manifest(manifest)


# --- 2. evaluation state: keyed on what made it, never deleted before its replacement -------------------


class Separations:
    """A stand-in for separate(): writes a file into the row's folder and counts calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fail: set[str] = set()
        self.interrupt: set[str] = set()

    def __call__(self, row: Row, folder: Path) -> Path:
        self.calls.append(row.id)
        if row.id in self.interrupt:
            raise KeyboardInterrupt
        if row.id in self.fail:
            raise RuntimeError("simulated failure")
        return _wav(Path(folder) / "out.wav")


@pytest.fixture
def evaluation(tmp_path: Path) -> dict:
    """Two rows, evaluated once; a file planted beside the output folder."""
    rows = [Row("a", _wav(tmp_path / "a.wav"), "dog"), Row("b", _wav(tmp_path / "b.wav", 0.5), "cat")]
    output = tmp_path / "out"
    planted = tmp_path / "planted.txt"
    planted.write_text("must survive")
    run = Separations()
    evaluate_rows(rows, output, run, None, settings={"lr": 0.01})
    return {"rows": rows, "output": output, "run": run, "planted": planted}


def test_a_rerun_with_the_same_rows_and_settings_does_nothing(evaluation: dict) -> None:
    before = snapshot(evaluation["output"])
    run = Separations()
    evaluate_rows(evaluation["rows"], evaluation["output"], run, None, settings={"lr": 0.01})
    assert run.calls == [] and snapshot(evaluation["output"]) == before


def test_changed_settings_redo_every_row(evaluation: dict) -> None:
    run = Separations()
    evaluate_rows(evaluation["rows"], evaluation["output"], run, None, settings={"lr": 0.02})
    assert run.calls == ["a", "b"]
    assert all(json.loads((evaluation["output"] / "rows" / i / "metrics.json").read_text())["key"] for i in "ab")


def test_a_changed_mixture_redoes_its_row_only(evaluation: dict) -> None:
    _wav(evaluation["rows"][1].mixture, 0.7)  # same path, other content
    run = Separations()
    evaluate_rows(evaluation["rows"], evaluation["output"], run, None, settings={"lr": 0.01})
    assert run.calls == ["b"]


def test_an_unreadable_result_is_redone_with_a_warning(evaluation: dict, capsys: pytest.CaptureFixture) -> None:
    damaged = evaluation["output"] / "rows" / "a" / "metrics.json"
    damaged.write_text('{"id": "a", "sdr": 1')
    run = Separations()
    evaluate_rows(evaluation["rows"], evaluation["output"], run, None, settings={"lr": 0.01})
    assert run.calls == ["a"]
    assert f"warning: '{damaged}' is unreadable (JSONDecodeError): row a is separated again" in capsys.readouterr().out
    assert json.loads(damaged.read_text())["id"] == "a"


def test_collect_reports_an_unreadable_result_as_failed(evaluation: dict) -> None:
    (evaluation["output"] / "rows" / "b" / "metrics.json").write_bytes(b"\xff\xfe")
    results = collect(evaluation["rows"], evaluation["output"])
    assert [r["status"] for r in results] == ["ok", "failed"]


def test_an_interrupted_redo_keeps_the_finished_result(evaluation: dict) -> None:
    before = snapshot(evaluation["output"] / "rows" / "a")
    run = Separations()
    run.interrupt = {"a"}
    with pytest.raises(KeyboardInterrupt):
        evaluate_rows(evaluation["rows"], evaluation["output"], run, None, settings={"lr": 0.05})
    assert snapshot(evaluation["output"] / "rows" / "a") == before
    evaluate_rows(evaluation["rows"], evaluation["output"], Separations(), None, settings={"lr": 0.05})
    assert not list((evaluation["output"] / "rows").glob(".*"))  # the unfinished attempt is gone


def test_a_failed_row_is_recorded_and_nothing_outside_rows_changes(evaluation: dict) -> None:
    before = evaluation["planted"].read_text()
    run = Separations()
    run.fail = {"b"}
    evaluate_rows(evaluation["rows"], evaluation["output"], run, None, settings={"lr": 0.03})
    assert json.loads((evaluation["output"] / "rows" / "b" / "error.json").read_text())["error"].startswith(
        "RuntimeError: simulated failure")
    assert not (evaluation["output"] / "rows" / "b" / "metrics.json").exists()
    assert evaluation["planted"].read_text() == before


# --- 3. settings that loop forever or do nothing --------------------------------------------------------


@pytest.mark.parametrize(("settings", "fragment"), [
    ({"max_epochs": -1}, "trainer.max_epochs -1 must be at least 1"),
    ({"max_epochs": 0}, "trainer.max_epochs 0 must be at least 1"),
    ({"max_epochs": 3, "max_steps": 5}, "trainer.max_steps 5 would stop the rounds part-way"),
    ({"max_epochs": 3, "limit_train_batches": 0.5}, "trainer.limit_train_batches 0.5 would cut every round short"),
    ({"max_epochs": 3, "limit_train_batches": 0}, "trainer.limit_train_batches 0 would cut every round short"),
    ({"max_epochs": 3, "limit_train_batches": 1}, "trainer.limit_train_batches 1 would cut every round short"),
    ({"max_epochs": 3, "overfit_batches": 1}, "trainer.overfit_batches 1 would cut every round short"),
    ({"max_epochs": 3, "max_time": "00:00:01:00"}, "trainer.max_time would stop the rounds part-way"),
    ({"fast_dev_run": True}, "trainer.fast_dev_run would write an unfinished mask"),
    ({"max_epochs": 3, "log_every_n_steps": 0}, "trainer.log_every_n_steps 0 must be at least 1"),
    ({"max_epochs": 3, "accumulate_grad_batches": 2}, "trainer.accumulate_grad_batches and"),
    ({"max_epochs": 3, "gradient_clip_val": 1.0}, "trainer.accumulate_grad_batches and"),
    ({"max_epochs": 3, "reload_dataloaders_every_n_epochs": 0}, "reload_dataloaders_every_n_epochs is 0"),
    ({"max_epochs": 3, "precision": "bf16-true"}, "trainer.precision bf16-true would keep the mask in 16 bits"),
])
def test_a_trainer_setting_that_breaks_the_rounds_is_named(settings: dict, fragment: str, tmp_path: Path) -> None:
    settings = {"reload_dataloaders_every_n_epochs": 1, **settings}
    trainer = Trainer(logger=TensorBoardLogger(tmp_path), enable_progress_bar=False, enable_model_summary=False,
                      **settings)
    with pytest.raises(InputError, match=fragment.replace(".", r"\.")):
        check_trainer(trainer)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(("settings", "message"), [
    ({"guidance_scale": float("nan")}, "guidance_scale must be a finite number, 0 or more, got nan: "
                                       "fix --data.guidance_scale"),
    ({"guidance_scale": -1.0}, "guidance_scale must be a finite number, 0 or more, got -1.0: "
                               "fix --data.guidance_scale"),
    ({"noise_level": float("nan")}, "noise_level must be in (0, 1], got nan: fix --data.noise_level"),
    ({"num_references": 0}, "num_references must be at least 1, got 0: fix --data.num_references"),
    ({"max_batch": 0}, "max_batch must be at least 1 (or None for no bound), got 0: fix --data.max_batch"),
    ({"windows_per_fit": 0}, "windows_per_fit 0 must be at least 1: fix --data.windows_per_fit"),
    ({"window_overlap": float("nan")}, "window_overlap nan s must be between 0 and half a window"),
])
def test_a_data_setting_out_of_its_domain_is_named(settings: dict, message: str) -> None:
    with pytest.raises(InputError) as err:
        SeparationDataModule(cache_dir=None, **settings)
    assert str(err.value).startswith(message)


@pytest.mark.parametrize(("settings", "fragment"), [
    ({"lr": float("inf")}, "lr inf must be positive"),
    ({"lr": float("nan")}, "lr nan must be positive"),
    ({"mask_init": float("inf")}, "mask_init inf must be a finite number"),
    ({"threshold": 0.0}, "threshold 0.0 must be in (0, 1]"),
])
def test_a_model_setting_out_of_its_domain_is_named(settings: dict, fragment: str) -> None:
    with pytest.raises(InputError) as err:
        MaskSeparator(**settings)
    assert str(err.value).startswith(fragment)


@pytest.mark.parametrize("class_path", ["lightning.pytorch.loggers.MLFlowLogger",
                                        "lightning.pytorch.loggers.WandbLogger"])
def test_a_logger_without_a_folder_per_fit_is_refused(class_path: str) -> None:
    from jsonargparse import Namespace

    from dgmo_pl.cli import check_loggers

    with pytest.raises(InputError, match=f"trainer.logger {class_path} is not supported"):
        check_loggers(Namespace(class_path=class_path, init_args=Namespace()))
    check_loggers(Namespace(class_path="lightning.pytorch.loggers.CSVLogger", init_args=Namespace(save_dir="x")))


def test_the_python_trainer_factory_refuses_what_it_sets_itself(tmp_path: Path) -> None:
    from dgmo_pl.separate import trainer_factory

    with pytest.raises(ValueError, match="trainer_factory sets default_root_dir, logger itself"):
        trainer_factory(tmp_path, logger=False, default_root_dir="elsewhere")


def test_separate_refuses_a_module_built_for_another_front_end(speech_dog_pair: dict[str, Path],
                                                               tmp_path: Path) -> None:
    from dgmo_pl.audio.frontend import SpectrogramConfig
    from dgmo_pl.separate import separate, trainer_factory

    separation = SeparationDataModule(mixture=str(speech_dog_pair["mixture"]), references=[str(speech_dog_pair["dog"])],
                                      cache_dir=None).separation()  # fmt: skip
    other = MaskSeparator(spec=SpectrogramConfig(n_fft=2048, win_length=2048))
    with pytest.raises(ValueError, match=r"the module's front end \(1025 bins, 16000 Hz\) is not the model's "
                                         r"\(513 bins, 16000 Hz\)"):
        separate(separation, other, trainer_factory(tmp_path), tmp_path)
    with pytest.raises(InputError, match="--model.joint true needs two or more queries"):
        separate(separation, MaskSeparator(joint=True), trainer_factory(tmp_path), tmp_path)
    assert not any(tmp_path.iterdir())


# --- 4. paths of the wrong kind ------------------------------------------------------------------------------


def test_a_folder_setting_that_is_a_file_is_refused(tmp_path: Path) -> None:
    existing = tmp_path / "results.txt"
    existing.write_text("keep")
    with pytest.raises(InputError, match=r"--output_dir '.*results.txt' is a file, not a folder"):
        check_folder(existing, "--output_dir")
    with pytest.raises(InputError, match=r"lies inside '.*results.txt', which is a file"):
        check_folder(existing / "sub" / "deeper", "--trainer.default_root_dir")
    assert existing.read_text() == "keep"


def test_a_cache_folder_that_is_a_file_is_refused_when_the_settings_are_made(tmp_path: Path) -> None:
    cache = tmp_path / "refs"
    cache.write_text("not a folder")
    with pytest.raises(InputError, match=r"--data.cache_dir '.*refs' is a file, not a folder"):
        SeparationDataModule(cache_dir=str(cache))


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder: no unwritable folder to test with")
def test_an_unwritable_folder_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(InputError, match="is not writable"):
        check_folder(locked / "run", "--trainer.default_root_dir")


# --- 5. files that are not what they claim -----------------------------------------------------------------


class _Planted:
    """Unpickling this would create a marker file: code from a checkpoint must never run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def test_a_checkpoint_that_needs_pickled_code_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned.txt"
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"mask_logits": torch.zeros(1)}, "payload": _Planted(marker)}, ckpt)
    with pytest.raises(InputError, match=r"is not a readable checkpoint \(UnpicklingError.*never pickled code"):
        read_checkpoint(ckpt)
    assert not marker.exists()


@pytest.mark.parametrize(("content", "fragment"), [
    (torch.zeros(3), "is a torch file but not a dgmo-pl checkpoint"),
    ({"model": {"weight": torch.zeros(2)}}, "is a torch file but not a dgmo-pl checkpoint"),
    ({"state_dict": {"mask_logits": "not a tensor"}}, "is a torch file but not a dgmo-pl checkpoint"),
])
def test_a_torch_file_that_is_not_a_mask_checkpoint_is_refused(content: object, fragment: str,
                                                                 tmp_path: Path) -> None:
    ckpt = tmp_path / "other.ckpt"
    torch.save(content, ckpt)
    with pytest.raises(InputError, match=fragment):
        read_checkpoint(ckpt)


def test_a_truncated_checkpoint_is_refused(tmp_path: Path) -> None:
    ckpt = tmp_path / "cut.ckpt"
    torch.save({"state_dict": {"mask_logits": torch.zeros(1, 1, 513, 1024)}}, ckpt)
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(InputError, match=r"'.*cut.ckpt' is not a readable checkpoint"):
        read_checkpoint(ckpt)


def test_a_checkpoint_with_another_mask_shape_names_both(tmp_path: Path) -> None:
    checkpoint = {"state_dict": {"mask_logits": torch.zeros(1, 1, 1025, 1024)}}
    with pytest.raises(InputError, match=r"holds a mask of shape \[1, 1, 1025, 1024\] but this run fits "
                                         r"\[1, 1, 513, 1024\]"):
        check_mask_shape(checkpoint, (1, 1, 513, 1024), tmp_path / "x.ckpt")


def test_a_wav_shorter_than_its_header_says_is_refused(tmp_path: Path) -> None:
    full = _wav(tmp_path / "full.wav", 2.0)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(InputError) as err:
        scan_audio(cut, "mixture")
    assert str(err.value) == (f"mixture '{cut}' is truncated: its header announces 64000 bytes of audio but the "
                              "file holds 31978 (0.999 s): copy or download it again, or re-export it to "
                              "rewrite its header")
    assert scan_audio(full, "mixture").frames == 32000


# --- 6. output promises --------------------------------------------------------------------------------------


def test_float_files_keep_values_beyond_full_scale(tmp_path: Path) -> None:
    block = torch.tensor([[0.5, 1.5, -2.0]])
    with AudioWriter(tmp_path / "f.wav", 16000, 1, "FLOAT") as out:
        out.write(block)
    with AudioWriter(tmp_path / "p.wav", 16000, 1, "PCM_24") as out:
        out.write(block)
    assert sf.read(str(tmp_path / "f.wav"), dtype="float32")[0].tolist() == [0.5, 1.5, -2.0]
    assert np.allclose(sf.read(str(tmp_path / "p.wav"), dtype="float32")[0], [0.5, 1.0, -1.0], atol=1e-6)


@pytest.mark.parametrize(("text", "where"), [
    ("model:\n  lr: [0.1\n", "line 3, column 1"),
    ("model: {lr: 0.1\n", "line 2, column 1"),
    ("data:\n\tquery: dog\n", "line 2, column 1"),
])
def test_a_config_file_that_is_not_yaml_is_named_with_its_line(text: str, where: str, tmp_path: Path) -> None:
    config = tmp_path / "my.yaml"
    config.write_text(text)
    with pytest.raises(InputError) as err:
        check_config_files(["fit", "--config", str(config)])
    assert str(err.value).startswith(f"--config '{config}', {where}: not valid YAML (")


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"--config '.*nope.yaml' does not exist"):
        check_config_files([f"--config={tmp_path / 'nope.yaml'}"])


# --- 7. file-system failures ------------------------------------------------------------------------------


def test_a_checkpoint_that_cannot_be_written_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full_disk(*args: object, **kwargs: object) -> None:
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", full_disk)
    path = tmp_path / "checkpoints" / "epoch=0-step=3.ckpt"
    with pytest.raises(OSError, match=r"could not write the checkpoint '.*epoch=0-step=3.ckpt' \(PytorchStreamWriter"):
        AtomicCheckpointIO().save_checkpoint({"state_dict": {}}, path)
    assert list(path.parent.iterdir()) == []


def test_an_audio_write_refused_by_the_file_system_is_an_os_error(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: sf.SoundFile, data: np.ndarray) -> None:
        raise sf.LibsndfileError(0, prefix="Error writing: ")

    monkeypatch.setattr(sf.SoundFile, "write", refuse)
    with pytest.raises(OSError, match=r"could not write audio to '.*out.wav'"):
        with AudioWriter(tmp_path / "out.wav", 16000, 1) as out:
            out.write(torch.zeros(10))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("code", "advice"), [
    (errno.ENOSPC, "free some space"), (errno.EFBIG, "file size limit"), (errno.EACCES, "permissions"),
    (errno.EROFS, "read-only"), (errno.EIO, "check the free space and permissions"),
])
def test_file_system_errors_read_as_one_line_with_advice(code: int, advice: str) -> None:
    line = describe_os_error(OSError(code, os.strerror(code), "/data/run/out.wav"))
    assert line.startswith(f"{os.strerror(code)} '/data/run/out.wav': ") and advice in line and "\n" not in line


def test_pickle_is_never_used_to_read_cache_entries() -> None:
    """Cache entries are safetensors files (no code in them); this module's loaders use weights-only torch.load.

    (``save_checkpoint(..., weights_only=False)`` is about what is saved: the whole training state.)
    """
    source = (Path(__file__).parents[1] / "dgmo_pl").rglob("*.py")
    for path in source:
        text = path.read_text()
        assert "pickle.load" not in text and not re.search(r"load\w*\([^)]*weights_only=False", text), path


# --- the command line, end to end: one line, an exit status, nothing changed -----------------------------


FAST = ["--model.lr", "0.1", "--data.steps_per_round", "10", "--trainer.max_epochs", "1"]


@pytest.fixture(scope="module")
def world(speech_dog_pair: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An output root holding an earlier finished run, a file planted beside it, a victim folder, a manifest."""
    from helpers import fit

    base = tmp_path_factory.mktemp("world")
    refs = json.dumps([str(speech_dog_pair["dog"])])
    fit(base / "logs", "--data.mixture", str(speech_dog_pair["mixture"]), "--data.references", refs, *FAST)
    (base / "planted.txt").write_text("beside the output")
    (base / "victim").mkdir()
    (base / "victim" / "thesis.txt").write_text("years of work")
    return {"base": base, "root": base / "logs", "pair": speech_dog_pair, "refs": refs}


def expect_error(world: dict, capsys: pytest.CaptureFixture, argv: list[str], fragment: str, code: int = 2) -> str:
    """Run the command line to its error: the exit status, one line naming ``fragment``, no file changed."""
    from helpers import QUIET, main

    before = snapshot(world["base"])
    with pytest.raises(SystemExit) as exit_:
        main([*argv[:1], "--config", str(Path(__file__).parents[1] / "configs" / "dgmo.yaml"),
              "--trainer.default_root_dir", str(world["root"]), *QUIET, *argv[1:]])
    assert exit_.value.code == code
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and fragment in line, line
    assert snapshot(world["base"]) == before
    return line


def _fit_args(world: dict) -> list[str]:
    return ["fit", "--data.mixture", str(world["pair"]["mixture"]), "--data.references", world["refs"],
            "--data.cache_dir", "null", *FAST]


@pytest.mark.integration
@pytest.mark.parametrize(("extra", "fragment"), [
    (["--trainer.max_epochs", "-1"], "trainer.max_epochs -1 must be at least 1"),
    (["--trainer.max_epochs", "0"], "trainer.max_epochs 0 must be at least 1"),
    (["--trainer.max_steps", "5"], "trainer.max_steps 5 would stop the rounds part-way"),
    (["--trainer.limit_train_batches", "0"], "trainer.limit_train_batches 0 would cut every round short"),
    (["--monitor.every_n_steps", "0"], "every_n_steps must be at least 1, got 0: fix --monitor.every_n_steps"),
    (["--data.guidance_scale", "-2"], "guidance_scale must be a finite number, 0 or more, got -2.0"),
    (["--model.threshold", "1.5"], "threshold 1.5 must be in (0, 1]"),
    (["--data.num_references", "0"], "num_references must be at least 1, got 0: fix --data.num_references"),
])
def test_command_line_settings(world: dict, capsys: pytest.CaptureFixture, extra: list[str], fragment: str) -> None:
    expect_error(world, capsys, [*_fit_args(world), *extra], fragment)


@pytest.mark.integration
@pytest.mark.parametrize("name", ["last", "best", "hpc"])
def test_command_line_checkpoint_names_that_cannot_resume(world: dict, capsys: pytest.CaptureFixture,
                                                          name: str) -> None:
    expect_error(world, capsys, [*_fit_args(world), "--ckpt_path", name], f"--ckpt_path {name} cannot resume a run")


@pytest.mark.integration
def test_evaluate_refuses_joint_masks_of_one_query(world: dict, capsys: pytest.CaptureFixture,
                                                   tmp_path: Path) -> None:
    """Each row has one query: joint masks without a residual would output the mixture itself."""
    manifest = _manifest(world, tmp_path, "{mixture},dog barking,{source},r1\n")
    expect_error(world, capsys, _evaluate_args(manifest, "--model.joint", "true",
                                               "--output_dir", str(world["base"] / "evaluation")),
                 "--model.joint true needs two or more queries, or --model.residual true")


@pytest.mark.integration
def test_a_single_configured_callback_is_kept_in_every_fit(world: dict, tmp_path: Path) -> None:
    from helpers import fit

    run = fit(tmp_path / "logs", *_fit_args(world)[1:], "--trainer.callbacks", "LearningRateMonitor")
    assert (run / "dog-barking" / "dog-barking.wav").is_file()


@pytest.mark.integration
def test_command_line_root_that_is_a_file(world: dict, capsys: pytest.CaptureFixture) -> None:
    planted = world["base"] / "planted.txt"
    expect_error(world, capsys, [*_fit_args(world), "--trainer.default_root_dir", str(planted)],
                 "which is a file: pass a folder path")


@pytest.mark.integration
def test_command_line_cache_that_is_a_file(world: dict, capsys: pytest.CaptureFixture) -> None:
    planted = world["base"] / "planted.txt"
    expect_error(world, capsys, [*_fit_args(world), "--data.cache_dir", str(planted)],
                 f"--data.cache_dir '{planted}' is a file, not a folder")


@pytest.mark.integration
def test_command_line_checkpoint_that_is_a_tensor(world: dict, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    ckpt = tmp_path / "tensor.ckpt"
    torch.save(torch.zeros(3), ckpt)
    expect_error(world, capsys, [*_fit_args(world), "--ckpt_path", str(ckpt)],
                 f"--ckpt_path '{ckpt}' is a torch file but not a dgmo-pl checkpoint")


@pytest.mark.integration
def test_command_line_checkpoint_with_code(world: dict, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    marker, ckpt = tmp_path / "pwned.txt", tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"mask_logits": torch.zeros(1)}, "x": _Planted(marker)}, ckpt)
    expect_error(world, capsys, [*_fit_args(world), "--ckpt_path", str(ckpt)], "never pickled code")
    assert not marker.exists()


@pytest.mark.integration
def test_command_line_config_that_is_not_yaml(world: dict, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    config = tmp_path / "mine.yaml"
    config.write_text("trainer:\n  max_epochs: [2\n")
    expect_error(world, capsys, [*_fit_args(world), "--config", str(config)],
                 f"--config '{config}', line 3, column 1: not valid YAML")


@pytest.mark.integration
def test_command_line_truncated_mixture(world: dict, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    cut = tmp_path / "cut.wav"
    cut.write_bytes(world["pair"]["mixture"].read_bytes()[:200_000])
    expect_error(world, capsys, ["fit", "--data.mixture", str(cut), "--data.references", world["refs"], *FAST],
                 f"mixture '{cut}' is truncated")


def _manifest(world: dict, tmp_path: Path, rows: str) -> Path:
    manifest = tmp_path / "set.csv"
    pair = world["pair"]
    manifest.write_text("mixture,query,source,id\n" + rows.format(mixture=pair["mixture"], source=pair["dog"]))
    return manifest


def _evaluate_args(manifest: Path, *extra: str) -> list[str]:
    return ["evaluate", "--data.cache_dir", "null", *FAST, "--manifest", str(manifest), "--reference_source",
            "true_source", "--clap_model", "null", *extra]


@pytest.mark.integration
@pytest.mark.parametrize("row_id", ["../victim", ".", "../../x", "x/../../victim"])
def test_evaluate_refuses_an_id_that_is_a_path(world: dict, capsys: pytest.CaptureFixture, tmp_path: Path,
                                               row_id: str) -> None:
    manifest = _manifest(world, tmp_path, "{mixture},dog barking,{source}," + row_id + "\n")
    expect_error(world, capsys, _evaluate_args(manifest, "--output_dir", str(world["base"] / "evaluation")),
                 f"id {row_id!r} is not a plain name")
    assert (world["base"] / "victim" / "thesis.txt").read_text() == "years of work"


@pytest.mark.integration
def test_evaluate_refuses_a_header_only_manifest(world: dict, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    manifest = _manifest(world, tmp_path, "")
    expect_error(world, capsys, _evaluate_args(manifest), "has a header but no rows")


@pytest.mark.integration
def test_evaluate_refuses_an_output_dir_that_is_a_file(world: dict, capsys: pytest.CaptureFixture,
                                                       tmp_path: Path) -> None:
    manifest = _manifest(world, tmp_path, "{mixture},dog barking,{source},r1\n")
    planted = world["base"] / "planted.txt"
    expect_error(world, capsys, _evaluate_args(manifest, "--output_dir", str(planted)),
                 f"--output_dir '{planted}' is a file, not a folder")


# --- a full disk, for real: a file size limit in a child process ------------------------------------------


def _limited(limit: int) -> None:
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.integration
@pytest.mark.parametrize(("limit", "extra", "fragment"), [
    (1_000_000, [], ".ckpt': a file size limit was reached"),  # the mask and its Adam state: about 6 MB
    (100_000, ["--trainer.enable_checkpointing", "false"], "could not write audio to"),  # the wav: 320 kB
])
def test_a_full_disk_ends_with_one_line_and_no_partial_file(world: dict, tmp_path: Path, limit: int,
                                                            extra: list[str], fragment: str) -> None:
    import subprocess
    import sys

    root = tmp_path / "logs"
    pair = world["pair"]
    argv = [sys.executable, "-m", "dgmo_pl", "fit", "--trainer.default_root_dir", str(root),
            "--data.mixture", str(pair["mixture"]), "--data.references", world["refs"], "--data.cache_dir", "null",
            "--trainer.enable_progress_bar", "false", *FAST, *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300,
                          preexec_fn=lambda: _limited(limit), cwd=Path(__file__).parents[1])  # noqa: PLW1509
    assert done.returncode == 1, done.stderr[-2000:]
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and fragment in line and "nothing partial was kept" in line, line
    assert "Traceback" not in done.stderr
    leftovers = [p.name for p in root.rglob("*") if p.is_file() and (p.suffix in (".wav", ".ckpt", ".tmp")
                                                                      or p.name.startswith("."))]
    assert leftovers == []


# --- joint outputs of a float recording above full scale still add up to it -------------------------------


@pytest.mark.integration
def test_joint_float_outputs_add_up_to_a_mixture_beyond_full_scale(world: dict, tmp_path: Path) -> None:
    from helpers import fit

    pair = world["pair"]
    mixture, rate = sf.read(str(pair["mixture"]), dtype="float32")
    loud = tmp_path / "loud.wav"
    sf.write(str(loud), mixture * 4.0, rate, subtype="FLOAT")  # peaks near 2.0
    dog, _ = sf.read(str(pair["dog"]), dtype="float32")
    speech, _ = sf.read(str(pair["speech"]), dtype="float32")
    sources = []
    for name, audio in (("dog", dog), ("speech", speech)):
        sources.append(tmp_path / f"{name}.wav")
        sf.write(str(sources[-1]), audio * 4.0, rate, subtype="FLOAT")
    run = fit(tmp_path / "logs", "--data.mixture", str(loud), "--data.queries", '["dog barking", "man speaking"]',
              "--data.references", json.dumps([[str(s)] for s in sources]), "--model.joint", "true",
              "--model.residual", "true", "--audio.subtype", "FLOAT", "--audio.write_references", "false", *FAST)
    outputs = [sf.read(str(run / "joint" / f"{n}.wav"), dtype="float32")[0]
               for n in ("dog-barking", "man-speaking", "residual")]
    total = np.sum(outputs, axis=0)
    assert np.abs(total).max() > 1.5
    assert np.abs(total - mixture * 4.0).max() < 1e-4


# --- model folders with damaged or foreign weights -----------------------------------------------------------


def _copy_model(tiny_model: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(tiny_model, tmp_path / "model"))


@pytest.mark.integration
def test_a_model_component_pickled_with_code_is_refused_and_nothing_runs(tiny_model: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    model = _copy_model(tiny_model, tmp_path)
    (weights,) = (model / "vae").glob("*.safetensors")
    state, marker = load_file(weights), tmp_path / "pwned.txt"
    weights.unlink()
    torch.save({**state, "payload": _Planted(marker)}, model / "vae" / "diffusion_pytorch_model.bin")
    with pytest.raises(InputError) as err:
        SeparationDataModule(model=str(model), cache_dir=None).provider()
    assert str(err.value).startswith(f"could not load the 'vae' of AudioLDM model '{model}' from local folder")
    assert "vae/diffusion_pytorch_model.bin" in str(err.value) and "is incomplete or damaged" in str(err.value)
    assert not marker.exists()


@pytest.mark.integration
def test_a_truncated_safetensors_component_is_named(tiny_model: Path, tmp_path: Path) -> None:
    model = _copy_model(tiny_model, tmp_path)
    (weights,) = (model / "unet").glob("*.safetensors")
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(InputError) as err:
        SeparationDataModule(model=str(model), cache_dir=None).provider()
    assert str(err.value).startswith(f"could not load the 'unet' of AudioLDM model '{model}' from local folder")


@pytest.mark.integration
def test_an_explicit_logger_version_that_exists_is_refused(world: dict, capsys: pytest.CaptureFixture) -> None:
    """--trainer.logger.version naming an earlier run's folder: refused, the earlier run untouched."""
    (earlier,) = (world["root"] / "lightning_logs").glob("version_*")
    expect_error(world, capsys, [*_fit_args(world), "--trainer.logger", "TensorBoardLogger",
                                 "--trainer.logger.save_dir", str(world["root"]),
                                 "--trainer.logger.version", earlier.name.removeprefix("version_")],
                 f"run folder '{earlier}' exists (--trainer.logger.version")
