"""What one separation run does: its recording, queries and reference source, cut into fits.

A :class:`Separation` is built once per recording (the model already loaded); :func:`plan_fits`
cuts it into :class:`FitPlan` s, frozen descriptions of one Lightning fit each, which the loop
(:func:`~dgmo_pl.separate.separate`) runs in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dgmo_pl.audio.frontend import SpectrogramConfig
from dgmo_pl.naming import unique_slugs
from dgmo_pl.recording import Recording
from dgmo_pl.sources import ReferenceSource

#: Name of the folder (and logger version) of a joint fit of all queries.
JOINT = "joint"


@dataclass(frozen=True)
class FitPlan:
    """One fit: the masks of some queries over some consecutive windows of the recording.

    Attributes:
        queries: Indices of the fitted queries in the run's query list (one, or all when joint).
        windows: Indices of the fitted windows.
        outputs: The file name (without ``.wav``) of each mask, in mask order: the queries', then
            a joint fit's residual.
        group: Folder of the outputs, relative to the run folder (the query's name, or ``joint``).
        version: The fit's logger version, relative to the run folder: ``group`` when the
            recording takes one fit per group, else ``<group>/windows_<a>-<b>`` (1-based).
        first: Whether the fit holds the recording's first window (its outputs start).
        last: Whether it holds the last window (its outputs are complete when it ends).
    """

    queries: tuple[int, ...]
    windows: tuple[int, ...]
    outputs: tuple[str, ...]
    group: str
    version: str
    first: bool
    last: bool

    @property
    def masks(self) -> int:
        """Masks per window: one per output."""
        return len(self.outputs)


def window_batches(num_windows: int, windows_per_fit: int) -> list[tuple[int, ...]]:
    """The windows of each fit, in order: consecutive runs of at most ``windows_per_fit``."""
    if num_windows < 1 or windows_per_fit < 1:
        raise ValueError(f"num_windows ({num_windows}) and windows_per_fit ({windows_per_fit}) must be at least 1")
    return [tuple(range(i, min(i + windows_per_fit, num_windows))) for i in range(0, num_windows, windows_per_fit)]


def plan_fits(
    queries: Sequence[str], num_windows: int, windows_per_fit: int, joint: bool = False, residual: bool = False
) -> list[FitPlan]:
    """The fits of a run, in the order they run: query group by query group, window batch by batch.

    Independent masks: one group per query; joint masks: one group of all queries (plus the
    residual's output when ``residual``). Names are the queries' slugs, unique in the run.
    """
    if residual and not joint:
        raise ValueError("a residual mask needs joint masks")
    names = unique_slugs(list(queries))
    if joint:
        outputs = tuple(names) + ((unique_slugs([*queries, "residual"])[-1],) if residual else ())
        groups = [(tuple(range(len(queries))), outputs, JOINT)]
    else:
        groups = [((q,), (name,), name) for q, name in enumerate(names)]
    batches = window_batches(num_windows, windows_per_fit)
    plans = []
    for fitted, outputs, group in groups:
        for windows in batches:
            version = group if len(batches) == 1 else f"{group}/windows_{windows[0] + 1}-{windows[-1] + 1}"
            plans.append(FitPlan(fitted, windows, outputs, group, version, windows[0] == 0,
                                 windows[-1] == num_windows - 1))  # fmt: skip
    return plans


@dataclass(frozen=True)
class Separation:
    """Everything a run's fits share, built once: the recording, its queries and where references come from.

    Attributes:
        recording: The mixture, opened and windowed.
        queries: The query texts, in order.
        spec: The model's front end.
        source: The references of every round (diffusion or true sources).
        windows_per_fit: Windows whose masks are optimised together in one fit.
        steps_per_round: Adam steps per round.
        steps_per_batch: Adam steps per loader batch.
    """

    recording: Recording
    queries: tuple[str, ...]
    spec: SpectrogramConfig
    source: ReferenceSource
    windows_per_fit: int
    steps_per_round: int
    steps_per_batch: int

    @property
    def names(self) -> list[str]:
        """Each query's name for files and folders: readable, portable, unique in the run."""
        return unique_slugs(list(self.queries))

    def plans(self, joint: bool = False, residual: bool = False) -> list[FitPlan]:
        """The run's fits (see :func:`plan_fits`)."""
        return plan_fits(self.queries, self.recording.num_windows, self.windows_per_fit, joint, residual)
