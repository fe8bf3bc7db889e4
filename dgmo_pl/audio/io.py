"""Reading and writing audio files with soundfile (wav, flac, ogg/vorbis/opus, mp3)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import soundfile as sf
import torch

from dgmo_pl.errors import InputError

#: Peaks below -90 dBFS (one 16-bit step) count as silence: normalising them would amplify noise.
SILENCE_PEAK = 10 ** (-90 / 20)


def read_audio(path: str | os.PathLike, what: str = "audio file") -> tuple[torch.Tensor, int]:
    """Read an audio file and check that it holds usable samples.

    Args:
        path: Any file that soundfile reads, at any sample rate and channel count.
        what: How to name the file in error messages (e.g. ``"mixture"``).

    Returns:
        ``(waveform, sample_rate)`` with ``waveform`` of shape ``[channels, samples]``, float32.

    Raises:
        InputError: The file is missing, empty, not audio, has no samples, holds NaN/inf values
            or is silent (peak below -90 dBFS).
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{what} '{path}' is a folder: pass the path of an audio file")
    if not path.is_file():
        raise InputError(f"{what} '{path}' does not exist: pass the path of an existing audio file")
    if path.stat().st_size == 0:
        raise InputError(f"{what} '{path}' is an empty file: pass a non-empty audio file")
    try:
        data, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise InputError(
            f"{what} '{path}' could not be read as audio ({err}): pass a wav, flac, ogg or mp3 file"
        ) from None
    waveform = torch.from_numpy(data.T.copy())
    if waveform.shape[-1] == 0:
        raise InputError(f"{what} '{path}' contains no samples: pass a recording with sound in it")
    if not torch.isfinite(waveform).all():
        raise InputError(f"{what} '{path}' contains NaN or infinite samples: repair or re-export it")
    if not waveform.abs().amax() >= SILENCE_PEAK:
        raise InputError(f"{what} '{path}' is silent (peak below -90 dBFS): pass a recording with sound in it")
    return waveform, int(sample_rate)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_audio(path: str | os.PathLike, waveform: torch.Tensor, sample_rate: int) -> Path:
    """Write ``waveform`` as 16-bit PCM WAV, atomically: a crash never leaves half a file.

    Args:
        path: Destination ``.wav`` file; its folder is created if needed.
        waveform: ``[samples]`` or ``[channels, samples]``; values are clipped to [-1, 1].
        sample_rate: Sample rate in Hz.

    Returns:
        The path written.

    Raises:
        ValueError: ``waveform`` has another number of dimensions or non-finite values.
    """
    path = Path(path)
    data = waveform.detach().float().cpu()
    if data.dim() not in (1, 2):
        raise ValueError(f"waveform must be [samples] or [channels, samples], got shape {list(data.shape)}")
    if not torch.isfinite(data).all():
        raise ValueError(f"refusing to write NaN or infinite samples to '{path}'")
    data = data.clamp(-1.0, 1.0).reshape(-1, data.shape[-1]).T.numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".wav", prefix=f".{path.stem}.", dir=path.parent)
    os.close(fd)
    try:
        sf.write(tmp, data, sample_rate, subtype="PCM_16", format="WAV")
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes owner-only files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
