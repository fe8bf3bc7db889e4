"""What DGMO needs from a text-to-audio latent diffusion model: the one interface of every backbone."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from diffusers import AutoencoderKL, DDIMScheduler

from dgmo_pl.audio.frontend import SpectrogramConfig
from dgmo_pl.diffusion.loading import freeze, load_part

#: A text condition: batch-first tensors, passed to the UNet as keyword arguments.
Condition = dict[str, torch.Tensor]


def map_condition(fn: Callable[[torch.Tensor], torch.Tensor], condition: Condition) -> Condition:
    """Apply ``fn`` to every tensor of ``condition``."""
    return {name: fn(value) for name, value in condition.items()}


def cat_conditions(*conditions: Condition) -> Condition:
    """Concatenate conditions along the batch: ``[N1, ...], [N2, ...] -> [N1 + N2, ...]``."""
    return {name: torch.cat([c[name] for c in conditions]) for name in conditions[0]}


class Backbone(ABC):
    """A frozen text-to-audio latent diffusion model, as the reference generator uses it.

    A backbone owns what differs between models: how its components load, how a text becomes
    the UNet's condition (and what the "empty prompt" of classifier-free guidance is), how its
    log-mel layout enters and leaves the VAE, and how its vocoder is fed. The DDIM inversion, the
    guided denoising and the mask optimisation are written once, on top of this interface
    (:class:`~dgmo_pl.diffusion.references.ReferenceGenerator`).

    Constructing a backbone is cheap (it is chosen in the config with ``class_path``);
    :meth:`load` fills its networks. Every network is frozen: eval mode, no gradients.

    Attributes:
        spec: The front end the model was trained on (STFT, mel bins, layout).
        pipelines: ``model_index.json`` class names of the folders this backbone loads.
        hub_pattern: Regular expression matching (case-insensitively, in full) the hub ids of its models.
        vae: The spectrogram VAE (``None`` until loaded).
        unet: The noise-predicting UNet.
        scheduler: The DDIM scheduler built from the model's own scheduler config.
        vocoder: Log-mel to waveform, or ``None`` when the model folder has none.
    """

    spec: ClassVar[SpectrogramConfig] = SpectrogramConfig()
    pipelines: ClassVar[tuple[str, ...]] = ()
    hub_pattern: ClassVar[str] = r"(?!)"
    #: UNet keyword arguments every call passes besides the condition.
    unet_kwargs: ClassVar[dict[str, Any]] = {}

    def __init__(self) -> None:
        self.vae: AutoencoderKL | None = None
        self.unet: torch.nn.Module | None = None
        self.scheduler: DDIMScheduler | None = None
        self.vocoder: torch.nn.Module | None = None
        #: What runs the UNet: the UNet itself or a compiled wrapper of it.
        self.denoiser: Callable[..., Any] | None = None

    @property
    def name(self) -> str:
        """The backbone's name in cache keys and messages."""
        return type(self).__name__

    @property
    def loaded(self) -> bool:
        """Whether :meth:`load` has run."""
        return self.unet is not None

    # --- loading ---------------------------------------------------------------------------

    @abstractmethod
    def load(self, model: str, dtype: torch.dtype = torch.float32) -> None:
        """Load and freeze the components from a hub id or a local diffusers folder.

        Raises:
            ModelLoadError: A component cannot be loaded; the message says what to do.
        """

    @abstractmethod
    def networks(self) -> list[torch.nn.Module]:
        """Every loaded network (moved and cast together)."""

    def _load_vae(self, model: str, dtype: torch.dtype) -> AutoencoderKL:
        """The VAE in ``dtype``, unless its config asks for fp32.

        ``force_upcast`` (AudioLDM 2's config says so, and it is diffusers' default) keeps it in fp32.
        """
        vae = load_part(AutoencoderKL, model, "vae", self.name, low_cpu_mem_usage=False)
        return vae if vae.config.force_upcast else vae.to(dtype)

    def _finish_loading(self, model: str) -> None:
        """The last step of every :meth:`load`: freeze the networks, load the DDIM scheduler, run the UNet as is."""
        for module in self.networks():
            freeze(module)
        self.scheduler = load_part(DDIMScheduler, model, "scheduler", self.name)
        self.denoiser = self.unet

    # --- conditioning ----------------------------------------------------------------------

    @abstractmethod
    def encode_prompts(self, texts: list[str]) -> tuple[Condition, Condition]:
        """The UNet conditions of ``texts`` and of the unconditional ("empty") prompt.

        Returns:
            ``(conditions [len(texts), ...], unconditional [1, ...])``, in shapes that
            :func:`cat_conditions` can join (padded alike), on the networks' device.
        """

    # --- latents and layouts ---------------------------------------------------------------

    def vae_input(self, layout: torch.Tensor) -> torch.Tensor:
        """The model's log-mel layout to the VAE's input: ``[B, 1, H, W] -> [B, C, H, W]``."""
        return layout

    def vae_output(self, decoded: torch.Tensor) -> torch.Tensor:
        """The VAE's output back to the log-mel layout: ``[B, C, H, W] -> [B, 1, H, W]``."""
        return decoded

    def predict_noise(self, latents: torch.Tensor, t: torch.Tensor, condition: Condition) -> torch.Tensor:
        """The UNet's noise prediction: ``[N, C, h, w] -> [N, C, h, w]``."""
        return self.denoiser(latents, t, **self.unet_kwargs, **condition).sample

    def vocode(self, layout: torch.Tensor) -> torch.Tensor | None:
        """Waveforms of log-mels in the model's layout, or ``None`` without a vocoder: ``[K, 1, H, W] -> [K, N]``."""
        return None

    # --- conveniences ----------------------------------------------------------------------

    @classmethod
    def accepts_folder(cls, model: str) -> bool:
        """Whether a local folder whose index names one of :attr:`pipelines` is this backbone's."""
        return True

    @classmethod
    def recognises(cls, model: str) -> bool:
        """Whether a hub id names one of this backbone's models."""
        return re.fullmatch(cls.hub_pattern, model.strip().lower()) is not None

    def check_loaded(self) -> None:
        """Raise ``RuntimeError`` unless :meth:`load` has run."""
        if not self.loaded:
            raise RuntimeError(f"the {self.name} backbone is not loaded: call load(model) first")
