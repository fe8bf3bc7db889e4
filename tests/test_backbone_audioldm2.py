"""The AudioLDM 2 backbone on its tiny random model: the model's own conditioning and guidance, front end, CLI."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from diffusers import AudioLDM2Pipeline
from diffusers.models.attention_processor import AttnProcessor2_0
from diffusers.pipelines.audioldm2 import AudioLDM2UNet2DConditionModel
from helpers import fit, scalars, tiny_args
from safetensors import safe_open

from dgmo_pl.audio.frontend import SpectrogramConfig, diffusion_log_mel, mel_filterbank
from dgmo_pl.data import DEMO_MIXTURE, load_mixture
from dgmo_pl.diffusion.backbones import AudioLDM, AudioLDM2, infer_backbone
from dgmo_pl.diffusion.references import GenerationConfig, ReferenceGenerator
from dgmo_pl.testing.tiny import audioldm2 as builder
from dgmo_pl.testing.tiny import main as tiny_main

# diffusers 0.42's AudioLDM 2 language-model loop passes GPT-2 the deprecated `past_key_values`.
pytestmark = pytest.mark.filterwarnings("ignore:`past_key_values` is deprecated:FutureWarning")

#: The tiny model's widths of the GPT-2 vectors and of the T5 tokens.
WIDTH = builder.TINY_WIDTH
LATENT = (8, 256, 16)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random AudioLDM 2, written once in diffusers layout."""
    return builder.save(builder.build("tiny", seed=0), tmp_path_factory.mktemp("tiny-audioldm2"))


@pytest.fixture(scope="module")
def generator(tiny_folder: Path) -> ReferenceGenerator:
    return ReferenceGenerator.from_pretrained(str(tiny_folder))


@pytest.fixture(scope="module")
def pipeline(tiny_folder: Path) -> AudioLDM2Pipeline:
    """The model's own diffusers pipeline, loaded independently of the backbone."""
    pipe = AudioLDM2Pipeline.from_pretrained(str(tiny_folder))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _latents(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, *LATENT, generator=torch.Generator().manual_seed(seed))


def _pipeline_latents(pipe: AudioLDM2Pipeline, prompts: list[str], latents: torch.Tensor, steps: int,
                      scale: float, empty: dict[str, torch.Tensor]) -> torch.Tensor:
    """The final latents of the pipeline's own text-to-audio generation from ``latents``, with ``empty`` as negative."""
    n = len(prompts)
    out = pipe(
        prompts, latents=latents.clone(), num_inference_steps=steps, guidance_scale=scale, output_type="latent",
        negative_prompt_embeds=empty["encoder_hidden_states_1"].repeat(n, 1, 1),
        negative_attention_mask=empty["encoder_attention_mask_1"].repeat(n, 1),
        negative_generated_prompt_embeds=empty["encoder_hidden_states"].repeat(n, 1, 1),
    )  # fmt: skip
    return out.audios


def _pipeline_encoding(pipe: AudioLDM2Pipeline, text: str) -> dict[str, torch.Tensor]:
    t5, mask, gpt2 = pipe.encode_prompt([text], "cpu", 1, do_classifier_free_guidance=False)
    return {"encoder_hidden_states_1": t5, "encoder_attention_mask_1": mask, "encoder_hidden_states": gpt2}


# --- a. conditioning and guidance are the model's own ---------------------------------------------


def test_conditions_are_the_unet_keywords_with_the_real_sequence_shapes(generator: ReferenceGenerator) -> None:
    """Queries: GPT-2's 8 vectors, T5 tokens and their integer mask, one padding length for all rows."""
    text, empty = generator.conditions(["dog barking", "a man speaking loudly"])
    assert set(text) == set(empty) == {"encoder_hidden_states", "encoder_hidden_states_1", "encoder_attention_mask_1"}
    assert text["encoder_hidden_states"].shape == (2, 8, WIDTH)
    assert empty["encoder_hidden_states"].shape == (1, 8, WIDTH)
    length = text["encoder_hidden_states_1"].shape[1]
    assert text["encoder_hidden_states_1"].shape == (2, length, WIDTH)
    assert empty["encoder_hidden_states_1"].shape == (1, length, WIDTH)
    assert text["encoder_attention_mask_1"].dtype == torch.long
    # The empty prompt is the T5 end token alone; the longer query fills every position.
    assert empty["encoder_attention_mask_1"].sum() == 1 and text["encoder_attention_mask_1"][1].all()


