"""Each user mistake: a one-line message naming the value, exit status 2, and no output files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import QUIET, REPO, main

#: Every test runs the command line (in-process, or main.py as a process) to its error: about
#: a second each for the argument parser, so the integration tier.
pytestmark = pytest.mark.integration


def run_expecting_error(root: Path, capsys: pytest.CaptureFixture, *args: str) -> str:
    """Run ``fit`` and return its one-line error, checking the exit status and that nothing was written."""
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", str(REPO / "configs/dgmo.yaml"), "--trainer.default_root_dir", str(root),
              "--data.cache_dir", str(root / "references"), *QUIET, *args])
    assert exit_.value.code == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    err = stderr.strip().splitlines()[-1]  # libraries may print progress above it
    assert err.startswith("error: ")
    assert not root.exists() or not any(root.iterdir()), "a failed run left files behind"
    return err


def _wav(path: Path, data: np.ndarray, subtype: str = "PCM_16") -> Path:
    sf.write(str(path), data, 16000, subtype=subtype)
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """One bad mixture file of each kind."""
    noise = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    nan = noise.copy()
    nan[100] = np.nan
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n")
    empty = tmp_path / "empty.wav"
    empty.touch()
    return {
        "missing": tmp_path / "missing.wav",
        "empty": empty,
        "not_audio": text,
        "no_samples": _wav(tmp_path / "no_samples.wav", np.zeros(0, np.float32)),
        "silence": _wav(tmp_path / "silence.wav", np.zeros(16000, np.float32)),
        "nan": _wav(tmp_path / "nan.wav", nan, "FLOAT"),
        "good": _wav(tmp_path / "good.wav", noise),
        "short_reference": _wav(tmp_path / "short.wav", noise[:8000]),
        # Opposite channels cancel in the mono mix down to one 16-bit step of residue.
        "cancelling": _wav(tmp_path / "cancelling.wav", np.stack([noise, -noise + 3e-5], axis=1)),
    }


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [
        ("missing", "does not exist"),
        ("empty", "empty file"),
        ("not_audio", "could not be read as audio"),
        ("no_samples", "contains no samples"),
        ("silence", "is silent"),
        ("nan", "NaN or infinite"),
        ("cancelling", "silent (peak below -90 dBFS once mixed to mono: its channels cancel)"),
    ],
)
def test_bad_mixture_file(kind: str, fragment: str, files: dict[str, Path], tmp_path: Path,
                          capsys: pytest.CaptureFixture) -> None:
    """A mixture that cannot be separated is named in the error with the reason."""
    err = run_expecting_error(tmp_path / "logs", capsys, "--data.mixture", str(files[kind]),
                              "--data.references", f"[{files['good']}]")
    assert str(files[kind]) in err and fragment in err


@pytest.mark.parametrize("query", ["", "   "])
def test_empty_query(query: str, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """An empty or blank query is refused, with the flag to fix it."""
    err = run_expecting_error(tmp_path / "logs", capsys, "--data.mixture", str(files["good"]),
                              "--data.query", query)
    assert repr(query) in err and "--data.query" in err


def test_reference_of_the_wrong_length(files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A reference that is not time-aligned with the mixture is refused, with both lengths."""
    err = run_expecting_error(tmp_path / "logs", capsys, "--data.mixture", str(files["good"]),
                              "--data.references", f"[{files['short_reference']}]")
    assert str(files["short_reference"]) in err and "0.500 s" in err and "1.000 s" in err


