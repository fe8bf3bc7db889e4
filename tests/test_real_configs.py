"""The full-size builders of ``dgmo_pl.testing.tiny`` against the real checkpoints' configs.

Also the real parts (scheduler, VAE, vocoder) end to end.

The configs are the hub's (``tests/real_configs/``, copied from ``../shared/model-configs``; its
SOURCES.md says where each comes from). Most are verbatim; ``cvssp/audioldm``'s UNet config is
INFERRED (the ``-l-full`` key set with AudioLDM-S's widths) and its scheduler config RECONSTRUCTED
(seen first lines plus what diffusers' conversion script writes), and AudioLDM's text encoder is
compared with a DERIVED config (a third-party AudioLDM checkpoint's), as ``cvssp/audioldm``'s was
not found. A test that rests on such a file says so.

Every large model is built on the ``meta`` device: configs and parameter counts without
allocating or initialising weights, so these checks take seconds.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, NamedTuple

import diffusers
import numpy as np
import pytest
import soundfile as sf
import torch
import transformers
from diffusers import AutoencoderKL, DDIMScheduler
from diffusers.pipelines import audioldm2 as diffusers_audioldm2
from helpers import fit, tiny_args
from real_config_models import real_config, save_with_real_parts
from transformers import PretrainedConfig, PreTrainedModel

from dgmo_pl.data import DEMO_MIXTURE
from dgmo_pl.diffusion.references import ReferenceGenerator
from dgmo_pl.testing.tiny import builder

#: The VAE latent scales of the real configs (learnt per checkpoint, so not interchangeable).
SCALING_FACTORS = {"audioldm": 0.9227914214134216, "audioldm2": 0.4110932946205139}
#: Backbone -> its real configs' folder and the run config of ``main.py fit``.
REAL_MODELS = {"audioldm": "cvssp-audioldm", "audioldm2": "cvssp-audioldm2"}
FIT_OVERLAYS = {"audioldm": (), "audioldm2": ("backbone/audioldm2",)}
#: Keys of a transformers config that record where and how it was saved, not the model
#: (``model_type`` names the class: transformers renamed the HiFi-GAN's "hifigan" since 4.28).
METADATA = {"_name_or_path", "architectures", "dtype", "model_type", "torch_dtype", "transformers_version"}
#: Log-mel frames of one 10.24 s window, and samples per frame at 16 kHz.
FRAMES, HOP = 1024, 160


class Case(NamedTuple):
    """A component of a full-size build and the real config it must reproduce."""

    backbone: str
    size: str
    component: str
    config: str  # "<model folder>/<component folder>" under tests/real_configs
    parameters: int  # of the real config's model (and so of the build)
    sureness: str = "verbatim"

    def __str__(self) -> str:
        return f"{self.backbone}-{self.size}-{self.component}-{self.sureness}"


CASES = [
    # AudioLDM-S: cvssp/audioldm's UNet config was not found verbatim (INFERRED).
    Case("audioldm", "full", "unet", "cvssp-audioldm/unet", 185_036_552, "inferred"),
    Case("audioldm", "full-l", "unet", "cvssp-audioldm-l-full/unet", 739_139_080),
    Case("audioldm", "full", "vae", "cvssp-audioldm/vae", 55_376_873),
    Case("audioldm", "full", "vocoder", "cvssp-audioldm/vocoder", 55_264_897),
    # A third-party AudioLDM's CLAP text tower stands in for cvssp/audioldm's (DERIVED).
    Case("audioldm", "full", "text_encoder", "derived/circulus-canvers-audioreal-v1/text_encoder", 125_302_016,
         "derived"),
    Case("audioldm2", "full", "unet", "cvssp-audioldm2/unet", 346_943_496),
    Case("audioldm2", "full", "vae", "cvssp-audioldm2/vae", 55_376_873),
    Case("audioldm2", "full", "vocoder", "cvssp-audioldm2/vocoder", 55_264_897),
    Case("audioldm2", "full", "text_encoder", "cvssp-audioldm2/text_encoder", 193_913_882),
]


# --- building ------------------------------------------------------------------------------


@functools.cache
def built(backbone: str, size: str) -> dict[str, object]:
    """The components of ``python -m dgmo_pl.tiny --backbone BACKBONE --size SIZE``, on the meta device."""
    with torch.device("meta"):
        return builder(backbone).build(size)


def from_real_config(cls: type, case: Case) -> Any:
    """A ``cls`` model of the real config of ``case``, on the meta device."""
    model, part = case.config.rsplit("/", 1)
    config = real_config(model, part)
    with torch.device("meta"):
        if issubclass(cls, PreTrainedModel):
            return cls(cls.config_class.from_dict(config))
        return cls.from_config(config)


def parameters(model: torch.nn.Module) -> int:
    """Number of parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())


