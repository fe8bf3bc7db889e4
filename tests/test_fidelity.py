"""Fidelity to the authors' code under the real checkpoints' scheduler (ALGORITHM.md section 2).

The real AudioLDM / AudioLDM 2 schedulers have ``steps_offset`` 1. The authors' code inverts on
the model's schedule (t = 11, 21, ..., 991 at 100 steps) but denoises on the schedule computed with
offset 0 (990, 980, ..., 0). These tests pin both sequences and check single steps against the
formulas, independently of diffusers' scheduler code.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import DDIMScheduler
from helpers import REPO

from dgmo_pl.diffusion.references import GenerationConfig, ReferenceGenerator

#: The scheduler configuration of cvssp/audioldm2 as published (tests/real_configs/SOURCES.md).
REAL_SCHEDULER = REPO / "tests" / "real_configs" / "cvssp-audioldm2" / "scheduler" / "scheduler_config.json"
LATENT = (8, 256, 16)


def real_scheduler_config(**changes: object) -> dict:
    config = json.loads(REAL_SCHEDULER.read_text())
    assert (config["steps_offset"], config["clip_sample"], config["set_alpha_to_one"]) == (1, False, False)
    return {**config, **changes}


@pytest.fixture(scope="module")
def generator(tiny_model: Path) -> ReferenceGenerator:
    """The tiny AudioLDM with the real checkpoints' DDIM scheduler."""
    generator = ReferenceGenerator.from_pretrained(str(tiny_model))
    generator.backbone.scheduler = DDIMScheduler.from_config(real_scheduler_config())
    return generator


def reference_alphas() -> torch.Tensor:
    """Cumulative alphas of the real config's scaled-linear betas (0.0015 to 0.0195), in float64."""
    betas = torch.linspace(0.0015**0.5, 0.0195**0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0)


