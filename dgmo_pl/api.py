"""Separating from Python: ``Separator.from_pretrained(...).separate("band.flac", ["trumpet", "drums"])``.

The same path as ``main.py fit``: the same settings (the config file's names and defaults), the
same :func:`~dgmo_pl.separate.separate` loop over Lightning fits, the same files. The model is
loaded once per :class:`Separator` and reused by every call.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, seed_everything

from dgmo_pl.audio.io import read_audio, write_audio
from dgmo_pl.batch import PER_RECORDING, BatchReport, list_recordings, recording_key, separate_recordings
from dgmo_pl.data import SeparationDataModule
from dgmo_pl.errors import InputError
from dgmo_pl.model import MaskSeparator
from dgmo_pl.output import OutputSettings
from dgmo_pl.run_state import RunState
from dgmo_pl.separate import SeparationResult, separate, trainer_factory

#: MaskSeparator's settings, taken by :meth:`Separator.from_pretrained` beside the data settings.
MODEL_SETTINGS = ("lr", "mask_init", "threshold")


class SeparationOutput(Mapping[str, torch.Tensor]):
    """The separated sounds of one call: ``output["dog-barking"]`` is ``[channels, samples]``.

    Keys are the output names the command line gives its files (the queries' slugs, and
    ``residual``); :attr:`sample_rate` is the files' rate (the input's unless ``sample_rate: model``);
    :attr:`masks` holds each output's fitted mask on the model's grid, ``[windows, F, T]`` (the
    thresholded mask that made it, one per window of the recording).
    """

    def __init__(
        self, audio: dict[str, torch.Tensor], sample_rate: int, groups: dict[str, str],
        masks: dict[str, torch.Tensor] | None = None,
    ) -> None:
        self._audio, self.sample_rate, self._groups, self.masks = audio, sample_rate, groups, dict(masks or {})

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._audio[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._audio)

    def __len__(self) -> int:
        return len(self._audio)

    def save(self, folder: str | Path, subtype: str = "PCM_16") -> list[Path]:
        """Write each sound as the command line does, ``<folder>/<query>/<query>.wav`` (``joint/`` for joint masks)."""
        folder = Path(folder)
        return [write_audio(folder / self._groups[name] / f"{name}.wav", audio, self.sample_rate, subtype)
                for name, audio in self._audio.items()]  # fmt: skip


class Separator:
    """A loaded diffusion model and the settings to separate with it.

    Args:
        data: The data settings (model, references, steps, ...); its model is loaded on first use.
        model_settings: MaskSeparator's settings (``lr``, ``mask_init``, ``threshold``).
        rounds: Rounds of reference generation and mask optimisation (``trainer.max_epochs``).
        seed: Seeds every call (``seed_everything``), as the command line's ``seed_everything``.
        audio: How the separated sounds are made (``--audio``).
        trainer: Further Lightning Trainer arguments (``accelerator``, ``precision``, ...).
    """

    def __init__(
        self, data: SeparationDataModule, model_settings: Mapping[str, Any] | None = None, rounds: int = 3,
        seed: int = 0, audio: OutputSettings = OutputSettings(), trainer: Mapping[str, Any] | None = None,
    ) -> None:
        self.data, self.model_settings, self.rounds, self.seed = data, dict(model_settings or {}), rounds, seed
        self.audio, self.trainer = audio, dict(trainer or {})

    @classmethod
    def from_pretrained(
        cls, model: str = "cvssp/audioldm", rounds: int = 3, seed: int = 0, audio: Mapping[str, Any] | None = None,
        trainer: Mapping[str, Any] | None = None, **settings: Any,
    ) -> Separator:
        """Load a model (hub id or local folder) with the config file's settings, by their names.

        Args:
            model: ``data.model``.
            rounds: ``trainer.max_epochs``.
            seed: ``seed_everything``.
            audio: ``audio.*`` settings (``{"sample_rate": "model"}``).
            trainer: Trainer arguments (``{"accelerator": "gpu", "precision": "bf16-mixed"}``).
            **settings: ``model.*`` (``lr``, ``mask_init``, ``threshold``) and ``data.*`` settings
                (``precision``, ``ddim_steps``, ``num_references``, ``cache_dir``, ...).

        Raises:
            InputError: A setting out of its domain, or a model that does not load (a ``ValueError``).
        """
        model_settings = {k: settings.pop(k) for k in MODEL_SETTINGS if k in settings}
        data = SeparationDataModule(model=model, **settings)
        data.provider()  # load now, once
        return cls(data, model_settings, rounds, seed, OutputSettings(**(audio or {})), trainer)

    def separate(
        self, audio: str | Path | torch.Tensor, queries: str | Sequence[str], sample_rate: int | None = None, *,
        joint: bool = False, residual: bool = False, references: Sequence[Sequence[str]] | None = None,
        log_dir: str | Path | None = None, callbacks: Sequence[Callback] = (),
    ) -> SeparationOutput:
        """Separate each query's sound from ``audio``.

        Args:
            audio: An audio file, or a waveform ``[samples]`` or ``[channels, samples]`` with ``sample_rate``.
            queries: One text or several.
            sample_rate: The waveform's rate (only with a tensor).
            joint: The queries' masks partition the mixture (their outputs add up to it).
            residual: With ``joint``, also the "everything else" output.
            references: Per query, true-source files to use instead of generated references.
            log_dir: Keep the run there (TensorBoard logs, checkpoints, files); default: nothing kept.
            callbacks: Further Lightning callbacks for every fit of this call (progress reports, say).

        Returns:
            The separated sounds, by output name.
        """
        texts = [queries] if isinstance(queries, str) else list(queries)
        with tempfile.TemporaryDirectory(prefix="dgmo-") as work:
            path = self._as_file(audio, sample_rate, Path(work))
            folder = Path(log_dir) if log_dir is not None else Path(work) / "run"
            result = self._run(path, texts, folder, joint, residual, references, log_dir is not None, callbacks)
            sounds = {name: read_audio(file, "separated file") for name, file in result.outputs.items()}
            masks = RunState(result.folder).output_masks(result.plans)
        rates = {rate for _, rate in sounds.values()}
        groups = {name: file.parent.name for name, file in result.outputs.items()}
        return SeparationOutput({n: a for n, (a, _) in sounds.items()}, rates.pop(), groups, masks)

    def separate_many(
        self, recordings: str | Path | Sequence[str | Path], queries: str | Sequence[str], output_dir: str | Path, *,
        joint: bool = False, residual: bool = False,
    ) -> BatchReport:
        """Separate every audio file of a folder (or a list) with every query, as ``fit`` does with a folder.

        The files land where ``main.py fit --data.mixture <folder> --output_dir <output_dir>`` puts
        them: ``<output_dir>/<recording>/<query>/<query>.wav`` (``joint/`` for joint masks), with
        each fit's logs and checkpoints. A recording that fails is reported (on stderr and in the
        report) and the others finish; one already done in ``output_dir`` with the same file,
        queries and settings is skipped.

        Args:
            recordings: A folder (its audio files, recursively), or a list of audio files.
            queries: One text or several, for every recording.
            output_dir: The folder of the results (made if missing; reused to skip finished recordings).
            joint: The queries' masks partition each mixture (their outputs add up to it).
            residual: With ``joint``, also the "everything else" output.

        Returns:
            The recordings separated, skipped and failed (with each failure's message), by name.

        Raises:
            InputError: A listed file does not exist, or the folder holds no audio file.
        """
        texts = [queries] if isinstance(queries, str) else list(queries)
        if isinstance(recordings, str | Path):
            mixture: str | list[str] = str(recordings) if Path(recordings).is_dir() else [str(recordings)]
        else:
            mixture = [str(r) for r in recordings]
        listed = list_recordings(mixture)
        settings = {"data": {k: v for k, v in self.data.hparams.items() if k not in PER_RECORDING},
                    "model": self.model_settings, "joint": joint, "residual": residual, "rounds": self.rounds,
                    "seed": self.seed, "audio": dataclasses.asdict(self.audio), "trainer": self.trainer}  # fmt: skip
        return separate_recordings(
            listed, Path(output_dir), lambda path, out: self._run(path, texts, out, joint, residual, None, True),
            lambda path: recording_key(path, texts, settings),
        )  # fmt: skip

    def _run(
        self, path: Path, queries: list[str], folder: Path, joint: bool, residual: bool,
        references: Sequence[Sequence[str]] | None, keep: bool, callbacks: Sequence[Callback] = (),
    ) -> SeparationResult:
        """One recording through :func:`~dgmo_pl.separate.separate` into ``folder`` (``keep``: logs, checkpoints)."""
        seed_everything(self.seed, verbose=False)
        separation = self.data.separation_of(str(path), queries, [list(r) for r in references] if references
                                             else None)  # fmt: skip
        module = MaskSeparator(**self.model_settings, joint=joint, residual=residual, spec=separation.spec)
        quiet = {"enable_progress_bar": False, "enable_checkpointing": keep}
        logs = {} if keep else {"loggers": None}  # no folder kept: no logs
        trainers = trainer_factory(folder, **logs, callbacks=lambda: list(callbacks),
                                   **{"max_epochs": self.rounds, **quiet, **self.trainer})  # fmt: skip
        return separate(separation, module, trainers, folder, self.audio)

    @staticmethod
    def _as_file(audio: str | Path | torch.Tensor, sample_rate: int | None, work: Path) -> Path:
        """The audio as a file: a path as it is, a waveform written losslessly (32-bit float) to ``work``."""
        if not isinstance(audio, torch.Tensor):
            if sample_rate is not None:
                raise InputError(f"sample_rate {sample_rate} is for a waveform; '{audio}' is a file: drop it")
            return Path(audio)
        if sample_rate is None or sample_rate < 1:
            raise InputError(f"a waveform needs its sample_rate (got {sample_rate}): pass sample_rate=44100, ...")
        if audio.dim() not in (1, 2) or audio.shape[-1] == 0:
            raise InputError(f"a waveform must be [samples] or [channels, samples], got shape {list(audio.shape)}")
        return write_audio(work / "input.wav", audio.detach().float().cpu(), sample_rate, "FLOAT")
