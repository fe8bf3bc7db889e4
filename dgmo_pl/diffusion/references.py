"""Reference spectrograms of the queried sound (ALGORITHM.md section 2), written once for every backbone."""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from diffusers import DDIMScheduler
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0
from tqdm.auto import tqdm

from dgmo_pl.diffusion.backbones import Backbone, Condition, cat_conditions, load_backbone, map_condition

#: Latents beyond this magnitude mean the VAE saw something off-distribution...
LATENT_ALARM = 100.0
#: ...and are then clamped to +-this, as the reference implementation does.
LATENT_CLAMP = 10.0

#: How the diffusion networks run, in Lightning's names: "-true" casts the weights, "-mixed"
#: keeps fp32 weights under ``torch.autocast``. The DDIM arithmetic is fp32 in every mode.
Precision = Literal["32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true"]
#: Attention kernels: PyTorch's fused scaled-dot-product attention, or the plain matmul-softmax.
Attention = Literal["sdpa", "eager"]
#: Which ``steps_offset`` places the guided denoising's timesteps. "zero": the authors' code, which
#: denoises on the schedule computed with offset 0 (t = 990, 980, ..., 0 at 100 steps) whatever the
#: model's scheduler says, while its inversion keeps the model's offset (t = 11, 21, ..., 991 with
#: the real checkpoints' offset 1). "scheduler": the model's own offset for both, so the denoising
#: walks back down exactly the levels the inversion went up (991, ..., 1); a change from the paper.
DenoisingOffset = Literal["zero", "scheduler"]
_DTYPES = {"32": torch.float32, "bf16": torch.bfloat16, "16": torch.float16}


@dataclass(frozen=True)
class GenerationConfig:
    """How references are generated; the defaults are the paper's.

    Attributes:
        num_references: K, references per round (one VAE posterior sample each).
        ddim_steps: DDIM scheduler steps.
        noise_level: Fraction of the schedule to invert and denoise (1.0 = all the way).
        guidance_scale: Classifier-free guidance scale of the text-guided denoising.
        denoising_offset: Where the denoising's timesteps lie (see :data:`DenoisingOffset`).
    """

    num_references: int = 4
    ddim_steps: int = 100
    noise_level: float = 1.0
    guidance_scale: float = 5.0
    denoising_offset: DenoisingOffset = "zero"

    def __post_init__(self) -> None:
        if self.num_references < 1:
            raise ValueError(f"num_references must be at least 1, got {self.num_references}")
        if self.ddim_steps < 2:
            raise ValueError(f"ddim_steps must be at least 2, got {self.ddim_steps}")
        if not 0.0 < self.noise_level <= 1.0:
            raise ValueError(f"noise_level must be in (0, 1], got {self.noise_level}")
        if not (math.isfinite(self.guidance_scale) and self.guidance_scale >= 0):
            raise ValueError(f"guidance_scale must be a finite number, 0 or more, got {self.guidance_scale}")
        if self.denoising_offset not in get_args(DenoisingOffset):
            raise ValueError(
                f"denoising_offset must be one of {', '.join(get_args(DenoisingOffset))}, got {self.denoising_offset!r}"
            )
        if self.denoising_steps < 2:
            raise ValueError(
                f"noise_level {self.noise_level} x ddim_steps {self.ddim_steps} leaves fewer than 2 steps"
            )

    @property
    def denoising_steps(self) -> int:
        """Steps actually denoised (inversion makes one fewer network call).

        Truncated, as the authors' code does (``int(0.29 * 100)`` is 28).
        """
        return int(self.ddim_steps * self.noise_level)