def plain(value: Any) -> Any:
    """``value`` with tuples as lists, at any depth (configs store either)."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def settings(config: Any) -> dict[str, Any]:
    """Every setting of a model's config, without what records its saving.

    A transformers config gives each key its class defines (nested configs likewise), so keys of
    older versions that the installed classes no longer read drop out; a diffusers config gives
    each of its keys except the ``_``-prefixed records.
    """
    if isinstance(config, PretrainedConfig):
        out = {}
        for key in type(config)().to_dict():
            if key not in METADATA:
                value = getattr(config, key)
                out[key] = settings(value) if isinstance(value, PretrainedConfig) else plain(value)
        return out
    return {key: plain(value) for key, value in config.items() if not key.startswith("_")}


def differences(real: dict[str, Any], ours: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Key -> (real, ours) where two settings dicts disagree."""
    return {k: (real.get(k), ours.get(k)) for k in sorted(real.keys() | ours.keys()) if real.get(k) != ours.get(k)}


def index_classes(index: dict[str, Any]) -> dict[str, type]:
    """Component -> the class a ``model_index.json`` names for it (``audioldm2``: diffusers' AudioLDM 2 module)."""
    modules = {"diffusers": diffusers, "transformers": transformers, "audioldm2": diffusers_audioldm2}
    entries = {name: entry for name, entry in index.items() if not name.startswith("_")}
    return {name: getattr(modules[library], cls) for name, (library, cls) in entries.items()}


# --- the full-size builders against the real configs ----------------------------------------


@pytest.mark.parametrize("case", CASES, ids=str)
def test_full_size_component_has_the_real_config(case: Case) -> None:
    """The built component's config equals the real one's, key by key (architecture and records alike).

    Covers block widths, layers per block, block types, attention heads and cross-attention
    widths, the class-embedding settings, the VAE's scale, the vocoder's upsampling, the CLAP
    towers' depths and widths. The ``inferred`` and ``derived`` cases rest on configs that are
    not the checkpoint's own file (see the module docstring).
    """
    ours = built(case.backbone, case.size)[case.component]
    real = from_real_config(type(ours), case)
    assert differences(settings(real.config), settings(ours.config)) == {}


@pytest.mark.parametrize("case", CASES, ids=str)
def test_full_size_component_has_the_real_parameter_count(case: Case) -> None:
    """The model of the real config has the pinned parameter count, and the built one exactly as many."""
    ours = built(case.backbone, case.size)[case.component]
    real = from_real_config(type(ours), case)
    assert parameters(real) == case.parameters
    assert parameters(ours) == case.parameters


