"""Folders and lists of recordings in one run: every file with every query, the model loaded once."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import QUIET, REPO, main, tiny_args

from dgmo_pl.batch import list_recordings
from dgmo_pl.data import SeparationDataModule
from dgmo_pl.diffusion.references import ReferenceGenerator
from dgmo_pl.errors import InputError

QUERIES = '["dog barking", "man speaking"]'


def _wav(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.random.default_rng(seed).normal(0, 0.1, 16000).astype(np.float32), 16000)
    return path


# --- which files, under which names (fast) ------------------------------------------------------------


def test_a_folder_gives_its_audio_files_by_relative_path(tmp_path: Path) -> None:
    for name in ("b.wav", "sub/a.flac", "notes.txt", ".hidden/c.wav", ".d.wav"):
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"x")
    assert list_recordings(str(tmp_path)) == [("b", tmp_path / "b.wav"), ("sub/a", tmp_path / "sub" / "a.flac")]


def test_files_sharing_a_stem_keep_their_endings(tmp_path: Path) -> None:
    files = [_wav(tmp_path / "take.wav"), _wav(tmp_path / "take.flac")]
    assert [name for name, _ in list_recordings(str(tmp_path))] == ["take.flac", "take.wav"]
    assert [name for name, _ in list_recordings([str(f) for f in files])] == ["take.wav", "take.flac"]


@pytest.mark.parametrize(("make", "message"), [
    (lambda d: [str(d / "missing.wav")], "--data.mixture lists '{d}/missing.wav', which does not exist"),
    (lambda d: str(d), "--data.mixture folder '{d}' holds no audio file"),
    (lambda d: [str(_wav(d / "x" / "a.wav")), str(_wav(d / "y" / "a.wav"))], "lists two files named 'a.wav'"),
])
def test_a_bad_list_or_folder_is_named(make, message: str, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=message.format(d=tmp_path).replace(".", r"\.")):
        list_recordings(make(tmp_path))


def test_true_source_references_need_one_recording(tmp_path: Path) -> None:
    _wav(tmp_path / "a.wav")
    with pytest.raises(InputError, match="--data.references are time-aligned with one mixture"):
        SeparationDataModule(mixture=str(tmp_path), references=[str(tmp_path / "a.wav")], cache_dir=None)


# --- whole runs on the tiny model --------------------------------------------------------------------------


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts the diffusion model's loads."""
    counted: list[str] = []
    original = ReferenceGenerator.from_pretrained.__func__

    def counting(cls, *args, **kwargs):
        counted.append(args[0])
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(ReferenceGenerator, "from_pretrained", classmethod(counting))
    return counted


def _fit(tiny_model: Path, mixture: str, output: Path) -> None:
    main(["fit", "--config", str(REPO / "configs/dgmo.yaml"), "--trainer.default_root_dir", str(output.parent), *QUIET,
          *tiny_args(tiny_model, ddim_steps=3, steps_per_round=2), "--trainer.max_epochs", "1",
          "--audio.write_references", "false", "--data.cache_dir", "null", "--data.mixture", mixture,
          "--data.queries", QUERIES, "--output_dir", str(output)])


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.wav"))}  # fmt: skip


@pytest.mark.integration
def test_a_folder_of_three_with_two_queries_gives_six_outputs_and_one_model_load(
    tiny_model: Path, speech_dog_pair: dict[str, Path], tmp_path: Path, loads: list[str],
    capsys: pytest.CaptureFixture,
) -> None:
    inputs = tmp_path / "in"
    for name in ("one.wav", "two.wav", "sub/three.wav"):
        (inputs / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(speech_dog_pair["mixture"], inputs / name)
    output = tmp_path / "out"
    _fit(tiny_model, str(inputs), output)
    written = sorted(str(p.relative_to(output)) for p in output.rglob("*.wav"))
    assert written == [f"{rec}/{q}/{q}.wav" for rec in ("one", "sub/three", "two")
                       for q in ("dog-barking", "man-speaking")]  # fmt: skip
    assert loads == [str(tiny_model)]
    assert "3 separated, 0 already done, 0 failed" in capsys.readouterr().out

    before = _hashes(output)
    _fit(tiny_model, str(inputs), output)  # again into the same folder: nothing to do
    assert "0 separated, 3 already done, 0 failed" in capsys.readouterr().out
    assert _hashes(output) == before

    shutil.copy(speech_dog_pair["dog"], inputs / "two.wav")  # one recording changes: only it is redone
    _fit(tiny_model, str(inputs), output)
    assert "1 separated, 2 already done, 0 failed" in capsys.readouterr().out
    after = _hashes(output)
    assert {k for k in after if after[k] != before[k]} == {"two/dog-barking/dog-barking.wav",
                                                           "two/man-speaking/man-speaking.wav"}


@pytest.mark.integration
def test_a_broken_file_is_reported_and_the_others_finish(tiny_model: Path, speech_dog_pair: dict[str, Path],
                                                        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(speech_dog_pair["mixture"], inputs / "good.wav")
    (inputs / "broken.wav").write_text("not audio at all")
    output = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        _fit(tiny_model, str(inputs), output)
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert f"error: {inputs / 'broken.wav'}: mixture '{inputs / 'broken.wav'}' could not be read as audio" in err
    assert err.strip().splitlines()[-1] == "error: 1 recordings failed (broken); see the lines above"
    assert sorted(str(p.relative_to(output)) for p in output.rglob("*.wav")) == [
        "good/dog-barking/dog-barking.wav", "good/man-speaking/man-speaking.wav"]
    assert not list(output.glob(".*"))  # no attempt folder left
