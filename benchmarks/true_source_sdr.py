"""SDR improvement of the mask optimisation alone, with the true source as the reference.

Mixes pairs of real recordings from ``../shared/audio`` at 0 dB (equal RMS, 16 kHz, 10.24 s),
separates each with :func:`dgmo_pl.separate.separate` from Python, the true source as the reference
(paper settings: 3 rounds x 300 Adam steps, lr 0.01, threshold 0.9), and prints SDR (the LASS
papers' plain SNR, torchmetrics ``signal_noise_ratio``) of mixture and estimate against the source, and the improvement.

Usage: ``python benchmarks/true_source_sdr.py [--audio DIR] [--pairs N]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from torchmetrics.functional.audio import signal_noise_ratio  # noqa: E402

from dgmo_pl.audio.io import read_audio, write_audio  # noqa: E402
from dgmo_pl.data import SeparationDataModule  # noqa: E402
from dgmo_pl.model import MaskSeparator  # noqa: E402
from dgmo_pl.separate import separate, trainer_factory  # noqa: E402
from dgmo_pl.testing.mixing import mix_sources  # noqa: E402

#: (target, interferer) recordings; labels come from the file names.
PAIRS = [
    ("ovos__dogs-barking__1.wav", "whisper__male-speech__1.wav"),
    ("ovos__cat-meowing__1.wav", "sonicpi__tabla-drumming__1.wav"),
    ("librosa-data__trumpet__1.wav", "pyroomacoustics__running-water-tap__1.wav"),
    ("librosa-data__female-speech__1.wav", "sonicpi__drum-break__1.wav"),
    ("ovos__rooster-crowing__1.wav", "librosa-data__string-orchestra__1.wav"),
    ("sonicpi__bell-ringing__1.wav", "pyroomacoustics__washing-dishes__1.wav"),
    ("ovos__cow-mooing__1.wav", "sonicpi__electric-guitar-riff__1.wav"),
    ("librosa-data__humpback-whale-song__1.wav", "pyroomacoustics__exercise-bike__1.wav"),
]


def label(name: str) -> str:
    """A recording's label from its file name."""
    return name.split("__")[1].replace("-", " ")


def separate_pair(
    audio_dir: Path, target: str, interferer: str, work: Path, rounds: int = 3, steps: int = 300, lr: float = 0.01
) -> dict[str, float]:
    """Separate ``target`` from its 0 dB mixture with ``interferer``; returns SDRs in dB."""
    mixture, sources = mix_sources([audio_dir / target, audio_dir / interferer])
    mix_path = write_audio(work / "mixture.wav", mixture, 16000)
    src_path = write_audio(work / "source.wav", sources[0], 16000)
    data = SeparationDataModule(mixture=str(mix_path), query=label(target), references=[str(src_path)],
                                steps_per_round=steps, cache_dir=None)  # fmt: skip
    separation = data.separation()
    model = MaskSeparator(lr=lr, spec=separation.spec)
    trainers = trainer_factory(work / "run", max_epochs=rounds, enable_progress_bar=False, enable_checkpointing=False)
    result = separate(separation, model, trainers, work / "run")
    estimate, source, mix = (read_audio(p)[0][0] for p in (result.outputs[separation.names[0]], src_path, mix_path))
    sdr_mix = float(signal_noise_ratio(mix, source))
    sdr_est = float(signal_noise_ratio(estimate, source))
    return {"sdr_mixture": sdr_mix, "sdr_estimate": sdr_est, "sdri": sdr_est - sdr_mix}


def measure(audio_dir: Path, pairs: list[tuple[str, str]], **settings: float) -> list[dict[str, float | str]]:
    """One row per pair, each in its own temporary folder (``settings``: see :func:`separate_pair`)."""
    rows = []
    for target, interferer in pairs:
        with tempfile.TemporaryDirectory() as tmp:
            row = separate_pair(audio_dir, target, interferer, Path(tmp), **settings)
        rows.append({"target": label(target), "interferer": label(interferer), **row})
    return rows


def print_table(rows: list[dict[str, float | str]]) -> None:
    """Print one line per mixture and the mean."""
    print(f"{'target':<22} {'interferer':<22} {'SDR mix':>8} {'SDR est':>8} {'SDRi':>7}")
    for r in rows:
        names = f"{r['target']:<22} {r['interferer']:<22}"
        print(f"{names} {r['sdr_mixture']:8.2f} {r['sdr_estimate']:8.2f} {r['sdri']:7.2f}")
    mean = sum(r["sdri"] for r in rows) / len(rows)
    print(f"mean SDRi over {len(rows)} pairs: {mean:.2f} dB (16 kHz, 10.24 s, plain SNR)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = Path(os.environ.get("DGMO_SHARED_AUDIO", REPO.parent / "shared" / "audio"))
    parser.add_argument("--audio", type=Path, default=shared)
    parser.add_argument("--pairs", type=int, default=len(PAIRS))
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print_table(measure(args.audio, PAIRS[: args.pairs]))
