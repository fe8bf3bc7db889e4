"""The Auffusion backbone on a tiny random Auffusion: conditioning, sampler, front end, vocoder, loading, CLI."""

from __future__ import annotations

import copy
import json
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
import yaml
from diffusers import StableDiffusionPipeline
from helpers import configs, fit, images, main, outputs_from_checkpoint, scalars, tiny_args
from torch import nn
from transformers import AutoTokenizer, CLIPTextModel

from dgmo_pl.audio import frontend
from dgmo_pl.audio.io import read_audio
from dgmo_pl.data import DEMO_MIXTURE
from dgmo_pl.diffusion.backbones import Auffusion, infer_backbone
from dgmo_pl.diffusion.backbones.auffusion_parts import ConditionAdapter
from dgmo_pl.diffusion.backbones.hifigan import HifiGan
from dgmo_pl.diffusion.loading import ModelLoadError
from dgmo_pl.diffusion.references import GenerationConfig, ReferenceGenerator
from dgmo_pl.testing.tiny import auffusion as tiny_auffusion

SPEC = Auffusion.spec
TOKENS, WIDTH = 77, 32  # the tiny model's condition: CLIP's 77 tokens at the tiny UNet's width
STEPS = 4


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random Auffusion, written once for the module."""
    return tiny_auffusion.save(tiny_auffusion.build("tiny", seed=0), tmp_path_factory.mktemp("tiny-auffusion"))


@pytest.fixture(scope="module")
def backbone(folder: Path) -> Auffusion:
    model = Auffusion()
    model.load(str(folder))
    return model


@pytest.fixture(scope="module")
def generator(backbone: Auffusion) -> ReferenceGenerator:
    return ReferenceGenerator(backbone)


def _copy(folder: Path, tmp_path: Path, without: tuple[str, ...] = ()) -> Path:
    """A copy of the model folder, leaving out the named parts."""
    return Path(shutil.copytree(folder, tmp_path / "model", ignore=lambda _, names: [n for n in names if n in without]))


# --- conditioning and sampling ----------------------------------------------------------------


def _recipe(folder: Path, text: str, max_length: int = TOKENS) -> torch.Tensor:
    """Auffusion's conditioning, written out independently: ``-> [1, max_length, width]``.

    Tokens with no padding, CLIP's last hidden states zero-padded to ``max_length`` tokens, then
    the adapter (Linear, then LayerNorm) on every position.
    """
    tokenizer = AutoTokenizer.from_pretrained(folder / "text_encoder_0")
    encoder = CLIPTextModel.from_pretrained(folder / "text_encoder_0").eval()
    state = torch.load(folder / "condition_adapter_0" / "condition_adapter.pt", weights_only=True)
    ids = tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        hidden = encoder(ids).last_hidden_state[:, :max_length]
    padded = torch.zeros(1, max_length, hidden.shape[-1])
    padded[:, : hidden.shape[1]] = hidden
    projected = padded @ state["proj.weight"].T + state["proj.bias"]
    return F.layer_norm(projected, projected.shape[-1:], state["norm.weight"], state["norm.bias"])


def test_prompts_are_encoded_as_auffusion_does(backbone: Auffusion, folder: Path) -> None:
    """Each prompt alone through CLIP, zero-padded to 77 tokens, adapted; the unconditional is zeros."""
    texts = ["a dog barking loudly", "bell"]
    text, empty = backbone.encode_prompts(texts)
    assert list(text) == ["encoder_hidden_states"] and list(empty) == ["encoder_hidden_states"]
    cond = text["encoder_hidden_states"]
    assert cond.shape == (2, TOKENS, WIDTH)
    for i, t in enumerate(texts):
        torch.testing.assert_close(cond[i : i + 1], _recipe(folder, t), atol=1e-5, rtol=1e-5)
    assert empty["encoder_hidden_states"].shape == (1, TOKENS, WIDTH)
    assert not empty["encoder_hidden_states"].any()
    nothing, empty_again = backbone.encode_prompts([])
    assert nothing["encoder_hidden_states"].shape == (0, TOKENS, WIDTH)
    assert torch.equal(empty_again["encoder_hidden_states"], empty["encoder_hidden_states"])


def test_conditions_are_joined_along_the_tokens(folder: Path, tmp_path: Path) -> None:
    """A second condition (here a copy of the first, cropped to 5 tokens) follows the first's 77 tokens."""
    model = _copy(folder, tmp_path)
    shutil.copytree(model / "text_encoder_0", model / "text_encoder_1")
    shutil.copytree(model / "condition_adapter_0", model / "condition_adapter_1")
    conditions = json.loads((model / "condition_config.json").read_text())
    second = {**conditions[0], "text_encoder_name": "text_encoder_1", "condition_adapter_name": "condition_adapter_1",
              "condition_max_length": 5}
    (model / "condition_config.json").write_text(json.dumps([conditions[0], second]))
    two = Auffusion()
    two.load(str(model))
    text, empty = two.encode_prompts(["a dog barking loudly"])
    assert text["encoder_hidden_states"].shape == (1, TOKENS + 5, WIDTH)
    assert empty["encoder_hidden_states"].shape == (1, TOKENS + 5, WIDTH)
    expected = torch.cat([_recipe(folder, "a dog barking loudly"), _recipe(folder, "a dog barking loudly", 5)], dim=1)
    torch.testing.assert_close(text["encoder_hidden_states"], expected, atol=1e-5, rtol=1e-5)


