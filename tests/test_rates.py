"""Tests of carrying masks between STFT grids in dgmo_pl.audio.rates."""

from __future__ import annotations

import math

import pytest
import torch

from dgmo_pl.audio import frontend, rates
from dgmo_pl.audio.frontend import SpectrogramConfig
from dgmo_pl.audio.rates import StftGrid, grid_for_rate, istft_at, map_mask, model_grid, stft_at

SPEC = SpectrogramConfig()
MODEL = model_grid(SPEC)


def random_mask(*shape: int, seed: int = 0) -> torch.Tensor:
    """Uniform values in [0, 1] with exact 0s and 1s sprinkled in: ``shape``."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(*shape, generator=g)
    mask[torch.rand(*shape, generator=g) < 0.1] = 0.0
    mask[torch.rand(*shape, generator=g) < 0.1] = 1.0
    return mask


def snr_db(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    """Signal-to-noise ratio of ``estimate`` against ``reference`` in dB."""
    err = reference.double() - estimate.double()
    return 10.0 * math.log10(float((reference.double() ** 2).sum()) / float((err**2).sum()))


# --- grids --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "n_fft", "hop"), [(16000, 1024, 160), (44100, 2822, 441), (48000, 3072, 480), (8000, 512, 80)]
)
def test_grid_for_rate(rate, n_fft, hop):
    """The model grid's durations at common rates: even n_fft = win_length, rounded hop."""
    grid = grid_for_rate(SPEC, rate)
    assert grid == StftGrid(rate, n_fft, hop, n_fft)
    assert grid.n_freq == n_fft // 2 + 1


def test_grid_at_model_rate_is_model_grid():
    """At the model's own rate the grid is exactly the model's."""
    assert grid_for_rate(SPEC, 16000) == MODEL == StftGrid(16000, 1024, 160, 1024)


@pytest.mark.parametrize("rate", [0, -8000, 40])
def test_grid_for_rate_rejects_bad_rates(rate):
    """Rates below 1 Hz, or too low for a one-sample hop, raise ValueError naming the rate."""
    with pytest.raises(ValueError, match=str(rate)):
        grid_for_rate(SPEC, rate)


def test_grid_frequencies_times_and_frames():
    """Bin centres k * rate / n_fft up to Nyquist, frame centres j * hop / rate, N // hop + 1 frames."""
    grid = grid_for_rate(SPEC, 48000)
    f = grid.frequencies()
    assert f.dtype == torch.float64 and f.shape == (1537,)
    assert f[0] == 0 and f[-1] == 24000 and f[1] == pytest.approx(15.625)
    t = grid.frame_times(5)
    assert t.dtype == torch.float64
    torch.testing.assert_close(t, torch.tensor([0.0, 0.01, 0.02, 0.03, 0.04], dtype=torch.float64))
    assert grid.num_frames(480_000) == 1001
    assert grid.num_frames(479) == 1


def test_stft_at_shapes_and_round_trip():
    """stft_at gives [..., F, N // hop + 1]; istft_at gives a 44.1 kHz stereo signal back."""
    grid = grid_for_rate(SPEC, 44100)
    x = torch.randn(2, 44100, generator=torch.Generator().manual_seed(0))
    spectrum = stft_at(x, grid)
    assert spectrum.shape == (2, 1412, grid.num_frames(44100)) and spectrum.is_complex()
    y = istft_at(spectrum, grid, 44100)
    assert y.shape == x.shape
    assert snr_db(x, y) > 100


def test_stft_at_model_grid_matches_frontend():
    """On the model grid, stft_at and istft_at are the front end's stft and istft."""
    x = torch.randn(3, 8000, generator=torch.Generator().manual_seed(1))
    spectrum = stft_at(x, MODEL)
    torch.testing.assert_close(spectrum, frontend.stft(x, SPEC))
    torch.testing.assert_close(istft_at(spectrum, MODEL, 8000), frontend.istft(spectrum, SPEC, 8000))


# --- mapping ------------------------------------------------------------------------------------


@pytest.mark.parametrize("grid", [MODEL, grid_for_rate(SPEC, 44100)], ids=["16k", "44.1k"])
def test_map_mask_identity(grid):
    """The same grid and frame count give the mask back exactly, with any leading axes."""
    mask = random_mask(2, 3, grid.n_freq, 37)
    assert torch.equal(map_mask(mask, grid, grid, 37), mask)