def record_network_calls(generator: ReferenceGenerator, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Replace the UNet's noise prediction by zeros; returns the list of (timestep, batch) calls."""
    calls: list[tuple[int, int]] = []

    def fake_eps(latents: torch.Tensor, t: torch.Tensor, condition: dict) -> torch.Tensor:
        calls.append((int(t), latents.shape[0]))
        return torch.zeros_like(latents)

    monkeypatch.setattr(generator, "_eps", fake_eps)
    return calls


@pytest.mark.integration
@pytest.mark.parametrize(
    ("offset", "option", "noise_level", "inverted", "denoised"),
    [
        (1, "zero", 1.0, range(11, 992, 10), range(990, -1, -10)),       # the authors' code, real config
        (0, "zero", 1.0, range(10, 991, 10), range(990, -1, -10)),       # the tiny models' old offset
        (1, "scheduler", 1.0, range(11, 992, 10), range(991, 0, -10)),   # the named option
        (1, "zero", 0.5, range(11, 492, 10), range(490, -1, -10)),       # half the schedule
    ],
)
def test_timesteps_of_inversion_and_denoising(
    generator: ReferenceGenerator, monkeypatch: pytest.MonkeyPatch, offset: int, option: str,
    noise_level: float, inverted: range, denoised: range,
) -> None:
    """100 steps: the inversion calls the network 99 times going up, the denoising 100 times going down."""
    generator.backbone.scheduler = DDIMScheduler.from_config(real_scheduler_config(steps_offset=offset))
    calls = record_network_calls(generator, monkeypatch)
    config = GenerationConfig(2, 100, noise_level, 5.0, option)
    generator.generate(torch.zeros(1, 1, 1024, 64) - 4.0, ["dog barking"], config, torch.Generator().manual_seed(0))
    up, down = calls[: len(inverted)], calls[len(inverted):]
    assert [t for t, _ in up] == list(inverted) and {batch for _, batch in up} == {2}
    assert [t for t, _ in down] == list(denoised) and {batch for _, batch in down} == {4}
    assert generator.backbone.scheduler.config.steps_offset == offset, "the model's scheduler must not change"
    assert list(generator.denoising_timesteps(config)) == list(denoised)


def test_denoising_step_count_truncates_as_the_authors_code() -> None:
    """``int(noise_level * steps)``: 0.29 x 100 is 28.999999999999996, so 28 steps, not 29."""
    assert GenerationConfig(ddim_steps=100, noise_level=0.29).denoising_steps == 28
    assert GenerationConfig(ddim_steps=100, noise_level=0.3).denoising_steps == 30


def test_the_real_schedulers_alphas_are_its_scaled_linear_betas(generator: ReferenceGenerator) -> None:
    """The scheduler the formulas below read has the real config's noise schedule."""
    alphas = generator.backbone.scheduler.alphas_cumprod.double()
    assert torch.allclose(alphas, reference_alphas(), rtol=1e-6)


def test_one_inversion_step_is_the_formula(generator: ReferenceGenerator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Z <- (z - sqrt(1 - a_prev) eps) sqrt(a_t) / sqrt(a_prev) + sqrt(1 - a_t) eps, from level t - 10 to t."""
    torch.manual_seed(0)
    latents, eps = torch.randn(2, *LATENT), torch.randn(2, *LATENT)
    monkeypatch.setattr(generator, "_eps", lambda z, t, c: eps)
    generator.inversion_timesteps(GenerationConfig(ddim_steps=100))
    ours = generator.invert(latents, torch.tensor([501, 491]), {"class_labels": torch.zeros(1, 32)})
    a = reference_alphas()
    a_t, a_prev = a[501], a[491]
    z, e = latents.double(), eps.double()
    expected = (z - (1 - a_prev).sqrt() * e) * a_t.sqrt() / a_prev.sqrt() + (1 - a_t).sqrt() * e
    assert torch.allclose(ours.double(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("t", "t_prev"), [(990, 980), (0, None)])
def test_one_guided_denoising_step_is_the_formula(
    generator: ReferenceGenerator, monkeypatch: pytest.MonkeyPatch, t: int, t_prev: int | None
) -> None:
    """Eps = u + 5 (c - u); z <- sqrt(a_prev) (z - sqrt(1 - a_t) eps) / sqrt(a_t) + sqrt(1 - a_prev) eps.

    At t = 0 the level below is alphas_cumprod[0] (the real config's ``set_alpha_to_one: false``),
    not 1: the last step leaves a little noise, as the authors' code does.
    """
    torch.manual_seed(1)
    latents, uncond, cond = torch.randn(1, *LATENT), torch.randn(1, *LATENT), torch.randn(1, *LATENT)
    monkeypatch.setattr(generator, "_eps", lambda z, t, c: torch.cat([uncond, cond]))
    scheduler = generator.denoising_scheduler(GenerationConfig(ddim_steps=100))
    labels = {"class_labels": torch.zeros(1, 32)}
    ours = generator.denoise(latents, torch.tensor([t]), labels, labels, 5.0, scheduler=scheduler)
    a = reference_alphas()
    a_t, a_prev = a[t], a[t_prev] if t_prev is not None else a[0]
    e = uncond.double() + 5.0 * (cond.double() - uncond.double())
    expected = a_prev.sqrt() * (latents.double() - (1 - a_t).sqrt() * e) / a_t.sqrt() + (1 - a_prev).sqrt() * e
    assert torch.allclose(ours.double(), expected, rtol=1e-5, atol=1e-5)


def authors_references(generator: ReferenceGenerator, latents: torch.Tensor, query: str, steps: int,
                       scale: float) -> torch.Tensor:
    """The authors' ``ddim_inversion`` then ``denoising`` (src/models/audioldm.py), rewritten with
    plain arithmetic: their timesteps (inversion on the model's offset, denoising on offset 0,
    'leading' spacing) and their DDIM update, the UNet called through the same backbone."""
    alphas = generator.backbone.scheduler.alphas_cumprod
    stride = 1000 // steps
    offset = generator.backbone.scheduler.config.steps_offset
    text, empty = generator.conditions([query])
    n = latents.shape[0]
    silent, query_labels = empty["class_labels"].expand(n, -1), text["class_labels"].expand(n, -1)
    z = latents.clone()
    # Inversion: both guidance branches with the empty prompt, up the model's own schedule.
    for t in [i * stride + offset for i in range(steps)][1:]:
        labels = {"class_labels": torch.cat([silent, silent])}
        uncond, same = generator._eps(torch.cat([z, z]), torch.tensor(t), labels).chunk(2)
        eps = uncond + scale * (same - uncond)
        a_cur, a_next = alphas[max(0, t - stride)], alphas[t]
        z = (z - (1 - a_cur).sqrt() * eps) * (a_next.sqrt() / a_cur.sqrt()) + (1 - a_next).sqrt() * eps
    # Denoising: empty prompt against the query, down the schedule of offset 0.
    both = {"class_labels": torch.cat([silent, query_labels])}
    for t in [i * stride for i in range(steps)][::-1]:
        uncond, cond = generator._eps(torch.cat([z, z]), torch.tensor(t), both).chunk(2)
        eps = uncond + scale * (cond - uncond)
        a_t = alphas[t]
        a_prev = alphas[t - stride] if t - stride >= 0 else alphas[0]
        clean = (z - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        z = a_prev.sqrt() * clean + (1 - a_prev).sqrt() * eps
    return generator.decode_mel(z)


@pytest.mark.integration
def test_references_equal_the_authors_loop_under_the_real_scheduler(generator: ReferenceGenerator) -> None:
    """Same VAE samples, same network: the references agree with the authors' loop to float rounding,
    and differ measurably with the scheduler's own offset (the named option). 5 DDIM steps, so that
    the random UNet does not amplify float rounding (measured: 93 dB, and 28 dB for the option)."""
    steps = 5
    torch.manual_seed(2)
    log_mel = torch.randn(1, 1, 1024, 64) - 4.0
    generator.backbone.scheduler = DDIMScheduler.from_config(real_scheduler_config())
    latents = generator.encode_mel(log_mel, 2, torch.Generator().manual_seed(0))
    theirs = authors_references(generator, latents, "dog barking", steps, 5.0)
    ours = generator.generate(log_mel, ["dog barking"], GenerationConfig(2, steps), torch.Generator().manual_seed(0))[0]
    agreement_db = 10 * torch.log10(theirs.pow(2).sum() / (ours - theirs).pow(2).sum())
    assert agreement_db > 60, f"only {agreement_db:.1f} dB"
    shifted = generator.generate(log_mel, ["dog barking"], GenerationConfig(2, steps, denoising_offset="scheduler"),
                                 torch.Generator().manual_seed(0))[0]
    assert 10 * torch.log10(theirs.pow(2).sum() / (shifted - theirs).pow(2).sum()) < agreement_db - 10


@pytest.mark.integration
def test_a_16_bit_mode_keeps_a_force_upcast_vae_in_fp32_and_casts_one_without(tiny_model: Path) -> None:
    """``force_upcast`` in the VAE's config (AudioLDM 2's real config) keeps it fp32 under bf16-true;
    without it the VAE is cast with the other networks."""
    kept = ReferenceGenerator.from_pretrained(str(tiny_model), precision="bf16-true")
    assert kept.backbone.vae.config.force_upcast
    assert (kept.backbone.vae.dtype, kept.backbone.unet.dtype) == (torch.float32, torch.bfloat16)
    backbone = ReferenceGenerator.from_pretrained(str(tiny_model)).backbone
    backbone.vae.register_to_config(force_upcast=False)
    cast = ReferenceGenerator(backbone, precision="bf16-true")
    assert (cast.backbone.vae.dtype, cast.backbone.unet.dtype) == (torch.bfloat16, torch.bfloat16)
    refs = kept(torch.zeros(1, 1, 1024, 64) - 4.0, "dog", GenerationConfig(1, 2), torch.Generator().manual_seed(0))
    assert refs.dtype == torch.float32 and torch.isfinite(refs).all()
