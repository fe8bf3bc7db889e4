"""SDR / SI-SDR as the LASS papers report them, and CLAPScore on a tiny offline CLAP."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio

from dgmo_pl.evaluation.metrics import SDR_EPS, ClapScorer, sdr, separation_metrics, si_sdr
from dgmo_pl.testing.tiny_clap import save_tiny_clap

SOURCE = torch.tensor([1.0, 0.0, -1.0, 0.0])  # mean power 0.5, energy 2
ESTIMATE = SOURCE + 0.5  # error 0.5 everywhere: mean power 0.25
MIXTURE = SOURCE + torch.tensor([0.0, 1.0, 0.0, 1.0])  # interference orthogonal to the source
TEN_LOG_2 = 10 * math.log10(2)


def test_sdr_is_a_plain_signal_to_noise_ratio() -> None:
    assert sdr(SOURCE, ESTIMATE) == pytest.approx(TEN_LOG_2)  # 0.5 / 0.25
    assert sdr(SOURCE, SOURCE + 0.1 * torch.tensor([1.0, 0, 0, 0])) == pytest.approx(10 * math.log10(200))
    assert sdr(SOURCE, 2 * SOURCE) == pytest.approx(0.0)  # a wrong gain counts as error


def test_sdr_floors_both_powers_as_audiosep_does() -> None:
    assert sdr(SOURCE, SOURCE) == pytest.approx(10 * math.log10(0.5 / SDR_EPS))
    assert sdr(torch.zeros(4), torch.zeros(4)) == pytest.approx(0.0)


def test_si_sdr_ignores_the_gain_that_sdr_punishes() -> None:
    # alpha = <est, s> / |s|^2 = 1: target s, noise energy 4 * 0.25 = 1, signal energy 2.
    assert si_sdr(SOURCE, ESTIMATE) == pytest.approx(TEN_LOG_2)
    assert si_sdr(SOURCE, 3 * ESTIMATE) == pytest.approx(TEN_LOG_2)
    # sdr(s, 3 est): error [3.5, 1.5, -0.5, 1.5], mean power 17 / 4.
    assert sdr(SOURCE, 3 * ESTIMATE) == pytest.approx(10 * math.log10(0.5 / 4.25))


def test_si_sdr_zero_mean_removes_an_offset() -> None:
    assert si_sdr(SOURCE, ESTIMATE, zero_mean=True) > 100  # the error here is a pure offset


def test_si_sdr_matches_torchmetrics() -> None:
    generator = torch.Generator().manual_seed(0)
    reference = torch.randn(2, 4000, generator=generator)
    estimate = reference + 0.3 * torch.randn(2, 4000, generator=generator)
    expected = scale_invariant_signal_distortion_ratio(estimate, reference).mean()
    assert si_sdr(reference, estimate) == pytest.approx(float(expected), abs=1e-4)


def test_channels_sdr_pools_samples_si_sdr_averages_channels() -> None:
    reference = torch.stack([SOURCE, SOURCE])
    estimate = torch.stack([ESTIMATE, 3 * ESTIMATE])
    assert sdr(reference, estimate) == pytest.approx(10 * math.log10(0.5 / ((0.25 + 4.25) / 2)))
    assert si_sdr(reference, estimate) == pytest.approx(TEN_LOG_2)
    assert sdr(reference, estimate) != pytest.approx((sdr(SOURCE, ESTIMATE) + sdr(SOURCE, 3 * ESTIMATE)) / 2)


def test_separation_metrics_improvements_over_the_mixture() -> None:
    metrics = separation_metrics(MIXTURE, SOURCE, ESTIMATE)
    # The mixture's error [0, 1, 0, 1] has the source's power: SDR and SI-SDR of the mixture are 0 dB.
    assert metrics == pytest.approx({"sdr": TEN_LOG_2, "sdri": TEN_LOG_2, "si_sdr": TEN_LOG_2, "si_sdri": TEN_LOG_2})
    assert set(metrics) == {"sdr", "sdri", "si_sdr", "si_sdri"}
    assert all(isinstance(value, float) for value in metrics.values())


@pytest.mark.parametrize("metric", [sdr, si_sdr])
def test_shape_mismatch_names_both_shapes(metric) -> None:
    with pytest.raises(ValueError, match=r"\[4\].*\[1, 4\]"):
        metric(SOURCE, ESTIMATE[None])
    with pytest.raises(ValueError, match=r"\[1, 2, 4\]"):
        metric(SOURCE[None, None].repeat(1, 2, 1), ESTIMATE[None, None].repeat(1, 2, 1))
    with pytest.raises(ValueError, match="non-empty"):
        metric(torch.zeros(0), torch.zeros(0))


def test_separation_metrics_refuses_a_mixture_of_another_shape() -> None:
    with pytest.raises(ValueError, match=r"mixture has shape \[5\].*source has shape \[4\]"):
        separation_metrics(torch.zeros(5), SOURCE, ESTIMATE)
    with pytest.raises(ValueError, match=r"\[4\].*\[3\]"):
        separation_metrics(MIXTURE, SOURCE, ESTIMATE[:3])


# --- CLAPScore ----------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny CLAP's many small ops run far faster on one thread of a busy, shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_clap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_clap(tmp_path_factory.mktemp("tiny-clap"))


@pytest.fixture(scope="module")
def scorer(tiny_clap: Path) -> ClapScorer:
    loaded = ClapScorer.load(tiny_clap)
    assert loaded is not None, ClapScorer.last_error
    return loaded


def _tone(seconds: float, rate: int, hz: float = 440.0) -> torch.Tensor:
    t = torch.arange(round(seconds * rate)) / rate
    return 0.5 * torch.sin(2 * math.pi * hz * t)


def test_tiny_clap_loads_offline(scorer: ClapScorer) -> None:
    assert ClapScorer.last_error is None
    assert scorer.sample_rate == 48_000
    assert not scorer.model.training


def test_score_is_a_repeatable_cosine(scorer: ClapScorer, tiny_clap: Path) -> None:
    audio = _tone(1.0, 16_000)
    score = scorer.score(audio, 16_000, "dog barking")
    assert isinstance(score, float)
    assert -1.0 <= score <= 1.0
    assert scorer.score(audio, 16_000, "dog barking") == score
    again = ClapScorer.load(tiny_clap)
    assert again is not None and again.score(audio, 16_000, "dog barking") == pytest.approx(score, abs=1e-6)
    assert scorer.score(audio, 16_000, "church bell") != score


def test_score_resamples_and_handles_audio_longer_than_the_window(scorer: ClapScorer) -> None:
    at_48k = scorer.audio_embedding(_tone(0.5, 48_000), 48_000)
    at_16k = scorer.audio_embedding(_tone(0.5, 16_000), 16_000)
    assert torch.nn.functional.cosine_similarity(at_48k, at_16k, dim=0) > 0.99
    long = _tone(12.0, 8_000) * torch.linspace(0.2, 1.0, 96_000)
    first = scorer.score(long, 8_000, "a tone")
    assert first == scorer.score(long, 8_000, "a tone")  # no random crop
    assert -1.0 <= first <= 1.0


def test_score_refuses_bad_audio_and_text(scorer: ClapScorer) -> None:
    with pytest.raises(ValueError, match=r"\[2, 100\].*one channel"):
        scorer.score(torch.zeros(2, 100), 16_000, "dog")
    with pytest.raises(ValueError, match="text is empty"):
        scorer.score(_tone(0.1, 16_000), 16_000, "  ")


def test_load_of_a_missing_folder_returns_none_with_the_reason(tmp_path: Path) -> None:
    missing = tmp_path / "no-clap-here"
    assert ClapScorer.load(missing) is None
    assert ClapScorer.last_error is not None and str(missing) in ClapScorer.last_error
    assert "\n" not in ClapScorer.last_error


def test_load_of_an_unreachable_hub_model_returns_none() -> None:
    # conftest makes the hub offline with an empty cache.
    assert ClapScorer.load("laion/clap-htsat-unfused") is None
    assert "laion/clap-htsat-unfused" in ClapScorer.last_error


def test_load_of_a_folder_without_a_model_returns_none(tmp_path: Path) -> None:
    assert ClapScorer.load(tmp_path) is None
    assert str(tmp_path) in ClapScorer.last_error