@pytest.mark.parametrize(
    "target",
    [*(grid_for_rate(SPEC, rate) for rate in (8000, 22050, 44100, 48000)), StftGrid(44100, 2048, 512, 2048),
     StftGrid(11025, 700, 123, 600)],
    ids=["8k", "22.05k", "44.1k", "48k", "44.1k-2048", "odd"],
)
def test_map_mask_smooth_in_frequency(target):
    """A smooth function of frequency maps to the same function at the target bins below 8 kHz."""

    def g(f: torch.Tensor) -> torch.Tensor:
        return 0.5 + 0.4 * torch.cos(2 * math.pi * f / 5000) * torch.exp(-f / 6000)

    mask = g(MODEL.frequencies()).float()[:, None].expand(-1, 50)
    out = map_mask(mask, MODEL, target, 60, high_band="zero")
    assert out.shape == (target.n_freq, 60) and out.dtype == torch.float32
    f = target.frequencies()
    band = f <= 8000
    expected = g(f[band])[:, None].expand(-1, 60).float()
    torch.testing.assert_close(out[band], expected, atol=1e-4, rtol=0)
    assert torch.all(out[~band] == 0)


def test_map_mask_step_in_time_on_another_hop():
    """A step between source frames 49 and 50 (0.49 s, 0.50 s) lands at those times on a 512-hop grid."""
    mask = torch.zeros(MODEL.n_freq, 100)
    mask[:, 50:] = 1.0
    target = StftGrid(44100, 2048, 512, 2048)
    out = map_mask(mask, MODEL, target, 100, high_band="keep")
    t = target.frame_times(100)
    expected = ((t - 0.49) / 0.01).clamp(0, 1).float()
    torch.testing.assert_close(out[:5], expected.expand(5, -1), atol=1e-5, rtol=0)
    band = out[target.frequencies() <= 8000]  # above, "keep" passes everything
    assert torch.all(band[:, t <= 0.49] == 0) and torch.all(band[:, t >= 0.5] == 1)
    assert float(out[0, 42]) == 0  # frame 42 at 0.4876 s; frame 43 at 0.4992 s lies in the step
    assert float(out[0, 43]) == pytest.approx((43 * 512 / 44100 - 0.49) / 0.01, abs=1e-5)


def test_map_mask_step_in_time_on_model_durations():
    """On grid_for_rate the frames keep their times: the step stays at frame 50."""
    mask = torch.zeros(2, MODEL.n_freq, 100)
    mask[..., 50:] = 1.0
    out = map_mask(mask, MODEL, grid_for_rate(SPEC, 44100), 100)
    assert torch.all(out[..., :50] == 0) and torch.all(out[..., 50:] == 1)


def test_map_mask_ramp_in_time_is_exact_and_clamped():
    """A mask linear in time maps to the same line at the target times, held after the last frame."""
    t_source = MODEL.frame_times(40)
    mask = (t_source / t_source[-1]).float().expand(MODEL.n_freq, -1)
    target = StftGrid(22050, 1024, 300, 1024)
    out = map_mask(mask, MODEL, target, 40)
    expected = (target.frame_times(40) / t_source[-1]).clamp(max=1).float()
    torch.testing.assert_close(out[0], expected, atol=1e-6, rtol=0)
    assert torch.all(out[:, target.frame_times(40) > t_source[-1]] == 1)


def test_map_mask_high_band_policies():
    """Above the source's Nyquist: 0 ("zero"), 1 ("keep"), per-frame top-octave mean ("extend")."""
    target = grid_for_rate(SPEC, 44100)
    mask = random_mask(MODEL.n_freq, 30, seed=3)
    above = target.frequencies() > 8000
    assert int(above.sum()) == target.n_freq - 512  # bins 0..511 (15.63 Hz apart) lie below 8 kHz
    outs = {policy: map_mask(mask, MODEL, target, 30, high_band=policy) for policy in ("extend", "zero", "keep")}
    for out in outs.values():  # the band below Nyquist does not depend on the policy
        torch.testing.assert_close(out[~above], outs["zero"][~above], atol=0, rtol=0)
    assert torch.all(outs["zero"][above] == 0)
    assert torch.all(outs["keep"][above] == 1)
    top_octave = mask[256:].mean(dim=0)  # bins from 4 kHz to 8 kHz; frames keep their times here
    torch.testing.assert_close(outs["extend"][above], top_octave.expand(int(above.sum()), -1))


def test_map_mask_rejects_unknown_high_band():
    """An unknown policy raises ValueError naming it."""
    with pytest.raises(ValueError, match="'mirror'"):
        map_mask(random_mask(MODEL.n_freq, 4), MODEL, grid_for_rate(SPEC, 44100), 4, high_band="mirror")


