"""Auffusion: Stable Diffusion's UNet over spectrogram images, conditioned on CLIP text tokens (ALGORITHM.md 1-2)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from transformers import CLIPTextModel, PreTrainedTokenizerBase

from dgmo_pl.audio.frontend import SpectrogramConfig, from_model_layout
from dgmo_pl.diffusion.backbones.auffusion_parts import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    CONDITION_CONFIG,
    ConditionAdapter,
    ConditionEntry,
    model_file,
    parse_condition_config,
)
from dgmo_pl.diffusion.backbones.base import Backbone, Condition
from dgmo_pl.diffusion.backbones.hifigan import CONFIG_NAME, WEIGHTS_NAME, HifiGan
from dgmo_pl.diffusion.loading import (
    LOAD_ERRORS,
    ModelLoadError,
    advice,
    check_model_folder,
    has_part,
    load_error,
    load_part,
    load_tokenizer,
    pipeline_name,
)


class Auffusion(Backbone):
    """Auffusion: ``auffusion/auffusion``, ``auffusion/auffusion-full``.

    The front end is Auffusion's: n_fft 2048, window 1024, hop 160, 256 mel bins, the log-mel
    rescaled to [0, 1] between log(1e-5) and log(200) and flipped into an image ``[1, 256, 1024]``
    that the VAE sees as 3 identical channels in [-1, 1]. Each condition of
    ``condition_config.json`` (one CLIP text encoder in the released models) encodes the prompt
    with no padding; its hidden states are zero-padded (or cropped) to ``condition_max_length``
    tokens and mapped by its adapter to the UNet's cross-attention width; the conditions are
    joined along the tokens. The unconditional branch is all zeros, as in Auffusion's pipeline
    and the DGMO authors' code. The vocoder is Auffusion's HiFi-GAN on the un-flipped log-mel.
    """

    spec: ClassVar[SpectrogramConfig] = SpectrogramConfig(
        n_fft=2048, win_length=1024, hop_length=160, n_mels=256, layout="image", image_max=200.0
    )
    #: Auffusion's own pipeline class; a folder indexed as Stable Diffusion loads when it has
    #: Auffusion's ``condition_config.json``.
    pipelines: ClassVar[tuple[str, ...]] = ("AuffusionPipeline", "StableDiffusionPipeline")
    hub_pattern: ClassVar[str] = r"auffusion/auffusion(-full)?"

    @classmethod
    def accepts_folder(cls, model: str) -> bool:
        """A plain Stable Diffusion folder is not Auffusion's: only one with its ``condition_config.json``."""
        return pipeline_name(model) != "StableDiffusionPipeline" or (Path(model) / "condition_config.json").is_file()

    def __init__(self) -> None:
        super().__init__()
        self.condition_entries: list[ConditionEntry] = []
        self.tokenizers: list[PreTrainedTokenizerBase] = []
        self.text_encoders: list[CLIPTextModel] = []
        self.adapters: list[ConditionAdapter] = []

    # --- loading ---------------------------------------------------------------------------

    def load(self, model: str, dtype: torch.dtype = torch.float32) -> None:
        """Load Auffusion's components from ``model`` (see :meth:`Backbone.load`)."""
        check_model_folder(model, self.name, self.pipelines)
        self.condition_entries = self._read_conditions(model)
        self.vae = self._load_vae(model, dtype)
        self.unet = load_part(
            UNet2DConditionModel, model, "unet", self.name, torch_dtype=dtype, low_cpu_mem_usage=False
        )
        self.tokenizers = [load_tokenizer(model, c.text_encoder, self.name) for c in self.condition_entries]
        self.text_encoders = [
            load_part(CLIPTextModel, model, c.text_encoder, self.name, dtype=dtype) for c in self.condition_entries
        ]
        self.adapters = [self._load_adapter(model, c.adapter).to(dtype) for c in self.condition_entries]
        self._check_widths(model)
        self.vocoder = self._load_vocoder(model).to(dtype) if has_part(model, "vocoder") else None
        self._finish_loading(model)

    def _read_conditions(self, model: str) -> list[ConditionEntry]:
        """The conditions of ``condition_config.json``, or a :class:`ModelLoadError` that says what to do."""
        try:
            return parse_condition_config(model_file(model, CONDITION_CONFIG).read_text())
        except LOAD_ERRORS as err:
            if isinstance(err, FileNotFoundError) and pipeline_name(model) == "StableDiffusionPipeline":
                raise ModelLoadError(
                    f"model folder '{model}' is a Stable Diffusion model without Auffusion's {CONDITION_CONFIG}: "
                    "pass an Auffusion folder (e.g. a download of auffusion/auffusion) with --data.model"
                ) from None
            raise load_error(model, CONDITION_CONFIG, self.name, err) from None

    def _load_adapter(self, model: str, subfolder: str) -> ConditionAdapter:
        try:
            config = model_file(model, f"{subfolder}/{ADAPTER_CONFIG}")
            return ConditionAdapter.from_files(config, model_file(model, f"{subfolder}/{ADAPTER_WEIGHTS}"))
        except LOAD_ERRORS as err:
            raise load_error(model, subfolder, self.name, err) from None

    def _load_vocoder(self, model: str) -> HifiGan:
        try:
            config = model_file(model, f"vocoder/{CONFIG_NAME}")
            return HifiGan.from_files(config, model_file(model, f"vocoder/{WEIGHTS_NAME}"))
        except LOAD_ERRORS as err:
            raise load_error(model, "vocoder", self.name, err) from None

    def _check_widths(self, model: str) -> None:
        """Each adapter must fit its text encoder's width and the UNet's cross-attention width."""
        target = self.unet.config.cross_attention_dim
        for entry, encoder, adapter in zip(self.condition_entries, self.text_encoders, self.adapters, strict=True):
            into, out = adapter.config["condition_dim"], adapter.config["cross_attention_dim"]
            if into != encoder.config.hidden_size or out != target:
                raise ModelLoadError(
                    f"the '{entry.adapter}' of {self.name} model '{model}' maps width {into} to {out}, but its text "
                    f"encoder '{entry.text_encoder}' is {encoder.config.hidden_size} wide and the UNet attends to "
                    f"width {target}: the folder mixes parts of different models; {advice(model)}"
                )

    def networks(self) -> list[torch.nn.Module]:
        """The VAE, UNet, text encoders, adapters and vocoder."""
        parts = [self.vae, self.unet, *self.text_encoders, *self.adapters, self.vocoder]
        return [m for m in parts if m is not None]

    # --- conditioning ----------------------------------------------------------------------

    @property
    def condition_shape(self) -> tuple[int, int]:
        """``(tokens, width)`` of one prompt's condition: all conditions' tokens, the UNet's width."""
        return sum(c.max_length for c in self.condition_entries), self.unet.config.cross_attention_dim

    def _embed(self, text: str) -> torch.Tensor:
        """One prompt's condition, as Auffusion's pipeline encodes it: ``-> [1, tokens, width]``."""
        parts = []
        stages = zip(self.condition_entries, self.tokenizers, self.text_encoders, self.adapters, strict=True)
        for entry, tokenizer, encoder, adapter in stages:
            # No padding: the encoder sees the prompt's own tokens; its output is padded with zeros.
            # Truncation only stops prompts longer than the encoder's positions (Auffusion's own
            # pipeline fails on them).
            ids = tokenizer(
                text, truncation=True, max_length=encoder.config.max_position_embeddings, return_tensors="pt"
            ).input_ids  # fmt: skip
            hidden = encoder(ids.to(encoder.device)).last_hidden_state[:, : entry.max_length]
            hidden = F.pad(hidden, (0, 0, 0, entry.max_length - hidden.shape[1]))
            parts.append(adapter(hidden.to(adapter.proj.weight.dtype)))
        return torch.cat(parts, dim=1).float()

    def encode_prompts(self, texts: list[str]) -> tuple[Condition, Condition]:
        """``encoder_hidden_states`` of ``texts`` ``[len(texts), tokens, width]`` and of the unconditional ``[1, ...]``.

        The unconditional condition is all zeros, not an encoded empty prompt: Auffusion's
        pipeline and the DGMO authors' code guide against zeros, and invert with them.
        """
        self.check_loaded()
        shape, device = self.condition_shape, self.unet.device
        embeds = torch.cat([self._embed(t) for t in texts]) if texts else torch.zeros(0, *shape, device=device)
        return {"encoder_hidden_states": embeds}, {"encoder_hidden_states": torch.zeros(1, *shape, device=device)}

    # --- layouts and vocoder ---------------------------------------------------------------

    def vae_input(self, layout: torch.Tensor) -> torch.Tensor:
        """The [0, 1] spectrogram image as the VAE's RGB input in [-1, 1]: ``[B, 1, H, W] -> [B, 3, H, W]``."""
        return layout.expand(-1, 3, -1, -1) * 2 - 1

    def vae_output(self, decoded: torch.Tensor) -> torch.Tensor:
        """The decoded RGB image back to the [0, 1] layout (its first channel): ``[B, 3, H, W] -> [B, 1, H, W]``."""
        return (decoded[:, :1] / 2 + 0.5).clamp(0, 1)

    def vocode(self, layout: torch.Tensor) -> torch.Tensor | None:
        """Waveforms of spectrogram images, or ``None`` without a vocoder: ``[K, 1, 256, T] -> [K, 160 T]``."""
        if self.vocoder is None:
            return None
        log_mel = from_model_layout(layout.float(), self.spec)
        return self.vocoder(log_mel.to(self.vocoder.dtype)).squeeze(1).float()
