"""The mixture and its reference spectrograms, served round by round to the mask's fit loop."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from lightning.pytorch import LightningDataModule, Trainer
from torch.utils.data import DataLoader

from dgmo_pl.audio import frontend as fe
from dgmo_pl.audio.io import SILENCE_PEAK, read_audio
from dgmo_pl.diffusion.cache import TensorCache, tensor_digest
from dgmo_pl.diffusion.loading import model_revision
from dgmo_pl.diffusion.provider import ReferenceProvider
from dgmo_pl.diffusion.references import Attention, GenerationConfig, Precision, ReferenceGenerator
from dgmo_pl.errors import InputError
from dgmo_pl.naming import unique_slugs
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
        digest: Identifies the prepared content (part of the reference cache's keys).
    """

    path: Path
    magnitude: torch.Tensor
    phase: torch.Tensor
    stats: fe.NormStats
    num_samples: int
    digest: str


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
    magnitude = magnitude[None, :, : spec.n_frames]
    return Mixture(Path(path), magnitude, phase[None], stats, num_samples, tensor_digest(normalised))


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
    later round from the mixture masked by the previous round's thresholded mask. With several
    queries, the command line fits one mask per query in turn (:meth:`select`); the model is
    loaded once, and round 0, which depends only on the mixture, is generated for all queries
    together. References are stored in ``cache_dir`` and reused when nothing that determines
    them has changed. With ``references`` given, their log-mels serve every round and no
    diffusion model is loaded.

    Args:
        mixture: Audio file to separate (any format soundfile reads, any rate and channels).
        query: Text naming the sound to separate (ignored when ``queries`` is given).
        queries: Several texts, one separated output each.
        references: Time-aligned recordings to use as references instead of generating them
            (one query only).
        model: AudioLDM hub id or local folder in diffusers layout.
        num_references: K, references generated per round.
        ddim_steps: DDIM steps of inversion and denoising.
        noise_level: Fraction of the schedule inverted (1.0 = all the way).
        guidance_scale: Classifier-free guidance scale.
        steps_per_round: Adam steps of mask optimisation per round.
        steps_per_batch: Adam steps the module takes per loader batch (same steps, fewer loop turns).
        cache_dir: Folder of stored references (``null``: keep them in memory only).
        precision: How the diffusion networks run: ``32-true``, ``bf16-mixed``/``16-mixed``
            (autocast) or ``bf16-true``/``16-true`` (cast weights); the sampler stays fp32.
        attention: The UNet's attention kernel: ``sdpa`` or ``eager``.
        compile: Run the UNet through ``torch.compile``.
        max_batch: Most samples per diffusion network call (``null``: no bound).
    """

    def __init__(
        self,
        mixture: str = DEMO_MIXTURE,
        query: str = DEMO_QUERY,
        queries: list[str] | None = None,
        references: list[str] | None = None,
        model: str = "cvssp/audioldm",
        num_references: int = 4,
        ddim_steps: int = 100,
        noise_level: float = 1.0,
        guidance_scale: float = 5.0,
        steps_per_round: int = 300,
        steps_per_batch: int = 10,
        cache_dir: str | None = "logs/references",
        precision: Precision = "32-true",
        attention: Attention = "sdpa",
        compile: bool = False,
        max_batch: int | None = 16,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self._queries = self._check_queries(query, queries, references)
        if steps_per_round < 1:
            raise InputError(f"steps_per_round {steps_per_round} must be at least 1: fix --data.steps_per_round")
        if steps_per_batch < 1:
            raise InputError(f"steps_per_batch {steps_per_batch} must be at least 1: fix --data.steps_per_batch")
        try:
            self.generation = GenerationConfig(num_references, ddim_steps, noise_level, guidance_scale)
            ReferenceGenerator.check_runtime(precision, attention, max_batch)
        except ValueError as err:
            raise InputError(f"{err}: fix the --data setting") from None
        self.spec = fe.SpectrogramConfig()
        self.mel_basis = fe.mel_filterbank(self.spec)
        self.cache = TensorCache(cache_dir)
        self.query_index = 0
        self.mixture: Mixture | None = None
        self.generator: ReferenceGenerator | None = None
        self.provider: ReferenceProvider | None = None
        self.fixed_references: torch.Tensor | None = None
        self.references: torch.Tensor | None = None
        self._first_round: list[torch.Tensor] | None = None

    @staticmethod
    def _check_queries(query: str, queries: list[str] | None, references: list[str] | None) -> list[str]:
        texts = list(queries) if queries else [query]
        for text in texts:
            if not (isinstance(text, str) and text.strip()) and not references:
                raise InputError(
                    f"query {text!r} is empty: name the sound to separate, e.g. --data.query 'dog barking'"
                )
        if len(set(texts)) < len(texts):
            twice = next(t for t in texts if texts.count(t) > 1)
            raise InputError(f"query {twice!r} is listed twice in --data.queries: list each query once")
        if references and len(texts) > 1:
            raise InputError(
                f"--data.references serve one query, but {len(texts)} queries were given: separate one at a time"
            )
        return texts

    @property
    def queries(self) -> list[str]:
        """All queries of the run, in order."""
        return self._queries

    @property
    def names(self) -> list[str]:
        """Each query's name for files and folders: readable, portable, unique in the run."""
        return unique_slugs(self._queries)

    @property
    def name(self) -> str:
        """The current query's name (see :attr:`names`)."""
        return self.names[self.query_index]

    @property
    def query(self) -> str:
        """The query whose mask is being fitted (see :meth:`select`)."""
        return self._queries[self.query_index]

    def select(self, index: int) -> None:
        """Serve the query ``queries[index]`` from now on."""
        if not 0 <= index < len(self._queries):
            raise IndexError(f"query index {index} out of range for {len(self._queries)} queries")
        self.query_index = index
        self.references = None

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
            self._load_generator(mixture)
        self.mixture = mixture

    def _load_generator(self, mixture: Mixture) -> None:
        hp = self.hparams
        generator = ReferenceGenerator.from_pretrained(
            hp.model, precision=hp.precision, attention=hp.attention, compile=hp.compile, max_batch=hp.max_batch
        )
        trained_steps = generator.parts.scheduler.config.num_train_timesteps
        if self.generation.ddim_steps > trained_steps:
            raise InputError(
                f"ddim_steps {self.generation.ddim_steps} exceeds the {trained_steps} timesteps the model "
                "was trained with: fix --data.ddim_steps"
            )
        revision = model_revision(hp.model) if self.cache.root is not None else "unknown"
        identity = ReferenceProvider.identity_of(hp.model, revision, mixture.digest, self.spec)
        self.generator = generator
        self.provider = ReferenceProvider(generator, self.generation, self.cache, identity)

    def setup(self, stage: str) -> None:
        self.load()
        if self.generator is not None and self.trainer is not None:
            check_round_reloading(self.trainer)
            self.generator.to(self.trainer.strategy.root_device)

    def estimate_magnitude(self, mask: torch.Tensor | None) -> torch.Tensor:
        """The mixture magnitude under ``mask`` (none: the mixture itself): ``[1, F, T]``."""
        magnitude = self.mixture.magnitude
        return magnitude if mask is None else magnitude * mask.to(magnitude.device, magnitude.dtype)

    @staticmethod
    def round_seed(round_index: int) -> int:
        """Seed of a round's VAE samples: the run's seed (``seed_everything``) plus the round."""
        return (torch.initial_seed() + round_index) % 2**63

    def _label(self, round_index: int, queries: list[str]) -> str:
        rounds = self.trainer.max_epochs if self.trainer is not None else None
        of = f"/{rounds}" if rounds and rounds > 0 else ""
        what = f"'{queries[0]}'" if len(queries) == 1 else f"{len(queries)} queries"
        return f"round {round_index + 1}{of}, {what}: "

    def _mixture_log_mel(self) -> torch.Tensor:
        return fe.diffusion_log_mel(self.estimate_magnitude(None), self.mel_basis, self.spec.n_frames)

    def first_round_references(self) -> list[torch.Tensor]:
        """Round 0's references of every query, generated together once: ``[K, 1, T, M]`` each."""
        if self._first_round is None:
            self.load()
            self._first_round = self.provider.references(
                self._mixture_log_mel(), self.queries, 0, self.round_seed(0), self._label(0, self.queries)
            )
        return self._first_round

    def first_round_paths(self) -> list[Path]:
        """Where round 0's references of each query are stored."""
        digest = tensor_digest(self._mixture_log_mel())
        keys = [self.provider.key("references", digest, 0, self.round_seed(0), q) for q in self.queries]
        return [self.cache.path(key) for key in keys]

    def generate_references(self, round_index: int, mask: torch.Tensor | None) -> torch.Tensor:
        """The current query's references for one round from the estimate under ``mask``: ``[K, 1, T, M]``."""
        if round_index == 0 and mask is None:
            return self.first_round_references()[self.query_index]
        estimate = fe.diffusion_log_mel(self.estimate_magnitude(mask), self.mel_basis, self.spec.n_frames)
        label = self._label(round_index, [self.query])
        (refs,) = self.provider.references(estimate, [self.query], round_index, self.round_seed(round_index), label)
        return refs

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
