"""Reading and writing audio files with soundfile (wav, flac, ogg/vorbis/opus, mp3).

Besides whole-file :func:`read_audio` and :func:`write_audio`, files of any length can be streamed
in memory that does not grow with their length: :func:`scan_audio` checks a file and counts its
frames block by block, :func:`read_frames` reads one range of frames, and :class:`AudioWriter`
writes a WAV file block by block.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Literal, NamedTuple

import numpy as np
import soundfile as sf
import torch

from dgmo_pl.errors import InputError

#: Peaks below -90 dBFS (one 16-bit step) count as silence: normalising them would amplify noise.
SILENCE_PEAK = 10 ** (-90 / 20)

#: What soundfile raises for a file it cannot open or decode.
_READ_ERRORS = (sf.LibsndfileError, RuntimeError, TypeError)

#: Subtypes whose frames libsndfile seeks to exactly (uncompressed, companded, or FLAC's PCM).
#: Ogg/Vorbis seeks can land frames off (libsndfile issue #885; near the end of a file with
#: libsndfile 1.2.2) and MP3 seeks decode the first frames after them wrongly, so files of other
#: subtypes are decoded from their start instead.
_EXACT_SEEK_SUBTYPES = frozenset({"FLOAT", "DOUBLE", "ULAW", "ALAW"})

#: Frames per read when skipping through a file that cannot be seeked exactly.
_SKIP_BLOCK = 65_536


class AudioInfo(NamedTuple):
    """What :func:`scan_audio` found in a file.

    Attributes:
        frames: Frames actually decoded (one frame holds one sample per channel).
        sample_rate: Sample rate in Hz.
        channels: Number of channels.
    """

    frames: int
    sample_rate: int
    channels: int


# --- reading ------------------------------------------------------------------------------------


class _Tally:
    """Frame count, finiteness and peak of the samples seen so far, gathered block by block."""

    def __init__(self, mono: bool = False) -> None:
        self.frames = 0
        self.finite = True
        self.peak = 0.0
        self.mono = mono  # also track the peak of the mono mix, its mean removed
        self.mono_peak = 0.0

    def add(self, block: np.ndarray) -> None:
        """Count a ``[frames, channels]`` block."""
        if block.size == 0:
            return
        low, high = float(block.min()), float(block.max())  # NaN if any sample is NaN
        self.frames += block.shape[0]
        self.finite = self.finite and math.isfinite(low) and math.isfinite(high)
        self.peak = max(self.peak, high, -low)
        if self.mono:
            mixed = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
            self.mono_peak = max(self.mono_peak, float(np.abs(mixed - mixed.mean()).max()))

    def check(self, path: Path, what: str) -> None:
        """Raise the InputError that a file with these samples deserves, if any."""
        if self.frames == 0:
            raise InputError(f"{what} '{path}' contains no samples: pass a recording with sound in it")
        if not self.finite:
            raise _non_finite(path, what)
        if not self.peak >= SILENCE_PEAK:
            raise InputError(f"{what} '{path}' is silent (peak below -90 dBFS): pass a recording with sound in it")


def _finite(block: np.ndarray) -> bool:
    """Whether every sample of ``block`` is finite, without a temporary array (min/max keep NaN)."""
    return block.size == 0 or bool(np.isfinite(block.min()) and np.isfinite(block.max()))


def _non_finite(path: Path, what: str, where: str = "") -> InputError:
    return InputError(f"{what} '{path}' contains NaN or infinite samples{where}: repair or re-export it")


@contextmanager
def _decoding(path: Path, what: str) -> Iterator[None]:
    """Turn soundfile's errors raised inside the block into an InputError naming ``path``."""
    try:
        yield
    except _READ_ERRORS as err:
        raise InputError(
            f"{what} '{path}' could not be read as audio ({err}): pass a wav, flac, ogg or mp3 file"
        ) from None


class _Reader(sf.SoundFile):
    """A SoundFile that reads on from where the last read stopped, without seeking.

    python-soundfile seeks to the current position after every read of a seekable file, to keep
    its position in step. In MP3 files even that seek restarts decoding wrongly (libsndfile
    1.2.2), so an MP3 read block by block differs from the same file read whole. Reporting the
    file as not seekable turns that bookkeeping off; :meth:`seek` still works, and ``can_seek``
    says whether libsndfile can seek in the file.
    """

    def seekable(self) -> bool:
        return False

    @property
    def can_seek(self) -> bool:
        """Whether libsndfile can seek in this file."""
        return super().seekable()


