"""Where each round's references come from: the diffusion model (DGMO) or the true sources.

Both modes answer one question, :meth:`ReferenceSource.references`: the reference log-mels of
some queries over some windows for one round, given the previous round's masks. A fit's data
module (:class:`~dgmo_pl.fit_data.FitDataModule`) asks it once per round.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from dgmo_pl.audio import frontend as fe
from dgmo_pl.diffusion.provider import ReferenceProvider
from dgmo_pl.errors import InputError
from dgmo_pl.publish import file_digest
from dgmo_pl.recording import Mixture, Recording, load_window, reference_log_mel


def round_seed(round_index: int) -> int:
    """Seed of a round's VAE samples: the run's seed (``seed_everything``) plus the round."""
    return (torch.initial_seed() + round_index) % 2**63


def masked_log_mel(
    mixture: Mixture, spec: fe.SpectrogramConfig, mel_basis: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Log-mel of a window, under ``mask`` (``[F, T]``) if given: ``[1, 1, T, M]`` (``mel_basis``: ``[F, M]``)."""
    magnitude = mixture.magnitude if mask is None else mixture.magnitude * mask.to(mixture.magnitude)
    return fe.diffusion_log_mel(magnitude, mel_basis, spec)


class ReferenceSource(Protocol):
    """The references of a run's rounds.

    Attributes:
        follows_masks: Whether a round's references depend on the previous round's masks (if
            not, a fit computes them once and serves them every round).
    """

    follows_masks: bool

    def references(
        self, round_index: int, queries: Sequence[int], windows: Sequence[Mixture], masks: torch.Tensor | None,
        rounds: int | None = None,
    ) -> torch.Tensor:
        """One round's reference log-mels of ``queries`` over ``windows``: ``[Q, W, K, 1, T, M]``.

        Args:
            round_index: The round (0: from the mixture).
            queries: Indices of the queries in the run.
            windows: The fitted windows of the mixture, prepared.
            masks: The previous round's output masks, ``[Q, W, F, T]`` (None in round 0).
            rounds: Rounds in the fit, for progress messages.
        """
        ...

    def to(self, device: torch.device) -> None:
        """Run any networks on ``device``."""
        ...

    def identity(self) -> dict[str, Any]:
        """What determines the references besides the mixture and the masks (for a run's record)."""
        ...

    def vocode(self, log_mels: torch.Tensor) -> torch.Tensor | None:
        """Waveforms of reference log-mels ``[K, 1, H, W] -> [K, N]``, or None when there is no vocoder."""
        ...


class TrueSourceReferences:
    """The true sources' log-mels as every round's references (isolates the mask optimisation).

    Args:
        recordings: Per query, its time-aligned source recordings (one reference each).
        spec: The front end.
    """

    follows_masks = False

    def __init__(self, recordings: Sequence[Sequence[Recording]], spec: fe.SpectrogramConfig) -> None:
        self.recordings = [list(r) for r in recordings]
        self.spec = spec
        self.mel_basis = fe.mel_filterbank(spec)

    def references(
        self, round_index: int, queries: Sequence[int], windows: Sequence[Mixture], masks: torch.Tensor | None,
        rounds: int | None = None,
    ) -> torch.Tensor:
        """The sources' log-mels, scaled as each mixture window was (see :class:`ReferenceSource`)."""
        if len({len(self.recordings[q]) for q in queries}) > 1:
            raise InputError(
                "joint masks need as many --data.references files for every query: give each query the same number"
            )
        return torch.stack([
            torch.stack([
                torch.cat([reference_log_mel(r, mixture, self.spec, self.mel_basis) for r in self.recordings[q]])
                for mixture in windows
            ])
            for q in queries
        ])  # fmt: skip

    def to(self, device: torch.device) -> None:
        """Nothing runs on a device."""

    def identity(self) -> dict[str, Any]:
        """The true sources' contents."""
        return {"true_sources": [[file_digest(r.path) for r in recordings] for recordings in self.recordings]}

    def vocode(self, log_mels: torch.Tensor) -> None:
        """True sources have no vocoded version."""
        return None


