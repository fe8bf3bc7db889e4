"""The mixture and its reference spectrograms, served round by round to the mask's fit loop."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from lightning.pytorch import LightningDataModule, Trainer
from torch.utils.data import DataLoader

from dgmo_pl.audio import frontend as fe
from dgmo_pl.audio.io import SILENCE_PEAK, read_audio
from dgmo_pl.diffusion.references import GenerationConfig, ReferenceGenerator
from dgmo_pl.errors import InputError
from dgmo_pl.rounds import RoundDataset

#: The demo mixture shipped with the package (see the README for its sources and licences).
DEMO_MIXTURE = str(Path(__file__).parent / "assets" / "demo_speech_and_dogs.wav")
DEMO_QUERY = "dog barking"


@dataclass
class Mixture:
    """A mixture prepared for separation.

    Attributes:
        path: Where it was read from.
        magnitude: Magnitude STFT of the normalised segment, ``[1, F, n_frames]``.
        phase: Unit phase of all STFT frames, ``[1, F, T]`` complex.
        stats: The normalisation statistics, to undo it on the output.
        num_samples: Length at the model's rate before padding or cropping.
    """

    path: Path
    magnitude: torch.Tensor
    phase: torch.Tensor
    stats: fe.NormStats
    num_samples: int


def load_mixture(path: str, spec: fe.SpectrogramConfig) -> Mixture:
    """Read, mix down, resample, pad/crop, normalise and analyse a mixture file."""
    waveform, rate = read_audio(path, "mixture")
    num_samples = round(waveform.shape[-1] * spec.sample_rate / rate)
    segment = fe.prepare_waveform(waveform, rate, spec)
    if not (segment - segment.mean()).abs().amax() >= SILENCE_PEAK:
        raise InputError(
            f"mixture '{path}' is silent (peak below -90 dBFS once mixed to mono) in its first "
            f"{spec.segment_seconds} s: pass a recording with sound in it"
        )
    normalised, stats = fe.normalise(segment, spec.peak)
    magnitude, phase = fe.magnitude_and_phase(fe.stft(normalised, spec))
    return Mixture(Path(path), magnitude[None, :, : spec.n_frames], phase[None], stats, num_samples)


def load_reference(path: str, mixture: Mixture, spec: fe.SpectrogramConfig) -> torch.Tensor:
    """Log-mel of a time-aligned reference recording, scaled as the mixture was: ``-> [1, 1, T, M]``.

    Raises:
        InputError: The file is unusable or its length differs from the mixture's.
    """
    waveform, rate = read_audio(path, "reference")
    num_samples = round(waveform.shape[-1] * spec.sample_rate / rate)
    if abs(num_samples - mixture.num_samples) > spec.hop_length:
        raise InputError(
            f"reference '{path}' lasts {num_samples / spec.sample_rate:.3f} s but mixture "
            f"'{mixture.path}' lasts {mixture.num_samples / spec.sample_rate:.3f} s: "
            "pass references time-aligned with the mixture and of the same length"
        )
    segment = fe.prepare_waveform(waveform, rate, spec)
    scaled = (segment - mixture.stats.mean) * (spec.peak / mixture.stats.peak)
    magnitude = fe.stft(scaled, spec).abs()[None]
    return fe.diffusion_log_mel(magnitude, fe.mel_filterbank(spec), spec.n_frames)


def check_round_reloading(trainer: Trainer) -> None:
    """Rounds are epochs: the trainer must ask for a new data loader (new references) every epoch."""
    if trainer.reload_dataloaders_every_n_epochs != 1:
        raise InputError(
            f"trainer.reload_dataloaders_every_n_epochs is {trainer.reload_dataloaders_every_n_epochs}, but "
            "the references are regenerated every round (epoch): set it to 1"
        )


class SeparationDataModule(LightningDataModule):
    """Supplies a mixture and, for each round, reference log-mels of the queried sound.

    The references of round 0 are generated from the mixture before any mask step; those of a
    later round from the mixture masked by the previous round's thresholded mask. With
    ``references`` given, their log-mels serve every round and no diffusion model is loaded.

    Args:
        mixture: Audio file to separate (any format soundfile reads, any rate and channels).
        query: Text naming the sound to separate.
        references: Time-aligned recordings to use as references instead of generating them.
        model: AudioLDM hub id or local folder in diffusers layout.
        num_references: K, references generated per round.
        ddim_steps: DDIM steps of inversion and denoising.
        noise_level: Fraction of the schedule inverted (1.0 = all the way).
        guidance_scale: Classifier-free guidance scale.
        steps_per_round: Adam steps of mask optimisation per round.
        steps_per_batch: Adam steps the module takes per loader batch (same steps, fewer loop turns).
    """

    def __init__(
        self,
        mixture: str = DEMO_MIXTURE,
        query: str = DEMO_QUERY,
        references: list[str] | None = None,
        model: str = "cvssp/audioldm",
        num_references: int = 4,
        ddim_steps: int = 100,
        noise_level: float = 1.0,
        guidance_scale: float = 5.0,
        steps_per_round: int = 300,
        steps_per_batch: int = 1,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if not references and not (isinstance(query, str) and query.strip()):
            raise InputError(f"query {query!r} is empty: name the sound to separate, e.g. --data.query 'dog barking'")
        if steps_per_round < 1:
            raise InputError(f"steps_per_round {steps_per_round} must be at least 1: fix --data.steps_per_round")
        if steps_per_batch < 1:
            raise InputError(f"steps_per_batch {steps_per_batch} must be at least 1: fix --data.steps_per_batch")
        try:
            self.generation = GenerationConfig(num_references, ddim_steps, noise_level, guidance_scale)
        except ValueError as err:
            raise InputError(f"{err}: fix the --data setting") from None
        self.spec = fe.SpectrogramConfig()
        self.mel_basis = fe.mel_filterbank(self.spec)
        self.mixture: Mixture | None = None
        self.generator: ReferenceGenerator | None = None
        self.fixed_references: torch.Tensor | None = None
        self.references: torch.Tensor | None = None

    @property
    def query(self) -> str:
        return self.hparams.query

    def load(self) -> None:
        """Read and check every input and load the diffusion model, once.

        Called by the command line before training starts, so that bad input fails before any
        output is written.
        """
        if self.mixture is not None:
            return
        mixture = load_mixture(self.hparams.mixture, self.spec)
        if self.hparams.references:
            refs = [load_reference(p, mixture, self.spec) for p in self.hparams.references]
            self.fixed_references = torch.cat(refs)
        else:
            generator = ReferenceGenerator.from_pretrained(self.hparams.model)
            trained_steps = generator.parts.scheduler.config.num_train_timesteps
            if self.generation.ddim_steps > trained_steps:
                raise InputError(
                    f"ddim_steps {self.generation.ddim_steps} exceeds the {trained_steps} timesteps the model "
                    "was trained with: fix --data.ddim_steps"
                )
            self.generator = generator
        self.mixture = mixture

    def setup(self, stage: str) -> None:
        self.load()
        if self.generator is not None and self.trainer is not None:
            check_round_reloading(self.trainer)
            self.generator.to(self.trainer.strategy.root_device)

    def estimate_magnitude(self, mask: torch.Tensor | None) -> torch.Tensor:
        """The mixture magnitude under ``mask`` (none: the mixture itself): ``[1, F, T]``."""
        magnitude = self.mixture.magnitude
        return magnitude if mask is None else magnitude * mask.to(magnitude.device, magnitude.dtype)

    def generate_references(self, round_index: int, mask: torch.Tensor | None) -> torch.Tensor:
        """Reference log-mels for one round from the estimate under ``mask``: ``[K, 1, T, M]``."""
        estimate = fe.diffusion_log_mel(self.estimate_magnitude(mask), self.mel_basis, self.spec.n_frames)
        seed = (torch.initial_seed() + round_index) % 2**63
        generator = torch.Generator().manual_seed(seed)
        return self.generator(estimate, self.query, self.generation, generator).cpu()

    def train_dataloader(self) -> DataLoader:
        if self.fixed_references is not None:
            self.references = self.fixed_references
        else:
            round_index = self.trainer.current_epoch if self.trainer is not None else 0
            mask = self.trainer.lightning_module.thresholded_mask() if round_index > 0 else None
            self.references = self.generate_references(round_index, mask)
        # Placed on the training device once per round, so the steps copy nothing.
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        batch = {"mixture_magnitude": self.mixture.magnitude.to(device), "references": self.references.to(device)}
        return DataLoader(
            RoundDataset(batch, self.hparams.steps_per_round, self.hparams.steps_per_batch), batch_size=None
        )
