"""Separate a fixed set of cases and write what came out: the figures ``test_same_results.py`` checks.

Run from the repository root: ``python tests/golden/make.py tests/golden/results.json``. The
file checked in was made by commit 0350e77 (before the one-loop redesign); the test runs the
same cases and asserts the same file names and the same SDRs to 1e-4 dB.
"""

from __future__ import annotations

import csv
import json
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parents[1])]  # tests/ (helpers) and the checkout (callbacks/)
from helpers import QUIET, REPO, main  # noqa: E402

from dgmo_pl.audio.io import write_audio  # noqa: E402
from dgmo_pl.testing.example_set import make_eval_set  # noqa: E402
from dgmo_pl.testing.mixing import mix_panned, mix_sources  # noqa: E402
from dgmo_pl.testing.tiny import save_tiny_audioldm  # noqa: E402

SHARED = REPO.parent / "shared" / "audio"
DOG, SPEECH = SHARED / "ovos__dogs-barking__1.wav", SHARED / "whisper__male-speech__1.wav"
FAST = ["--model.lr", "0.1", "--data.steps_per_round", "20", "--trainer.max_epochs", "2"]


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Plain SDR in dB over all samples (lengths cut to the shorter)."""
    n = min(len(reference), len(estimate))
    reference, estimate = reference[:n], estimate[:n]
    return float(10 * np.log10((reference**2).sum() / ((reference - estimate) ** 2).sum()))


def files(run: Path) -> list[str]:
    """The run's files relative to it, event files' host and time left out."""
    names = []
    for path in sorted(p for p in run.rglob("*") if p.is_file()):
        name = str(path.relative_to(run))
        names.append(re.sub(r"events\.out\.tfevents\..*", "events.out.tfevents", name))
    return names


def audio_figures(run: Path, reference: np.ndarray) -> dict[str, float]:
    """SDR to ``reference`` of every separated .wav in the run (references/ left out)."""
    out = {}
    for path in sorted(run.rglob("*.wav")):
        if "references" in path.parts:
            continue
        data, _ = sf.read(str(path), dtype="float64", always_2d=True)
        out[str(path.relative_to(run))] = sdr(reference, data.mean(axis=1))
    return out


def fit(root: Path, *args: str) -> Path:
    """``main.py fit`` in-process; returns the run folder."""
    main(["fit", "--config", str(REPO / "configs/dgmo.yaml"), "--trainer.default_root_dir", str(root),
          "--data.cache_dir", str(root / "references"), *QUIET, *args])
    (run,) = (root / "lightning_logs").glob("version_*")
    return run


def cases(work: Path) -> dict[str, dict]:
    """Run every case; returns its files and figures."""
    mixture, sources = mix_sources([DOG, SPEECH])
    pair = {"mixture": write_audio(work / "mixture.wav", mixture, 16000),
            "dog": write_audio(work / "dog.wav", sources[0], 16000),
            "speech": write_audio(work / "speech.wav", sources[1], 16000)}
    long_mixture, long_sources = mix_panned([DOG, SPEECH], 25.0, 16000, channels=1)  # 3 windows
    long = {"mixture": write_audio(work / "long.wav", long_mixture, 16000),
            "dog": write_audio(work / "long_dog.wav", long_sources[0], 16000)}
    tiny = save_tiny_audioldm(work / "tiny")
    dog = sources[0].double().numpy()
    results = {}

    run = fit(work / "diffusion", "--data.model", str(tiny), "--data.ddim_steps", "4", "--data.mixture",
              str(pair["mixture"]), "--data.queries", '["dog barking", "man speaking"]', *FAST)
    results["diffusion_two_queries"] = {"files": files(run), "sdr": audio_figures(run, dog)}

    run = fit(work / "true_joint", "--data.mixture", str(pair["mixture"]), "--data.queries",
              '["dog barking", "man speaking"]', "--data.references",
              json.dumps([[str(pair["dog"])], [str(pair["speech"])]]), "--model.joint", "true",
              "--model.residual", "true", *FAST)
    results["true_source_joint"] = {"files": files(run), "sdr": audio_figures(run, dog)}

    long_dog = long_sources[0, 0].double().numpy()
    run = fit(work / "true_long", "--data.mixture", str(long["mixture"]), "--data.references",
              json.dumps([str(long["dog"])]), "--data.windows_per_fit", "2", *FAST)
    results["true_source_long"] = {"files": files(run), "sdr": audio_figures(run, long_dog)}

    make_eval_set(work / "set", pairs=2, seed=0, shared=SHARED)
    main(["evaluate", "--config", str(REPO / "configs/dgmo.yaml"), "--trainer.default_root_dir", str(work / "ev"),
          "--data.cache_dir", "null", *QUIET, *FAST, "--audio.write_references", "false",
          "--manifest", str(work / "set" / "manifest.csv"), "--reference_source", "true_source",
          "--clap_model", "null"])
    with open(work / "ev" / "evaluation" / "manifest" / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    results["evaluate_true_source"] = {r["id"]: {k: float(r[k]) for k in ("sdr", "sdri", "si_sdr", "si_sdri")}
                                       for r in rows}
    return results


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        figures = cases(Path(tmp))
    text = json.dumps(figures, indent=1, sort_keys=True)
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(text + "\n")
    print(text)
