"""Tests of streaming audio files (dgmo_pl.audio.io): scan_audio, read_frames and AudioWriter."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from dgmo_pl.audio import io as audio_io
from dgmo_pl.audio.io import AudioInfo, AudioWriter, read_audio, read_frames, scan_audio, write_audio
from dgmo_pl.errors import InputError

RATE = 44_100
#: 16-bit quantisation: libsndfile writes x * 32767 and reads n / 32768.
PCM16_STEP = 1 / 32768 + 1e-7


def stereo_sine(seconds: float = 2.3) -> np.ndarray:
    """A [samples, 2] float32 stereo sine pair (440 Hz left, 660 Hz right) at 44.1 kHz."""
    t = np.arange(int(RATE * seconds)) / RATE
    left = 0.5 * np.sin(2 * np.pi * 440.0 * t)
    right = 0.25 * np.sin(2 * np.pi * 660.0 * t)
    return np.stack([left, right], axis=1).astype(np.float32)


def padded_slice(full: np.ndarray, start: int, count: int) -> np.ndarray:
    """Frames [start, start + count) of a [channels, frames] array, zeros outside it."""
    out = np.zeros((full.shape[0], count), dtype=np.float32)
    low, high = max(start, 0), min(start + count, full.shape[1])
    if high > low:
        out[:, low - start : high - start] = full[:, low:high]
    return out


def peak_traced_bytes(function, *args, **kwargs) -> int:
    """Peak bytes traced by tracemalloc (numpy's buffers included) while ``function`` runs."""
    tracemalloc.start()
    try:
        function(*args, **kwargs)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# --- scan_audio ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A 3-minute 44.1 kHz stereo 16-bit WAV of sawtooth waves, and its frame count."""
    frames = 3 * 60 * RATE
    ramp = (np.arange(frames, dtype=np.int32) % 400 - 200) * 50
    data = np.stack([ramp, -ramp], axis=1).astype(np.int16)
    path = tmp_path_factory.mktemp("long") / "podcast.wav"
    sf.write(path, data, RATE, subtype="PCM_16")
    return path, frames


def test_scan_audio_long_file_in_bounded_memory(long_wav):
    """A 3-minute file is scanned in less than a quarter of its float32 size; read_audio needs more."""
    path, frames = long_wav
    assert scan_audio(path) == AudioInfo(frames=frames, sample_rate=RATE, channels=2)
    float32_size = frames * 2 * 4
    scan_peak = peak_traced_bytes(scan_audio, path)
    read_peak = peak_traced_bytes(read_audio, path)
    assert scan_peak < float32_size / 4 < read_peak, (scan_peak, read_peak, float32_size)


def _bad_file(tmp_path: Path, case: str) -> Path:
    """A file that read_audio refuses, of the kind named by ``case``."""
    path = tmp_path / f"{case}.wav"
    if case == "folder":
        path.mkdir()
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "garbage":
        path.write_bytes(bytes(range(256)) * 40)
    elif case == "no_frames":
        sf.write(path, np.zeros((0, 2), dtype=np.float32), RATE)
    elif case == "silent":
        sf.write(path, np.zeros((RATE, 2), dtype=np.float32), RATE)
    elif case in ("nan", "inf"):
        data = stereo_sine(1.0)
        data[-100, 1] = np.nan if case == "nan" else -np.inf  # in the last block of small reads
        sf.write(path, data, RATE, subtype="FLOAT")
    return path  # "missing": never created


@pytest.mark.parametrize("block_seconds", [10.0, 0.01])
@pytest.mark.parametrize("case", ["missing", "folder", "empty", "garbage", "no_frames", "silent", "nan", "inf"])
def test_scan_audio_errors_match_read_audio(tmp_path, case, block_seconds):
    """scan_audio refuses the files read_audio refuses, with the same message naming the file."""
    path = _bad_file(tmp_path, case)
    with pytest.raises(InputError) as read_info:
        read_audio(path, what="mixture")
    with pytest.raises(InputError) as scan_info:
        scan_audio(path, what="mixture", block_seconds=block_seconds)
    assert str(scan_info.value) == str(read_info.value)
    assert str(path) in str(scan_info.value)


@pytest.mark.parametrize("block_seconds", [0.0, -1.0, float("nan"), float("inf")])
def test_scan_audio_refuses_bad_block_length(tmp_path, block_seconds):
    """A block length that is not a positive number of seconds is an InputError naming it."""
    path = tmp_path / "ok.wav"
    sf.write(path, stereo_sine(0.1), RATE)
    with pytest.raises(InputError, match=f"block_seconds .*got {block_seconds}"):
        scan_audio(path, block_seconds=block_seconds)


# --- read_frames --------------------------------------------------------------------------------

FORMATS = [
    pytest.param("wav", "WAV", None, 0.0, id="wav"),
    pytest.param("flac", "FLAC", None, 0.0, id="flac"),
    pytest.param("ogg", "OGG", "VORBIS", 1e-3, id="ogg-vorbis"),
    pytest.param("mp3", "MP3", "MPEG_LAYER_III", 1e-3, id="mp3"),
]


def _write_format(tmp_path: Path, ext: str, fmt: str, subtype: str | None) -> Path:
    """The stereo sine written in one format, or a skip where libsndfile cannot write it."""
    if fmt not in sf.available_formats():
        pytest.skip(f"this libsndfile ({sf.__libsndfile_version__}) does not handle {fmt}")
    path = tmp_path / f"sine.{ext}"
    try:
        sf.write(path, stereo_sine(), RATE, format=fmt, subtype=subtype)
    except (sf.LibsndfileError, TypeError, ValueError) as err:
        pytest.skip(f"this libsndfile ({sf.__libsndfile_version__}) cannot write {fmt}/{subtype}: {err}")
    return path


@pytest.mark.parametrize(("ext", "fmt", "subtype", "atol"), FORMATS)
def test_read_frames_matches_the_full_read(tmp_path, ext, fmt, subtype, atol):
    """Ranges read alone equal slices of read_audio's full read, zero-padded outside the file.

    Lossy formats are compared with the full read of the same file: Ogg and MP3 seeks in
    libsndfile are not exact, and a range one frame off misses the tolerance by far (440 Hz at
    amplitude 0.5 moves up to 0.03 per frame). The end of the file, where Ogg seeks go wrong,
    is among the ranges.
    """
    path = _write_format(tmp_path, ext, fmt, subtype)
    full, rate = read_audio(path)
    full = full.numpy()
    n = full.shape[1]
    assert scan_audio(path, block_seconds=0.05) == AudioInfo(frames=n, sample_rate=rate, channels=2)
    cases = [
        (0, 1000),
        (12_345, 5000),
        (70_001, 3000),  # beyond the first block of a read-through
        (-300, 1000),  # starts before the file
        (-5000, 500),  # ends before the file
        (-10, n + 20),  # the whole file, padded at both ends
        (n - 1000, 1000),  # exactly at the end
        (n - 200, 1000),  # runs past the end
        (n + 50, 100),  # after the end
        (n, 0),
    ]
    for start, count in cases:
        got = read_frames(path, start, count)
        assert got.dtype == torch.float32
        assert got.shape == (2, count), (start, count)
        np.testing.assert_allclose(
            got.numpy(), padded_slice(full, start, count), rtol=0, atol=atol, err_msg=f"frames {start}+{count}"
        )


def test_read_frames_seeks_in_a_wav_file(tmp_path, monkeypatch):
    """In a WAV file read_frames seeks to the range instead of decoding from the start."""
    path = tmp_path / "sine.wav"
    sf.write(path, stereo_sine(), RATE)
    seeks = []
    real_seek = audio_io.sf.SoundFile.seek

    def spy(self, frames, whence=sf.SEEK_SET):
        seeks.append((frames, whence))
        return real_seek(self, frames, whence)

    monkeypatch.setattr(audio_io.sf.SoundFile, "seek", spy)
    read_frames(path, 50_000, 10)
    assert seeks[:1] == [(50_000, sf.SEEK_SET)]


def test_read_frames_reads_through_a_file_that_cannot_seek(tmp_path, monkeypatch):
    """Where libsndfile cannot seek, the range is decoded from the start, with the same result."""
    path = tmp_path / "sine.wav"
    sf.write(path, stereo_sine(), RATE)
    full = read_audio(path)[0].numpy()
    n = full.shape[1]
    monkeypatch.setattr(audio_io.sf.SoundFile, "seekable", lambda self: False)
    monkeypatch.setattr(audio_io.sf.SoundFile, "seek", lambda *args: pytest.fail("seek on an unseekable file"))
    for start, count in [(-20, 100), (70_001, 3000), (n - 100, 300), (n + 5, 10)]:
        np.testing.assert_array_equal(read_frames(path, start, count).numpy(), padded_slice(full, start, count))


def test_read_frames_mono_file(tmp_path):
    """A mono file gives [1, count]."""
    path = tmp_path / "mono.wav"
    data = stereo_sine(0.2)[:, 0]
    sf.write(path, data, 16_000, subtype="FLOAT")
    got = read_frames(path, -2, 10)
    assert got.shape == (1, 10)
    np.testing.assert_array_equal(got[0].numpy(), np.concatenate([[0.0, 0.0], data[:8]]))


def test_read_frames_refuses_nan_in_the_range_only(tmp_path):
    """NaN inside the range read is an InputError naming the file; elsewhere it is not read."""
    data = stereo_sine(1.0)
    data[20_000, 0] = np.nan
    path = tmp_path / "broken.wav"
    sf.write(path, data, RATE, subtype="FLOAT")
    with pytest.raises(InputError, match="contains NaN or infinite samples") as info:
        read_frames(path, 19_000, 2000, what="mixture")
    assert str(info.value).startswith(f"mixture '{path}'")
    np.testing.assert_array_equal(read_frames(path, 0, 1000).numpy(), data[:1000].T)


def test_read_frames_bad_inputs(tmp_path):
    """A missing file gives read_audio's error; a negative count is refused."""
    missing = tmp_path / "nope.wav"
    with pytest.raises(InputError) as read_info:
        read_audio(missing)
    with pytest.raises(InputError) as frames_info:
        read_frames(missing, 0, 10)
    assert str(frames_info.value) == str(read_info.value)
    path = tmp_path / "ok.wav"
    sf.write(path, stereo_sine(0.1), RATE)
    with pytest.raises(InputError, match="count must be 0 or more frames, got -1"):
        read_frames(path, 0, -1)


# --- AudioWriter --------------------------------------------------------------------------------


def test_audio_writer_pieces_equal_the_whole(tmp_path):
    """Blocks written one by one read back as the whole signal, clipped, and as write_audio writes it."""
    signal = torch.from_numpy(stereo_sine(1.0).T.copy()) * 3  # beyond [-1, 1]: clipped
    path = tmp_path / "out" / "pieces.wav"
    with AudioWriter(path, RATE, channels=2) as out:
        for low, high in [(0, 0), (0, 1), (1, 1000), (1000, 5410), (5410, signal.shape[1])]:
            out.write(signal[:, low:high])
    assert out.frames == signal.shape[1]
    info = sf.info(path)
    assert (info.format, info.subtype, info.samplerate, info.channels) == ("WAV", "PCM_16", RATE, 2)
    back, _ = sf.read(path, dtype="float32", always_2d=True)
    assert back.shape == (signal.shape[1], 2)
    np.testing.assert_allclose(back.T, signal.clamp(-1, 1).numpy(), rtol=0, atol=PCM16_STEP)
    whole, _ = sf.read(write_audio(tmp_path / "whole.wav", signal, RATE), dtype="float32", always_2d=True)
    np.testing.assert_array_equal(back, whole)
    assert os.listdir(path.parent) == ["pieces.wav"]


def test_audio_writer_mono_blocks(tmp_path):
    """A mono writer takes [n] and [1, n] blocks."""
    path = tmp_path / "mono.wav"
    with AudioWriter(path, 16_000, channels=1) as out:
        out.write(torch.full((10,), 0.5))
        out.write(torch.full((1, 5), -0.25))
    back, rate = sf.read(path, dtype="float32")
    assert rate == 16_000
    np.testing.assert_allclose(back, [0.5] * 10 + [-0.25] * 5, rtol=0, atol=PCM16_STEP)


def test_audio_writer_without_blocks_writes_an_empty_file(tmp_path):
    """A writer closed without blocks leaves a valid WAV file with no frames."""
    path = tmp_path / "empty.wav"
    with AudioWriter(path, 16_000, channels=2):
        pass
    info = sf.info(path)
    assert (info.frames, info.channels, info.samplerate) == (0, 2, 16_000)


def test_audio_writer_exception_leaves_nothing(tmp_path):
    """An exception inside the with block removes the temporary file and writes no file."""
    folder = tmp_path / "out"
    with pytest.raises(RuntimeError, match="boom"):
        with AudioWriter(folder / "x.wav", RATE, channels=2) as out:
            out.write(torch.zeros(2, 1000))
            out.write(torch.zeros(2, 1000))
            assert len(os.listdir(folder)) == 1  # the temporary file, being written
            raise RuntimeError("boom")
    assert os.listdir(folder) == []


def test_audio_writer_replaces_an_existing_file_only_on_success(tmp_path):
    """A failed write leaves the earlier file as it was; a good one replaces it."""
    path = tmp_path / "x.wav"
    write_audio(path, torch.linspace(-0.5, 0.5, 1000), 16_000)
    before = path.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        with AudioWriter(path, 16_000, channels=1) as out:
            out.write(torch.zeros(300))
            out.write(torch.zeros(300))
            raise KeyboardInterrupt
    assert path.read_bytes() == before
    with AudioWriter(path, 16_000, channels=1) as out:
        out.write(torch.full((300,), 0.25))
        out.write(torch.full((200,), 0.25))
    assert sf.info(path).frames == 500
    np.testing.assert_allclose(sf.read(path, dtype="float32")[0], 0.25, rtol=0, atol=PCM16_STEP)
    assert os.listdir(tmp_path) == ["x.wav"]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_audio_writer_refuses_non_finite_samples(tmp_path, bad):
    """A block with NaN/inf is refused with the path in the message, and no file appears."""
    path = tmp_path / "out.wav"
    block = torch.zeros(2, 100)
    block[1, 10] = bad
    with pytest.raises(ValueError, match="NaN or infinite") as info:
        with AudioWriter(path, 16_000, channels=2) as out:
            out.write(torch.zeros(2, 100))
            out.write(block)
    assert str(path) in str(info.value)
    assert out.frames == 100
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("shape", [(3, 100), (1, 100), (100,), (2, 100, 1)])
def test_audio_writer_refuses_wrong_channel_count(tmp_path, shape):
    """A block without the writer's two channels is refused with the path and shape in the message."""
    path = tmp_path / "out.wav"
    with AudioWriter(path, 16_000, channels=2) as out:
        with pytest.raises(ValueError, match=r"must be \[2, samples\]") as info:
            out.write(torch.zeros(shape))
        out.write(torch.zeros(2, 7))
    assert str(path) in str(info.value)
    assert str(list(shape)) in str(info.value)
    assert sf.info(path).frames == 7


def test_audio_writer_misuse(tmp_path):
    """No channels, or a write outside the with block, is a ValueError naming the path."""
    path = tmp_path / "out.wav"
    with pytest.raises(ValueError, match="0 channels"):
        AudioWriter(path, 16_000, channels=0)
    with pytest.raises(ValueError, match="not open"):
        AudioWriter(path, 16_000, channels=1).write(torch.zeros(10))
    assert list(tmp_path.iterdir()) == []