class DiffusionReferences:
    """DGMO's references: DDIM inversion of the current estimate, then text-guided denoising.

    Round 0 depends only on the mixture window, so it is generated for all the run's queries of a
    window together, once, and kept while later fits of the same windows need it (a joint fit,
    or the next query of a short recording); a later round starts from the window under the
    query's previous mask. The provider stores what it computes in the reference cache.

    Args:
        provider: The loaded model behind its cache.
        queries: All the run's query texts.
        spec: The front end.
        num_windows: Windows of the recording (for progress messages).
    """

    follows_masks = True

    def __init__(
        self, provider: ReferenceProvider, queries: Sequence[str], spec: fe.SpectrogramConfig, num_windows: int
    ) -> None:
        self.provider, self.queries, self.spec, self.num_windows = provider, list(queries), spec, num_windows
        self.mel_basis = fe.mel_filterbank(spec)  # once, not per window and round
        self._first_round: dict[int, list[torch.Tensor]] = {}

    def _label(self, round_index: int, window: int, queries: list[str], rounds: int | None) -> str:
        of = f"/{rounds}" if rounds and rounds > 0 else ""
        where = f"window {window + 1}/{self.num_windows}, " if self.num_windows > 1 else ""
        what = f"'{queries[0]}'" if len(queries) == 1 else f"{len(queries)} queries"
        return f"round {round_index + 1}{of}, {where}{what}: "

    def first_round(self, mixture: Mixture, rounds: int | None = None) -> list[torch.Tensor]:
        """Round 0's references of every query for one window: ``[K, 1, T, M]`` each."""
        if mixture.index not in self._first_round:
            self._first_round[mixture.index] = self.provider.references(
                masked_log_mel(mixture, self.spec, self.mel_basis), self.queries, 0, round_seed(0), mixture.digest,
                self._label(0, mixture.index, self.queries, rounds),
            )  # fmt: skip
        return self._first_round[mixture.index]

    def references(
        self, round_index: int, queries: Sequence[int], windows: Sequence[Mixture], masks: torch.Tensor | None,
        rounds: int | None = None,
    ) -> torch.Tensor:
        """Generated (or cached) references (see :class:`ReferenceSource`)."""
        if masks is None:
            # Keep round 0 of these windows only: memory must not grow with the recording.
            wanted = {m.index for m in windows}
            self._first_round = {w: refs for w, refs in self._first_round.items() if w in wanted}
            return torch.stack([torch.stack([self.first_round(m, rounds)[q] for m in windows]) for q in queries])
        seed = round_seed(round_index)
        rows = []
        for qi, query in enumerate(queries):
            text = self.queries[query]
            row = []
            for wi, mixture in enumerate(windows):
                estimate = masked_log_mel(mixture, self.spec, self.mel_basis, masks[qi, wi])
                (refs,) = self.provider.references(
                    estimate, [text], round_index, seed, mixture.digest,
                    self._label(round_index, mixture.index, [text], rounds),
                )  # fmt: skip
                row.append(refs)
            rows.append(torch.stack(row))
        return torch.stack(rows)

    def store_first_round(self, recording: Recording) -> list[Path]:
        """Generate and store round 0 of every window and query; returns where each entry lies."""
        paths: list[Path] = []
        seed = round_seed(0)
        for index in range(recording.num_windows):
            mixture = load_window(recording, index, self.spec)
            log_mel = masked_log_mel(mixture, self.spec, self.mel_basis)
            self.provider.references(log_mel, self.queries, 0, seed, mixture.digest,
                                     self._label(0, index, self.queries, None))  # fmt: skip
            paths.extend(self.provider.paths(log_mel, self.queries, 0, seed, mixture.digest))
        return paths

    def identity(self) -> dict[str, Any]:
        """The model (id, revision, backbone), front end, generation settings and numerics (the cache's key fields)."""
        return dict(self.provider.identity)

    def to(self, device: torch.device) -> None:
        """Move the diffusion networks to ``device``."""
        self.provider.generator.to(device)

    def vocode(self, log_mels: torch.Tensor) -> torch.Tensor | None:
        """The model's vocoder on reference log-mels (None without one)."""
        return self.provider.generator.vocode(log_mels)