@pytest.mark.integration
def test_guided_denoising_equals_the_diffusers_pipeline(backbone: Auffusion, generator: ReferenceGenerator) -> None:
    """Auffusion's sampling loop is Stable Diffusion's: our guided DDIM equals diffusers' pipeline on equal inputs."""
    text, empty = backbone.encode_prompts(["dog barking", "church bell"])
    latents = torch.randn(2, 4, 32, 128, generator=torch.Generator().manual_seed(3))
    backbone.scheduler.set_timesteps(STEPS)
    ours = generator.denoise(latents, backbone.scheduler.timesteps, text, empty, scale=5.0)
    pipe = StableDiffusionPipeline(
        vae=backbone.vae, text_encoder=backbone.text_encoders[0], tokenizer=backbone.tokenizers[0],
        unet=backbone.unet, scheduler=backbone.scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    prompt_embeds = text["encoder_hidden_states"]
    theirs = pipe(
        prompt_embeds=prompt_embeds, negative_prompt_embeds=torch.zeros_like(prompt_embeds), latents=latents.clone(),
        num_inference_steps=STEPS, guidance_scale=5.0, height=256, width=1024, output_type="latent",
    ).images  # fmt: skip
    assert ours.shape == (2, 4, 32, 128)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


@pytest.mark.integration
def test_references_have_the_image_layout(generator: ReferenceGenerator) -> None:
    """K references of [1, 256, 1024] in [0, 1]; the networks are frozen."""
    log_mel = torch.rand(1, 1, 256, 1024, generator=torch.Generator().manual_seed(0))
    refs = generator(log_mel, "dog barking", GenerationConfig(2, STEPS), torch.Generator().manual_seed(0))
    assert refs.shape == (2, 1, 256, 1024)
    assert refs.min() >= 0 and refs.max() <= 1
    for module in generator.backbone.networks():
        assert not module.training and not any(p.requires_grad for p in module.parameters())


# --- front end --------------------------------------------------------------------------------


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    return np.where(f >= 1000, 15 + np.log(np.maximum(f, 1e-10) / 1000) / (np.log(6.4) / 27), f * 3 / 200)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return np.where(m >= 15, 1000 * np.exp((m - 15) * np.log(6.4) / 27), m * 200 / 3)


def _slaney_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """Triangles between mel-spaced edges, each scaled to unit area (Slaney): ``[n_mels, n_fft // 2 + 1]``."""
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2))
    low, mid, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    triangles = np.maximum(0, np.minimum((freqs - low) / (mid - low), (high - freqs) / (high - mid)))
    return triangles * (2 / (high - low))