def test_audioldm_unets_have_eight_heads_per_attention() -> None:
    """Both AudioLDM UNet configs (L verbatim, S inferred) leave diffusers' 8 heads: 32 to 160 channels a head.

    diffusers reads ``attention_head_dim`` 8 as the number of heads, so the head width grows with
    the block (the original AudioLDM code has 32 channels in every head).
    """
    for size, widths in (("full", (256, 384, 640)), ("full-l", (512, 768, 1280))):
        unet = built("audioldm", size)["unet"]
        attentions = [m for m in unet.modules() if isinstance(m, diffusers.models.attention_processor.Attention)]
        assert {m.heads for m in attentions} == {8}
        assert {m.inner_dim // m.heads for m in attentions} == {w // 8 for w in widths}


def test_audioldm2_unet_attends_to_gpt2_and_t5() -> None:
    """cvssp/audioldm2's UNet: per attention block a self-attention, a GPT-2 (768) and a T5 (1024) transformer."""
    config = built("audioldm2", "full")["unet"].config
    assert plain(config.cross_attention_dim) == [[None, 768, 1024]] * 4
    assert (config.transformer_layers_per_block, config.attention_head_dim) == (1, 8)
    assert plain(config.block_out_channels) == [128, 256, 384, 640]


def test_audioldm2_clap_has_the_larger_audio_tower() -> None:
    """cvssp/audioldm2's CLAP audio tower: stages of 2, 2, 12, 2 blocks, 128 channels widening to 1024."""
    audio = built("audioldm2", "full")["text_encoder"].config.audio_config
    assert (list(audio.depths), audio.patch_embeds_hidden_size, audio.hidden_size) == ([2, 2, 12, 2], 128, 1024)


@pytest.mark.parametrize("backbone", sorted(SCALING_FACTORS))
def test_full_vae_has_the_real_scaling_factor(backbone: str) -> None:
    """The full-size VAE scales latents by its real config's learnt factor, not a rounding of it."""
    expected = SCALING_FACTORS[backbone]
    assert real_config(REAL_MODELS[backbone], "vae")["scaling_factor"] == expected
    assert built(backbone, "full")["vae"].config.scaling_factor == expected


def test_audioldm_vae_config_leaves_force_upcast_to_the_default() -> None:
    """cvssp/audioldm's VAE config has no ``force_upcast``: diffusers' default True applies, as in AudioLDM 2's."""
    assert "force_upcast" not in real_config("cvssp-audioldm", "vae")
    assert real_config("cvssp-audioldm2", "vae")["force_upcast"] is True
    with torch.device("meta"):
        assert AutoencoderKL.from_config(real_config("cvssp-audioldm", "vae")).config.force_upcast is True
    assert built("audioldm", "full")["vae"].config.force_upcast is True


@pytest.mark.parametrize("backbone", sorted(REAL_MODELS))
def test_builder_scheduler_is_the_real_one(backbone: str) -> None:
    """The builders' DDIM scheduler has every setting of the real config (AudioLDM's: RECONSTRUCTED)."""
    real = DDIMScheduler.from_config(real_config(REAL_MODELS[backbone], "scheduler")).config
    assert (real.steps_offset, real.clip_sample, real.set_alpha_to_one) == (1, False, False)
    assert (real.beta_start, real.beta_end, real.beta_schedule) == (0.0015, 0.0195, "scaled_linear")
    for size in ("tiny", "full"):
        assert differences(settings(real), settings(built(backbone, size)["scheduler"].config)) == {}


@pytest.mark.parametrize("backbone", sorted(REAL_MODELS))
def test_builder_index_names_the_real_components(backbone: str, tmp_path: Path) -> None:
    """The written ``model_index.json`` has the real one's pipeline, components and classes.

    One known difference: AudioLDM 2's index names a ``GPT2Model``, which cannot generate in
    transformers 5; the builder writes the ``GPT2LMHeadModel`` that the backbone loads the same
    weights into. (The tokenizer names differ only by aliases of one class in transformers 5.)
    """
    module = builder(backbone)
    folder = module.save(module.build("tiny"), tmp_path)
    written = json.loads((folder / "model_index.json").read_text())
    index = real_config(REAL_MODELS[backbone], "model_index")
    assert written["_class_name"] == index["_class_name"]
    real, ours = index_classes(index), index_classes(written)
    assert set(ours) == set(real)
    differing = {k: (real[k].__name__, ours[k].__name__) for k in real if real[k] is not ours[k]}
    assert differing == ({"language_model": ("GPT2Model", "GPT2LMHeadModel")} if backbone == "audioldm2" else {})


# --- the real scheduler, VAE and vocoder through the loading path, end to end ----------------


@pytest.fixture(scope="module", params=sorted(REAL_MODELS))
def real_parts_model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """(backbone, folder): a tiny model whose scheduler, VAE and vocoder are built from the real configs."""
    backbone = request.param
    return backbone, save_with_real_parts(tmp_path_factory.mktemp(f"real-parts-{backbone}"), backbone)


@pytest.fixture(scope="module")
def real_parts_generator(real_parts_model: tuple[str, Path]) -> tuple[str, ReferenceGenerator]:
    """(backbone, the folder loaded by the project's normal path)."""
    backbone, folder = real_parts_model
    return backbone, ReferenceGenerator.from_pretrained(str(folder))


@pytest.mark.integration
def test_loaded_scheduler_has_the_real_settings(real_parts_generator: tuple[str, ReferenceGenerator]) -> None:
    """The DDIM scheduler loaded from the real config offsets its steps by 1, clips nothing, and leaves alpha_0 < 1."""
    _, generator = real_parts_generator
    config = generator.backbone.scheduler.config
    assert (config.steps_offset, config.clip_sample, config.set_alpha_to_one) == (1, False, False)
    assert (config.num_train_timesteps, config.beta_start, config.beta_end) == (1000, 0.0015, 0.0195)


@pytest.mark.integration
def test_loaded_vae_and_vocoder_are_the_real_ones(real_parts_generator: tuple[str, ReferenceGenerator]) -> None:
    """The loaded VAE has the real scale, architecture and size (and upcasts in half precision); the vocoder too."""
    backbone, generator = real_parts_generator
    vae, vocoder = generator.backbone.vae, generator.backbone.vocoder
    assert vae.config.scaling_factor == SCALING_FACTORS[backbone]
    assert (vae.config.latent_channels, plain(vae.config.block_out_channels)) == (8, [128, 256, 512])
    assert vae.config.force_upcast is True
    assert parameters(vae) == 55_376_873
    assert (vocoder.config.upsample_initial_channel, parameters(vocoder)) == (1024, 55_264_897)


@pytest.mark.integration
@pytest.mark.slow
def test_fit_with_the_real_parts_writes_the_separation(real_parts_model: tuple[str, Path], tmp_path: Path) -> None:
    """``main.py fit`` on the folder: the separation at the input's length, a reference through the real vocoder."""
    backbone, folder = real_parts_model
    run = fit(tmp_path, *tiny_args(folder, ddim_steps=3, steps_per_round=2), "--trainer.max_epochs", "1",
              "--data.num_references", "1", overlays=FIT_OVERLAYS[backbone])  # fmt: skip
    out = run / "dog-barking" / "dog-barking.wav"
    info, source = sf.info(str(out)), sf.info(str(DEMO_MIXTURE))
    assert (info.samplerate, info.channels, info.frames) == (source.samplerate, source.channels, source.frames)
    audio = sf.read(str(out), dtype="float32")[0]
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0
    (reference,) = (run / "dog-barking" / "references").glob("*.wav")
    reference_info = sf.info(str(reference))
    assert reference_info.samplerate == 16000 and reference_info.frames >= FRAMES * HOP
