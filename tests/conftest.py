"""Shared fixtures: offline hub, a tiny AudioLDM, real recordings and 0 dB mixtures of them."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Never wait on the unreachable hub, and never find a real model in the developer's cache:
# a hub load in the tests must fail, at once.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="dgmo-hf-home-")

import pytest  # noqa: E402

from dgmo_pl.audio.io import write_audio  # noqa: E402
from dgmo_pl.testing.mixing import mix_sources  # noqa: E402
from dgmo_pl.testing.tiny import save_tiny_audioldm  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_AUDIO = Path(os.environ.get("DGMO_SHARED_AUDIO", REPO.parent / "shared" / "audio"))


@pytest.fixture(scope="session")
def shared_audio() -> Path:
    """The folder of real recordings beside the checkout."""
    if not (SHARED_AUDIO / "manifest.csv").is_file():
        pytest.fail(f"real recordings not found at {SHARED_AUDIO}: set DGMO_SHARED_AUDIO")
    return SHARED_AUDIO


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random AudioLDM saved in diffusers layout."""
    return save_tiny_audioldm(tmp_path_factory.mktemp("tiny-audioldm"))


@pytest.fixture(scope="session")
def speech_dog_pair(shared_audio: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 0 dB mixture of dogs barking and speech, with both sources, as 16 kHz wav files."""
    out = tmp_path_factory.mktemp("pair")
    mixture, sources = mix_sources(
        [shared_audio / "ovos__dogs-barking__1.wav", shared_audio / "whisper__male-speech__1.wav"]
    )
    return {
        "mixture": write_audio(out / "mixture.wav", mixture, 16000),
        "dog": write_audio(out / "dog.wav", sources[0], 16000),
        "speech": write_audio(out / "speech.wav", sources[1], 16000),
    }