@contextmanager
def _open_audio(path: Path, what: str) -> Iterator[_Reader]:
    """Open ``path`` for reading, after the checks shared by every reader.

    Raises:
        InputError: ``path`` is a folder, missing, empty, or not a file soundfile opens.
    """
    if path.is_dir():
        raise InputError(f"{what} '{path}' is a folder: pass the path of an audio file")
    if not path.is_file():
        raise InputError(f"{what} '{path}' does not exist: pass the path of an existing audio file")
    if path.stat().st_size == 0:
        raise InputError(f"{what} '{path}' is an empty file: pass a non-empty audio file")
    with _decoding(path, what):
        file = _Reader(str(path))
    with file:
        _check_complete(file, path, what)
        yield file


#: libsndfile's note on a data chunk shorter than its header says: ``data : 64000 (should be 31978)``.
_SHORT_CHUNK = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
#: Sizes that streaming writers put in a header they cannot go back to fill (no length known).
_UNKNOWN_SIZES = {0, 0xFFFFFFFF, 0x7FFFFFFF, 0xFFFFFFFF - 8}


def _check_complete(file: _Reader, path: Path, what: str) -> None:
    """Refuse a file whose header announces more audio than it holds (an interrupted copy or download).

    libsndfile reads what is there and notes the difference in its log; separating the shorter
    file without a word would hand back a shorter output than the recording the user meant.
    """
    found = _SHORT_CHUNK.search(file.extra_info or "")
    if not found:
        return
    announced, present = int(found[1]), int(found[2])
    if announced in _UNKNOWN_SIZES or announced <= present:
        return
    seconds = file.frames / file.samplerate
    raise InputError(
        f"{what} '{path}' is truncated: its header announces {announced} bytes of audio but the file holds "
        f"{present} ({seconds:.3f} s): copy or download it again, or re-export it to rewrite its header"
    )


def _read_into(file: _Reader, out: np.ndarray, path: Path, what: str) -> np.ndarray:
    """Fill ``out`` (``[frames, channels]`` float32) from the file's position.

    Returns:
        The filled part of ``out``: shorter than ``out`` only at the end of the file.
    """
    with _decoding(path, what):
        return file.read(out=out)


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
    with _open_audio(path, what) as file, _decoding(path, what):
        data = file.read(file.frames, dtype="float32", always_2d=True)
        sample_rate = file.samplerate
    tally = _Tally()
    tally.add(data)
    tally.check(path, what)
    return torch.from_numpy(data.T.copy()), int(sample_rate)


def scan_audio(
    path: str | os.PathLike, what: str = "audio file", block_seconds: float = 10.0, mono: bool = False
) -> AudioInfo:
    """Check an audio file as :func:`read_audio` does, reading it block by block.

    Memory stays at one block (``block_seconds`` of float32 frames) whatever the file's length.

    Args:
        path: Any file that soundfile reads, at any sample rate and channel count.
        what: How to name the file in error messages (e.g. ``"mixture"``).
        block_seconds: Length of one read, in seconds of audio.
        mono: Also refuse a file whose channels cancel when mixed to mono (what the model hears):
            no block's mono mix, its mean removed, reaches -90 dBFS.

    Returns:
        The file's :class:`AudioInfo`, with the frames actually decoded: the header's count can be
        an estimate for compressed formats (``read_audio`` stops at the header's count, so it
        returns fewer frames where the header undercounts, and as many otherwise).

    Raises:
        InputError: The same errors, with the same messages, as :func:`read_audio`; or
            ``block_seconds`` is not a positive number.
    """
    if not (math.isfinite(block_seconds) and block_seconds > 0):
        raise InputError(f"block_seconds must be a positive number of seconds, got {block_seconds}: pass e.g. 10")
    path = Path(path)
    tally = _Tally(mono)
    with _open_audio(path, what) as file:
        block = np.empty((max(1, round(block_seconds * file.samplerate)), file.channels), dtype=np.float32)
        while (got := _read_into(file, block, path, what)).shape[0] > 0:
            tally.add(got)
        info = AudioInfo(frames=tally.frames, sample_rate=int(file.samplerate), channels=int(file.channels))
    tally.check(path, what)
    if mono and not tally.mono_peak >= SILENCE_PEAK:
        raise InputError(
            f"{what} '{path}' is silent (peak below -90 dBFS once mixed to mono: its channels cancel): "
            "pass a recording with sound in it"
        )
    return info


