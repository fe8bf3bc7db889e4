"""One request of the page: check the input, separate with the shared ``Separator``, write files and pictures."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from dgmo_pl.api import Separator
from dgmo_pl.app.images import magnitudes, mask_image, spectrogram_image
from dgmo_pl.app.progress import ProgressReporter, Report
from dgmo_pl.audio.io import read_audio

#: The residual's label on the page.
RESIDUAL_LABEL = "everything else (residual)"


@dataclass(frozen=True)
class Settings:
    """A request's settings beyond the model: how many rounds, the seed, joint masks and the residual."""

    rounds: int = 3
    seed: int = 0
    joint: bool = True
    residual: bool = True


@dataclass(frozen=True)
class SeparatedSound:
    """One output of a request: its label (the query), its file and its pictures."""

    label: str
    file: Path
    spectrogram: Image.Image
    mask: Image.Image


@dataclass(frozen=True)
class Separated:
    """What a request made: the mixture's spectrogram and each output (queries in order, then the residual)."""

    mixture: Image.Image
    sounds: list[SeparatedSound]


def separate_request(
    base: Separator, audio: str | Path, queries: list[str], settings: Settings, folder: Path, report: Report,
) -> Separated:
    """Separate a checked recording with its queries into ``folder``, as ``fit`` would.

    Args:
        base: The loaded Separator of the request's model setting (its model is shared, not reloaded).
        audio: The recording (see :func:`~dgmo_pl.app.inputs.check_recording`).
        queries: The queries (see :func:`~dgmo_pl.app.inputs.parse_queries`).
        settings: Rounds, seed, joint, residual.
        folder: A new folder for this request's files (``<group>/<name>.wav``).
        report: Receives progress (fraction of the current fit, description).

    Raises:
        InputError: A setting the fit refuses (a residual without joint masks, say).
    """
    separator = Separator(base.data, base.model_settings, settings.rounds, settings.seed, base.audio, base.trainer)
    result = separator.separate(str(audio), queries, joint=settings.joint, residual=settings.residual,
                                callbacks=[ProgressReporter(report)])  # fmt: skip
    files = result.save(folder)
    mixture = magnitudes(read_audio(str(audio), "recording")[0])
    top = float(mixture.max())
    labels = [*queries, RESIDUAL_LABEL]
    sounds = []
    for label, name, file in zip(labels, result, files, strict=False):
        picture = spectrogram_image(magnitudes(result[name]), top)
        sounds.append(SeparatedSound(label, file, picture, mask_image(result.masks[name])))
    return Separated(spectrogram_image(mixture, top), sounds)


def new_request_folder(root: Path, keep: int = 16) -> Path:
    """A new folder for a request's files under ``root``; the oldest go so that at most ``keep`` stay.

    The page serves the files after the request returns, so a request's folder outlives it.
    """
    root.mkdir(parents=True, exist_ok=True)
    existing = sorted(root.iterdir(), key=lambda p: p.stat().st_mtime)
    for old in existing[: max(0, len(existing) - keep + 1)]:
        shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix="request-", dir=root))