def _numpy_layout(x: np.ndarray) -> np.ndarray:
    """Auffusion's image of a 16 kHz segment, in numpy: ``[N] -> [256, 1024]``."""
    n_fft, win, hop = 2048, 1024, 160
    padded = np.pad(x, n_fft // 2, mode="reflect")
    window = np.zeros(n_fft)
    window[(n_fft - win) // 2 : (n_fft + win) // 2] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:1024]
    magnitude = np.abs(np.fft.rfft(frames * window, axis=-1)).T  # [1025, 1024]
    log_mel = np.log(np.maximum(_slaney_filterbank(16000, n_fft, 256, 0, 8000) @ magnitude, 1e-5))
    low, high = math.log(1e-5), math.log(200)
    return ((np.clip(log_mel, low, high) - low) / (high - low))[::-1]


@pytest.fixture(scope="module")
def speech(shared_audio: Path) -> torch.Tensor:
    """A real recording as one normalised 16 kHz segment, float64."""
    waveform, rate = read_audio(shared_audio / "whisper__male-speech__1.wav")
    segment, _ = frontend.normalise(frontend.prepare_waveform(waveform, rate, SPEC).double(), SPEC.peak)
    return segment


def test_front_end_matches_an_independent_computation(speech: torch.Tensor, backbone: Auffusion) -> None:
    """STFT 2048/1024/160, 256 Slaney mels to 8 kHz, log, [0, 1] between log(1e-5) and log(200), flipped."""
    basis = frontend.mel_filterbank(SPEC).double()
    # torchaudio builds the filterbank in fp32: within 1e-5 of its peak (0.085) of the exact one.
    np.testing.assert_allclose(basis.T.numpy(), _slaney_filterbank(16000, 2048, 256, 0, 8000), atol=1e-6)
    magnitude = frontend.stft(speech, SPEC).abs()[..., : SPEC.n_frames]
    assert magnitude.shape == (1025, 1024)  # the mask's shape
    layout = frontend.diffusion_log_mel(magnitude[None], basis, SPEC)
    assert layout.shape == (1, 1, 256, 1024)
    expected = _numpy_layout(speech.numpy())
    np.testing.assert_allclose(layout[0, 0].numpy(), expected, atol=1e-5)  # 1.7e-4 in log-mel
    # The flip puts the highest frequencies first, and the round trip gives the clamped log-mel back.
    assert layout[0, 0, -1].mean() > layout[0, 0, 0].mean()
    clamped = frontend.log_mel(magnitude, basis).clamp(math.log(1e-5), math.log(200))
    torch.testing.assert_close(frontend.from_model_layout(layout, SPEC)[0], clamped, atol=1e-9, rtol=0)
    image = backbone.vae_input(layout.float())
    assert image.shape == (1, 3, 256, 1024) and image.min() >= -1 and image.max() <= 1
    assert torch.equal(image[:, 0], image[:, 1]) and torch.equal(image[:, 0], image[:, 2])
    torch.testing.assert_close(backbone.vae_output(image), layout.float())


def test_front_end_in_float32_stays_close(speech: torch.Tensor) -> None:
    """The fp32 front end the mask loop runs stays within 1e-3 of the fp64 image."""
    basis = frontend.mel_filterbank(SPEC)
    fp32 = frontend.diffusion_log_mel(frontend.stft(speech.float(), SPEC).abs()[None], basis, SPEC)
    fp64 = frontend.diffusion_log_mel(frontend.stft(speech, SPEC).abs()[None], basis.double(), SPEC)
    assert (fp32.double() - fp64).abs().max() < 1e-3


# --- vocoder ----------------------------------------------------------------------------------

VOCODER_CONFIGS = {
    "even-excess-resblock-1": {"resblock": "1", "upsample_kernel_sizes": [11, 8, 4, 4, 4],
                               "resblock_kernel_sizes": [3, 5], "resblock_dilation_sizes": [[1, 3, 5], [1, 2, 3]]},
    "odd-excess-resblock-2": {"resblock": "2", "upsample_kernel_sizes": [10, 7, 5, 3, 4],
                              "resblock_kernel_sizes": [3], "resblock_dilation_sizes": [[1, 3]]},
}


def _vocoder_config(name: str) -> dict:
    return {"num_mels": 12, "upsample_rates": [5, 4, 2, 2, 2], "upsample_initial_channel": 32,
            "sampling_rate": 16000, **VOCODER_CONFIGS[name]}


def _weight_normed(model: nn.Module, legacy: bool) -> nn.Module:
    """A copy of ``model`` with weight norm on every convolution and the gains moved off ``||v||``."""
    ref = copy.deepcopy(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the legacy form is deprecated, but it is what checkpoints hold
        for module in ref.modules():
            if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
                (nn.utils.weight_norm if legacy else nn.utils.parametrizations.weight_norm)(module)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if name.endswith(("weight_g", "original0")):
                p.mul_(torch.rand(p.shape, generator=torch.Generator().manual_seed(p.numel())) + 0.5)
    return ref.eval()


@pytest.mark.parametrize("config_name", list(VOCODER_CONFIGS))
@pytest.mark.parametrize("legacy", [True, False], ids=["weight_g-v", "parametrization"])
def test_weight_norm_checkpoint_loads_to_the_same_vocoder(config_name: str, legacy: bool, tmp_path: Path) -> None:
    """A weight-norm generator saved as config.json + vocoder.pt reloads (folded) to the same output, hop 160."""
    config = _vocoder_config(config_name)
    torch.manual_seed(0)
    reference = _weight_normed(HifiGan(config), legacy)
    (tmp_path / "config.json").write_text(json.dumps(config))
    torch.save({"generator": reference.state_dict()}, tmp_path / "vocoder.pt")
    loaded = HifiGan.from_pretrained(tmp_path)
    assert not any("weight_g" in k or "parametrizations" in k for k in loaded.state_dict())
    mel = torch.randn(2, 12, 37, generator=torch.Generator().manual_seed(1)) - 3
    with torch.no_grad():
        expected, got = reference(mel), loaded(mel)
    assert got.shape == (2, 1, 37 * 160) and loaded.hop_length == 160
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_vocoder_saves_in_the_original_format(tmp_path: Path) -> None:
    """save_pretrained writes the original key names in weight-norm form; from_pretrained reads them back."""
    torch.manual_seed(0)
    vocoder = HifiGan(_vocoder_config("even-excess-resblock-1")).eval()
    vocoder.save_pretrained(tmp_path)
    state = torch.load(tmp_path / "vocoder.pt", weights_only=True)["generator"]
    for key in ("conv_pre.weight_g", "ups.0.weight_v", "resblocks.0.convs1.2.weight_g", "resblocks.1.convs2.0.weight_v",
                "conv_post.weight_g", "conv_post.bias"):
        assert key in state, key
    assert state["ups.0.weight_g"].shape == (32, 1, 1)  # ConvTranspose1d: one gain per input channel
    assert state["conv_pre.weight_g"].shape == (32, 1, 1)
    mel = torch.randn(1, 12, 20)
    with torch.no_grad():
        torch.testing.assert_close(HifiGan.from_pretrained(tmp_path)(mel), vocoder(mel), atol=1e-6, rtol=1e-5)


def test_backbone_vocodes_images(backbone: Auffusion) -> None:
    """[K, 1, 256, 1024] images -> K waveforms of 160 x 1024 samples in [-1, 1]."""
    audio = backbone.vocode(torch.rand(2, 1, 256, 1024, generator=torch.Generator().manual_seed(0)))
    assert audio.shape == (2, 163_840) and audio.dtype == torch.float32
    assert audio.abs().max() <= 1 and audio.abs().max() > 0.01


# --- loading ----------------------------------------------------------------------------------


def test_backbone_is_inferred_from_folder_and_hub_id(folder: Path) -> None:
    assert isinstance(infer_backbone(str(folder)), Auffusion)
    for model in ("auffusion/auffusion", "auffusion/auffusion-full", "Auffusion/Auffusion-Full"):
        assert isinstance(infer_backbone(model), Auffusion), model
    assert not Auffusion.recognises("cvssp/audioldm")


@pytest.mark.parametrize("content", [None, "not json", "{}", "[]", '[{"text_encoder_name": "text_encoder_0"}]'],
                         ids=["missing", "not-json", "object", "empty", "no-adapter"])
def test_bad_condition_config_names_the_file(folder: Path, tmp_path: Path, content: str | None) -> None:
    """A missing or malformed condition_config.json is a ModelLoadError that names it and says what to do."""
    model = _copy(folder, tmp_path, without=("condition_config.json",))
    if content is not None:
        (model / "condition_config.json").write_text(content)
    with pytest.raises(ModelLoadError, match="condition_config.json") as err:
        Auffusion().load(str(model))
    assert "re-create it" in str(err.value)


def test_stable_diffusion_index_needs_the_condition_config(folder: Path, tmp_path: Path) -> None:
    """A StableDiffusionPipeline folder loads as Auffusion with condition_config.json, and says why not without."""
    model = _copy(folder, tmp_path)
    index = json.loads((model / "model_index.json").read_text())
    (model / "model_index.json").write_text(json.dumps({**index, "_class_name": "StableDiffusionPipeline"}))
    loaded = Auffusion()
    loaded.load(str(model))
    assert loaded.loaded
    (model / "condition_config.json").unlink()
    with pytest.raises(ModelLoadError, match="Stable Diffusion model without Auffusion's condition_config.json"):
        Auffusion().load(str(model))


def test_hub_id_missing_offline_says_how_to_get_it() -> None:
    """With no network and an empty hub cache, loading a hub id fails at once and says what to do."""
    with pytest.raises(ModelLoadError, match="condition_config.json.*hf download auffusion/auffusion"):
        Auffusion().load("auffusion/auffusion")


def test_mismatched_adapter_is_refused(folder: Path, tmp_path: Path) -> None:
    """An adapter whose widths do not fit the text encoder and UNet is named in the error."""
    model = _copy(folder, tmp_path)
    config = json.loads((model / "condition_adapter_0" / "config.json").read_text())
    ConditionAdapter({**config, "cross_attention_dim": 24}).save_pretrained(model / "condition_adapter_0")
    with pytest.raises(ModelLoadError, match="condition_adapter_0.*maps width 16 to 24"):
        Auffusion().load(str(model))


# --- command line -----------------------------------------------------------------------------


@pytest.mark.integration
def test_config_has_the_papers_method_settings(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["fit", *configs("backbone/auffusion"), "--print_config"])
    assert exit_.value.code in (0, None)
    config = yaml.safe_load(capsys.readouterr().out)
    data = config["data"]
    assert data["model"] == "auffusion/auffusion"
    assert data["backbone"]["class_path"].endswith("Auffusion")
    settings = ("num_references", "ddim_steps", "noise_level", "guidance_scale")
    assert tuple(data[k] for k in settings) == (4, 100, 1.0, 5.0)
    assert (data["steps_per_round"], config["trainer"]["max_epochs"], config["model"]["lr"]) == (300, 3, 0.01)


@pytest.fixture(scope="module")
def auffusion_run(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two rounds of DGMO on the tiny Auffusion with the Auffusion config."""
    root = tmp_path_factory.mktemp("auffusion-logs")
    run = fit(root, *tiny_args(folder, ddim_steps=STEPS, steps_per_round=STEPS), "--trainer.max_epochs", "2",
              overlays=("backbone/auffusion",))
    return run / "dog-barking"


@pytest.mark.integration
def test_fit_separates_with_the_input_length(auffusion_run: Path) -> None:
    info, written = sf.info(DEMO_MIXTURE), sf.info(str(auffusion_run / "dog-barking.wav"))
    assert (written.frames, written.samplerate, written.channels) == (info.frames, info.samplerate, info.channels)
    audio = sf.read(str(auffusion_run / "dog-barking.wav"), dtype="float32")[0]
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0


@pytest.mark.integration
def test_fit_logs_every_step_and_round(auffusion_run: Path) -> None:
    loss = scalars(auffusion_run, "loss/train")
    assert [step for step, _ in loss] == list(range(2 * STEPS))
    assert all(math.isfinite(v) for _, v in loss)
    assert images(auffusion_run, "round/mask") == [0, 1]


@pytest.mark.integration
def test_fit_mask_covers_the_2048_point_stft(auffusion_run: Path) -> None:
    (ckpt,) = (auffusion_run / "checkpoints").glob("*.ckpt")
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert state["state_dict"]["mask_logits"].shape == (1, 1, 1025, 1024)


@pytest.mark.integration
def test_fit_writes_vocoded_references(auffusion_run: Path) -> None:
    refs = sorted((auffusion_run / "references").glob("*.wav"))
    assert [p.name for p in refs] == [f"dog-barking_{k}.wav" for k in range(4)]
    assert all((sf.info(str(p)).samplerate, sf.info(str(p)).frames) == (16000, 163_840) for p in refs)


@pytest.mark.integration
def test_fit_without_vocoder_writes_no_references(folder: Path, tmp_path: Path) -> None:
    model = _copy(folder, tmp_path, without=("vocoder",))
    run = fit(tmp_path / "logs", *tiny_args(model, ddim_steps=STEPS, steps_per_round=2), "--trainer.max_epochs", "1",
              overlays=("backbone/auffusion",)) / "dog-barking"
    assert (run / "dog-barking.wav").is_file()
    assert not (run / "references").exists()


@pytest.mark.integration
def test_checkpoint_rebuilds_the_module_and_its_mask(auffusion_run: Path, tmp_path: Path) -> None:
    """``MaskSeparator.load_from_checkpoint`` alone rebuilds the 1025-bin module; its mask remakes the file exactly."""
    (ckpt,) = (auffusion_run / "checkpoints").glob("*.ckpt")
    remade = outputs_from_checkpoint(ckpt, Path(DEMO_MIXTURE), tmp_path, ["dog-barking"])["dog-barking"]
    written = sf.read(str(auffusion_run / "dog-barking.wav"), dtype="int16")[0]
    assert np.array_equal(sf.read(str(remade), dtype="int16")[0], written)
