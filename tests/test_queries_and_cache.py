"""Several queries in one run, and runs that find their references stored (UNet calls counted)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import soundfile as sf
import torch
from helpers import QUIET, REPO, fit, main, scalars, tiny_args

from dgmo_pl.diffusion import references

#: Whole fits through the command line, showing the wiring end to end. What each changed setting
#: (seed, query, round, model, ...) finds or misses, and damaged entries, are tested one level
#: down on the provider with a counting fake generator: tests/test_provider.py (fast tier).
pytestmark = pytest.mark.integration

DDIM, K, STEPS = 4, 4, 3
QUERIES = '["dog barking", "cat meowing"]'
#: UNet sample-evaluations of one round: inversion (DDIM - 1 calls at K), then guided denoising
#: (DDIM calls at 2K) per query.
INVERSION, DENOISING = (DDIM - 1) * K, DDIM * 2 * K


class UNetCounter:
    """Counts model loads and UNet sample-evaluations (a hook on every UNet loaded)."""

    def __init__(self) -> None:
        self.loads = 0
        self.evaluations = 0

    def reset(self) -> None:
        self.loads = self.evaluations = 0

    def wrap(self, load):
        def counted_load(*args, **kwargs):
            parts = load(*args, **kwargs)
            self.loads += 1
            parts.unet.register_forward_pre_hook(self._count)
            return parts

        return counted_load

    def _count(self, module: torch.nn.Module, args: tuple) -> None:
        self.evaluations += args[0].shape[0]


@pytest.fixture
def counter(monkeypatch: pytest.MonkeyPatch) -> UNetCounter:
    counter = UNetCounter()
    monkeypatch.setattr(references, "load_backbone", counter.wrap(references.load_backbone))
    return counter


def _args(model: Path, *extra: str) -> list[str]:
    # A large learning rate moves each query's mask, so later rounds start from other estimates.
    return [*tiny_args(model, ddim_steps=DDIM, steps_per_round=STEPS), "--model.lr", "0.5", *extra]


def _audio(path: Path) -> torch.Tensor:
    return torch.from_numpy(sf.read(str(path), dtype="float32")[0])


@pytest.fixture(scope="module")
def two_query_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two queries of the demo mixture in one run; the cache it filled; the UNet work it did."""
    counter = UNetCounter()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(references, "load_backbone", counter.wrap(references.load_backbone))
        root = tmp_path_factory.mktemp("two")
        run = fit(root, *_args(tiny_model, "--data.queries", QUERIES))
    return {"root": root, "run": run, "loads": counter.loads, "evaluations": counter.evaluations}


def _copy_cache(two_query_run: dict, root: Path) -> None:
    shutil.copytree(two_query_run["root"] / "references", root / "references")


def test_two_queries_load_once_share_round_one_and_write_two_outputs(two_query_run: dict) -> None:
    """One model load; round 1 inverted once for both; each query its own folder, audio and logs."""
    run = two_query_run["run"]
    assert two_query_run["loads"] == 1
    # Round 1: one inversion, both queries denoised; rounds 2-3: each query from its own estimate.
    assert two_query_run["evaluations"] == INVERSION + 2 * DENOISING + 2 * 2 * (INVERSION + DENOISING)
    for name in ("dog-barking", "cat-meowing"):
        info = sf.info(str(run / name / f"{name}.wav"))
        assert (info.samplerate, info.frames) == (16000, 163840)
        assert len(scalars(run / name, "loss/train")) == 3 * STEPS
        assert len(list((run / name / "checkpoints").glob("*.ckpt"))) == 1
    assert not torch.equal(_audio(run / "dog-barking" / "dog-barking.wav"),
                           _audio(run / "cat-meowing" / "cat-meowing.wav"))


def test_each_query_separates_as_in_a_run_of_its_own(two_query_run: dict, tiny_model: Path, tmp_path: Path) -> None:
    """Sharing the inversion and batching the queries does not change a query's output."""
    alone = fit(tmp_path, *_args(tiny_model, "--data.query", "cat meowing"))
    together = _audio(two_query_run["run"] / "cat-meowing" / "cat-meowing.wav")
    assert (_audio(alone / "cat-meowing" / "cat-meowing.wav") - together).abs().max() < 2e-3


def test_repeating_the_run_finds_every_reference(two_query_run: dict, tiny_model: Path, tmp_path: Path,
                                                counter: UNetCounter) -> None:
    """The same command again runs the UNet zero times and writes the same audio, bit for bit."""
    _copy_cache(two_query_run, tmp_path)
    again = fit(tmp_path, *_args(tiny_model, "--data.queries", QUERIES))
    assert counter.evaluations == 0
    for name in ("dog-barking", "cat-meowing"):
        first = (two_query_run["run"] / name / f"{name}.wav").read_bytes()
        assert (again / name / f"{name}.wav").read_bytes() == first


def test_another_learning_rate_reuses_round_one(two_query_run: dict, tiny_model: Path, tmp_path: Path,
                                               counter: UNetCounter) -> None:
    """Changing a mask setting reuses round 1; later rounds start from another mask, so they are new."""
    _copy_cache(two_query_run, tmp_path)
    fit(tmp_path, *_args(tiny_model, "--data.queries", QUERIES, "--model.lr", "0.3"))
    assert counter.evaluations == 2 * 2 * (INVERSION + DENOISING)


def test_references_subcommand_stores_round_one_for_a_later_fit(tiny_model: Path, tmp_path: Path,
                                                               counter: UNetCounter,
                                                               capsys: pytest.CaptureFixture) -> None:
    """`main.py references` generates round 1 of every query, writes no run; fit then skips round 1."""
    main(["references", "--config", str(REPO / "configs/dgmo.yaml"), *_args(tiny_model, "--data.queries", QUERIES),
          "--trainer.default_root_dir", str(tmp_path), "--data.cache_dir", str(tmp_path / "references"), *QUIET])
    stored = [line.split(" ", 1)[1] for line in capsys.readouterr().out.splitlines() if line.startswith("stored ")]
    assert len(stored) == 2 and all(Path(p).is_file() for p in stored)
    assert counter.evaluations == INVERSION + 2 * DENOISING
    assert not (tmp_path / "lightning_logs").exists()
    counter.reset()
    fit(tmp_path, *_args(tiny_model, "--data.queries", QUERIES))
    assert counter.evaluations == 2 * 2 * (INVERSION + DENOISING)


def test_without_a_cache_folder_nothing_is_stored(tiny_model: Path, tmp_path: Path) -> None:
    """--data.cache_dir null keeps references in memory only."""
    fit(tmp_path, *_args(tiny_model, "--trainer.max_epochs", "1", "--data.cache_dir", "null"))
    assert not (tmp_path / "references").exists()
