"""The data of a separation run: what to separate, and how its references are made.

:class:`SeparationDataModule` is the command line's ``data`` group. It checks its settings when
built, and :meth:`~SeparationDataModule.separation` opens the recording, loads the diffusion
model (once, however many recordings it then serves) and returns the run's
:class:`~dgmo_pl.job.Separation`. Each fit then gets its own
:class:`~dgmo_pl.fit_data.FitDataModule`.
"""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import LightningDataModule

from dgmo_pl.batch import list_recordings
from dgmo_pl.checks import check_folder
from dgmo_pl.diffusion.backbones import Backbone, infer_backbone
from dgmo_pl.diffusion.cache import TensorCache
from dgmo_pl.diffusion.loading import ModelLoadError, model_revision
from dgmo_pl.diffusion.provider import ReferenceProvider
from dgmo_pl.diffusion.references import (
    Attention,
    DenoisingOffset,
    GenerationConfig,
    Precision,
    ReferenceGenerator,
)
from dgmo_pl.errors import InputError
from dgmo_pl.job import Separation
from dgmo_pl.naming import unique_slugs
from dgmo_pl.recording import Mixture, aligned_recording, load_mixture, open_recording
from dgmo_pl.sources import DiffusionReferences, ReferenceSource, TrueSourceReferences

__all__ = ["DEMO_MIXTURE", "DEMO_QUERY", "Mixture", "SeparationDataModule", "load_mixture"]

#: The demo mixture shipped with the package (see the README for its sources and licences).
DEMO_MIXTURE = str(Path(__file__).parent / "assets" / "demo_speech_and_dogs.wav")
DEMO_QUERY = "dog barking"


class SeparationDataModule(LightningDataModule):
    """What a run separates and how its references are made; builds the run's :class:`~dgmo_pl.job.Separation`.

    A recording longer than the model's 10.24 s is cut into overlapping windows; each fit
    optimises the masks of ``windows_per_fit`` of them for one query, or for all queries with
    joint masks. The references of round 0 are generated from the mixture window before any
    mask step; those of a later round from the window masked by the previous round's mask. The
    model is loaded once; round 0, which depends only on the mixture, is generated for all
    queries of a window together. References are stored in ``cache_dir`` and reused when
    nothing that determines them has changed. With ``references`` given, their log-mels serve
    every round and no diffusion model is loaded.

    This module serves no loader itself: the loop (:func:`~dgmo_pl.separate.separate`) gives each
    fit a :class:`~dgmo_pl.fit_data.FitDataModule` of its own.

    Args:
        mixture: Audio file to separate (any format soundfile reads, any length, rate and channels),
            or a folder of them, or a list of files: each is separated with every query, in one run
            (see :mod:`dgmo_pl.batch`).
        query: Text naming the sound to separate (ignored when ``queries`` is given).
        queries: Several texts, one separated output each.
        references: Time-aligned recordings (true sources, any rate and channels, the mixture's
            duration) to use as references instead of generating them: a list of files for one
            query, or, with several queries, one list per query.
        model: Diffusion model: hub id or local folder in diffusers layout.
        model_revision: What identifies the weights in the reference cache's keys (``null``: the hub
            snapshot's commit, or a local folder's file names, sizes and modification times); set
            it to pin one yourself, e.g. after copying a folder (which changes the times).
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
        mixture: str | list[str] = DEMO_MIXTURE,
        query: str = DEMO_QUERY,
        queries: list[str] | None = None,
        references: list[str] | list[list[str]] | None = None,
        model: str = "cvssp/audioldm",
        backbone: Backbone | None = None,
        model_revision: str | None = None,
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
        if self._reference_files and self.batch:
            raise InputError(
                "--data.references are time-aligned with one mixture, but --data.mixture is a folder or a list: "
                "drop the references, or separate one recording"
            )
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
        except ValueError as err:  # each message starts with the setting's name
            raise InputError(f"{err}: fix --data.{str(err).split()[0]}") from None
        self.cache = TensorCache(check_folder(cache_dir, "--data.cache_dir") if cache_dir is not None else None)
        self._provider: ReferenceProvider | None = None
        self._separation: Separation | None = None

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

    # --- the run ---------------------------------------------------------------------------

    @property
    def queries(self) -> list[str]:
        """All queries of the run, in order."""
        return self._queries

    @property
    def names(self) -> list[str]:
        """Each query's name for files and folders: readable, portable, unique in the run."""
        return unique_slugs(self._queries)

    @property
    def reference_files(self) -> list[list[str]]:
        """Per query, its true-source files (empty: references are generated)."""
        return self._reference_files

    @property
    def batch(self) -> bool:
        """Whether ``mixture`` names several recordings (a folder or a list of files)."""
        mixture = self.hparams.mixture
        return isinstance(mixture, list | tuple) or Path(mixture).expanduser().is_dir()

    def recordings(self) -> list[tuple[str, Path]]:
        """``(name, file)`` of every recording (one for a single file; see :func:`~dgmo_pl.batch.list_recordings`)."""
        mixture = self.hparams.mixture
        return list_recordings(mixture) if self.batch else [(Path(mixture).stem, Path(mixture))]

    @property
    def generates(self) -> bool:
        """Whether references come from the diffusion model (no ``references`` files given)."""
        return not self._reference_files

    def separation(self) -> Separation:
        """The configured run: the mixture opened and windowed, its reference source ready (built once).

        Streams through the files once to check them and loads the diffusion model, so that bad
        input fails before any output is written.
        """
        if self.batch:
            raise InputError(
                f"--data.mixture {self.hparams.mixture!r} names several recordings: this command takes one "
                "(fit takes several)"
            )
        if self._separation is None:
            hp = self.hparams
            self._separation = self.separation_of(hp.mixture, self._queries, self._reference_files or None)
        return self._separation

    def separation_of(
        self, mixture: str, queries: list[str], references: list[list[str]] | None = None
    ) -> Separation:
        """A run of another mixture and queries with these settings, sharing the loaded model.

        Args:
            mixture: The audio file.
            queries: Its queries.
            references: Per query, true-source files (None: generate references).
        """
        hp = self.hparams
        queries = self._check_queries(queries[0] if queries else "", queries, references)
        if references:
            references = self._check_references(references, queries)
        recording = open_recording(mixture, self.spec, hp.window_overlap)
        source: ReferenceSource
        if references:
            recordings = [[aligned_recording(p, recording, self.spec) for p in files] for files in references]
            source = TrueSourceReferences(recordings, self.spec)
        else:
            source = DiffusionReferences(self.provider(), queries, self.spec, recording.num_windows)
        return Separation(recording, tuple(queries), self.spec, source, hp.windows_per_fit, hp.steps_per_round,
                          hp.steps_per_batch)  # fmt: skip

    def provider(self) -> ReferenceProvider:
        """The diffusion model behind the reference cache, loaded on first use."""
        if self._provider is None:
            self._provider = self._load_provider()
        return self._provider

    def _load_provider(self) -> ReferenceProvider:
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
        try:  # the model loaded, so a hub id's snapshot is in the hub cache
            revision = model_revision(hp.model, hp.model_revision)
        except ModelLoadError:
            revision = "unknown"
        identity = ReferenceProvider.identity_of(hp.model, revision, self.spec, self.backbone.name)
        return ReferenceProvider(generator, self.generation, self.cache, identity)