def _seeks_exactly(file: _Reader) -> bool:
    """Whether ``file.seek`` lands exactly on the frame asked for (see ``_EXACT_SEEK_SUBTYPES``)."""
    return file.can_seek and (file.subtype.startswith("PCM_") or file.subtype in _EXACT_SEEK_SUBTYPES)


def _skip(file: _Reader, frames: int, path: Path, what: str) -> bool:
    """Move ``frames`` frames forward by decoding them; memory stays at one small block.

    Returns:
        Whether the file holds frames after the skipped ones.
    """
    scratch = np.empty((min(frames, _SKIP_BLOCK), file.channels), dtype=np.float32)
    while frames > 0:
        got = _read_into(file, scratch[:frames], path, what).shape[0]
        if got == 0:
            return False
        frames -= got
    return True


def read_frames(path: str | os.PathLike, start: int, count: int, what: str = "audio file") -> torch.Tensor:
    """Read frames ``[start, start + count)`` of an audio file, zero-padded outside the file.

    Seeks where libsndfile seeks exactly (wav, flac and other PCM files); Ogg and MP3 files, and
    files that cannot seek, are decoded from their start, one small block at a time.

    Args:
        path: Any file that soundfile reads.
        start: First frame; negative values pad zeros before the file's first frame.
        count: Number of frames to return.
        what: How to name the file in error messages (e.g. ``"mixture"``).

    Returns:
        ``[channels, count]`` float32; frames before 0 or past the end of the file are zero.

    Raises:
        InputError: The file is missing, a folder, empty or not audio; the range read holds
            NaN/inf values; or ``count`` is negative. Silence is not an error here.
    """
    if count < 0:
        raise InputError(f"count must be 0 or more frames, got {count}: pass the number of frames to read")
    path = Path(path)
    with _open_audio(path, what) as file:
        out = np.zeros((count, file.channels), dtype=np.float32)
        lead = min(max(-start, 0), count)  # zero frames before the file's first frame
        first = max(start, 0)  # first frame of the file to read
        got = out[lead:lead]
        if lead < count:
            if _seeks_exactly(file):
                more = first < file.frames
                if more:
                    with _decoding(path, what):
                        file.seek(first)
            else:
                more = _skip(file, first, path, what)
            if more:
                got = _read_into(file, out[lead:], path, what)
    if not _finite(got):
        raise _non_finite(path, what, f" in frames [{start}, {start + count})")
    return torch.from_numpy(out.T.copy())


# --- writing ------------------------------------------------------------------------------------


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Sample formats of the WAV files written.
Subtype = Literal["PCM_16", "PCM_24", "FLOAT"]
SUBTYPES: tuple[str, ...] = ("PCM_16", "PCM_24", "FLOAT")


