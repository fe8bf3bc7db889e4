"""``main.py evaluate``: every row separated and scored, reports on disk, resumable, failures counted.

The example set is built from ``../shared/audio`` (two-source 0 dB mixtures with their true
sources); rows are separated with their true source as the reference, on a fast schedule.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from helpers import QUIET, REPO, fit, main
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dgmo_pl import cli
from dgmo_pl.evaluation.metrics import sdr
from dgmo_pl.evaluation.runner import aligned
from dgmo_pl.testing.example_set import make_eval_set

FAST = ["--model.lr", "0.1", "--data.steps_per_round", "60", "--trainer.max_epochs", "1",
        "--audio.write_references", "false"]


def evaluate(root: Path, manifest: Path, *extra: str) -> None:
    """``main.py evaluate`` in-process on true-source references, without CLAP unless told."""
    main(["evaluate", "--config", str(REPO / "configs/dgmo.yaml"), "--trainer.default_root_dir", str(root),
          "--data.cache_dir", "null", *QUIET, *FAST, "--manifest", str(manifest),
          "--reference_source", "true_source", "--clap_model", "null", *extra])


def results(output: Path) -> list[dict[str, str]]:
    with open(output / "results.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def example_set(shared_audio: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three two-source mixtures with their true sources; returns the manifest."""
    folder = tmp_path_factory.mktemp("eval-set")
    make_eval_set(folder, pairs=3, seed=0, shared=shared_audio)
    return folder / "manifest.csv"


