"""AudioLDM 2, every size: GPT-2-generated and FLAN-T5 token sequences as the UNet's cross-attention."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from diffusers import AudioLDM2Pipeline
from diffusers.pipelines.audioldm2 import AudioLDM2ProjectionModel, AudioLDM2UNet2DConditionModel
from transformers import ClapModel, GPT2LMHeadModel, PreTrainedTokenizerBase, SpeechT5HifiGan, T5EncoderModel

from dgmo_pl.audio.frontend import SpectrogramConfig
from dgmo_pl.diffusion.backbones.base import Backbone, Condition, cat_conditions, map_condition
from dgmo_pl.diffusion.loading import check_model_folder, has_part, load_part, load_tokenizer

#: The UNet keywords of the three tensors a prompt becomes, in the order ``encode_prompt`` returns
#: them: T5 token embeddings ``[B, L, 1024]``, their attention mask ``[B, L]`` (integer), and the
#: GPT-2-generated vectors ``[B, 8, 768]``.
CONDITION_KEYS = ("encoder_hidden_states_1", "encoder_attention_mask_1", "encoder_hidden_states")


class AudioLDM2(Backbone):
    """AudioLDM 2: ``cvssp/audioldm2``, ``audioldm2-large``, ``audioldm2-music``.

    The front end, the VAE and the vocoder are AudioLDM's (16 kHz, 64 mel bins, time-major
    ``[1, 1024, 64]``). A prompt is encoded by CLAP and FLAN-T5, projected, and continued by a
    GPT-2 for 8 vectors; the UNet cross-attends to those vectors and to the T5 tokens. The text
    conditioning is the model's own: :meth:`encode_prompts` calls the diffusers
    ``AudioLDM2Pipeline.encode_prompt`` on the loaded components, so a query's condition is
    exactly the one the pipeline generates that prompt with. The empty prompt (inversion, and
    the unconditional branch of guidance) is the pipeline's encoding of ``""`` itself; the
    pipeline's default negative differs slightly, as it depends on the prompt's length (see
    :meth:`encode_prompts`).
    """

    spec: ClassVar[SpectrogramConfig] = SpectrogramConfig()
    pipelines: ClassVar[tuple[str, ...]] = ("AudioLDM2Pipeline",)
    hub_pattern: ClassVar[str] = r"cvssp/audioldm2(-[a-z0-9-]+)?"

    def __init__(self) -> None:
        super().__init__()
        self.text_encoder: ClapModel | None = None
        self.text_encoder_2: T5EncoderModel | None = None
        self.projection_model: AudioLDM2ProjectionModel | None = None
        self.language_model: GPT2LMHeadModel | None = None
        self.tokenizer: PreTrainedTokenizerBase | None = None
        self.tokenizer_2: PreTrainedTokenizerBase | None = None
        self._pipeline: AudioLDM2Pipeline | None = None

    def load(self, model: str, dtype: torch.dtype = torch.float32) -> None:
        """Load AudioLDM 2's components from ``model`` (see :meth:`Backbone.load`)."""
        check_model_folder(model, self.name, self.pipelines)
        self.tokenizer = load_tokenizer(model, "tokenizer", self.name)
        self.tokenizer_2 = load_tokenizer(model, "tokenizer_2", self.name)
        as_dtype = {"torch_dtype": dtype, "low_cpu_mem_usage": False}
        self.vae = self._load_vae(model, dtype)
        self.unet = load_part(AudioLDM2UNet2DConditionModel, model, "unet", self.name, **as_dtype)
        self.projection_model = load_part(AudioLDM2ProjectionModel, model, "projection_model", self.name, **as_dtype)
        self.text_encoder = load_part(ClapModel, model, "text_encoder", self.name, dtype=dtype)
        self.text_encoder_2 = load_part(T5EncoderModel, model, "text_encoder_2", self.name, dtype=dtype)
        # The hub's index names a GPT2Model, which cannot generate in transformers 5; the same
        # weights load into the LM-head model (its head is tied to the input embedding).
        self.language_model = load_part(GPT2LMHeadModel, model, "language_model", self.name, dtype=dtype)
        if has_part(model, "vocoder"):
            self.vocoder = load_part(SpeechT5HifiGan, model, "vocoder", self.name, dtype=dtype)
        self._finish_loading(model)
        self._pipeline = None

    def networks(self) -> list[torch.nn.Module]:
        """Every network of the AudioLDM 2 pipeline that runs."""
        parts = (
            self.vae, self.unet, self.text_encoder, self.text_encoder_2, self.projection_model, self.language_model,
            self.vocoder,
        )  # fmt: skip
        return [m for m in parts if m is not None]

    def pipeline(self) -> AudioLDM2Pipeline:
        """The diffusers pipeline over the loaded components (built once; shares their weights)."""
        self.check_loaded()
        if self._pipeline is None:
            self._pipeline = AudioLDM2Pipeline(
                vae=self.vae, text_encoder=self.text_encoder, text_encoder_2=self.text_encoder_2,
                projection_model=self.projection_model, language_model=self.language_model,
                tokenizer=self.tokenizer, tokenizer_2=self.tokenizer_2, feature_extractor=None,
                unet=self.unet, scheduler=self.scheduler, vocoder=self.vocoder,
            )  # fmt: skip
            self._pipeline.set_progress_bar_config(disable=True)
        return self._pipeline

    def _encode(self, text: str) -> Condition:
        """The pipeline's own encoding of ``text`` alone (no guidance): ``[1, ...]``, T5 length its own."""
        out = self.pipeline().encode_prompt(
            [text], self.unet.device, num_waveforms_per_prompt=1, do_classifier_free_guidance=False
        )
        return dict(zip(CONDITION_KEYS, out, strict=False))

    def encode_prompts(self, texts: list[str]) -> tuple[Condition, Condition]:
        """The conditions of ``texts`` ``[N, ...]`` and of the empty prompt ``[1, ...]``.

        Keys: ``encoder_hidden_states`` (GPT-2 vectors) ``[., 8, 768]``, ``encoder_hidden_states_1``
        (T5 tokens) ``[., L, 1024]`` and ``encoder_attention_mask_1`` ``[., L]`` (integer). With
        ``texts == []`` (inversion) the conditions have batch 0.

        Each text, and the empty prompt, is encoded on its own by the pipeline's ``encode_prompt``;
        only then are the T5 tokens padded to one length ``L`` with masked zeros, which the UNet's
        cross-attention ignores. Encoding them together would pad the T5 tokens before the GPT-2
        continues them, and the GPT-2 vectors depend on that padding (its positions shift): a
        query's condition would change with the queries it is batched with, and the empty
        prompt's (the pipeline's default negative) with the length of the prompt it guides. So the
        empty prompt is the same in inversion and in every guided denoising.
        """
        self.check_loaded()
        encoded = [self._encode(text) for text in [*texts, ""]]
        length = max(c["encoder_hidden_states_1"].shape[1] for c in encoded)
        *conditions, empty = (_pad_tokens(c, length) for c in encoded)
        if not conditions:
            return map_condition(lambda v: v[:0], empty), empty
        return cat_conditions(*conditions), empty

    def vocode(self, layout: torch.Tensor) -> torch.Tensor | None:
        """HiFi-GAN waveforms of time-major log-mels (see :meth:`Backbone.vocode`)."""
        if self.vocoder is None:
            return None
        return self.vocoder(layout.squeeze(1).to(self.vocoder.dtype)).float()


def _pad_tokens(condition: Condition, length: int) -> Condition:
    """T5 tokens padded to ``length`` with masked-out zeros: ``[B, L, D], [B, L] -> [B, length, D], [B, length]``."""
    extra = length - condition["encoder_hidden_states_1"].shape[1]
    return {
        **condition,
        "encoder_hidden_states_1": F.pad(condition["encoder_hidden_states_1"], (0, 0, 0, extra)),
        "encoder_attention_mask_1": F.pad(condition["encoder_attention_mask_1"], (0, extra)),
    }