def test_model_folder_of_an_unsupported_pipeline(files: dict[str, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    """A folder of a model no backbone supports is named, with the supported ones and what to pass instead."""
    folder = tmp_path / "some_model"
    folder.mkdir()
    (folder / "model_index.json").write_text('{"_class_name": "FluxPipeline"}')
    err = run_expecting_error(tmp_path / "logs", capsys, "--data.mixture", str(files["good"]),
                              "--data.model", str(folder))
    assert str(folder) in err and "FluxPipeline" in err and "no backbone supports" in err
    assert all(name in err for name in ("AudioLDM", "AudioLDM2", "Auffusion")) and "--data.backbone" in err


def test_model_that_cannot_be_downloaded(files: dict[str, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    """With no hub, the error names the model, where it looked, and how to use a local copy."""
    err = run_expecting_error(tmp_path / "logs", capsys, "--data.mixture", str(files["good"]),
                              "--data.model", "cvssp/audioldm")
    assert "'cvssp/audioldm'" in err and "HF_HUB_OFFLINE" in err and "--data.model DIR" in err


@pytest.mark.parametrize(("flag", "value"), [("--data.ddim_steps", "1"), ("--data.noise_level", "1.5"),
                                             ("--data.num_references", "0"), ("--data.steps_per_round", "0"),
                                             ("--model.lr", "-0.5"), ("--model.threshold", "1.5")])
def test_bad_generation_setting(flag: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """An impossible setting is named with its value."""
    err = run_expecting_error(tmp_path / "logs", capsys, flag, value)
    assert value in err and flag.split(".")[1] in err


def test_main_py_exits_2_with_one_line(files: dict[str, Path], tmp_path: Path) -> None:
    """As a real process, main.py ends a user mistake with status 2 and an `error:` line, no traceback."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "main.py"), "fit", "--config", str(REPO / "configs/dgmo.yaml"),
         "--data.mixture", str(files["missing"]), "--trainer.default_root_dir", str(tmp_path / "logs")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: mixture '{files['missing']}' does not exist")
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--trainer.logger", "false"], "trainer.logger is off"),
        (["--trainer.reload_dataloaders_every_n_epochs", "2"], "reload_dataloaders_every_n_epochs is 2"),
        (["--trainer.precision", "bf16-true"], "trainer.precision bf16-true"),
        (["--ckpt_path", "no/such.ckpt"], "checkpoint 'no/such.ckpt' does not exist"),
    ],
)
def test_bad_trainer_setting(flags: list[str], fragment: str, files: dict[str, Path], tmp_path: Path,
                             capsys: pytest.CaptureFixture) -> None:
    """Trainer settings that would break the method or mix runs fail before anything is written."""
    err = run_expecting_error(tmp_path / "logs", capsys, "--data.mixture", str(files["good"]),
                              "--data.references", f"[{files['good']}]", *flags)
    assert fragment in err


def test_more_ddim_steps_than_the_model_has(tiny_model: Path, files: dict[str, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    """ddim_steps beyond the scheduler's training timesteps is named before anything is written."""
    err = run_expecting_error(tmp_path / "logs", capsys, "--data.mixture", str(files["good"]),
                              "--data.model", str(tiny_model), "--data.ddim_steps", "1001")
    assert "ddim_steps 1001 exceeds the 1000 timesteps" in err


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--data.queries", '["dog barking", "rain", "dog barking"]'], "query 'dog barking' is listed twice"),
        (["--data.queries", '["dog barking", " "]'], "query ' ' is empty"),
        (["--data.max_batch", "0"], "max_batch must be at least 1 (or None for no bound), got 0"),
        (["--data.window_overlap", "6"], "window_overlap 6.0 s must be between 0 and half a window (5.12 s)"),
        (["--data.window_overlap", "-1"], "window_overlap -1.0 s must be between 0"),
        (["--data.windows_per_fit", "0"], "windows_per_fit 0 must be at least 1: fix --data.windows_per_fit"),
        (["--model.residual", "true"], "residual is true but joint is false"),
        (["--model.joint", "true"], "--model.joint true needs two or more queries, or --model.residual true"),
    ],
)
def test_bad_query_or_runtime_setting(flags: list[str], fragment: str, files: dict[str, Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture) -> None:
    """Bad query lists and runtime settings are named before anything is loaded or written."""
    err = run_expecting_error(tmp_path / "logs", capsys, "--data.mixture", str(files["good"]), *flags)
    assert fragment in err


@pytest.mark.parametrize(
    ("references", "fragment"),
    [
        ("[{good}]", "--data.references lists files for one query, but 2 queries were given"),
        ("[[{good}]]", "--data.references has 1 entries for 2 queries"),
        ("[[{good}], []]", "--data.references has 2 entries for 2 queries: give one non-empty list"),
    ],
)
def test_references_need_one_list_per_query(references: str, fragment: str, files: dict[str, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    """True-source references with several queries need one list per query: whose would they be?"""
    err = run_expecting_error(tmp_path / "logs", capsys, "--data.mixture", str(files["good"]),
                              "--data.references", references.format(good=files["good"]),
                              "--data.queries", '["a", "b"]')
    assert fragment in err


def test_a_checkpoint_resumes_one_fit_of_windows(files: dict[str, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    """--ckpt_path with a recording that takes several fits (here 30 s, one window a fit) is refused."""
    import torch

    long = _wav(tmp_path / "long.wav", np.tile(np.random.default_rng(1).normal(0, 0.1, 16000), 30).astype(np.float32))
    ckpt = tmp_path / "mask.ckpt"
    torch.save({"state_dict": {"mask_logits": torch.zeros(1, 1, 513, 1024)}}, ckpt)
    err = run_expecting_error(tmp_path / "logs", capsys, "--data.mixture", str(long),
                              "--data.references", f"[{long}]", "--data.windows_per_fit", "1",
                              "--ckpt_path", str(ckpt))
    assert "--ckpt_path resumes one fit, but the mixture takes 4 fits of 1 windows" in err


def test_a_checkpoint_resumes_one_query(tiny_model: Path, files: dict[str, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    """--ckpt_path with several queries is refused: a checkpoint holds one query's mask."""
    import torch

    ckpt = tmp_path / "mask.ckpt"
    torch.save({"state_dict": {"mask_logits": torch.zeros(1, 1, 513, 1024)}}, ckpt)
    err = run_expecting_error(tmp_path / "logs", capsys, "--data.mixture", str(files["good"]),
                              "--data.model", str(tiny_model), "--data.queries", '["a", "b"]',
                              "--ckpt_path", str(ckpt))
    assert "--ckpt_path resumes one query's mask, but 2 queries were given" in err


def test_unknown_diffusion_precision_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The argument parser names an unknown precision and the accepted ones."""
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", str(REPO / "configs/dgmo.yaml"), "--trainer.default_root_dir", str(tmp_path),
              "--data.precision", "fp8"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "fp8" in err and "bf16-mixed" in err
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_references_subcommand_needs_a_cache_folder(tiny_model: Path, files: dict[str, Path], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    """Generating references ahead with nowhere to keep them is refused."""
    with pytest.raises(SystemExit) as exit_:
        main(["references", "--config", str(REPO / "configs/dgmo.yaml"), "--data.mixture", str(files["good"]),
              "--data.model", str(tiny_model), "--data.cache_dir", "null",
              "--trainer.default_root_dir", str(tmp_path / "logs")])
    assert exit_.value.code == 2
    assert "--data.cache_dir is null, so references would not be kept" in capsys.readouterr().err


def test_a_file_that_is_not_a_checkpoint_is_named(files: dict[str, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    """--ckpt_path pointing at some other file ends with a one-line error, not a pickling traceback."""
    bogus = tmp_path / "notes.ckpt"
    bogus.write_text("not a checkpoint")
    err = run_expecting_error(tmp_path / "logs", capsys, "--data.mixture", str(files["good"]),
                              "--data.references", f"[{files['good']}]", "--ckpt_path", str(bogus))
    assert f"--ckpt_path '{bogus}' is not a readable checkpoint" in err
