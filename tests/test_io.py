"""Tests of reading and writing audio files (dgmo_pl.audio.io)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf
import torch

from dgmo_pl.audio import io as audio_io
from dgmo_pl.audio.io import read_audio, write_audio
from dgmo_pl.errors import InputError

RATE = 44_100


def stereo_sine(seconds: float = 0.5) -> np.ndarray:
    """A [samples, 2] float32 stereo sine pair (440 Hz left, 660 Hz right) at 44.1 kHz."""
    t = np.arange(int(RATE * seconds)) / RATE
    left = 0.5 * np.sin(2 * np.pi * 440.0 * t)
    right = 0.25 * np.sin(2 * np.pi * 660.0 * t)
    return np.stack([left, right], axis=1).astype(np.float32)


# --- read_audio: formats ------------------------------------------------------------------------


@pytest.mark.parametrize("ext", ["wav", "flac"])
def test_read_audio_lossless_formats(tmp_path, ext):
    """Lossless wav/flac read back as [channels, samples] float32 equal to what was written."""
    data = stereo_sine()
    path = tmp_path / f"sine.{ext}"
    sf.write(path, data, RATE)
    waveform, rate = read_audio(path)
    assert rate == RATE
    assert waveform.dtype == torch.float32
    assert waveform.shape == (2, data.shape[0])
    np.testing.assert_allclose(waveform.numpy(), data.T, rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    ("ext", "fmt", "subtype"),
    [("ogg", "OGG", "VORBIS"), ("mp3", "MP3", "MPEG_LAYER_III")],
)
def test_read_audio_lossy_formats(tmp_path, ext, fmt, subtype):
    """Lossy ogg/vorbis and mp3 read back as [2, samples] float32 at the written rate, close to the input."""
    data = stereo_sine()
    path = tmp_path / f"sine.{ext}"
    try:
        sf.write(path, data, RATE, format=fmt, subtype=subtype)
    except (sf.LibsndfileError, TypeError, ValueError) as err:
        pytest.skip(f"this soundfile build cannot write {fmt}/{subtype}: {err}")
    waveform, rate = read_audio(path)
    assert rate == RATE
    assert waveform.dtype == torch.float32
    assert waveform.shape[0] == 2
    assert abs(waveform.shape[1] - data.shape[0]) <= 2048
    n = min(waveform.shape[1], data.shape[0])
    # channels are not swapped and the waveform is close to the original
    np.testing.assert_allclose(waveform[:, :n].numpy(), data[:n].T, rtol=0, atol=0.05)


def test_read_audio_mono_is_2d(tmp_path):
    """A mono file gives a [1, samples] waveform."""
    path = tmp_path / "mono.wav"
    sf.write(path, stereo_sine()[:, 0], 16_000)
    waveform, rate = read_audio(path)
    assert waveform.shape == (1, int(RATE * 0.5))
    assert rate == 16_000


# --- read_audio: bad inputs ---------------------------------------------------------------------


def _read_error(path, **kwargs) -> str:
    """The message of the InputError that reading ``path`` raises; it must name the path."""
    with pytest.raises(InputError) as info:
        read_audio(path, **kwargs)
    message = str(info.value)
    assert str(path) in message
    return message


def test_read_audio_missing_file(tmp_path):
    """A missing file raises InputError naming the path and asking for an existing file."""
    path = tmp_path / "nope.wav"
    message = _read_error(path, what="mixture")
    assert message.startswith("mixture ")
    assert "does not exist" in message
    assert "pass the path of an existing audio file" in message


def test_read_audio_folder(tmp_path):
    """A folder (even one named like a wav file) raises InputError naming the path."""
    path = tmp_path / "folder.wav"
    path.mkdir()
    message = _read_error(path)
    assert "is a folder" in message
    assert "pass the path of an audio file" in message


def test_read_audio_empty_file(tmp_path):
    """A 0-byte file raises InputError naming the path and asking for a non-empty file."""
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    message = _read_error(path)
    assert "is an empty file" in message
    assert "pass a non-empty audio file" in message


def test_read_audio_non_audio_file(tmp_path):
    """A text file renamed .wav raises InputError naming the path and the accepted formats."""
    path = tmp_path / "notes.wav"
    path.write_text("these are not the samples you are looking for\n" * 20)
    message = _read_error(path)
    assert "could not be read as audio" in message
    assert "pass a wav, flac, ogg or mp3 file" in message


def test_read_audio_zero_frames(tmp_path):
    """A valid wav with no frames raises InputError naming the path."""
    path = tmp_path / "hollow.wav"
    sf.write(path, np.zeros((0, 2), dtype=np.float32), RATE)
    assert path.stat().st_size > 0  # a header, but no samples
    message = _read_error(path)
    assert "contains no samples" in message
    assert "pass a recording with sound in it" in message


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_read_audio_non_finite_sample(tmp_path, bad):
    """A float wav holding a NaN or infinite sample raises InputError naming the path."""
    data = stereo_sine()
    data[100, 1] = bad
    path = tmp_path / "broken.wav"
    sf.write(path, data, RATE, subtype="FLOAT")
    message = _read_error(path)
    assert "contains NaN or infinite samples" in message
    assert "repair or re-export it" in message


def test_read_audio_silent_file(tmp_path):
    """An all-zero wav raises InputError naming the path and saying it is silent."""
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros((RATE, 2), dtype=np.float32), RATE)
    message = _read_error(path, what="query audio")
    assert message.startswith("query audio ")
    assert "is silent (peak below -90 dBFS)" in message
    assert "pass a recording with sound in it" in message


def test_read_audio_near_silent_float_file(tmp_path):
    """A float file at -200 dBFS is silence too: normalising it would only amplify noise."""
    path = tmp_path / "faint.wav"
    sf.write(path, np.full((RATE, 1), 1e-10, dtype=np.float32), RATE, subtype="FLOAT")
    with pytest.raises(InputError, match="is silent"):
        read_audio(path)


def test_input_error_is_a_value_error():
    """InputError is a ValueError, so generic callers can catch it."""
    assert issubclass(InputError, ValueError)


# --- write_audio --------------------------------------------------------------------------------


def test_write_audio_mono_pcm16_at_rate(tmp_path):
    """A 1-D tensor is written as mono 16-bit PCM WAV at the given rate, and reads back the same."""
    x = torch.linspace(-0.9, 0.9, 8000)
    path = tmp_path / "out.wav"
    returned = write_audio(path, x, 16_000)
    assert returned == path
    info = sf.info(path)
    assert info.format == "WAV"
    assert info.subtype == "PCM_16"
    assert info.samplerate == 16_000
    assert info.channels == 1
    assert info.frames == 8000
    back, _ = sf.read(path, dtype="float32")
    np.testing.assert_allclose(back, x.numpy(), rtol=0, atol=1 / 32768 + 1e-7)


def test_write_audio_keeps_channel_order(tmp_path):
    """A [2, N] tensor is written as two channels in order."""
    x = torch.stack([torch.full((100,), 0.5), torch.full((100,), -0.25)])
    path = tmp_path / "stereo.wav"
    write_audio(path, x, 22_050)
    back, rate = sf.read(path, dtype="float32", always_2d=True)
    assert rate == 22_050
    assert back.shape == (100, 2)
    np.testing.assert_allclose(back, x.numpy().T, rtol=0, atol=1e-4)


def test_write_audio_clips_out_of_range_values(tmp_path):
    """Values beyond [-1, 1] are clipped rather than wrapped."""
    x = torch.tensor([2.0, -3.0, 0.5, 1.5, -1.01])
    path = tmp_path / "loud.wav"
    write_audio(path, x, 16_000)
    back, _ = sf.read(path, dtype="float32")
    np.testing.assert_allclose(back, [1.0, -1.0, 0.5, 1.0, -1.0], rtol=0, atol=1e-4)


def test_write_audio_hands_clipped_samples_to_soundfile(tmp_path, monkeypatch):
    """The samples handed to soundfile are already within [-1, 1] (clipping does not rely on libsndfile)."""
    seen = []
    real_write = audio_io.sf.SoundFile.write

    def spy(file, data, *args, **kwargs):
        seen.append(np.array(data, copy=True))
        return real_write(file, data, *args, **kwargs)

    monkeypatch.setattr(audio_io.sf.SoundFile, "write", spy)
    write_audio(tmp_path / "loud.wav", torch.tensor([[2.0, -3.0, 0.5], [0.1, 7.0, -0.2]]), 16_000)
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0], np.array([[1.0, 0.1], [-1.0, 1.0], [0.5, -0.2]], dtype=np.float32))


def test_write_audio_creates_parent_folders(tmp_path):
    """Missing parent folders are created."""
    path = tmp_path / "a" / "b" / "c" / "out.wav"
    write_audio(path, torch.ones(10) * 0.1, 16_000)
    assert path.is_file()
    assert sf.info(path).frames == 10


def test_write_audio_leaves_no_temporary_files(tmp_path):
    """After a successful write only the destination file is in the folder."""
    out = tmp_path / "out"
    write_audio(out / "x.wav", torch.randn(100) * 0.1, 16_000)
    write_audio(out / "x.wav", torch.randn(200) * 0.1, 16_000)  # overwrite too
    assert sorted(os.listdir(out)) == ["x.wav"]
    assert sf.info(out / "x.wav").frames == 200


def test_write_audio_failed_write_keeps_old_file(tmp_path):
    """A write that soundfile rejects leaves the earlier file intact and no temporary file."""
    path = tmp_path / "x.wav"
    write_audio(path, torch.linspace(-0.5, 0.5, 1000), 16_000)
    before = path.read_bytes()
    with pytest.raises(sf.LibsndfileError):
        write_audio(path, torch.zeros(50), 0)  # sample rate 0: libsndfile refuses to open
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["x.wav"]


def test_write_audio_crash_mid_write_keeps_old_file(tmp_path, monkeypatch):
    """A crash after part of the data was written never replaces the earlier file."""
    path = tmp_path / "x.wav"
    write_audio(path, torch.linspace(-0.5, 0.5, 1000), 16_000)
    before = path.read_bytes()

    real_write = audio_io.sf.SoundFile.write

    def half_write(file, data, *args, **kwargs):
        real_write(file, data[: len(data) // 2], *args, **kwargs)  # part of the samples reach the disk
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(audio_io.sf.SoundFile, "write", half_write)
    with pytest.raises(KeyboardInterrupt):
        write_audio(path, torch.zeros(50), 16_000)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["x.wav"]


def test_write_then_read_round_trip(tmp_path):
    """write_audio output is accepted by read_audio with the same shape and rate."""
    x = torch.from_numpy(stereo_sine().T.copy())
    path = write_audio(tmp_path / "rt.wav", x, RATE)
    back, rate = read_audio(path)
    assert rate == RATE
    assert back.shape == x.shape
    torch.testing.assert_close(back, x, rtol=0, atol=1e-4)


def test_write_audio_refuses_non_finite_samples(tmp_path):
    """NaN would become a full-scale click: writing it is an error, and no file appears."""
    bad = torch.zeros(100)
    bad[10] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        write_audio(tmp_path / "out.wav", bad, 16000)
    assert list(tmp_path.iterdir()) == []


def test_write_audio_refuses_batched_tensors(tmp_path):
    """A [B, C, N] tensor is refused rather than silently merged into channels."""
    with pytest.raises(ValueError, match=r"\[channels, samples\]"):
        write_audio(tmp_path / "out.wav", torch.zeros(2, 2, 100), 16000)


def test_write_audio_file_mode_follows_umask(tmp_path):
    """Written files are readable by others under the usual umask, not owner-only."""
    old = os.umask(0o022)
    try:
        path = write_audio(tmp_path / "out.wav", torch.zeros(100), 16000)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
