"""The mixture and its reference spectrograms, served round by round to the masks' fit loop."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path

import torch
from lightning.pytorch import LightningDataModule, Trainer
from torch.utils.data import DataLoader

from dgmo_pl.audio import frontend as fe
from dgmo_pl.diffusion.backbones import Backbone, infer_backbone
from dgmo_pl.diffusion.cache import TensorCache
from dgmo_pl.diffusion.loading import model_revision
from dgmo_pl.diffusion.provider import ReferenceProvider
from dgmo_pl.diffusion.references import (
    Attention,
    DenoisingOffset,
    GenerationConfig,
    Precision,
    ReferenceGenerator,
)
from dgmo_pl.errors import InputError
from dgmo_pl.naming import unique_slugs
from dgmo_pl.recording import (
    Mixture,
    Recording,
    aligned_recording,
    load_mixture,
    load_window,
    open_recording,
    reference_log_mel,
)
from dgmo_pl.rounds import RoundDataset

__all__ = ["DEMO_MIXTURE", "DEMO_QUERY", "Mixture", "SeparationDataModule", "check_round_reloading", "load_mixture"]

#: The demo mixture shipped with the package (see the README for its sources and licences).
DEMO_MIXTURE = str(Path(__file__).parent / "assets" / "demo_speech_and_dogs.wav")
DEMO_QUERY = "dog barking"


def check_round_reloading(trainer: Trainer) -> None:
    """Rounds are epochs: the trainer must ask for a new data loader (new references) every epoch."""
    if trainer.reload_dataloaders_every_n_epochs != 1:
        raise InputError(
            f"trainer.reload_dataloaders_every_n_epochs is {trainer.reload_dataloaders_every_n_epochs}, but "
            "the references are regenerated every round (epoch): set it to 1"
        )


class SeparationDataModule(LightningDataModule):
    """Supplies a mixture and, for each round, reference log-mels of the queried sounds.

    A recording longer than the model's 10.24 s is cut into overlapping windows; each fit
    optimises the masks of ``windows_per_fit`` of them (:attr:`fit_windows`) for one query, or
    for all queries with joint masks (:attr:`fit_queries`; see :meth:`select`). The references
    of round 0 are generated from the mixture window before any mask step; those of a later
    round from the window masked by the previous round's mask. The model is loaded once; round
    0, which depends only on the mixture, is generated for all queries of a window together.
    References are stored in ``cache_dir`` and reused when nothing that determines them has
    changed. With ``references`` given, their log-mels serve every round and no diffusion model
    is loaded.

    Args:
        mixture: Audio file to separate (any format soundfile reads, any length, rate and channels).
        query: Text naming the sound to separate (ignored when ``queries`` is given).
        queries: Several texts, one separated output each.
        references: Time-aligned recordings (true sources, any rate and channels, the mixture's
            duration) to use as references instead of generating them: a list of files for one
            query, or, with several queries, one list per query.
        model: Diffusion model: hub id or local folder in diffusers layout.
        backbone: Which text-to-audio model family ``model`` is (``class_path``, e.g.
            ``AudioLDM2``); ``null``: inferred from the folder's ``model_index.json`` or the hub id.
            It sets the front end: STFT and mel sizes, layout.
        num_references: K, references generated per round.
        ddim_steps: DDIM steps of inversion and denoising.
        noise_level: Fraction of the schedule inverted (1.0 = all the way).
        guidance_scale: Classifier-free guidance scale.
        denoising_offset: Timesteps of the guided denoising: ``zero`` (the authors' code: the
            schedule with ``steps_offset`` 0, t = 990, ..., 0 at 100 steps) or ``scheduler`` (the
            model's own offset, as the inversion: 991, ..., 1 with the real checkpoints).
        steps_per_round: Adam steps of mask optimisation per round.
        steps_per_batch: Adam steps the module takes per loader batch (same steps, fewer loop turns).
        window_overlap: Seconds shared by consecutive windows of a long recording (cross-faded);
            at most half a window.
        windows_per_fit: Windows whose masks are optimised together in one fit (memory is bounded
            by it, not by the recording's length).
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
        references: list[str] | list[list[str]] | None = None,
        model: str = "cvssp/audioldm",
        backbone: Backbone | None = None,
        num_references: int = 4,
        ddim_steps: int = 100,
        noise_level: float = 1.0,
        guidance_scale: float = 5.0,
        denoising_offset: DenoisingOffset = "zero",
        steps_per_round: int = 300,
        steps_per_batch: int = 10,
        window_overlap: float = 2.56,
        windows_per_fit: int = 4,
        cache_dir: str | None = "logs/references",
        precision: Precision = "32-true",
        attention: Attention = "sdpa",
        compile: bool = False,
        max_batch: int | None = 16,
    ) -> None:
        super().__init__()
        # The backbone holds the loaded networks: kept out of the hyperparameters (and checkpoints).
        self.save_hyperparameters(ignore=["backbone"])
        self.backbone = backbone if backbone is not None else infer_backbone(model)
        self._queries = self._check_queries(query, queries, references)
        self._reference_files = self._check_references(references, self._queries)
        if steps_per_round < 1:
            raise InputError(f"steps_per_round {steps_per_round} must be at least 1: fix --data.steps_per_round")
        if steps_per_batch < 1:
            raise InputError(f"steps_per_batch {steps_per_batch} must be at least 1: fix --data.steps_per_batch")
        if windows_per_fit < 1:
            raise InputError(f"windows_per_fit {windows_per_fit} must be at least 1: fix --data.windows_per_fit")
        self.spec = self.backbone.spec
        if not 0 <= window_overlap <= self.spec.segment_seconds / 2:
            raise InputError(
                f"window_overlap {window_overlap} s must be between 0 and half a window "
                f"({self.spec.segment_seconds / 2} s): fix --data.window_overlap"
            )
        try:
            self.generation = GenerationConfig(
                num_references, ddim_steps, noise_level, guidance_scale, denoising_offset
            )
            ReferenceGenerator.check_runtime(precision, attention, max_batch)
        except ValueError as err:
            raise InputError(f"{err}: fix the --data setting") from None
        self.mel_basis = fe.mel_filterbank(self.spec)
        self.cache = TensorCache(cache_dir)
        self.recording: Recording | None = None
        self.fit_queries: list[int] = [0]
        self.fit_windows: list[int] = [0]
        self.generator: ReferenceGenerator | None = None
        self.provider: ReferenceProvider | None = None
        self.reference_recordings: list[list[Recording]] = []
        self.references: torch.Tensor | None = None
        self._windows: dict[int, Mixture] = {}
        self._first_round: dict[int, list[torch.Tensor]] = {}

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
        return texts

    @staticmethod
    def _check_references(references: list | None, queries: list[str]) -> list[list[str]]:
        """The reference files of each query (none: generate them)."""
        if not references:
            return []
        if all(isinstance(r, str) for r in references):
            if len(queries) > 1:
                raise InputError(
                    f"--data.references lists files for one query, but {len(queries)} queries were given: "
                    "give one list per query, e.g. '[[dog.wav], [speech.wav]]'"
                )
            return [list(references)]
        if len(references) != len(queries) or not all(isinstance(r, list) and r for r in references):
            raise InputError(
                f"--data.references has {len(references)} entries for {len(queries)} queries: "
                "give one non-empty list of files per query"
            )
        return [list(r) for r in references]

    # --- what is fitted now ------------------------------------------------------------------

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
        """The name of the first query of the current fit (see :attr:`names`)."""
        return self.names[self.fit_queries[0]]

    @property
    def query(self) -> str:
        """The first query of the current fit."""
        return self._queries[self.fit_queries[0]]

    @property
    def window_batches(self) -> list[list[int]]:
        """The windows of each fit, in order (needs :meth:`load`)."""
        n, size = self.recording.num_windows, self.hparams.windows_per_fit
        return [list(range(i, min(i + size, n))) for i in range(0, n, size)]

    def select(self, queries: int | Sequence[int], batch: int = 0) -> None:
        """Serve queries ``queries`` (an index, or several for joint masks) and window batch ``batch``."""
        chosen = [queries] if isinstance(queries, int) else list(queries)
        if not chosen or not all(0 <= q < len(self._queries) for q in chosen):
            raise IndexError(f"query indices {chosen} out of range for {len(self._queries)} queries")
        self.load()
        batches = self.window_batches
        if not 0 <= batch < len(batches):
            raise IndexError(f"window batch {batch} out of range for {len(batches)} batches")
        if batches[batch] != self.fit_windows:
            self._windows, self._first_round = {}, {}
        self.fit_queries, self.fit_windows = chosen, batches[batch]
        self.references = None

    def is_last_window_batch(self) -> bool:
        """Whether the current fit holds the recording's last window."""
        return self.fit_windows[-1] == self.recording.num_windows - 1

    def window(self, index: int) -> Mixture:
        """Window ``index`` of the mixture, prepared (kept while it belongs to the current fit)."""
        if index not in self._windows:
            mixture = load_window(self.recording, index, self.spec)
            if index not in self.fit_windows:
                return mixture
            self._windows[index] = mixture
        return self._windows[index]

    @property
    def mixture(self) -> Mixture:
        """The first window of the current fit (the whole mixture when it fits one window)."""
        return self.window(self.fit_windows[0])

    # --- loading -----------------------------------------------------------------------------

    def load(self) -> None:
        """Check every input (streaming through the files once) and load the diffusion model, once.

        Called by the command line before training starts, so that bad input fails before any
        output is written.
        """
        if self.recording is not None:
            return
        hp = self.hparams
        recording = open_recording(hp.mixture, self.spec, hp.window_overlap)
        if self._reference_files:
            self.reference_recordings = [
                [aligned_recording(p, recording, self.spec) for p in files] for files in self._reference_files
            ]
        elif self.generator is None:
            self._load_generator()
        self.recording = recording

    def for_recording(self, mixture: str, query: str, references: list[str] | None = None) -> SeparationDataModule:
        """A data module for another mixture and query with the same settings, sharing the loaded model.

        For evaluating many mixtures in one process: the diffusion model is loaded once.
        """
        names = inspect.signature(type(self)).parameters
        settings = {k: v for k, v in self.hparams.items() if k in names}  # not what LightningCLI adds
        settings.update(mixture=mixture, query=query, queries=None, references=references, backbone=self.backbone)
        other = type(self)(**settings)
        if not references:
            self.load()
            other.generator, other.provider = self.generator, self.provider
        return other

    def _load_generator(self) -> None:
        hp = self.hparams
        generator = ReferenceGenerator.from_pretrained(
            hp.model,
            self.backbone,
            precision=hp.precision,
            attention=hp.attention,
            compile=hp.compile,
            max_batch=hp.max_batch,
        )
        trained_steps = generator.backbone.scheduler.config.num_train_timesteps
        if self.generation.ddim_steps > trained_steps:
            raise InputError(
                f"ddim_steps {self.generation.ddim_steps} exceeds the {trained_steps} timesteps the model "
                "was trained with: fix --data.ddim_steps"
            )
        revision = model_revision(hp.model) if self.cache.root is not None else "unknown"
        identity = ReferenceProvider.identity_of(hp.model, revision, self.spec, self.backbone.name)
        self.generator = generator
        self.provider = ReferenceProvider(generator, self.generation, self.cache, identity)

    def setup(self, stage: str) -> None:
        """Load the model or the true-source references once; later calls do nothing."""
        self.load()
        if self.generator is not None and self.trainer is not None:
            check_round_reloading(self.trainer)
            self.generator.to(self.trainer.strategy.root_device)

    # --- references --------------------------------------------------------------------------

    @staticmethod
    def round_seed(round_index: int) -> int:
        """Seed of a round's VAE samples: the run's seed (``seed_everything``) plus the round."""
        return (torch.initial_seed() + round_index) % 2**63

    def _label(self, round_index: int, window: int, queries: list[str]) -> str:
        rounds = self.trainer.max_epochs if self.trainer is not None else None
        of = f"/{rounds}" if rounds and rounds > 0 else ""
        where = f"window {window + 1}/{self.recording.num_windows}, " if self.recording.num_windows > 1 else ""
        what = f"'{queries[0]}'" if len(queries) == 1 else f"{len(queries)} queries"
        return f"round {round_index + 1}{of}, {where}{what}: "

    def _log_mel(self, mixture: Mixture, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Log-mel of a window, under ``mask`` (``[F, T]``) if given: ``[1, 1, T, M]``."""
        magnitude = mixture.magnitude if mask is None else mixture.magnitude * mask.to(mixture.magnitude)
        return fe.diffusion_log_mel(magnitude, self.mel_basis, self.spec)

    def first_round_references(self, window: int) -> list[torch.Tensor]:
        """Round 0's references of every query for one window, generated together once: ``[K, 1, T, M]`` each."""
        if window not in self._first_round:
            mixture = self.window(window)
            refs = self.provider.references(
                self._log_mel(mixture), self.queries, 0, self.round_seed(0), mixture.digest,
                self._label(0, window, self.queries),
            )  # fmt: skip
            if window not in self.fit_windows:
                return refs
            self._first_round[window] = refs
        return self._first_round[window]

    def store_first_round(self) -> list[Path]:
        """Generate and store round 0 of every window and query; returns where each entry lies."""
        paths: list[Path] = []
        seed = self.round_seed(0)
        for window in range(self.recording.num_windows):
            mixture = self.window(window)
            log_mel = self._log_mel(mixture)
            label = self._label(0, window, self.queries)
            self.provider.references(log_mel, self.queries, 0, seed, mixture.digest, label)
            paths.extend(self.provider.paths(log_mel, self.queries, 0, seed, mixture.digest))
        return paths

    def _fixed_references(self, query: int, window: int) -> torch.Tensor:
        """Log-mels of query ``query``'s reference files for one window: ``[K, 1, T, M]``."""
        mixture = self.window(window)
        recordings = self.reference_recordings[query]
        return torch.cat([reference_log_mel(r, mixture, self.spec, self.mel_basis) for r in recordings])

    def generate_references(self, round_index: int, masks: torch.Tensor | None) -> torch.Tensor:
        """The current fit's references for one round: ``[Q, W, K, 1, T, M]``.

        Args:
            round_index: The round (0: from the mixture).
            masks: Round ``round_index - 1``'s output masks, ``[Q, W, F, T]`` (None in round 0).
        """
        if self.reference_recordings:
            counts = {len(self.reference_recordings[q]) for q in self.fit_queries}
            if len(counts) > 1:
                raise InputError(
                    "joint masks need as many --data.references files for every query: give each query the same number"
                )
            return torch.stack([torch.stack([self._fixed_references(q, w) for w in self.fit_windows])
                                for q in self.fit_queries])
        rows = []
        for qi, query in enumerate(self.fit_queries):
            row = []
            for wi, window in enumerate(self.fit_windows):
                if round_index == 0 and masks is None:
                    row.append(self.first_round_references(window)[query])
                    continue
                mixture, text = self.window(window), self._queries[query]
                (refs,) = self.provider.references(
                    self._log_mel(mixture, masks[qi, wi]), [text], round_index, self.round_seed(round_index),
                    mixture.digest, self._label(round_index, window, [text]),
                )  # fmt: skip
                row.append(refs)
            rows.append(torch.stack(row))
        return torch.stack(rows)

    def train_dataloader(self) -> DataLoader:
        """The current round's loader (rebuilt every round)."""
        round_index = self.trainer.current_epoch if self.trainer is not None else 0
        masks = self.trainer.lightning_module.thresholded_mask() if round_index > 0 else None
        if self.references is None or not self.reference_recordings:
            self.references = self.generate_references(round_index, masks)
        # Placed on the training device once per round, so the steps copy nothing.
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        magnitude = torch.cat([self.window(w).magnitude for w in self.fit_windows])
        batch = {"mixture_magnitude": magnitude.to(device), "references": self.references.to(device)}
        return DataLoader(
            RoundDataset(batch, self.hparams.steps_per_round, self.hparams.steps_per_batch), batch_size=None
        )
