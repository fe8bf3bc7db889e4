"""Any recording in, the same recording's quality out: long, 44.1 kHz, stereo; joint masks; no seams.

Real recordings from ``../shared/audio`` mixed at 0 dB, separated by the real command line with
their true sources as references (a faster schedule than the paper's: lr 0.1, 60 steps, one
round), measured on the full-length, full-rate output.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import fit

from dgmo_pl.audio.io import write_audio
from dgmo_pl.testing.mixing import mix_panned

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # whole fits of 60 s recordings

RATE = 44_100
QUERIES = ["dog barking", "man speaking"]
NAMES = ["dog-barking", "man-speaking"]
FAST = ["--model.lr", "0.1", "--data.steps_per_round", "60", "--trainer.max_epochs", "1",
        "--trainer.enable_checkpointing", "true", "--audio.subtype", "FLOAT", "--audio.write_references", "false"]


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Plain signal-to-distortion ratio in dB (the LASS convention), over all channels and samples."""
    return float(10 * np.log10((reference**2).sum() / ((reference - estimate) ** 2).sum()))


def read(path: Path) -> tuple[np.ndarray, int]:
    data, rate = sf.read(str(path), dtype="float64", always_2d=True)
    return data, rate


@pytest.fixture(scope="module")
def long_pair(shared_audio: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 60 s, 44.1 kHz stereo 0 dB mixture of dogs and speech, panned apart, with both sources."""
    out = tmp_path_factory.mktemp("long")
    mixture, sources = mix_panned(
        [shared_audio / "ovos__dogs-barking__1.wav", shared_audio / "whisper__male-speech__1.wav"], 60.0, RATE
    )
    return {
        "mixture": write_audio(out / "mixture.wav", mixture, RATE, "FLOAT"),
        "dog-barking": write_audio(out / "dog.wav", sources[0], RATE, "FLOAT"),
        "man-speaking": write_audio(out / "speech.wav", sources[1], RATE, "FLOAT"),
    }


def _separate(pair: dict[str, Path], root: Path, *extra: str) -> Path:
    references = json.dumps([[str(pair[name])] for name in NAMES])
    return fit(root, "--data.mixture", str(pair["mixture"]), "--data.queries", json.dumps(QUERIES),
               "--data.references", references, *FAST, *extra)


@pytest.fixture(scope="module")
def independent_run(long_pair: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _separate(long_pair, tmp_path_factory.mktemp("independent"))


@pytest.fixture(scope="module")
def joint_run(long_pair: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _separate(long_pair, tmp_path_factory.mktemp("joint"), "--model.joint", "true")


def _improvements(pair: dict[str, Path], folder_of: dict[str, Path]) -> list[float]:
    mixture, _ = read(pair["mixture"])
    gains = []
    for name in NAMES:
        source, _ = read(pair[name])
        estimate, _ = read(folder_of[name] / f"{name}.wav")
        gains.append(sdr(source, estimate) - sdr(source, mixture))
    return gains


def test_long_44k_stereo_output_has_the_inputs_length_rate_and_channels(
    long_pair: dict[str, Path], independent_run: Path
) -> None:
    """60 s at 44.1 kHz stereo in: each separated file is 60 s at 44.1 kHz stereo, sample for sample."""
    original = sf.info(str(long_pair["mixture"]))
    for name in NAMES:
        info = sf.info(str(independent_run / name / f"{name}.wav"))
        assert (info.frames, info.samplerate, info.channels) == (original.frames, RATE, 2)


def test_long_44k_stereo_separates_by_at_least_8db(long_pair: dict[str, Path], independent_run: Path) -> None:
    """With the true sources as references, the mean SDR improvement at full length and rate is >= 8 dB."""
    gains = _improvements(long_pair, {name: independent_run / name for name in NAMES})
    assert np.mean(gains) >= 8.0, gains


def test_long_recording_is_fitted_in_window_batches(independent_run: Path) -> None:
    """8 windows (60 s, 2.56 s overlap), 4 a fit: each batch logs and checkpoints in its own folder."""
    for name in NAMES:
        batches = sorted(p.name for p in (independent_run / name).iterdir() if p.is_dir())
        assert batches == ["windows_1-4", "windows_5-8"]
        for batch in batches:
            (ckpt,) = (independent_run / name / batch / "checkpoints").glob("*.ckpt")
            logits = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]["mask_logits"]
            assert logits.shape == (1, 4, 513, 1024)
            assert list((independent_run / name / batch).glob("events.out.tfevents.*"))


def test_joint_outputs_add_up_to_the_mixture(long_pair: dict[str, Path], joint_run: Path) -> None:
    """Joint masks partition the mixture: the two files add up to it within 1e-4 relative error."""
    mixture, _ = read(long_pair["mixture"])
    total = sum(read(joint_run / "joint" / f"{name}.wav")[0] for name in NAMES)
    assert np.linalg.norm(total - mixture) / np.linalg.norm(mixture) < 1e-4


def test_joint_masks_separate_at_least_as_well_as_independent_ones(
    long_pair: dict[str, Path], independent_run: Path, joint_run: Path
) -> None:
    """On the same pair with the true sources, joint masks' mean SDR improvement >= independent masks'."""
    independent = _improvements(long_pair, {name: independent_run / name for name in NAMES})
    joint = _improvements(long_pair, {name: joint_run / "joint" for name in NAMES})
    assert np.mean(joint) >= np.mean(independent), (joint, independent)


def test_joint_residual_completes_the_partition(long_pair: dict[str, Path], tmp_path: Path) -> None:
    """With one query and a residual, dog + residual add up to the mixture (16 kHz mono output)."""
    run = fit(tmp_path, "--data.mixture", str(long_pair["mixture"]), "--data.query", QUERIES[0],
              "--data.references", json.dumps([str(long_pair["dog-barking"])]), *FAST,
              "--model.joint", "true", "--model.residual", "true", "--audio.sample_rate", "model",
              "--data.steps_per_round", "5")
    dog, rate = read(run / "joint" / "dog-barking.wav")
    residual, _ = read(run / "joint" / "residual.wav")
    assert rate == 16_000 and dog.shape == residual.shape == (960_000, 1)
    mixture = torch.from_numpy(read(long_pair["mixture"])[0].T).float()
    import torchaudio.functional as AF

    mono = AF.resample(mixture.mean(0), RATE, 16_000).double().numpy()
    error = np.abs((dog + residual)[:, 0] - mono)[1600:-1600]  # resampling edges aside
    assert error.max() < 1e-3 * np.abs(mono).max()


def _tones(seconds: float, tmp_path: Path) -> dict[str, Path]:
    """A stationary 440 Hz tone (the source) plus a 3 kHz tone, 44.1 kHz stereo."""
    t = torch.arange(round(seconds * RATE)) / RATE
    low = 0.3 * torch.sin(2 * math.pi * 440 * t)
    high = 0.2 * torch.sin(2 * math.pi * 3000 * t + 0.5)
    gains = torch.tensor([[1.0], [0.7]])
    return {
        "mixture": write_audio(tmp_path / f"tones_{seconds}.wav", gains * (low + high), RATE, "FLOAT"),
        "source": write_audio(tmp_path / f"tone_{seconds}.wav", gains * low, RATE, "FLOAT"),
    }


def test_no_seam_between_windows(tmp_path: Path) -> None:
    """A stationary tone through 3 windows matches the single-window result, cross-fades included.

    The first 10.24 s of a 25 s recording (windows at 0, 7.68 and 15.36 s) are compared with the
    separation of those 10.24 s alone, over 0.5 to 9.5 s: the span where window 0 fades out and
    window 1 fades in (7.68 to 10.24 s) must not stand out.
    """
    outputs = []
    for seconds in (25.0, 10.24):
        files = _tones(seconds, tmp_path)
        run = fit(tmp_path / f"run_{seconds}", "--data.mixture", str(files["mixture"]), "--data.query", "tone",
                  "--data.references", json.dumps([str(files["source"])]), *FAST)
        outputs.append(read(run / "tone" / "tone.wav")[0])
    windowed, single = outputs
    span = slice(round(0.5 * RATE), round(9.5 * RATE))
    seam = slice(round(7.68 * RATE), round(9.5 * RATE))
    assert np.abs(windowed[span] - single[span]).max() < 1e-3 * np.abs(single[span]).max()
    assert np.abs(windowed[seam] - single[seam]).max() < 1e-3 * np.abs(single[seam]).max()