class ReferenceGenerator:
    """Turns the current estimate's log-mel into K reference log-mels of each queried sound.

    The DDIM inversion and the guided denoising are the same for every backbone; what differs
    between models (text conditioning, layouts, vocoder) is behind :class:`Backbone`. Log-mels are
    in the backbone's layout (``spec.layout``): ``[., 1, H, W]``. The networks are frozen: eval
    mode, no trainable parameters, run under ``torch.no_grad``.
    Batches of K references x queries x guidance branches go through the UNet together, in
    calls of at most ``max_batch`` samples.

    Args:
        backbone: The loaded diffusion model.
        precision: How the networks run (see :data:`Precision`); the sampler stays fp32.
        attention: Attention kernel of the UNet (see :data:`Attention`).
        compile: Run the UNet through ``torch.compile``.
        max_batch: Most samples per network call (``None``: no bound); bounds peak memory.
    """

    def __init__(
        self,
        backbone: Backbone,
        precision: Precision = "32-true",
        attention: Attention = "sdpa",
        compile: bool = False,
        max_batch: int | None = None,
    ) -> None:
        self.check_runtime(precision, attention, max_batch)
        backbone.check_loaded()
        self.backbone = backbone
        self.precision, self.attention, self.compiled, self.max_batch = precision, attention, compile, max_batch
        #: Show progress bars while generating; ``None``: only on a terminal.
        self.progress: bool | None = None
        kind, mode = precision.split("-")
        self._autocast_dtype = _DTYPES[kind] if mode == "mixed" else None
        if self.weights_dtype(precision) != self.dtype:
            self._cast_networks(self.weights_dtype(precision))
        backbone.unet.set_attn_processor(AttnProcessor2_0() if attention == "sdpa" else AttnProcessor())
        backbone.denoiser = torch.compile(backbone.unet) if compile else backbone.unet

    @staticmethod
    def check_runtime(precision: str, attention: str, max_batch: int | None) -> None:
        """Raise ``ValueError`` naming a runtime setting that does not exist."""
        if precision not in get_args(Precision):
            raise ValueError(f"precision must be one of {', '.join(get_args(Precision))}, got {precision!r}")
        if attention not in get_args(Attention):
            raise ValueError(f"attention must be one of {', '.join(get_args(Attention))}, got {attention!r}")
        if max_batch is not None and max_batch < 1:
            raise ValueError(f"max_batch must be at least 1 (or None for no bound), got {max_batch}")

    @staticmethod
    def weights_dtype(precision: str) -> torch.dtype:
        """The networks' weights dtype under ``precision`` (fp32 unless "-true")."""
        kind, mode = precision.split("-")
        return _DTYPES[kind] if mode == "true" else torch.float32

    @classmethod
    def from_pretrained(
        cls, model: str, backbone: Backbone | None = None, precision: Precision = "32-true", **runtime: object
    ) -> ReferenceGenerator:
        """Load from a hub id or a local diffusers folder (see :func:`~dgmo_pl.diffusion.backbones.load_backbone`).

        Args:
            model: Hub id or folder.
            backbone: The model's backbone (``None``: inferred from ``model``).
            precision: How the networks run (weights are loaded in their dtype).
            **runtime: The constructor's other runtime settings (attention, compile, max_batch).
        """
        return cls(load_backbone(model, backbone, cls.weights_dtype(precision)), precision, **runtime)

    @property
    def device(self) -> torch.device:
        """The networks' device."""
        return self.backbone.unet.device

    @property
    def dtype(self) -> torch.dtype:
        """The networks' weights dtype."""
        return self.backbone.unet.dtype

    @property
    def numerics(self) -> dict[str, object]:
        """The runtime settings that can change the references' values (not ``max_batch``)."""
        return {"precision": self.precision, "attention": self.attention, "compile": self.compiled}

    @property
    def vae_in_fp32(self) -> bool:
        """Whether the VAE's config asks for fp32 (``force_upcast``).

        AudioLDM 2's real config says so, and it is diffusers' default: in every 16-bit mode such a
        VAE keeps fp32 weights and runs outside autocast.
        """
        return bool(getattr(self.backbone.vae.config, "force_upcast", False))

    def _cast_networks(self, dtype: torch.dtype) -> None:
        for module in self.backbone.networks():
            if not (module is self.backbone.vae and self.vae_in_fp32):
                module.to(dtype=dtype)

    def to(self, device: torch.device | str) -> ReferenceGenerator:
        """Move the networks to ``device``."""
        for module in self.backbone.networks():
            module.to(device)
        return self

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self._autocast_dtype)

    def _vae_autocast(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext() if self.vae_in_fp32 else self._autocast()

    def _steps(self, timesteps: torch.Tensor, desc: str) -> tqdm:
        show = sys.stderr.isatty() if self.progress is None else self.progress
        return tqdm(timesteps, desc=desc, leave=False, disable=not show)

    def _chunks(self, *tensors: torch.Tensor) -> Iterator[tuple[torch.Tensor, ...]]:
        """The tensors cut along the batch into pieces of at most ``max_batch``."""
        size = self.max_batch or tensors[0].shape[0]
        yield from zip(*(t.split(size) for t in tensors), strict=True)

    def _cast(self, value: torch.Tensor) -> torch.Tensor:
        """Floating tensors to the networks' dtype; others (attention masks) as they are."""
        return value.to(self.dtype) if value.is_floating_point() else value

    @staticmethod
    def check_inputs(log_mel: torch.Tensor, queries: str | list[str]) -> None:
        """Raise ``ValueError`` naming the first bad argument (settings check themselves)."""
        if log_mel.dim() != 4 or log_mel.shape[:2] != (1, 1):
            raise ValueError(f"log_mel must have shape [1, 1, H, W] (the backbone's layout), got {list(log_mel.shape)}")
        for query in [queries] if isinstance(queries, str) else queries or [None]:
            if not isinstance(query, str) or not query.strip():
                raise ValueError(f"each query must be a non-empty text, got {query!r}")

    @torch.no_grad()
    def conditions(self, texts: list[str]) -> tuple[Condition, Condition]:
        """The backbone's conditions of ``texts`` ``[len(texts), ...]`` and of the empty prompt ``[1, ...]``."""
        with self._autocast():
            return self.backbone.encode_prompts(texts)

    @torch.no_grad()
    def encode_mel(self, log_mel: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
        """K scaled VAE posterior samples of one log-mel, fp32: ``[1, 1, H, W] -> [K, C, H/f, W/f]``."""
        image = self.backbone.vae_input(log_mel.to(self.device, self.backbone.vae.dtype))
        with self._vae_autocast():
            posterior = self.backbone.vae.encode(image).latent_dist
        # Sampled in fp32 on the CPU generator, so a seed gives the same noise on every device.
        mean, std = posterior.mean.float(), posterior.std.float()
        noise = torch.randn((k, *mean.shape[1:]), generator=generator).to(mean.device)
        latents = (mean + std * noise) * self.backbone.vae.config.scaling_factor
        if latents.abs().amax() > LATENT_ALARM:
            latents = latents.clamp(-LATENT_CLAMP, LATENT_CLAMP)
        return latents

    @torch.no_grad()
    def decode_mel(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents back to log-mels in the backbone's layout, fp32: ``[N, C, H/f, W/f] -> [N, 1, H, W]``."""
        scaled = (latents / self.backbone.vae.config.scaling_factor).to(self.backbone.vae.dtype)
        with self._vae_autocast():
            vae, chunks = self.backbone.vae, self._chunks(scaled)
            decoded = [self.backbone.vae_output(vae.decode(z).sample.float()) for (z,) in chunks]
        return torch.cat(decoded).float()

    def inversion_timesteps(self, config: GenerationConfig) -> torch.Tensor:
        """The last ``noise_level`` fraction of the model's DDIM schedule, high to low noise.

        :meth:`invert` goes up these levels from the lowest, calling the network at all but it
        (t = 11, 21, ..., 991 at 100 steps with ``steps_offset`` 1). Also sets the backbone
        scheduler's step count, which its ``step`` and :meth:`invert` read.
        """
        self.backbone.scheduler.set_timesteps(config.ddim_steps)
        return self.backbone.scheduler.timesteps[-config.denoising_steps :]

    def denoising_scheduler(self, config: GenerationConfig) -> DDIMScheduler:
        """A new DDIM scheduler for the guided denoising, its timesteps set (see :data:`DenoisingOffset`).

        The authors' code sets ``steps_offset`` to 0 on the model's scheduler around its
        denoising; here a copy is made instead, so the backbone's scheduler is never changed.
        """
        offset = 0 if config.denoising_offset == "zero" else self.backbone.scheduler.config.steps_offset
        scheduler = DDIMScheduler.from_config(self.backbone.scheduler.config, steps_offset=offset)
        scheduler.set_timesteps(config.ddim_steps)
        return scheduler

    def denoising_timesteps(self, config: GenerationConfig) -> torch.Tensor:
        """The timesteps of the guided denoising, high to low (t = 990, ..., 0 at 100 steps by default)."""
        return self.denoising_scheduler(config).timesteps[-config.denoising_steps :]

    def _eps(self, latents: torch.Tensor, t: torch.Tensor, condition: Condition) -> torch.Tensor:
        """Predicted noise, fp32, in network calls of at most ``max_batch`` samples: ``[N, C, H, W]``."""
        names = list(condition)
        out = []
        with self._autocast():
            for z, *values in self._chunks(latents.to(self.dtype), *(self._cast(condition[n]) for n in names)):
                out.append(self.backbone.predict_noise(z, t, dict(zip(names, values, strict=True))).float())
        return torch.cat(out)

    @torch.no_grad()
    def invert(
        self, latents: torch.Tensor, timesteps: torch.Tensor, empty: Condition, desc: str = "DDIM inversion"
    ) -> torch.Tensor:
        """DDIM inversion with the empty prompt, up the schedule (``len(timesteps) - 1`` calls).

        The reference implementation runs both guidance branches here with the same empty
        prompt; the guided noise then equals the unguided one, so one branch is run.
        """
        scheduler = self.backbone.scheduler
        alphas = scheduler.alphas_cumprod
        stride = scheduler.config.num_train_timesteps // scheduler.num_inference_steps
        labels = _expand(empty, latents.shape[0])
        latents = latents.float()
        for t in self._steps(timesteps.flip(0)[1:], desc):
            a_t = float(alphas[int(t)])
            a_prev = float(alphas[max(0, int(t) - stride)])
            eps = self._eps(latents, t, labels)
            clean = (latents - math.sqrt(1 - a_prev) * eps) / math.sqrt(a_prev)
            latents = math.sqrt(a_t) * clean + math.sqrt(1 - a_t) * eps
        return latents

    @torch.no_grad()
    def denoise(
        self,
        latents: torch.Tensor,
        timesteps: torch.Tensor,
        text: Condition,
        empty: Condition,
        scale: float,
        desc: str = "guided DDIM denoising",
        scheduler: DDIMScheduler | None = None,
    ) -> torch.Tensor:
        """Text-guided DDIM denoising (eta 0) with classifier-free guidance, down the schedule.

        Args:
            latents: Inverted latents, ``[N, C, H, W]``.
            timesteps: The schedule, high to low noise.
            text: Text condition of each sample, ``[N, ...]`` (or ``[1, ...]`` for all).
            empty: The empty prompt's condition, ``[1, ...]``.
            scale: Guidance scale (at most 1: the text branch alone).
            desc: Progress bar label.
            scheduler: The DDIM scheduler that steps, its step count set (``None``: the backbone's,
                as :meth:`inversion_timesteps` set it).
        """
        scheduler = scheduler if scheduler is not None else self.backbone.scheduler
        n = latents.shape[0]
        guided = scale > 1.0
        text = _expand(text, n)
        labels = cat_conditions(_expand(empty, n), text) if guided else text
        latents = latents.float()
        for t in self._steps(timesteps, desc):
            eps = self._eps(torch.cat([latents, latents]) if guided else latents, t, labels)
            if guided:
                uncond, cond = eps.chunk(2)
                eps = uncond + scale * (cond - uncond)
            latents = scheduler.step(eps, t, latents, eta=0.0).prev_sample
        return latents

    @torch.no_grad()
    def invert_estimate(
        self, log_mel: torch.Tensor, config: GenerationConfig, generator: torch.Generator | None, label: str = ""
    ) -> torch.Tensor:
        """Steps 1-2 of a round, which do not depend on the query: ``[1, 1, H, W] -> [K, C, H/f, W/f]``.

        Args:
            log_mel: Log-mel of the current estimate in diffusion layout.
            config: Generation settings.
            generator: Seeds the VAE posterior samples (the only randomness).
            label: Prefix of the progress bar (e.g. the round).
        """
        self.check_inputs(log_mel, "-")
        _, empty = self.conditions([])
        latents = self.encode_mel(log_mel, config.num_references, generator)
        return self.invert(latents, self.inversion_timesteps(config), empty, f"{label}DDIM inversion")

    @torch.no_grad()
    def generate(
        self,
        log_mel: torch.Tensor,
        queries: list[str],
        config: GenerationConfig = GenerationConfig(),
        generator: torch.Generator | None = None,
        inverted: torch.Tensor | None = None,
        label: str = "",
    ) -> torch.Tensor:
        """Generate K references of each query from one estimate, sharing the inversion.

        Args:
            log_mel: Log-mel of the current estimate in the backbone's layout, ``[1, 1, H, W]``.
            queries: Texts naming the sounds to separate.
            config: Generation settings.
            generator: Seeds the VAE posterior samples (the only randomness).
            inverted: Steps 1-2 already done by :meth:`invert_estimate` for this estimate, seed
                and config, e.g. in an earlier call.
            label: Prefix of the progress bars (e.g. the round).

        Returns:
            Reference log-mels ``[len(queries), K, 1, H, W]``, float32.
        """
        self.check_inputs(log_mel, queries)
        # 1-2. VAE posterior samples of the estimate, DDIM-inverted with the empty prompt; the
        #      same for every query.
        if inverted is None:
            inverted = self.invert_estimate(log_mel, config, generator, label)
        k = inverted.shape[0]
        # 3. Text conditions: each query for its K samples, and the empty prompt for guidance.
        text, empty = self.conditions(queries)
        text = map_condition(lambda v: v.repeat_interleave(k, 0), text)
        # 4. Text-guided DDIM denoising of all queries' samples together, on the denoising's own
        #    timesteps (by default the authors' offset-0 schedule, not the inversion's).
        latents = inverted.repeat(len(queries), 1, 1, 1)
        scheduler = self.denoising_scheduler(config)
        latents = self.denoise(
            latents,
            scheduler.timesteps[-config.denoising_steps :],
            text,
            empty,
            config.guidance_scale,
            f"{label}guided DDIM denoising",
            scheduler,
        )
        # 5. Back to log-mels.
        return self.decode_mel(latents).unflatten(0, (len(queries), k))

    @torch.no_grad()
    def __call__(
        self,
        log_mel: torch.Tensor,
        query: str,
        config: GenerationConfig = GenerationConfig(),
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Generate K references of one query: ``[1, 1, H, W] -> [K, 1, H, W]`` (see :meth:`generate`)."""
        self.check_inputs(log_mel, query)
        return self.generate(log_mel, [query], config, generator)[0]

    @torch.no_grad()
    def vocode(self, log_mels: torch.Tensor) -> torch.Tensor | None:
        """Waveforms of log-mels with the model's vocoder, or ``None`` without one: ``[K, 1, H, W] -> [K, N]``."""
        with self._autocast():
            return self.backbone.vocode(log_mels.to(self.device))


def _expand(condition: Condition, n: int) -> Condition:
    """A condition of batch 1 (or ``n``) repeated to batch ``n`` (a view, no copy)."""
    return map_condition(lambda v: v.expand(n, *v.shape[1:]), condition)