@pytest.fixture(scope="module")
def evaluated(example_set: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted evaluation of the example set; returns its output folder."""
    root = tmp_path_factory.mktemp("evaluation")
    evaluate(root, example_set)
    return root / "evaluation" / "manifest"


@pytest.mark.integration
def test_every_row_is_scored_and_summarised(evaluated: Path) -> None:
    """results.csv has each row with SDR, SDRi, SI-SDR, SI-SDRi; the summary has means, medians, counts."""
    rows = results(evaluated)
    assert len(rows) == 3 and all(r["status"] == "ok" for r in rows)
    for r in rows:
        assert float(r["sdri"]) > 3.0 and float(r["si_sdri"]) > 3.0
        assert Path(r["output"]).is_file()
    with open(evaluated / "summary.csv", newline="") as handle:
        summary = {s["metric"]: s for s in csv.DictReader(handle)}
    assert summary["sdri"]["count"] == "3" and summary["failures"]["count"] == "0"
    mean = sum(float(r["sdri"]) for r in rows) / 3
    assert float(summary["sdri"]["mean"]) == pytest.approx(mean)
    assert "| sdri |" in (evaluated / "summary.md").read_text()
    events = EventAccumulator(str(evaluated / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("rows/sdri")] == [0, 1, 2]


@pytest.mark.integration
def test_evaluation_matches_single_runs(example_set: Path, evaluated: Path, tmp_path: Path) -> None:
    """The evaluation's mean SDRi equals that of `main.py fit` on each row, scored from its file, to 0.1 dB."""
    folder = example_set.parent
    single = []
    with open(example_set, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for index, row in enumerate(rows):
        mixture, source = folder / row["mixture"], folder / row["source"]
        run = fit(tmp_path / str(index), "--data.mixture", str(mixture), "--data.query", row["query"],
                  "--data.references", json.dumps([str(source)]), *FAST)
        (separated,) = run.glob("*/*.wav")
        estimate, reference = aligned(separated, source, "source")
        _, mix = aligned(separated, mixture, "mixture")
        single.append(sdr(reference.float(), estimate.float()) - sdr(reference.float(), mix.float()))
    evaluated_mean = sum(float(r["sdri"]) for r in results(evaluated)) / len(rows)
    assert evaluated_mean == pytest.approx(sum(single) / len(single), abs=0.1)


@pytest.mark.integration
def test_an_interrupted_evaluation_finishes_the_remaining_rows(example_set: Path, evaluated: Path,
                                                                 tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed during row 2, a re-run separates rows 2 and 3 only and ends with the same summary."""
    calls: list[str] = []
    original = cli.separate

    def separate(separation, *args, **kwargs):
        calls.append(separation.recording.path.stem)
        if len(calls) == 2 and interrupt:
            raise KeyboardInterrupt  # as a kill would, mid-row
        return original(separation, *args, **kwargs)

    monkeypatch.setattr(cli, "separate", separate)
    interrupt = True
    with pytest.raises(KeyboardInterrupt):
        evaluate(tmp_path, example_set)
    interrupt = False
    done_before = len(calls) - 1
    evaluate(tmp_path, example_set)
    assert done_before == 1 and len(calls) == 2 + 2  # the re-run redid the interrupted row and the last
    output = tmp_path / "evaluation" / "manifest"
    assert (output / "summary.csv").read_text() == (evaluated / "summary.csv").read_text()


@pytest.mark.integration
def test_a_broken_row_is_a_counted_failure_and_the_others_complete(example_set: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    """A row whose mixture is not audio is recorded with its error; the others are scored; exit status 1."""
    folder = example_set.parent
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio at all")
    manifest = tmp_path / "with_broken.csv"
    lines = example_set.read_text().splitlines()
    header = lines[0].split(",")
    cells = dict(zip(header, lines[1].split(",")))
    cells.update(id="broken", mixture=str(broken), source=str(folder / cells["source"]))
    good = [",".join(str(folder / c) if h in ("mixture", "source") else c for h, c in zip(header, line.split(",")))
            for line in lines[1:3]]
    manifest.write_text("\n".join([lines[0], *good, ",".join(cells[h] for h in header)]) + "\n")
    with pytest.raises(SystemExit) as exit_:
        evaluate(tmp_path, manifest)
    assert exit_.value.code == 1
    rows = {r["id"]: r for r in results(tmp_path / "evaluation" / "with_broken")}
    assert rows["broken"]["status"] == "failed" and "could not be read as audio" in rows["broken"]["error"]
    assert sum(r["status"] == "ok" for r in rows.values()) == 2
    assert "1 of 3 rows failed (broken)" in capsys.readouterr().out


@pytest.mark.integration
def test_clap_score_is_reported_with_a_clap_model(example_set: Path, tmp_path: Path) -> None:
    """With a (tiny, offline) CLAP model, each row gets a CLAPScore in [-1, 1]; without one, a note."""
    from dgmo_pl.testing.tiny_clap import save_tiny_clap

    clap = save_tiny_clap(tmp_path / "tiny-clap")
    manifest = tmp_path / "one.csv"
    lines = example_set.read_text().splitlines()
    folder = example_set.parent
    header = lines[0].split(",")
    manifest.write_text(lines[0] + "\n" + ",".join(
        str(folder / c) if h in ("mixture", "source") else c for h, c in zip(header, lines[1].split(","))) + "\n")
    evaluate(tmp_path, manifest, "--clap_model", str(clap))
    (row,) = results(tmp_path / "evaluation" / "one")
    assert -1.0 <= float(row["clap_score"]) <= 1.0
    shutil.rmtree(tmp_path / "evaluation")


@pytest.mark.integration
def test_two_processes_share_the_rows_and_agree_with_one(example_set: Path, evaluated: Path,
                                                         tmp_path: Path) -> None:
    """`--trainer.devices 2` on CPU (gloo): each row once, rows alternating between the two processes,
    the same per-row results as one process and the same summary."""
    import os
    import subprocess
    import sys

    command = [sys.executable, str(REPO / "main.py"), "evaluate", "--config", str(REPO / "configs/dgmo.yaml"),
               "--trainer.default_root_dir", str(tmp_path), "--data.cache_dir", "null", *QUIET, *FAST,
               "--manifest", str(example_set), "--reference_source", "true_source", "--clap_model", "null",
               "--trainer.accelerator", "cpu", "--trainer.devices", "2"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    output = tmp_path / "evaluation" / "manifest"
    sharded, single = results(output), results(evaluated)
    assert [r["id"] for r in sharded] == [r["id"] for r in single]
    for index, (a, b) in enumerate(zip(sharded, single)):
        process = json.loads((output / "rows" / a["id"] / "metrics.json").read_text())["process"]
        assert process == index % 2
        assert len(list((output / "rows" / a["id"]).rglob("events.out.tfevents.*"))) == 1  # fitted once
        for metric in ("sdr", "sdri", "si_sdr", "si_sdri"):
            assert float(a[metric]) == pytest.approx(float(b[metric]), abs=1e-6)
    assert (output / "summary.md").read_text() == (evaluated / "summary.md").read_text()


@pytest.mark.integration
def test_a_missing_manifest_or_missing_sources_are_refused(example_set: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    """Exit status 2 with the file named; true-source references need a source on every row."""
    with pytest.raises(SystemExit) as exit_:
        evaluate(tmp_path, tmp_path / "nowhere.csv")
    assert exit_.value.code == 2 and "nowhere.csv" in capsys.readouterr().err
    folder = example_set.parent
    no_sources = tmp_path / "no_sources.csv"
    with open(example_set, newline="") as handle:
        row = next(csv.DictReader(handle))
    no_sources.write_text(f"mixture,query\n{folder / row['mixture']},{row['query']}\n")
    with pytest.raises(SystemExit) as exit_:
        evaluate(tmp_path, no_sources)
    assert exit_.value.code == 2
    assert "--reference_source true_source needs a source for every row" in capsys.readouterr().err
    assert not (tmp_path / "evaluation").exists()


@pytest.mark.integration
def test_a_killed_evaluation_process_is_finished_by_a_rerun(example_set: Path, evaluated: Path,
                                                             tmp_path: Path) -> None:
    """SIGKILL once the first row is done; the re-run keeps that row, does the others, same summary."""
    import os
    import signal
    import subprocess
    import sys
    import time

    command = [sys.executable, str(REPO / "main.py"), "evaluate", "--config", str(REPO / "configs/dgmo.yaml"),
               "--trainer.default_root_dir", str(tmp_path), "--data.cache_dir", "null", *QUIET, *FAST,
               "--manifest", str(example_set), "--reference_source", "true_source", "--clap_model", "null"]
    output = tmp_path / "evaluation" / "manifest"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        deadline = time.monotonic() + 300
        while not list(output.glob("rows/*/metrics.json")) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    (first,) = output.glob("rows/*/metrics.json")
    before = first.stat().st_mtime_ns
    assert not (output / "summary.csv").exists()
    evaluate(tmp_path, example_set)
    assert first.stat().st_mtime_ns == before  # not redone
    assert len(list(output.glob("rows/*/metrics.json"))) == 3
    assert (output / "summary.md").read_text() == (evaluated / "summary.md").read_text()


@pytest.mark.parametrize(("scoring", "shape"), [("output", (2, 60 * 44_100)), ("dgmo", (1, 163_840)),
                                                ("audiosep", (1, 60 * 32_000))])
def test_scoring_conventions_compare_signals_where_they_say(scoring: str, shape: tuple[int, int],
                                                            tmp_path: Path) -> None:
    """output: the file's rate and channels; dgmo: 16 kHz mono, 10.24 s; audiosep: 32 kHz mono, whole."""
    import torch

    from dgmo_pl.audio.io import write_audio

    stereo = write_audio(tmp_path / "stereo.wav", torch.rand(2, 60 * 44_100) - 0.5, 44_100)
    mono = write_audio(tmp_path / "mono.wav", torch.rand(60 * 16_000) - 0.5, 16_000)
    estimate, other = aligned(stereo, mono if scoring != "output" else stereo, "source", scoring)
    assert estimate.shape == other.shape == shape


@pytest.mark.integration
def test_diffusion_references_are_generated_with_one_model_load(example_set: Path, tiny_model: Path,
                                                                tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The default path (DGMO's references from the diffusion model) loads the model once for all rows."""
    from dgmo_pl.diffusion import references

    loads = []
    original = references.load_backbone

    def counting_load(*args, **kwargs):
        loads.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(references, "load_backbone", counting_load)
    main(["evaluate", "--config", str(REPO / "configs/dgmo.yaml"), "--trainer.default_root_dir", str(tmp_path),
          "--data.cache_dir", str(tmp_path / "refs"), *QUIET, "--data.model", str(tiny_model),
          "--data.ddim_steps", "3", "--data.steps_per_round", "3", "--trainer.max_epochs", "2",
          "--audio.write_references", "false", "--manifest", str(example_set), "--clap_model", "null"])
    rows = results(tmp_path / "evaluation" / "manifest")
    assert [r["status"] for r in rows] == ["ok"] * 3
    assert len(loads) == 1
    assert len(list((tmp_path / "refs").rglob("*.safetensors"))) == 3 * 2 * 2  # rows x rounds x (inversion, refs)