class AudioWriter:
    """Write a WAV file (16-bit PCM unless told otherwise) block by block, atomically: a crash never leaves half a file.

    Blocks go to a temporary file in the destination's folder; a clean exit from the ``with`` block
    gives it permissions by the umask and moves it onto ``path``, an exception deletes it and
    leaves any earlier file at ``path`` as it was. Memory stays at one block::

        with AudioWriter("out.wav", 48_000, channels=2) as out:
            for block in blocks:  # each [2, n]
                out.write(block)

    Attributes:
        path: The destination file.
        sample_rate: Sample rate in Hz.
        channels: Number of channels of every block.
        frames: Frames written so far.
    """

    def __init__(self, path: str | os.PathLike, sample_rate: int, channels: int, subtype: Subtype = "PCM_16") -> None:
        """Prepare a writer; nothing is created before the ``with`` block is entered.

        Args:
            path: Destination ``.wav`` file; its folder is created if needed.
            sample_rate: Sample rate in Hz.
            channels: Number of channels (1 or more).
            subtype: Sample format: ``PCM_16``, ``PCM_24`` or ``FLOAT`` (32-bit float).

        Raises:
            ValueError: ``channels`` is below 1 or ``subtype`` is not one of those.
        """
        self.path = Path(path)
        if channels < 1:
            raise ValueError(f"cannot write '{self.path}' with {channels} channels: pass 1 or more")
        if subtype not in SUBTYPES:
            raise ValueError(f"cannot write '{self.path}' as {subtype!r}: pass one of {', '.join(SUBTYPES)}")
        self.sample_rate = sample_rate
        self.channels = channels
        self.subtype = subtype
        self.frames = 0
        self._tmp: Path | None = None
        self._file: sf.SoundFile | None = None

    def __enter__(self) -> AudioWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".wav", prefix=f".{self.path.stem}.", dir=self.path.parent)
        os.close(fd)
        self._tmp, self.frames = Path(tmp), 0
        try:
            self._file = sf.SoundFile(tmp, "w", self.sample_rate, self.channels, subtype=self.subtype, format="WAV")
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None
            raise
        return self

    def _samples(self, block: torch.Tensor) -> np.ndarray:
        """Check a block and return it as ``[frames, channels]`` float32, clipped to [-1, 1] for PCM.

        A ``FLOAT`` file holds values beyond full scale, so nothing is clipped there (outputs that
        add up to a float input peaking above 1 still do).
        """
        data = torch.as_tensor(block).detach().cpu().float()
        if data.dim() == 1 and self.channels == 1:
            data = data.unsqueeze(0)
        if data.dim() != 2 or data.shape[0] != self.channels:
            shapes = "[1, samples] or [samples]" if self.channels == 1 else f"[{self.channels}, samples]"
            raise ValueError(f"blocks written to '{self.path}' must be {shapes}, got shape {list(data.shape)}")
        samples = data.numpy().T
        if not _finite(samples):
            raise ValueError(f"refusing to write NaN or infinite samples to '{self.path}'")
        if self.subtype == "FLOAT":
            return np.ascontiguousarray(samples, dtype=np.float32)
        return np.clip(samples, -1.0, 1.0, out=np.empty(samples.shape, dtype=np.float32))

    def write(self, block: torch.Tensor) -> None:
        """Append a block of samples.

        Args:
            block: ``[channels, n]`` (or ``[n]`` for a mono file) float samples; values are
                clipped to [-1, 1] in PCM files.

        Raises:
            ValueError: The block has another shape or NaN/inf values (nothing is written), or
                the writer is not open.
            OSError: The file system refused the write (a full disk, a file size limit).
        """
        if self._file is None:
            raise ValueError(f"the writer of '{self.path}' is not open: write inside its with block")
        data = self._samples(block)
        try:
            self._file.write(data)
        except sf.LibsndfileError as err:  # libsndfile reports a failed write(2) as its own error
            raise OSError(f"could not write audio to '{self.path}' ({err})") from None
        self.frames += data.shape[0]

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        tmp, file = self._tmp, self._file
        self._tmp, self._file = None, None
        if tmp is None:
            return
        replaced = False
        try:
            if file is not None:
                file.close()  # writes the header's final length
            if exc_type is None:
                os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes owner-only files
                os.replace(tmp, self.path)
                replaced = True
        finally:
            if not replaced:
                tmp.unlink(missing_ok=True)


def write_audio(
    path: str | os.PathLike, waveform: torch.Tensor, sample_rate: int, subtype: Subtype = "PCM_16"
) -> Path:
    """Write ``waveform`` as a WAV file (16-bit PCM by default), atomically: a crash never leaves half a file.

    One :class:`AudioWriter` block.

    Args:
        path: Destination ``.wav`` file; its folder is created if needed.
        waveform: ``[samples]`` or ``[channels, samples]``; values are clipped to [-1, 1].
        sample_rate: Sample rate in Hz.
        subtype: Sample format (see :class:`AudioWriter`).

    Returns:
        The path written.

    Raises:
        ValueError: ``waveform`` has another number of dimensions or non-finite values.
    """
    path = Path(path)
    if waveform.dim() not in (1, 2):
        raise ValueError(f"waveform must be [samples] or [channels, samples], got shape {list(waveform.shape)}")
    channels = 1 if waveform.dim() == 1 else waveform.shape[0]
    with AudioWriter(path, sample_rate, channels, subtype) as out:
        out.write(waveform)
    return path