def test_inversion_encodes_only_the_empty_prompt(generator: ReferenceGenerator) -> None:
    """With no queries: conditions of batch 0 (same keys) and the empty prompt unpadded."""
    text, empty = generator.conditions([])
    assert set(text) == set(empty)
    assert all(v.shape[0] == 0 for v in text.values())
    assert empty["encoder_hidden_states_1"].shape == (1, 1, WIDTH)
    assert empty["encoder_hidden_states"].shape == (1, 8, WIDTH)


def test_conditions_are_the_pipelines_own_encodings(generator: ReferenceGenerator, pipeline: AudioLDM2Pipeline) -> None:
    """Each query's condition, and the empty prompt's, is the pipeline's encode_prompt of that text (then padded)."""
    queries = ["dog barking", "a man speaking loudly"]
    text, empty = generator.conditions(queries)
    rows = [(text, i, query) for i, query in enumerate(queries)] + [(empty, 0, "")]
    for condition, i, prompt in rows:
        own = _pipeline_encoding(pipeline, prompt)
        length = own["encoder_hidden_states_1"].shape[1]
        close = {"rtol": 1e-4, "atol": 1e-4}  # two loaded copies of the weights: float rounding apart
        torch.testing.assert_close(condition["encoder_hidden_states"][i : i + 1], own["encoder_hidden_states"], **close)
        tokens = condition["encoder_hidden_states_1"][i : i + 1, :length]
        torch.testing.assert_close(tokens, own["encoder_hidden_states_1"], **close)
        assert torch.equal(condition["encoder_attention_mask_1"][i : i + 1, :length], own["encoder_attention_mask_1"])
        assert not condition["encoder_attention_mask_1"][i, length:].any(), prompt


def test_pipeline_default_negative_depends_on_the_prompt_length(pipeline: AudioLDM2Pipeline) -> None:
    """Why the empty prompt is encoded on its own: the pipeline pads "" to the prompt's T5 length
    before GPT-2 continues it, and GPT-2's vectors change with that padding."""
    short = pipeline.encode_prompt(["dog"], "cpu", 1, do_classifier_free_guidance=True)[2][0]
    long = pipeline.encode_prompt(["dog barking loudly"], "cpu", 1, do_classifier_free_guidance=True)[2][0]
    assert not torch.allclose(short, long, atol=1e-3)


def test_empty_prompt_predicts_the_same_noise_padded_or_not(generator: ReferenceGenerator) -> None:
    """Inversion's empty prompt (1 T5 token) and denoising's (padded, masked) give the same UNet output."""
    _, alone = generator.conditions([])
    _, padded = generator.conditions(["a dog barking far away"])
    assert padded["encoder_hidden_states_1"].shape[1] > 1
    z, t = _latents(1), torch.tensor(501)
    torch.testing.assert_close(generator._eps(z, t, padded), generator._eps(z, t, alone), rtol=1e-5, atol=1e-5)


@pytest.mark.integration
def test_guided_denoising_equals_the_diffusers_pipeline(generator: ReferenceGenerator,
                                                        pipeline: AudioLDM2Pipeline) -> None:
    """Same prompt, negative, start latents, steps and scale: the generator's denoising is the pipeline's generation."""
    steps, scale = 3, 5.0
    text, empty = generator.conditions(["dog barking"])
    config = GenerationConfig(num_references=1, ddim_steps=steps, guidance_scale=scale)
    timesteps = generator.inversion_timesteps(config)
    ours = generator.denoise(_latents(1), timesteps, text, empty, scale)
    theirs = _pipeline_latents(pipeline, ["dog barking"], _latents(1), steps, scale, empty)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.integration
def test_batched_queries_equal_each_alone(generator: ReferenceGenerator, pipeline: AudioLDM2Pipeline) -> None:
    """Two queries denoised together (T5 tokens padded alike) equal each denoised alone, which is the pipeline's."""
    queries, steps, scale = ["dog barking", "a man speaking loudly"], 2, 3.0
    config = GenerationConfig(num_references=1, ddim_steps=steps, guidance_scale=scale)
    timesteps = generator.inversion_timesteps(config)
    latents = _latents(2, seed=1)
    text, empty = generator.conditions(queries)
    together = generator.denoise(latents, timesteps, text, empty, scale)
    for i, query in enumerate(queries):
        one_text, one_empty = generator.conditions([query])
        alone = generator.denoise(latents[i : i + 1], timesteps, one_text, one_empty, scale)
        torch.testing.assert_close(together[i : i + 1], alone, rtol=1e-5, atol=1e-4)
        theirs = _pipeline_latents(pipeline, [query], latents[i : i + 1], steps, scale, one_empty)
        torch.testing.assert_close(alone, theirs, rtol=1e-5, atol=1e-5)


