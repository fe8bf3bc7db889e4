"""The one-loop redesign changed no result: the same files and SDRs as the main before it.

``tests/golden/results.json`` was written by ``tests/golden/make.py`` on commit 0350e77 (before
``separate()``): a tiny-model run of two queries with diffusion references, a joint run with a
residual and a three-window run with true sources, and an evaluation of two rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # four runs: about 30 s

GOLDEN = Path(__file__).parent / "golden"
#: Files of a run's records for ``--resume``, which the golden runs predate.
RECORDS = ("run.json", "masks.safetensors")


@pytest.fixture(scope="module")
def now(tmp_path_factory: pytest.TempPathFactory, shared_audio: Path) -> dict:
    """The cases' files and figures from the current code."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("golden_make", GOLDEN / "make.py")
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    return make.cases(tmp_path_factory.mktemp("golden"))


@pytest.mark.parametrize("case", ["diffusion_two_queries", "true_source_joint", "true_source_long"])
def test_fit_writes_the_same_files_and_sdrs(now: dict, case: str) -> None:
    before = json.loads((GOLDEN / "results.json").read_text())[case]
    # Added since by resumable runs: the run's record, and each fit's finished masks beside its checkpoints.
    assert [f for f in now[case]["files"] if Path(f).name not in RECORDS] == before["files"]
    fits = sorted(str(Path(f).parent.parent) for f in before["files"] if f.endswith(".ckpt"))
    records = ["run.json", *(str(Path(fit) / "masks.safetensors") for fit in fits)]
    assert sorted(f for f in now[case]["files"] if Path(f).name in RECORDS) == sorted(records)
    assert now[case]["sdr"].keys() == before["sdr"].keys()
    for name, value in before["sdr"].items():
        assert now[case]["sdr"][name] == pytest.approx(value, abs=1e-4), name


def test_evaluate_gives_the_same_figures(now: dict) -> None:
    before = json.loads((GOLDEN / "results.json").read_text())["evaluate_true_source"]
    assert now["evaluate_true_source"].keys() == before.keys()
    for row, figures in before.items():
        for metric, value in figures.items():
            assert now["evaluate_true_source"][row][metric] == pytest.approx(value, abs=1e-4), (row, metric)
