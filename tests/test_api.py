"""The Python API: the same fit loop, settings and files as ``main.py fit``, the model loaded once."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch
from helpers import QUIET, REPO, main, tiny_args
from safetensors.torch import load_file

from dgmo_pl import Separator
from dgmo_pl.audio.io import read_audio, write_audio
from dgmo_pl.diffusion.references import ReferenceGenerator
from dgmo_pl.errors import InputError

pytestmark = pytest.mark.integration  # whole fits on the tiny model

QUERIES = ["dog barking", "man speaking"]


@pytest.fixture(scope="module")
def separator(tiny_model: Path) -> Separator:
    return Separator.from_pretrained(str(tiny_model), ddim_steps=4, steps_per_round=5, rounds=2, cache_dir=None)


@pytest.fixture(scope="module")
def cli_run(tiny_model: Path, speech_dog_pair: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``main.py fit`` with the same settings: two independent queries, two rounds."""
    root = tmp_path_factory.mktemp("cli")
    main(["fit", "--config", str(REPO / "configs/dgmo.yaml"), "--trainer.default_root_dir", str(root), *QUIET,
          *tiny_args(tiny_model, ddim_steps=4, steps_per_round=5), "--trainer.max_epochs", "2",
          "--data.cache_dir", "null", "--data.mixture", str(speech_dog_pair["mixture"]),
          "--data.queries", '["dog barking", "man speaking"]'])
    (run,) = (root / "lightning_logs").glob("version_*")
    return run


def test_the_api_gives_the_command_lines_output(separator: Separator, cli_run: Path,
                                                speech_dog_pair: dict[str, Path], tmp_path: Path) -> None:
    """Same settings and seed: the same samples; save() writes the same files, byte for byte."""
    result = separator.separate(speech_dog_pair["mixture"], QUERIES)
    assert list(result) == ["dog-barking", "man-speaking"] and result.sample_rate == 16000
    for name in result:
        assert torch.equal(result[name], read_audio(cli_run / name / f"{name}.wav")[0]), name
    for path in result.save(tmp_path):
        assert path.read_bytes() == (cli_run / path.relative_to(tmp_path)).read_bytes()
    for name in result:  # the fitted masks that made them: [windows, F, T] on the model's grid
        assert torch.equal(result.masks[name], load_file(cli_run / name / "masks.safetensors")["masks"][0]), name


def test_a_waveform_gives_what_its_file_gives(separator: Separator, speech_dog_pair: dict[str, Path]) -> None:
    waveform, rate = read_audio(speech_dog_pair["mixture"])
    from_file = separator.separate(speech_dog_pair["mixture"], "dog barking")
    from_tensor = separator.separate(waveform[0], "dog barking", sample_rate=rate)
    assert torch.equal(from_file["dog-barking"], from_tensor["dog-barking"])


def test_the_model_is_loaded_once_per_separator(tiny_model: Path, speech_dog_pair: dict[str, Path],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    loads = []
    original = ReferenceGenerator.from_pretrained.__func__

    def counting(cls, *args, **kwargs):
        loads.append(args[0])
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(ReferenceGenerator, "from_pretrained", classmethod(counting))
    sep = Separator.from_pretrained(str(tiny_model), ddim_steps=4, steps_per_round=2, rounds=1, cache_dir=None)
    for query in QUERIES:
        sep.separate(speech_dog_pair["mixture"], query)
    assert loads == [str(tiny_model)]


def test_joint_outputs_with_a_residual_add_up_to_the_mixture(separator: Separator,
                                                             speech_dog_pair: dict[str, Path]) -> None:
    result = separator.separate(speech_dog_pair["mixture"], QUERIES, joint=True, residual=True)
    assert list(result) == ["dog-barking", "man-speaking", "residual"]
    total = sum(result[name] for name in result)
    assert (total - read_audio(speech_dog_pair["mixture"])[0]).abs().max() < 1e-3  # 16-bit files


@pytest.mark.parametrize(("call", "message"), [
    (lambda s, p: s.separate(p["mixture"], "  "), "query '  ' is empty"),
    (lambda s, p: s.separate(Path("no/such.wav"), "dog"), "mixture 'no/such.wav' does not exist"),
    (lambda s, p: s.separate(torch.zeros(100), "dog"), "a waveform needs its sample_rate (got None)"),
    (lambda s, p: s.separate(p["mixture"], "dog", sample_rate=16000), "sample_rate 16000 is for a waveform"),
])
def test_bad_input_raises_the_command_lines_message(separator: Separator, speech_dog_pair: dict[str, Path],
                                                    call, message: str) -> None:
    with pytest.raises(ValueError) as err:
        call(separator, speech_dog_pair)
    assert isinstance(err.value, InputError) and str(err.value).startswith(message)


def test_the_readme_example_runs_as_written(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's Python block, on the tiny model at models/tiny-audioldm, run from a fresh folder."""
    block = re.search(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.DOTALL)[1]
    (tmp_path / "models").mkdir()
    os.symlink(tiny_model, tmp_path / "models" / "tiny-audioldm")
    os.symlink(REPO / "dgmo_pl", tmp_path / "dgmo_pl")
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})  # noqa: S102 - the README's own example
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.wav"))
    assert written == ["joint/dog-barking.wav", "joint/man-speaking.wav", "joint/residual.wav"]


def test_a_folder_is_separated_with_every_query_the_model_loaded_once(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """3 recordings x 2 queries: 6 files where ``fit --output_dir`` puts them; a broken file is reported, not raised."""
    loads = []
    original = ReferenceGenerator.from_pretrained.__func__
    monkeypatch.setattr(ReferenceGenerator, "from_pretrained",
                        classmethod(lambda cls, *a, **k: loads.append(a[0]) or original(cls, *a, **k)))
    inputs = tmp_path / "in"
    for seed, name in enumerate(("a.wav", "b.flac", "sub/c.wav")):
        (inputs / name).parent.mkdir(parents=True, exist_ok=True)
        write_audio(inputs / name, torch.randn(1, 8000, generator=torch.Generator().manual_seed(seed)) * 0.1, 16000)
    (inputs / "broken.wav").write_text("not audio at all")
    sep = Separator.from_pretrained(str(tiny_model), ddim_steps=4, steps_per_round=2, rounds=1, cache_dir=None)

    report = sep.separate_many(inputs, QUERIES, tmp_path / "out")

    assert report.done == ["a", "b", "sub/c"] and [name for name, _ in report.failed] == ["broken"]
    assert "could not be read as audio" in report.failed[0][1] and "error: " in capsys.readouterr().err
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.wav")
                     if p.parent.name != "references")
    assert written == [f"{r}/{q}/{q}.wav" for r in ("a", "b", "sub/c") for q in ("dog-barking", "man-speaking")]
    assert read_audio(tmp_path / "out" / "b" / "dog-barking" / "dog-barking.wav")[0].shape == (1, 8000)
    assert loads == [str(tiny_model)]
    again = sep.separate_many([inputs / "a.wav", inputs / "b.flac"], QUERIES, tmp_path / "out")
    assert again.skipped == ["a", "b"] and not again.done