def test_generator_sets_its_attention_kernel_on_the_audioldm2_unet(generator: ReferenceGenerator) -> None:
    """set_attn_processor(AttnProcessor2_0()) reaches every attention layer of the AudioLDM 2 UNet."""
    processors = generator.backbone.unet.attn_processors
    assert processors and all(isinstance(p, AttnProcessor2_0) for p in processors.values())


def test_networks_are_frozen_and_listed(generator: ReferenceGenerator) -> None:
    """All seven networks are loaded, in eval mode, with no trainable parameter."""
    backbone = generator.backbone
    assert isinstance(backbone, AudioLDM2) and backbone.denoiser is backbone.unet
    assert len(backbone.networks()) == 7
    for module in backbone.networks():
        assert not module.training and not any(p.requires_grad for p in module.parameters())


@pytest.mark.integration
def test_references_have_the_real_shapes(generator: ReferenceGenerator) -> None:
    """A [1, 1, 1024, 64] log-mel becomes K latents [8, 256, 16] and K references of its shape, vocoded."""
    log_mel = torch.randn(1, 1, 1024, 64, generator=torch.Generator().manual_seed(0)) - 4.0
    latents = generator.encode_mel(log_mel, 2, torch.Generator().manual_seed(0))
    assert latents.shape == (2, *LATENT)
    refs = generator.generate(log_mel, ["dog barking"], GenerationConfig(2, 3), torch.Generator().manual_seed(0))
    assert refs.shape == (1, 2, 1, 1024, 64) and torch.isfinite(refs).all()
    waveforms = generator.vocode(refs[0])
    assert waveforms.shape[0] == 2 and waveforms.shape[1] >= 1024 * 160


# --- b. front end -----------------------------------------------------------------------------------


def test_front_end_is_the_published_one() -> None:
    """ALGORITHM.md section 1: 16 kHz, 10.24 s, n_fft 1024, hop 160, win 1024, 64 mels 0-8000 Hz, time-major."""
    spec = AudioLDM2.spec
    assert (spec.sample_rate, spec.segment_samples, spec.n_fft, spec.hop_length, spec.win_length) == (
        16000, 163840, 1024, 160, 1024)
    assert (spec.n_mels, spec.f_min, spec.f_max, spec.n_frames, spec.peak, spec.layout) == (
        64, 0.0, 8000.0, 1024, 0.5, "time-major")
    assert spec == AudioLDM.spec == SpectrogramConfig()


