"""Reference generation on the tiny model: batching, call counts, DDIM maths, seeding, rounds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import fit, tiny_args

from dgmo_pl.audio.frontend import SpectrogramConfig, diffusion_log_mel, mel_filterbank
from dgmo_pl.data import DEMO_MIXTURE, load_mixture
from dgmo_pl.diffusion.references import GenerationConfig, ReferenceGenerator
from dgmo_pl.model import MaskSeparator


@pytest.fixture(scope="module")
def generator(tiny_model: Path) -> ReferenceGenerator:
    return ReferenceGenerator.from_pretrained(str(tiny_model))


@pytest.fixture
def log_mel() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(1, 1, 1024, 64) - 4.0


def _count_unet_batches(generator: ReferenceGenerator) -> tuple[list[int], torch.utils.hooks.RemovableHandle]:
    batches: list[int] = []
    handle = generator.backbone.unet.register_forward_pre_hook(lambda m, args: batches.append(args[0].shape[0]))
    return batches, handle


def test_networks_are_frozen(generator: ReferenceGenerator) -> None:
    """No network trains or has a trainable parameter."""
    backbone = generator.backbone
    for module in (backbone.unet, backbone.vae, backbone.text_encoder, backbone.vocoder):
        assert not module.training
        assert not any(p.requires_grad for p in module.parameters())


@pytest.mark.integration
@pytest.mark.parametrize(("steps", "noise_level", "inverted", "denoised"), [(10, 1.0, 9, 10), (10, 0.5, 4, 5)])
def test_unet_calls_and_batches(generator: ReferenceGenerator, log_mel: torch.Tensor, steps: int,
                                noise_level: float, inverted: int, denoised: int) -> None:
    """Inversion: one empty-prompt call per step up at batch K; denoising: both guidance branches at batch 2K."""
    batches, handle = _count_unet_batches(generator)
    try:
        refs = generator(log_mel, "dog barking", GenerationConfig(4, steps, noise_level, 5.0),
                         torch.Generator().manual_seed(0))
    finally:
        handle.remove()
    assert refs.shape == (4, 1, 1024, 64) and torch.isfinite(refs).all()
    assert batches == [4] * inverted + [8] * denoised


@pytest.mark.integration
def test_seeded_references_repeat_and_differ_between_seeds(generator: ReferenceGenerator,
                                                           log_mel: torch.Tensor) -> None:
    """Same seed, same references; another seed, others; the K references differ from each other."""
    config = GenerationConfig(3, 4)
    a = generator(log_mel, "dog barking", config, torch.Generator().manual_seed(1))
    b = generator(log_mel, "dog barking", config, torch.Generator().manual_seed(1))
    c = generator(log_mel, "dog barking", config, torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert not torch.allclose(a[0], a[1])


@pytest.mark.integration
def test_query_conditions_the_references(generator: ReferenceGenerator, log_mel: torch.Tensor) -> None:
    """Another query gives other references from the same latents."""
    config = GenerationConfig(2, 4)
    a = generator(log_mel, "dog barking", config, torch.Generator().manual_seed(0))
    b = generator(log_mel, "church bell", config, torch.Generator().manual_seed(0))
    assert not torch.allclose(a, b)


def test_denoising_undoes_inversion_for_the_same_noise(generator: ReferenceGenerator,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """With a noise prediction that does not change, DDIM denoising exactly inverts DDIM inversion."""
    torch.manual_seed(0)
    latents = torch.randn(2, 8, 256, 16)
    eps = torch.randn(2, 8, 256, 16)
    monkeypatch.setattr(generator, "_eps", lambda z, t, labels: eps[: z.shape[0]])
    timesteps = generator.inversion_timesteps(GenerationConfig(ddim_steps=20))
    empty = {"class_labels": torch.zeros(1, 32)}
    noisy = generator.invert(latents, timesteps, empty)
    assert not torch.allclose(noisy, latents)
    # Down the same levels: from t_20 to t_1, the level inversion started from.
    back = generator.denoise(noisy, timesteps[:-1], empty, empty, scale=1.0)
    assert torch.allclose(back, latents, atol=1e-4)


def test_guidance_combines_branches(generator: ReferenceGenerator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Guided noise is uncond + scale * (cond - uncond)."""
    seen: list[torch.Tensor] = []
    cond_eps, uncond_eps = torch.full((1, 8, 256, 16), 2.0), torch.full((1, 8, 256, 16), 1.0)

    def fake_eps(z: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.cat([uncond_eps, cond_eps])

    def fake_step(eps: torch.Tensor, t: torch.Tensor, z: torch.Tensor, eta: float):
        seen.append(eps)
        return type("Out", (), {"prev_sample": z})()

    monkeypatch.setattr(generator, "_eps", fake_eps)
    monkeypatch.setattr(generator.backbone.scheduler, "step", fake_step)
    generator.denoise(torch.zeros(1, 8, 256, 16), torch.tensor([11, 1]),
                       {"class_labels": torch.ones(1, 32)}, {"class_labels": torch.zeros(1, 32)}, 5.0)
    assert len(seen) == 2 and torch.allclose(seen[0], torch.full_like(cond_eps, 1.0 + 5.0 * (2.0 - 1.0)))


@pytest.mark.integration
def test_each_round_regenerates_from_the_thresholded_estimate(tiny_model: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Round 1 starts from the mixture; each later round from the mixture under the previous round's mask."""
    calls: list[torch.Tensor] = []
    original = ReferenceGenerator.generate

    def recording_generate(self, log_mel, *args, **kwargs):
        calls.append(log_mel.clone())
        return original(self, log_mel, *args, **kwargs)

    monkeypatch.setattr(ReferenceGenerator, "generate", recording_generate)
    masks: list[torch.Tensor] = []
    original_end = MaskSeparator.on_train_epoch_end

    def remember_mask(self):
        masks.append(self.thresholded_mask().clone())
        return original_end(self)

    monkeypatch.setattr(MaskSeparator, "on_train_epoch_end", remember_mask)
    # A large learning rate moves the mask below the threshold within a few steps.
    fit(tmp_path, *tiny_args(tiny_model, ddim_steps=3, steps_per_round=4), "--model.lr", "0.5")
    assert len(calls) == 3 and len(masks) == 3

    spec = SpectrogramConfig()
    mixture = load_mixture(DEMO_MIXTURE, spec)
    basis = mel_filterbank(spec)
    assert torch.allclose(calls[0], diffusion_log_mel(mixture.magnitude, basis, SpectrogramConfig()), atol=1e-5)
    for round_index in (1, 2):
        expected = diffusion_log_mel(mixture.magnitude * masks[round_index - 1], basis, SpectrogramConfig())
        assert torch.allclose(calls[round_index], expected, atol=1e-5)
    assert (masks[0] < 0.9).any() and not torch.allclose(calls[1], calls[0])


def test_vocoder_output_length(generator: ReferenceGenerator) -> None:
    """The vocoder turns [K, 1, 1024, 64] log-mels into K waveforms of 1024 hops."""
    audio = generator.vocode(torch.zeros(2, 1, 1024, 64) - 5)
    assert audio.shape[0] == 2 and abs(audio.shape[1] - 1024 * 160) <= 160


@pytest.mark.integration
def test_progress_bars_only_when_asked_or_on_a_terminal(generator: ReferenceGenerator, log_mel: torch.Tensor,
                                                        capsys: pytest.CaptureFixture) -> None:
    """Per-step bars for inversion and denoising; quiet when stderr is not a terminal."""
    config = GenerationConfig(1, 3)
    generator.progress = None
    generator(log_mel, "dog barking", config, torch.Generator().manual_seed(0))
    assert "DDIM" not in capsys.readouterr().err
    generator.progress = True
    try:
        generator(log_mel, "dog barking", config, torch.Generator().manual_seed(0))
    finally:
        generator.progress = None
    err = capsys.readouterr().err
    assert "DDIM inversion" in err and "guided DDIM denoising" in err


@pytest.mark.integration
def test_network_sees_each_timestep_in_order(generator: ReferenceGenerator, log_mel: torch.Tensor,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Inversion predicts noise at t_2 .. t_n of the model's schedule going up; denoising goes down
    the schedule of offset 0, as the authors' code (tests/test_fidelity.py: 100 steps, real config)."""
    seen: list[int] = []
    original = generator._eps

    def recording_eps(z: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        seen.append(int(t))
        return original(z, t, labels)

    monkeypatch.setattr(generator, "_eps", recording_eps)
    generator(log_mel, "dog barking", GenerationConfig(1, 10), torch.Generator().manual_seed(0))
    up = [1 + 100 * i for i in range(10)]  # the tiny model's steps_offset 1, stride 1000 / 10
    down = [100 * i for i in range(10)][::-1]
    assert seen == up[1:] + down


def _reference_code_inversion(generator: ReferenceGenerator, latents: torch.Tensor, timesteps: torch.Tensor,
                              empty: dict, scale: float) -> torch.Tensor:
    """The authors' inversion: both guidance branches run, each with the empty prompt."""
    alphas = generator.backbone.scheduler.alphas_cumprod
    stride = 1000 // generator.backbone.scheduler.num_inference_steps
    labels = {"class_labels": empty["class_labels"].expand(2 * latents.shape[0], -1)}
    for t in timesteps.flip(0)[1:]:
        uncond, cond = generator._eps(torch.cat([latents, latents]), t, labels).chunk(2)
        eps = uncond + scale * (cond - uncond)
        a_t, a_prev = float(alphas[int(t)]), float(alphas[max(0, int(t) - stride)])
        clean = (latents - (1 - a_prev) ** 0.5 * eps) / a_prev ** 0.5
        latents = a_t ** 0.5 * clean + (1 - a_t) ** 0.5 * eps
    return latents


def test_one_branch_inversion_equals_the_reference_codes_two(generator: ReferenceGenerator,
                                                            log_mel: torch.Tensor) -> None:
    """Running the empty prompt once gives the doubled, guided inversion's latents at half the calls."""
    config = GenerationConfig(3, 6)
    latents = generator.encode_mel(log_mel, 3, torch.Generator().manual_seed(0))
    _, empty = generator.conditions([])
    timesteps = generator.inversion_timesteps(config)
    ours = generator.invert(latents, timesteps, empty)
    theirs = _reference_code_inversion(generator, latents, timesteps, empty, scale=5.0)
    assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(ours, latents, atol=1e-2)


@pytest.mark.integration
def test_queries_generated_together_equal_each_alone(generator: ReferenceGenerator, log_mel: torch.Tensor) -> None:
    """One shared inversion and one batched denoising give each query's references as if alone."""
    config = GenerationConfig(2, 5)
    together = generator.generate(log_mel, ["dog barking", "cat meowing", "rain"], config,
                                  torch.Generator().manual_seed(3))
    assert together.shape == (3, 2, 1, 1024, 64)
    for index, query in enumerate(["dog barking", "cat meowing", "rain"]):
        alone = generator(log_mel, query, config, torch.Generator().manual_seed(3))
        assert torch.allclose(together[index], alone, rtol=1e-4, atol=1e-4), query


@pytest.mark.integration
def test_several_queries_batch_their_denoising(generator: ReferenceGenerator, log_mel: torch.Tensor) -> None:
    """Three queries: one inversion at batch K, then denoising calls of 3 x 2K samples."""
    batches, handle = _count_unet_batches(generator)
    try:
        generator.generate(log_mel, ["a", "b", "c"], GenerationConfig(2, 4), torch.Generator().manual_seed(0))
    finally:
        handle.remove()
    assert batches == [2] * 3 + [12] * 4


@pytest.mark.integration
@pytest.mark.parametrize("bound", [1, 3, 5])
def test_bounded_batches_give_the_same_references(tiny_model: Path, log_mel: torch.Tensor, bound: int) -> None:
    """max_batch cuts every network call to at most that many samples; the references do not change."""
    config = GenerationConfig(2, 4)
    free = ReferenceGenerator.from_pretrained(str(tiny_model))
    bounded = ReferenceGenerator.from_pretrained(str(tiny_model), max_batch=bound)
    batches, handle = _count_unet_batches(bounded)
    try:
        ours = bounded.generate(log_mel, ["dog barking", "rain"], config, torch.Generator().manual_seed(0))
    finally:
        handle.remove()
    assert max(batches) == min(bound, 8) and sum(batches) == 2 * 3 + 2 * 2 * 2 * 4
    expected = free.generate(log_mel, ["dog barking", "rain"], config, torch.Generator().manual_seed(0))
    # Log-mels span about 6: float rounding of other batch shapes stays below 1e-3.
    assert torch.allclose(ours, expected, rtol=1e-4, atol=1e-3)


@pytest.mark.integration
def test_eager_attention_matches_sdpa(tiny_model: Path, log_mel: torch.Tensor) -> None:
    """The attention kernel is a speed choice: both give the same references to float tolerance."""
    config = GenerationConfig(2, 4)
    sdpa = ReferenceGenerator.from_pretrained(str(tiny_model))(log_mel, "dog", config, torch.Generator().manual_seed(0))
    eager = ReferenceGenerator.from_pretrained(str(tiny_model), attention="eager")
    assert type(next(iter(eager.backbone.unet.attn_processors.values()))).__name__ == "AttnProcessor"
    # Relative error, not elementwise: a few bins of a random model's output differ by 1e-4 (measured
    # 95 dB agreement overall on torch 2.11.0 CPU).
    eager_refs = eager(log_mel, "dog", config, torch.Generator().manual_seed(0))
    assert (eager_refs - sdpa).norm() / sdpa.norm() < 1e-4


@pytest.mark.integration
@pytest.mark.parametrize(("precision", "weights", "network"), [
    ("bf16-true", torch.bfloat16, torch.bfloat16), ("16-true", torch.float16, torch.float16),
    ("bf16-mixed", torch.float32, torch.bfloat16),
])
def test_precision_modes_keep_the_sampler_in_fp32(tiny_model: Path, log_mel: torch.Tensor, precision: str,
                                                 weights: torch.dtype, network: torch.dtype) -> None:
    """-true casts the weights, -mixed autocasts; latents, noise and outputs stay fp32 and close to fp32's."""
    full = ReferenceGenerator.from_pretrained(str(tiny_model))
    low = ReferenceGenerator.from_pretrained(str(tiny_model), precision=precision)
    assert low.dtype == weights and low.backbone.text_encoder.dtype == weights
    # The VAE's config asks for fp32 (force_upcast, diffusers' default): it stays fp32 in every mode.
    assert low.backbone.vae.config.force_upcast and low.backbone.vae.dtype == torch.float32
    seen: list[torch.dtype] = []
    handle = low.backbone.unet.register_forward_hook(lambda m, a, out: seen.append(out.sample.dtype))
    try:
        latents = low.encode_mel(log_mel, 2, torch.Generator().manual_seed(0))
        _, empty = low.conditions([])
        eps = low._eps(latents, torch.tensor(501), {"class_labels": empty["class_labels"].expand(2, -1)})
    finally:
        handle.remove()
    assert seen == [network] and latents.dtype == eps.dtype == empty["class_labels"].dtype == torch.float32
    reference = full._eps(full.encode_mel(log_mel, 2, torch.Generator().manual_seed(0)), torch.tensor(501),
                          {"class_labels": full.conditions([])[1]["class_labels"].expand(2, -1)})
    assert (eps - reference).norm() / reference.norm() < 0.05
    refs = low(log_mel, "dog barking", GenerationConfig(2, 3), torch.Generator().manual_seed(0))
    assert refs.dtype == torch.float32 and torch.isfinite(refs).all()


@pytest.mark.slow
@pytest.mark.integration
def test_compiled_unet_gives_the_same_references(tiny_model: Path, log_mel: torch.Tensor) -> None:
    """torch.compile is a speed choice: the references match the eager module's to float tolerance."""
    config = GenerationConfig(1, 2)
    plain = ReferenceGenerator.from_pretrained(str(tiny_model))(log_mel, "dog", config,
                                                                torch.Generator().manual_seed(0))
    compiled = ReferenceGenerator.from_pretrained(str(tiny_model), compile=True)
    assert compiled.backbone.denoiser is not compiled.backbone.unet
    assert torch.allclose(compiled(log_mel, "dog", config, torch.Generator().manual_seed(0)), plain,
                          rtol=1e-3, atol=1e-3)
