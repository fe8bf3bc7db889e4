"""AudioLDM (v1), every size: CLAP text embedding as the UNet's class label (ALGORITHM.md sections 1-2)."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from transformers import ClapTextModelWithProjection, PreTrainedTokenizerBase, SpeechT5HifiGan

from dgmo_pl.audio.frontend import SpectrogramConfig
from dgmo_pl.diffusion.backbones.base import Backbone, Condition
from dgmo_pl.diffusion.loading import check_model_folder, has_part, load_part, load_tokenizer


class AudioLDM(Backbone):
    """AudioLDM: ``cvssp/audioldm``, ``audioldm-s-full-v2``, ``audioldm-m-full``, ``audioldm-l-full``.

    The sizes share the front end (16 kHz, 64 mel bins, time-major ``[1, 1024, 64]``), the VAE,
    the CLAP text tower and the vocoder; only the UNet's size differs, and it is read from the
    model's own config. The UNet is conditioned through ``class_labels`` = the L2-normalised CLAP
    text embedding, with no cross-attention to text tokens; the empty prompt's embedding is the
    unconditional branch.
    """

    spec: ClassVar[SpectrogramConfig] = SpectrogramConfig()
    pipelines: ClassVar[tuple[str, ...]] = ("AudioLDMPipeline",)
    hub_pattern: ClassVar[str] = r"cvssp/audioldm(-[a-z0-9-]+)?"
    unet_kwargs: ClassVar[dict] = {"encoder_hidden_states": None}

    def __init__(self) -> None:
        super().__init__()
        self.text_encoder: ClapTextModelWithProjection | None = None
        self.tokenizer: PreTrainedTokenizerBase | None = None

    def load(self, model: str, dtype: torch.dtype = torch.float32) -> None:
        """Load AudioLDM's components from ``model`` (see :meth:`Backbone.load`)."""
        check_model_folder(model, self.name, self.pipelines)
        self.tokenizer = load_tokenizer(model, "tokenizer", self.name)
        self.vae = self._load_vae(model, dtype)
        self.unet = load_part(
            UNet2DConditionModel, model, "unet", self.name, torch_dtype=dtype, low_cpu_mem_usage=False
        )
        self.text_encoder = load_part(ClapTextModelWithProjection, model, "text_encoder", self.name, dtype=dtype)
        if has_part(model, "vocoder"):
            self.vocoder = load_part(SpeechT5HifiGan, model, "vocoder", self.name, dtype=dtype)
        self._finish_loading(model)

    def networks(self) -> list[torch.nn.Module]:
        """The VAE, UNet, CLAP text tower and vocoder."""
        return [m for m in (self.vae, self.unet, self.text_encoder, self.vocoder) if m is not None]

    def _clap(self, texts: list[str]) -> torch.Tensor:
        """L2-normalised CLAP text embeddings: ``-> [len(texts), D]``."""
        tok = self.tokenizer(
            texts, padding="max_length", max_length=self.tokenizer.model_max_length, truncation=True,
            return_tensors="pt",
        )  # fmt: skip
        device = self.text_encoder.device
        out = self.text_encoder(tok.input_ids.to(device), attention_mask=tok.attention_mask.to(device))
        return F.normalize(out.text_embeds.float(), dim=-1)

    def encode_prompts(self, texts: list[str]) -> tuple[Condition, Condition]:
        """L2-normalised CLAP embeddings as ``class_labels`` (see :meth:`Backbone.encode_prompts`)."""
        embeds = self._clap([*texts, ""])
        return {"class_labels": embeds[:-1]}, {"class_labels": embeds[-1:]}

    def vocode(self, layout: torch.Tensor) -> torch.Tensor | None:
        """HiFi-GAN waveforms of time-major log-mels (see :meth:`Backbone.vocode`)."""
        if self.vocoder is None:
            return None
        return self.vocoder(layout.squeeze(1).to(self.vocoder.dtype)).float()
