"""Reference spectrograms of the queried sound (ALGORITHM.md section 2), on diffusers' parts."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from dgmo_pl.diffusion.loading import AudioLDMComponents, load_audioldm

#: Latents beyond this magnitude mean the VAE saw something off-distribution...
LATENT_ALARM = 100.0
#: ...and are then clamped to +-this, as the reference implementation does.
LATENT_CLAMP = 10.0


@dataclass(frozen=True)
class GenerationConfig:
    """How references are generated; the defaults are the paper's.

    Attributes:
        num_references: K, references per round (one VAE posterior sample each).
        ddim_steps: DDIM scheduler steps.
        noise_level: Fraction of the schedule to invert and denoise (1.0 = all the way).
        guidance_scale: Classifier-free guidance scale of the text-guided denoising.
    """

    num_references: int = 4
    ddim_steps: int = 100
    noise_level: float = 1.0
    guidance_scale: float = 5.0

    def __post_init__(self) -> None:
        if self.num_references < 1:
            raise ValueError(f"num_references must be at least 1, got {self.num_references}")
        if self.ddim_steps < 2:
            raise ValueError(f"ddim_steps must be at least 2, got {self.ddim_steps}")
        if not 0.0 < self.noise_level <= 1.0:
            raise ValueError(f"noise_level must be in (0, 1], got {self.noise_level}")
        if self.denoising_steps < 2:
            raise ValueError(
                f"noise_level {self.noise_level} x ddim_steps {self.ddim_steps} leaves fewer than 2 steps"
            )

    @property
    def denoising_steps(self) -> int:
        """Steps actually denoised (inversion makes one fewer network call)."""
        return round(self.ddim_steps * self.noise_level)


class ReferenceGenerator:
    """Turns the current estimate's log-mel into K reference log-mels of the queried sound.

    The networks are frozen: eval mode, no trainable parameters, run under ``torch.no_grad``.
    """

    def __init__(self, components: AudioLDMComponents) -> None:
        self.parts = components
        #: Show progress bars while generating; ``None``: only on a terminal.
        self.progress: bool | None = None

    def _steps(self, timesteps: torch.Tensor, desc: str) -> tqdm:
        show = sys.stderr.isatty() if self.progress is None else self.progress
        return tqdm(timesteps, desc=desc, leave=False, disable=not show)

    @classmethod
    def from_pretrained(cls, model: str, dtype: torch.dtype = torch.float32) -> "ReferenceGenerator":
        """Load from a hub id or a local diffusers folder (see :func:`load_audioldm`)."""
        return cls(load_audioldm(model, dtype))

    @property
    def device(self) -> torch.device:
        return self.parts.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.parts.unet.dtype

    def to(self, device: torch.device | str) -> "ReferenceGenerator":
        """Move the networks to ``device``."""
        for module in (self.parts.vae, self.parts.unet, self.parts.text_encoder, self.parts.vocoder):
            if module is not None:
                module.to(device)
        return self

    @staticmethod
    def check_inputs(log_mel: torch.Tensor, query: str) -> None:
        """Raise ``ValueError`` naming the first bad argument (settings check themselves)."""
        if log_mel.dim() != 4 or log_mel.shape[:2] != (1, 1):
            raise ValueError(f"log_mel must have shape [1, 1, frames, mels], got {list(log_mel.shape)}")
        if not isinstance(query, str) or not query.strip():
            raise ValueError(f"query must be a non-empty text, got {query!r}")

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """L2-normalised CLAP text embeddings, AudioLDM's ``class_labels``: ``-> [len(texts), D]``."""
        tok = self.parts.tokenizer(
            texts,
            padding="max_length",
            max_length=self.parts.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        out = self.parts.text_encoder(
            tok.input_ids.to(self.device), attention_mask=tok.attention_mask.to(self.device)
        )
        return F.normalize(out.text_embeds, dim=-1).to(self.dtype)

    @torch.no_grad()
    def encode_mel(self, log_mel: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
        """K scaled VAE posterior samples of one log-mel: ``[1, 1, T, M] -> [K, C, T/4, M/4]``."""
        posterior = self.parts.vae.encode(log_mel.to(self.device, self.dtype).expand(k, -1, -1, -1))
        latents = posterior.latent_dist.sample(generator) * self.parts.vae.config.scaling_factor
        if latents.abs().amax() > LATENT_ALARM:
            latents = latents.clamp(-LATENT_CLAMP, LATENT_CLAMP)
        return latents

    @torch.no_grad()
    def decode_mel(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents back to log-mels: ``[K, C, T/4, M/4] -> [K, 1, T, M]``."""
        return self.parts.vae.decode(latents / self.parts.vae.config.scaling_factor).sample.float()

    def _timesteps(self, config: GenerationConfig) -> torch.Tensor:
        """The last ``noise_level`` fraction of the DDIM schedule, from high to low noise."""
        self.parts.scheduler.set_timesteps(config.ddim_steps)
        return self.parts.scheduler.timesteps[-config.denoising_steps :]

    def _eps(self, latents: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.parts.unet(latents, t, encoder_hidden_states=None, class_labels=labels).sample

    @torch.no_grad()
    def invert(self, latents: torch.Tensor, timesteps: torch.Tensor, empty: torch.Tensor) -> torch.Tensor:
        """DDIM inversion with the empty prompt, up the schedule (``len(timesteps) - 1`` calls).

        The reference implementation runs both guidance branches here with the same empty
        prompt; the guided noise then equals the unguided one, so one branch is run.
        """
        alphas = self.parts.scheduler.alphas_cumprod
        stride = self.parts.scheduler.config.num_train_timesteps // self.parts.scheduler.num_inference_steps
        labels = empty.expand(latents.shape[0], -1)
        for t in self._steps(timesteps.flip(0)[1:], "DDIM inversion"):
            a_t = float(alphas[int(t)])
            a_prev = float(alphas[max(0, int(t) - stride)])
            eps = self._eps(latents, t, labels)
            clean = (latents - math.sqrt(1 - a_prev) * eps) / math.sqrt(a_prev)
            latents = math.sqrt(a_t) * clean + math.sqrt(1 - a_t) * eps
        return latents

    @torch.no_grad()
    def denoise(
        self, latents: torch.Tensor, timesteps: torch.Tensor, text: torch.Tensor, empty: torch.Tensor, scale: float
    ) -> torch.Tensor:
        """Text-guided DDIM denoising (eta 0) with classifier-free guidance, down the schedule."""
        k = latents.shape[0]
        guided = scale > 1.0
        labels = torch.cat([empty.expand(k, -1), text.expand(k, -1)]) if guided else text.expand(k, -1)
        for t in self._steps(timesteps, "guided DDIM denoising"):
            model_in = torch.cat([latents, latents]) if guided else latents
            eps = self._eps(model_in, t, labels)
            if guided:
                uncond, cond = eps.chunk(2)
                eps = uncond + scale * (cond - uncond)
            latents = self.parts.scheduler.step(eps, t, latents, eta=0.0).prev_sample
        return latents

    @torch.no_grad()
    def __call__(
        self,
        log_mel: torch.Tensor,
        query: str,
        config: GenerationConfig = GenerationConfig(),
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Generate K references of ``query`` from the estimate's log-mel.

        Args:
            log_mel: Log-mel of the current estimate in diffusion layout, ``[1, 1, T, M]``.
            query: Text naming the sound to separate.
            config: Generation settings.
            generator: Seeds the VAE posterior samples (the only randomness).

        Returns:
            Reference log-mels ``[K, 1, T, M]``, float32.
        """
        self.check_inputs(log_mel, query)
        # 1. Text conditions: the query, and the empty prompt for inversion and guidance.
        text, empty = self.encode_text([query, ""]).chunk(2)
        # 2. One VAE posterior sample per reference, all references in one batch.
        latents = self.encode_mel(log_mel, config.num_references, generator)
        # 3. DDIM inversion with the empty prompt.
        timesteps = self._timesteps(config)
        latents = self.invert(latents, timesteps, empty)
        # 4. Text-guided DDIM denoising.
        latents = self.denoise(latents, timesteps, text, empty, config.guidance_scale)
        # 5. Back to log-mels.
        return self.decode_mel(latents)

    @torch.no_grad()
    def vocode(self, log_mels: torch.Tensor) -> torch.Tensor | None:
        """Waveforms of log-mels with the model's vocoder, or ``None`` without one: ``[K, 1, T, M] -> [K, N]``."""
        if self.parts.vocoder is None:
            return None
        return self.parts.vocoder(log_mels.squeeze(1).to(self.device, self.dtype)).float()
