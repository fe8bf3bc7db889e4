"""Tests of the pure front-end functions in dgmo_pl.audio.frontend (ALGORITHM.md section 1)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dgmo_pl.audio import frontend
from dgmo_pl.audio.frontend import SpectrogramConfig
from dgmo_pl.audio.io import read_audio

SPEC = SpectrogramConfig()
SEGMENT = 163_840
LOG_EPS = math.log(1e-5)


def snr_db(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    """Signal-to-noise ratio of ``estimate`` against ``reference`` in dB."""
    x = reference.double()
    err = x - estimate.double()
    return 10.0 * math.log10(float((x**2).sum()) / float((err**2).sum()))


@pytest.fixture(scope="module")
def speech(shared_audio):
    """The JFK speech recording (44.1 kHz stereo) prepared to one 16 kHz mono segment."""
    waveform, rate = read_audio(shared_audio / "whisper__male-speech__1.wav")
    return frontend.prepare_waveform(waveform, rate, SPEC)


# --- STFT ---------------------------------------------------------------------------------------


def test_stft_istft_round_trip_of_real_recording(speech):
    """istft(stft(x)) gives a normalised real recording back at >= 60 dB SNR."""
    x, _ = frontend.normalise(speech, SPEC.peak)
    y = frontend.istft(frontend.stft(x, SPEC), SPEC, x.shape[-1])
    assert y.shape == x.shape
    assert snr_db(x, y) >= 60.0


def test_stft_shape_on_one_segment():
    """A 163,840-sample segment gives a complex [513, 1025] STFT; batches keep their lead axes."""
    x = torch.randn(SEGMENT)
    spectrum = frontend.stft(x, SPEC)
    assert spectrum.shape == (513, 1025)
    assert spectrum.is_complex()
    batched = frontend.stft(torch.stack([x, 2 * x]), SPEC)
    assert batched.shape == (2, 513, 1025)
    torch.testing.assert_close(batched[1], 2 * spectrum)


def test_stft_first_frame_uses_reflect_padding():
    """Frame 0 is the Hann-windowed FFT of the input reflect-padded by n_fft // 2 (centred STFT)."""
    x = torch.randn(4000, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    padded = torch.cat([x[1:513].flip(0), x])  # numpy/torch 'reflect': the edge sample is not repeated
    window = torch.hann_window(1024, dtype=torch.float64)
    expected = torch.fft.rfft(padded[:1024] * window)
    torch.testing.assert_close(frontend.stft(x, SPEC)[:, 0], expected)


def test_stft_frames_are_centred_on_hop_multiples():
    """An impulse at sample 160*k shows up in frame k most strongly (centred STFT, hop 160)."""
    x = torch.zeros(SEGMENT)
    x[160 * 300] = 1.0
    energy = frontend.stft(x, SPEC).abs().pow(2).sum(dim=0)
    assert int(energy.argmax()) == 300


def test_diffusion_log_mel_shape(speech):
    """The diffusion log-mel of the first 1024 frames is [1, 1, 1024, 64] and at or above the floor."""
    x, _ = frontend.normalise(speech, SPEC.peak)
    magnitude, _ = frontend.magnitude_and_phase(frontend.stft(x, SPEC))
    mel = frontend.diffusion_log_mel(
        magnitude[..., : SPEC.n_frames].unsqueeze(0), frontend.mel_filterbank(SPEC), SPEC
    )
    assert mel.shape == (1, 1, 1024, 64)
    assert torch.isfinite(mel).all()
    assert float(mel.min()) >= LOG_EPS - 1e-6
    assert float(mel.max()) > LOG_EPS + 1.0  # speech is far above the floor somewhere


# --- mel filterbank -----------------------------------------------------------------------------


# Slaney's mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above.
F_SP = 200.0 / 3.0
MIN_LOG_HZ = 1000.0
MIN_LOG_MEL = MIN_LOG_HZ / F_SP
LOGSTEP = np.log(6.4) / 27.0


def _slaney_hz_to_mel(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    mel = f / F_SP
    high = f >= MIN_LOG_HZ
    mel[high] = MIN_LOG_MEL + np.log(f[high] / MIN_LOG_HZ) / LOGSTEP
    return mel


def _slaney_mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f = m * F_SP
    high = m >= MIN_LOG_MEL
    f[high] = MIN_LOG_HZ * np.exp(LOGSTEP * (m[high] - MIN_LOG_MEL))
    return f


def _numpy_slaney_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """librosa.filters.mel defaults (htk=False, norm='slaney'), re-written in numpy: [n_mels, F]."""
    fft_freqs = np.linspace(0.0, sr / 2.0, n_fft // 2 + 1)
    mel_lo, mel_hi = _slaney_hz_to_mel(np.array([fmin, fmax]))
    mel_edges = np.linspace(mel_lo, mel_hi, n_mels + 2)
    hz_edges = _slaney_mel_to_hz(mel_edges)
    weights = np.zeros((n_mels, fft_freqs.size))
    for i in range(n_mels):
        lo, centre, hi = hz_edges[i], hz_edges[i + 1], hz_edges[i + 2]
        rising = (fft_freqs - lo) / (centre - lo)
        falling = (hi - fft_freqs) / (hi - centre)
        weights[i] = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (hi - lo))
    return weights


def test_mel_filterbank_matches_independent_slaney_implementation():
    """mel_filterbank equals a numpy re-implementation of librosa's Slaney filterbank ([513, 64])."""
    fb = frontend.mel_filterbank(SPEC)
    assert fb.shape == (513, 64)
    expected = _numpy_slaney_filterbank(16000, 1024, 64, 0.0, 8000.0).T
    assert (expected > 0).any(axis=0).all()  # every reference filter is non-empty
    np.testing.assert_allclose(fb.double().numpy(), expected, rtol=0, atol=1e-6)


def test_mel_filterbank_is_not_htk_scale():
    """The filterbank differs from the HTK-scale one (guards against a silent scale change)."""
    import torchaudio.functional as AF

    htk = AF.melscale_fbanks(513, 0.0, 8000.0, 64, 16000, norm="slaney", mel_scale="htk")
    assert (frontend.mel_filterbank(SPEC) - htk).abs().max() > 1e-3


# --- log-mel and diffusion layout ---------------------------------------------------------------


def test_log_mel_floors_at_log_1e5():
    """An all-zero magnitude gives exactly log(1e-5) in every [M, T] cell."""
    fb = frontend.mel_filterbank(SPEC)
    out = frontend.log_mel(torch.zeros(2, 513, 7), fb)
    assert out.shape == (2, 64, 7)
    assert torch.equal(out, torch.full_like(out, LOG_EPS))


def test_log_mel_is_log_of_projection_above_floor():
    """Above the floor, log_mel is log(filterbank^T @ magnitude)."""
    fb = frontend.mel_filterbank(SPEC)
    magnitude = torch.rand(513, 5) + 1.0
    expected = torch.log(fb.T @ magnitude)
    torch.testing.assert_close(frontend.log_mel(magnitude, fb), expected)


def _ramp(batch: int, mels: int, frames: int) -> torch.Tensor:
    """A [B, M, T] tensor whose every cell holds a distinct value."""
    return torch.arange(batch * mels * frames, dtype=torch.float32).reshape(batch, mels, frames)


def test_to_model_layout_is_time_major():
    """[B, M, T] with T == n_frames and even M becomes [B, 1, T, M] with out[b, 0, t, m] == in[b, m, t]."""
    x = _ramp(2, 64, 16)
    out = frontend.to_model_layout(x, SpectrogramConfig(n_frames=16))
    assert out.shape == (2, 1, 16, 64)
    assert torch.equal(out[:, 0], x.transpose(1, 2))


def test_to_model_layout_drops_last_mel_of_odd_count():
    """An odd mel count loses its last (highest) bin; the others are kept in order."""
    x = _ramp(1, 65, 16)
    out = frontend.to_model_layout(x, SpectrogramConfig(n_frames=16))
    assert out.shape == (1, 1, 16, 64)
    assert torch.equal(out[0, 0], x[0, :64].T)


def test_to_model_layout_crops_extra_frames():
    """Frames beyond n_frames are dropped; the first n_frames are kept."""
    x = _ramp(1, 64, 1025)
    out = frontend.to_model_layout(x, SpectrogramConfig(n_frames=1024))
    assert out.shape == (1, 1, 1024, 64)
    assert torch.equal(out[0, 0], x[0, :, :1024].T)


def test_to_model_layout_pads_short_input_with_silence():
    """Short inputs are padded at the end with log(1e-5) up to n_frames."""
    x = _ramp(1, 64, 10)
    out = frontend.to_model_layout(x, SpectrogramConfig(n_frames=1024))
    assert out.shape == (1, 1, 1024, 64)
    assert torch.equal(out[0, 0, :10], x[0].T)
    assert torch.equal(out[0, 0, 10:], torch.full((1014, 64), LOG_EPS))


# --- normalisation ------------------------------------------------------------------------------


def test_normalise_gives_zero_mean_and_peak_half():
    """Normalise removes the mean and scales the peak absolute value to 0.5."""
    x = torch.randn(10_000, generator=torch.Generator().manual_seed(0)) * 0.1 + 0.3
    y, stats = frontend.normalise(x)
    assert abs(float(y.mean())) < 1e-6
    assert float(y.abs().max()) == pytest.approx(0.5, abs=1e-7)
    assert stats.mean == pytest.approx(float(x.mean()), abs=1e-7)


def test_normalise_honours_peak_argument():
    """A custom peak sets the maximum absolute value."""
    y, _ = frontend.normalise(torch.tensor([0.0, 1.0, 4.0]), peak=0.9)
    assert float(y.abs().max()) == pytest.approx(0.9)


def test_denormalise_inverts_normalise():
    """denormalise(normalise(x)) == x."""
    x = torch.randn(10_000, generator=torch.Generator().manual_seed(1)) * 0.2 - 0.05
    y, stats = frontend.normalise(x)
    torch.testing.assert_close(frontend.denormalise(y, stats), x, rtol=0, atol=1e-6)


def test_normalise_of_constant_signal_raises():
    """A constant (or all-zero) signal cannot be normalised."""
    with pytest.raises(ValueError, match="constant"):
        frontend.normalise(torch.full((100,), 0.25))
    with pytest.raises(ValueError, match="constant"):
        frontend.normalise(torch.zeros(100))


# --- length, resampling, channels ---------------------------------------------------------------


def test_fit_length_pads_with_zeros_at_the_end():
    """A short waveform is zero-padded at its end."""
    out = frontend.fit_length(torch.tensor([[1.0, 2.0, 3.0]]), 5)
    assert torch.equal(out, torch.tensor([[1.0, 2.0, 3.0, 0.0, 0.0]]))


def test_fit_length_crops_keeping_the_beginning():
    """A long waveform is cropped to its first samples."""
    out = frontend.fit_length(torch.arange(10.0), 4)
    assert torch.equal(out, torch.arange(4.0))


def test_fit_length_leaves_exact_length_unchanged():
    """A waveform of exactly the wanted length is returned as is."""
    x = torch.arange(6.0)
    assert torch.equal(frontend.fit_length(x, 6), x)


def test_resample_keeps_frequency_and_scales_length():
    """A 1 kHz sine at 44.1 kHz resampled to 16 kHz still peaks at 1 kHz, with N*16000/44100 samples."""
    n = 44_100
    t = torch.arange(n, dtype=torch.float64) / 44_100
    x = torch.sin(2 * math.pi * 1000.0 * t).float()
    y = frontend.resample(x, 44_100, 16_000)
    assert y.shape[-1] == round(n * 16_000 / 44_100) == 16_000
    spectrum = torch.fft.rfft(y.double()).abs()
    freqs = torch.fft.rfftfreq(y.shape[-1], d=1 / 16_000)
    assert float(freqs[spectrum.argmax()]) == pytest.approx(1000.0, abs=1.0)
    # the amplitude survives away from the edges
    assert float(y[1000:-1000].abs().max()) == pytest.approx(1.0, abs=0.02)


def test_resample_length_within_one_sample_for_non_integral_ratio():
    """For lengths that do not divide evenly, the output length is within one sample of N*new/orig."""
    n = 30_000
    y = frontend.resample(torch.randn(n), 44_100, 16_000)
    assert abs(y.shape[-1] - n * 16_000 / 44_100) < 1.0


def test_resample_same_rate_is_identity():
    """Resampling to the same rate returns the input unchanged."""
    x = torch.randn(1000)
    assert torch.equal(frontend.resample(x, 16_000, 16_000), x)


def test_to_mono_averages_channels():
    """to_mono averages the channel axis: [C, N] -> [N]."""
    x = torch.tensor([[1.0, 2.0, 3.0], [3.0, 6.0, -3.0]])
    assert torch.equal(frontend.to_mono(x), torch.tensor([2.0, 4.0, 0.0]))


# --- magnitude, phase and resynthesis -----------------------------------------------------------


def test_magnitude_and_phase_reconstruct_spectrum(speech):
    """Magnitude == |X|, |phase| < 1 (<= 1 in float32), and magnitude * phase ~= X where |X| is large."""
    x, _ = frontend.normalise(speech, SPEC.peak)
    spectrum = frontend.stft(x, SPEC)
    magnitude, phase = frontend.magnitude_and_phase(spectrum)
    assert magnitude.shape == phase.shape == spectrum.shape
    assert not magnitude.is_complex() and phase.is_complex()
    torch.testing.assert_close(magnitude, spectrum.abs())
    assert float(phase.abs().max()) <= 1.0  # float32 rounds |X| / (|X| + 1e-5) to 1 for large |X|
    _, phase64 = frontend.magnitude_and_phase(spectrum.to(torch.complex128))
    assert float(phase64.abs().max()) < 1.0
    large = magnitude > 0.1
    assert int(large.sum()) > 1000
    rebuilt = magnitude * phase
    rel = ((rebuilt - spectrum).abs() / magnitude)[large]
    assert float(rel.max()) < 2e-4


def test_magnitude_and_phase_of_zero_bin_is_zero():
    """A zero STFT bin has zero magnitude and zero phase (no division by zero)."""
    magnitude, phase = frontend.magnitude_and_phase(torch.zeros(3, 4, dtype=torch.complex64))
    assert torch.equal(magnitude, torch.zeros(3, 4))
    assert torch.equal(phase, torch.zeros(3, 4, dtype=torch.complex64))


def test_resynthesise_with_unit_mask_restores_input(speech):
    """An all-ones mask over 1024 frames gives the de-normalised input back (>= 50 dB, bar the end)."""
    x, stats = frontend.normalise(speech, SPEC.peak)
    magnitude, phase = frontend.magnitude_and_phase(frontend.stft(x, SPEC))
    mask = torch.ones(1, 513, 1024)
    out = frontend.resynthesise(mask * magnitude[:, :1024], phase.unsqueeze(0), stats, SPEC)
    assert out.shape == (1, SEGMENT)
    keep = SEGMENT - 1024
    assert snr_db(speech[:keep], out[0, :keep]) >= 50.0


def test_resynthesise_with_zero_magnitude_gives_the_mean(speech):
    """An all-zero magnitude resynthesises to a constant equal to the mixture's mean."""
    speech_offset = speech + 0.01
    x, stats = frontend.normalise(speech_offset, SPEC.peak)
    _, phase = frontend.magnitude_and_phase(frontend.stft(x, SPEC))
    out = frontend.resynthesise(torch.zeros(1, 513, 1024), phase.unsqueeze(0), stats, SPEC)
    assert out.shape == (1, SEGMENT)
    assert stats.mean != pytest.approx(0.0, abs=1e-3)
    torch.testing.assert_close(out, torch.full_like(out, stats.mean), rtol=0, atol=1e-6)


# --- preparing real files -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "rate", "channels"),
    [
        ("ovos__cat-meowing__1.wav", 48_000, 1),  # 3.05 s: padded
        ("whisper__male-speech__1.wav", 44_100, 2),  # 11 s: cropped
        ("librosa-data__male-speech__1.wav", 16_000, 1),  # 10 s at the model rate: padded
    ],
)
def test_prepare_waveform_gives_one_segment(shared_audio, name, rate, channels):
    """Real files of any rate and channel count become exactly 163,840 mono samples at 16 kHz."""
    waveform, sample_rate = read_audio(shared_audio / name)
    assert (sample_rate, waveform.shape[0]) == (rate, channels)
    out = frontend.prepare_waveform(waveform, sample_rate, SPEC)
    assert out.shape == (SEGMENT,)
    expected_len = waveform.shape[-1] * 16_000 / sample_rate
    if expected_len < SEGMENT:
        assert float(out[math.ceil(expected_len) + 1 :].abs().max()) == 0.0
        assert float(out[: int(expected_len)].abs().max()) > 0.0
    else:
        assert float(out[-1000:].abs().max()) > 0.0


def test_prepare_waveform_keeps_samples_at_model_rate():
    """A 16 kHz stereo input is mixed by mean and otherwise unchanged (then zero-padded)."""
    left = torch.randn(1000)
    right = torch.randn(1000)
    out = frontend.prepare_waveform(torch.stack([left, right]), 16_000, SPEC)
    torch.testing.assert_close(out[:1000], (left + right) / 2)
    assert torch.equal(out[1000:], torch.zeros(SEGMENT - 1000))