def test_map_mask_rejects_a_mask_of_another_grid():
    """A mask whose bins do not match the source grid raises ValueError naming its shape."""
    with pytest.raises(ValueError, match=r"\[512, 4\]"):
        map_mask(torch.zeros(512, 4), MODEL, grid_for_rate(SPEC, 44100), 4)


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
def test_extend_keeps_complementary_masks_summing_to_one(rate):
    """Two masks that sum to one over a leading axis still do after mapping with "extend"."""
    first = random_mask(MODEL.n_freq, 64, seed=4)
    masks = torch.stack([first, 1 - first])
    target = grid_for_rate(SPEC, rate)
    n_frames = 2 * 64 + 5  # past the last source frame too
    out = map_mask(masks, MODEL, target, n_frames, high_band="extend")
    assert out.shape == (2, target.n_freq, n_frames)
    torch.testing.assert_close(out.sum(dim=0), torch.ones(target.n_freq, n_frames), atol=1e-6, rtol=0)


@pytest.mark.parametrize("policy", ["extend", "zero", "keep"])
@pytest.mark.parametrize("target", [grid_for_rate(SPEC, 48000), StftGrid(11025, 700, 123, 600)], ids=["48k", "odd"])
def test_map_mask_stays_within_unit_interval(policy, target):
    """Masks in [0, 1] stay in [0, 1] on any grid and with any policy."""
    out = map_mask(random_mask(MODEL.n_freq, 80, seed=5), MODEL, target, 90, high_band=policy)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_map_mask_keeps_dtype_and_downsamples():
    """float64 masks stay float64; coarser grids sample the source at their own bins."""
    mask = random_mask(MODEL.n_freq, 20, seed=6).double()
    same_spacing = map_mask(mask, MODEL, grid_for_rate(SPEC, 8000), 20)  # 15.625 Hz bins up to 4 kHz
    assert same_spacing.dtype == torch.float64 and same_spacing.shape == (257, 20)
    assert torch.equal(same_spacing, mask[:257])
    coarse = map_mask(mask, MODEL, StftGrid(8000, 256, 80, 256), 20)  # 31.25 Hz bins: every other bin
    assert torch.equal(coarse, mask[0:257:2])


def test_map_mask_is_memory_light():
    """[2, 513, 1024] onto 48 kHz never holds more than twice the output in new tensors."""
    mask = random_mask(2, MODEL.n_freq, 1024, seed=7)
    target = grid_for_rate(SPEC, 48000)
    with torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True, acc_events=True
    ) as prof:
        out = map_mask(mask, MODEL, target, 1025)
    live = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        if event.cpu_parent is None and event.cpu_memory_usage:  # nested events repeat their parent's
            live += event.cpu_memory_usage
            peak = max(peak, live)
    size = out.numel() * out.element_size()
    assert size <= peak <= 2 * size


# --- end to end ---------------------------------------------------------------------------------


def test_low_pass_mask_separates_tones_at_44100():
    """A 16 kHz-grid mask passing below 1 kHz, applied at 44.1 kHz, keeps the 440 Hz tone only."""
    rate, seconds = 44100, 2
    n = rate * seconds
    t = torch.arange(n, dtype=torch.float64) / rate
    amp_low = torch.tensor([[0.5], [0.2]], dtype=torch.float64)
    amp_high = torch.tensor([[0.3], [0.6]], dtype=torch.float64)
    low = amp_low * torch.sin(2 * math.pi * 440 * t)
    x = (low + amp_high * torch.sin(2 * math.pi * 3000 * t + 0.3)).float()

    f = MODEL.frequencies()
    ramp = ((f - 1000) / 500).clamp(0, 1)
    passband = (0.5 * (1 + torch.cos(math.pi * ramp))).float()  # 1 below 1 kHz, 0 above 1.5 kHz
    frames_16k = MODEL.num_frames(round(n * 16000 / rate))
    mask = passband[:, None].expand(-1, frames_16k)

    grid = grid_for_rate(SPEC, rate)
    spectrum = stft_at(x, grid)
    mapped = map_mask(mask, MODEL, grid, spectrum.shape[-1], high_band="zero")
    y = istft_at(spectrum * mapped, grid, n)

    assert y.shape == x.shape
    edge = int(0.1 * rate)
    for channel in range(2):
        assert snr_db(low[channel, edge:-edge], y[channel, edge:-edge]) > 30


def test_module_exports():
    """The public names are there."""
    for name in ("HighBand", "StftGrid", "model_grid", "grid_for_rate", "stft_at", "istft_at", "map_mask"):
        assert hasattr(rates, name)