def _slaney_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above (27 mels per factor 6.4)."""
    hz = np.asarray(hz, dtype=np.float64)
    log_part = 15.0 + 27.0 * np.log(np.maximum(hz, 1000.0) / 1000.0) / np.log(6.4)
    return np.where(hz < 1000.0, 3.0 * hz / 200.0, log_part)


def _slaney_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel < 15.0, 200.0 * mel / 3.0, 1000.0 * np.exp((mel - 15.0) * np.log(6.4) / 27.0))


def _numpy_filterbank(rate: int, n_fft: int, n_mels: int, f_max: float) -> np.ndarray:
    """Triangular filters evenly spaced in Slaney mels from 0 Hz, each of unit area: ``[n_mels, n_fft // 2 + 1]``."""
    bins = np.arange(n_fft // 2 + 1) * rate / n_fft
    edges = _slaney_hz(np.linspace(0.0, _slaney_mel(f_max), n_mels + 2))
    low, centre, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    triangles = np.maximum(0.0, np.minimum((bins - low) / (centre - low), (high - bins) / (high - centre)))
    return triangles * (2.0 / (high - low))


def _numpy_log_mel(path: Path) -> np.ndarray:
    """The AudioLDM log-mel of a 16 kHz mono file, from scratch in float64: ``[1024 frames, 64 mels]``."""
    audio, rate = sf.read(str(path), dtype="float64")
    assert rate == 16000 and audio.ndim == 1
    segment = np.zeros(163840)
    segment[: min(len(audio), 163840)] = audio[:163840]
    segment -= segment.mean()
    segment *= 0.5 / np.abs(segment).max()
    padded = np.pad(segment, 512, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(1024) / 1024)  # periodic Hann
    frames = np.stack([padded[i * 160 : i * 160 + 1024] * window for i in range(1024)])
    magnitude = np.abs(np.fft.rfft(frames, axis=1))  # [1024, 513]
    mel = magnitude @ _numpy_filterbank(16000, 1024, 64, 8000.0).T
    return np.log(np.maximum(mel, 1e-5))


def test_log_mel_of_a_real_recording_matches_numpy(shared_audio: Path) -> None:
    """The model-layout log-mel of a 16 kHz speech recording equals an independent float64 numpy computation."""
    path = shared_audio / "librosa-data__male-speech__1.wav"
    spec = AudioLDM2.spec
    layout = diffusion_log_mel(load_mixture(str(path), spec).magnitude, mel_filterbank(spec), spec)
    assert layout.shape == (1, 1, 1024, 64)
    expected = _numpy_log_mel(path)
    diff = np.abs(layout[0, 0].double().numpy() - expected)
    # float32 STFT against float64: tiny everywhere, largest in the quietest bins (log amplifies).
    assert diff.mean() < 1e-5 and diff.max() < 1e-3
    loud = expected > math.log(1e-3)
    assert diff[loud].max() < 1e-4


# --- c. the command line end to end -----------------------------------------------------------------


ROUNDS, STEPS, K = 2, 4, 2


@pytest.fixture(scope="module")
def cli_run(tiny_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``main.py fit`` with the ``backbone/audioldm2`` overlay on the tiny model: (run folder, output root)."""
    root = tmp_path_factory.mktemp("logs-audioldm2")
    run = fit(root, *tiny_args(tiny_folder, ddim_steps=3, steps_per_round=STEPS), "--trainer.max_epochs", str(ROUNDS),
              "--data.num_references", str(K), overlays=("backbone/audioldm2",))
    return run, root


@pytest.mark.integration
def test_fit_writes_the_separation_at_the_input_length(cli_run: tuple[Path, Path]) -> None:
    """The separated file exists, finite, with the input's rate, channels and length."""
    run, _ = cli_run
    out = run / "dog-barking" / "dog-barking.wav"
    info, source = sf.info(str(out)), sf.info(str(DEMO_MIXTURE))
    assert (info.samplerate, info.channels, info.frames) == (source.samplerate, source.channels, source.frames)
    audio = sf.read(str(out), dtype="float32")[0]
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0


@pytest.mark.integration
def test_fit_logs_the_loss_and_vocodes_the_references(cli_run: tuple[Path, Path]) -> None:
    """loss/train at every step of every round; the last round's K references written as 16 kHz audio."""
    run, _ = cli_run
    loss = scalars(run / "dog-barking", "loss/train")
    assert [step for step, _ in loss] == list(range(ROUNDS * STEPS))
    assert all(math.isfinite(v) for _, v in loss)
    refs = sorted((run / "dog-barking" / "references").glob("*.wav"))
    assert [p.name for p in refs] == [f"dog-barking_{k}.wav" for k in range(K)]
    assert all(sf.info(str(p)).samplerate == 16000 for p in refs)


@pytest.mark.integration
def test_fit_config_and_cache_name_the_backbone(cli_run: tuple[Path, Path]) -> None:
    """The resolved config names AudioLDM2; every reference cache entry's key names it too."""
    run, root = cli_run
    config = yaml.safe_load((run / "dog-barking" / "config.yaml").read_text())
    assert config["data"]["backbone"]["class_path"].endswith(".AudioLDM2")
    entries = sorted((root / "references").glob("*.safetensors"))
    assert entries
    for entry in entries:
        with safe_open(str(entry), "pt") as file:
            key = json.loads(file.metadata()["key"])
        assert key["backbone"] == "AudioLDM2"


# --- d. choosing the backbone, a folder without vocoder, the builder --------------------------------


def test_backbone_is_inferred_from_folder_and_hub_id(tiny_folder: Path) -> None:
    """The tiny folder's index and the AudioLDM 2 hub ids give AudioLDM2; AudioLDM's ids give AudioLDM."""
    assert type(infer_backbone(str(tiny_folder))) is AudioLDM2
    for hub_id in ("cvssp/audioldm2", "cvssp/audioldm2-large", "cvssp/audioldm2-music"):
        assert type(infer_backbone(hub_id)) is AudioLDM2, hub_id
    for hub_id in ("cvssp/audioldm-l-full", "cvssp/audioldm", "cvssp/audioldm-s-full-v2"):
        assert type(infer_backbone(hub_id)) is AudioLDM, hub_id


@pytest.mark.integration
def test_folder_without_vocoder_still_generates(tiny_folder: Path, tmp_path: Path) -> None:
    """Without a vocoder the references are generated and vocode() returns None."""
    folder = tmp_path / "no-vocoder"
    shutil.copytree(tiny_folder, folder, ignore=shutil.ignore_patterns("vocoder"))
    index = json.loads((folder / "model_index.json").read_text())
    del index["vocoder"]
    (folder / "model_index.json").write_text(json.dumps(index))
    generator = ReferenceGenerator.from_pretrained(str(folder))
    assert generator.backbone.vocoder is None and len(generator.backbone.networks()) == 6
    log_mel = torch.zeros(1, 1, 1024, 64) - 4.0
    refs = generator(log_mel, "dog barking", GenerationConfig(1, 2), torch.Generator().manual_seed(0))
    assert refs.shape == (1, 1, 1024, 64) and torch.isfinite(refs).all()
    assert generator.vocode(refs) is None


def test_tiny_builder_is_seeded_and_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The same seed gives the same weights; ``python -m dgmo_pl.tiny OUT --backbone audioldm2`` writes a folder."""
    a, b = builder.build("tiny", seed=3), builder.build("tiny", seed=3)
    assert torch.equal(next(a["unet"].parameters()), next(b["unet"].parameters()))
    tiny_main([str(tmp_path / "m"), "--backbone", "audioldm2"])
    assert "tiny random AudioLDM 2" in capsys.readouterr().out
    assert json.loads((tmp_path / "m" / "model_index.json").read_text())["_class_name"] == "AudioLDM2Pipeline"
    assert len(builder.tiny_t5_tokenizer()) >= 100


def test_unknown_size_is_refused() -> None:
    with pytest.raises(ValueError, match="tiny, full, full-large"):
        builder.build("medium")


# --- full size: architecture and parameter counts, on the meta device (no weights allocated) -------


@pytest.mark.parametrize(("size", "unet", "total"), [("full", 350e6, 1.1e9), ("full-large", 750e6, 1.5e9)])
def test_full_sizes_have_the_published_parameter_counts(size: str, unet: float, total: float) -> None:
    """UNet 350 M / 750 M and 1.1 G / 1.5 G in all (the model cards' figures), within 5 %."""
    with torch.device("meta"):
        parts = builder.build(size)
    counts = builder.parameter_counts(parts)
    assert counts["unet"] == pytest.approx(unet, rel=0.05)
    assert sum(counts.values()) == pytest.approx(total, rel=0.05)
    t5 = parts["text_encoder_2"].config
    assert (t5.d_model, t5.d_ff, t5.num_layers, t5.num_heads, t5.d_kv, t5.vocab_size) == (1024, 2816, 24, 16, 64, 32128)
    assert t5.feed_forward_proj == "gated-gelu"
    gpt2 = parts["language_model"].config
    assert (gpt2.n_embd, gpt2.n_layer, gpt2.n_head, gpt2.n_positions, gpt2.max_new_tokens) == (768, 12, 12, 1024, 8)
    clap = parts["text_encoder"].config
    assert (clap.text_config.hidden_size, clap.text_config.num_hidden_layers, clap.projection_dim) == (768, 12, 512)
    assert parts["vae"].config.latent_channels == 8 and parts["vocoder"].config.model_in_dim == 64


@pytest.mark.integration  # over a second: builds the full UNet's graph on the meta device
def test_full_unet_maps_a_latent_with_both_text_streams() -> None:
    """The full UNet takes [1, 8, 256, 16] with 8 GPT-2 vectors (768) and T5 tokens (1024) to the same shape."""
    with torch.device("meta"):
        unet = AudioLDM2UNet2DConditionModel(**builder.full_unet_config("full")).eval()
    config = unet.config
    assert list(config.block_out_channels) == [128, 256, 384, 640] and config.layers_per_block == 2
    assert list(config.down_block_types) == ["DownBlock2D"] + ["CrossAttnDownBlock2D"] * 3
    meta = {"device": "meta"}
    with torch.no_grad():
        out = unet(torch.empty(1, *LATENT, **meta), torch.tensor(500, **meta),
                   encoder_hidden_states=torch.empty(1, 8, 768, **meta),
                   encoder_hidden_states_1=torch.empty(1, 12, 1024, **meta),
                   encoder_attention_mask_1=torch.ones(1, 12, dtype=torch.long, **meta))
    assert tuple(out.sample.shape) == (1, *LATENT)
