"""A seed makes a run repeatable: same seed, same references and output; another seed, others."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import fit, tiny_args

pytestmark = pytest.mark.integration  # whole fits


def _run(model: Path, root: Path, seed: int) -> Path:
    run = fit(root, *tiny_args(model, ddim_steps=3, steps_per_round=3), "--seed_everything", str(seed),
              "--trainer.max_epochs", "2",
              "--data.cache_dir", "null")  # generated every time, not found in a cache
    return run / "dog-barking"


@pytest.fixture(scope="module")
def runs(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("logs")
    return {"a": _run(tiny_model, root, 7), "b": _run(tiny_model, root, 7), "c": _run(tiny_model, root, 8)}


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.wav"))}


def test_same_seed_gives_bit_identical_files(runs: dict[str, Path]) -> None:
    """Separated audio and vocoded references are byte for byte the same on CPU."""
    first, second = _files(runs["a"]), _files(runs["b"])
    assert len(first) == 5 and first == second


def test_another_seed_gives_other_references(runs: dict[str, Path]) -> None:
    """Another seed draws other VAE posterior samples, so the references differ."""
    first, other = _files(runs["a"]), _files(runs["c"])
    assert first.keys() == other.keys()
    refs = [name for name in first if name.startswith("references")]
    assert refs and all(first[name] != other[name] for name in refs)
