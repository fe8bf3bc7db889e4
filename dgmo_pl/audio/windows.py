"""Overlapping windows over a long recording, and their streaming overlap-add.

The model sees one fixed-length segment at a time; a longer recording is cut into windows that
overlap a little, each window is separated on its own, and the outputs are joined with
cross-fades that add to exactly one, so that joining the windows of a signal gives the signal
back. Shapes: ``C`` channels, ``W`` samples per window.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

#: Samples by which :meth:`WindowPlan.at_rate` may widen a rounded window.
_SLACK = 2


def _scale(samples: int, target_rate: int, source_rate: int) -> int:
    """``round(samples * target / source)`` in exact integer arithmetic, halves rounded up."""
    return (2 * samples * target_rate + source_rate) // (2 * source_rate)


@dataclass(frozen=True)
class WindowPlan:
    """Where the windows of a recording lie, in samples at one sample rate.

    The first window starts at 0, starts increase, consecutive windows leave no gap, and the last
    window starts before ``length`` and reaches it (it may run past it: it is then zero-padded).
    Uniform plans put no sample in more than two windows; plans carried to another rate by
    :meth:`at_rate` may, by a sample or two of rounding, and their weights still add to one.

    Attributes:
        length: Samples in the recording (>= 1).
        window: Samples per window.
        starts: First sample of each window, increasing.

    Raises:
        ValueError: The windows break one of the rules above.
    """

    length: int
    window: int
    starts: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "starts", tuple(int(s) for s in self.starts))
        _check_plan(self.length, self.window, self.starts)

    @classmethod
    def uniform(cls, length: int, window: int, overlap: int) -> WindowPlan:
        """Windows every ``window - overlap`` samples from 0 until one reaches ``length``.

        Args:
            length: Samples in the recording.
            window: Samples per window.
            overlap: Samples shared by consecutive windows, at most ``window // 2``.

        Returns:
            One window at 0 if ``length <= window``, else ``ceil((length - window) / hop) + 1``
            windows at ``i * hop``, ``hop = window - overlap``.

        Raises:
            ValueError: ``length < 1``, ``window < 1``, ``overlap < 0`` or
                ``overlap > window // 2``.
        """
        if length < 1:
            raise ValueError(f"length must be at least 1 sample, got {length}: pass a non-empty recording")
        if window < 1:
            raise ValueError(f"window must be at least 1 sample, got {window}: pass a positive window")
        if overlap < 0:
            raise ValueError(f"overlap must be 0 or more samples, got {overlap}: pass a non-negative overlap")
        if overlap > window // 2:
            raise ValueError(
                f"overlap {overlap} is more than half the window ({window} // 2 = {window // 2}), so three "
                f"windows would overlap: pass an overlap of at most {window // 2}"
            )
        hop = window - overlap
        count = 1 if length <= window else -(-(length - window) // hop) + 1
        return cls(length, window, tuple(i * hop for i in range(count)))

    def at_rate(self, source_rate: int, target_rate: int, length: int) -> WindowPlan:
        """The same windows, in seconds, at another sample rate.

        Starts become ``round(start * target / source)`` and the window
        ``round(window * target / source)`` (halves rounded up), widened by the sample or two that
        rounding may leave between windows or before ``length``.

        Args:
            source_rate: Rate of this plan, in Hz.
            target_rate: Rate of the new plan, in Hz.
            length: The recording's length at ``target_rate``, in samples.

        Returns:
            The plan at ``target_rate``; this plan's windows with ``length`` if the rates are equal.

        Raises:
            ValueError: A rate below 1, or a ``length`` the carried windows do not fit (it is not
                this plan's length at ``target_rate``).
        """
        for name, rate in (("source_rate", source_rate), ("target_rate", target_rate)):
            if rate < 1:
                raise ValueError(f"{name} must be at least 1 Hz, got {rate}")
        if source_rate == target_rate:
            return WindowPlan(length, self.window, self.starts)
        starts = tuple(_scale(s, target_rate, source_rate) for s in self.starts)
        window = _scale(self.window, target_rate, source_rate)
        # Rounding may leave a sample or two between windows or before the end: bridge them.
        need = max([length - starts[-1], *(b - a for a, b in zip(starts, starts[1:], strict=False))])
        if need - window > _SLACK or starts[-1] >= length:
            raise ValueError(
                f"length {length} does not fit the windows carried from {source_rate} Hz to {target_rate} Hz "
                f"(about {starts[-1] + window} samples, the last from sample {starts[-1]}): pass the "
                f"recording's length at {target_rate} Hz"
            )
        fitted = max(window, need)
        return WindowPlan(length, fitted, starts)

    @property
    def num_windows(self) -> int:
        """Number of windows."""
        return len(self.starts)

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.num_windows:
            raise IndexError(f"window index {index} out of range: the plan has {self.num_windows} windows")

    def overlap_before(self, index: int) -> int:
        """Samples window ``index`` shares with the previous window (0 for the first)."""
        self._check_index(index)
        if index == 0:
            return 0
        return self.starts[index - 1] + self.window - self.starts[index]

    def overlap_after(self, index: int) -> int:
        """Samples window ``index`` shares with the next window (0 for the last)."""
        self._check_index(index)
        if index == self.num_windows - 1:
            return 0
        return self.starts[index] + self.window - self.starts[index + 1]

    def weights(self, index: int) -> torch.Tensor:
        """Cross-fade weights of window ``index``: ``[W]`` float32.

        One, except over the overlap with the previous window, where they rise as
        ``sin^2(pi/2 * (n + 0.5) / ov)``, and over the overlap with the next window, where they fall
        as ``cos^2`` of the same argument (``n`` counted from the start of the overlap, ``ov`` its
        length), so that the weights of consecutive windows add to one where they overlap. Where
        more than two windows meet (in plans from :meth:`at_rate` or built by hand), the fades are divided by
        their sum there, so that the weights still add to one.
        """
        self._check_index(index)
        start = self.starts[index]
        # Divide by the fades of every window here: a no-op (to 1e-16) where at most two meet.
        total = torch.zeros(self.window, dtype=torch.float64)
        for other in self._sharing(index):
            lo, hi = max(start, self.starts[other]), min(start, self.starts[other]) + self.window
            total[lo - start : hi - start] += self._fades(other)[lo - self.starts[other] : hi - self.starts[other]]
        return (self._fades(index) / total).float()

    def _sharing(self, index: int) -> range:
        """Windows that share a sample with window ``index``, itself included."""
        first, last = index, index
        while first > 0 and self.starts[first - 1] + self.window > self.starts[index]:
            first -= 1
        while last + 1 < self.num_windows and self.starts[last + 1] < self.starts[index] + self.window:
            last += 1
        return range(first, last + 1)

    def _fades(self, index: int) -> torch.Tensor:
        """The rise and fall of window ``index`` before any normalisation: ``[W]`` float64."""
        rise, fall = self.overlap_before(index), self.overlap_after(index)
        fades = torch.ones(self.window, dtype=torch.float64)
        if rise:
            fades[:rise] = _fade(rise).sin().square()
        if fall:
            fades[self.window - fall :] *= _fade(fall).cos().square()
        return fades


def _fade(overlap: int) -> torch.Tensor:
    """``pi/2 * (n + 0.5) / overlap`` for ``n`` in ``[0, overlap)``: ``[overlap]`` float64."""
    return (torch.arange(overlap, dtype=torch.float64) + 0.5) * (math.pi / 2 / overlap)


def _check_plan(length: int, window: int, starts: tuple[int, ...]) -> None:
    """Raise ValueError unless the windows cover ``[0, length)`` from 0, in order, without gaps."""
    if length < 1:
        raise ValueError(f"length must be at least 1 sample, got {length}: pass a non-empty recording")
    if window < 1:
        raise ValueError(f"window must be at least 1 sample, got {window}: pass a positive window")
    if not starts or starts[0] != 0:
        raise ValueError(f"the first window must start at sample 0, got starts {starts[:3]}...")
    for i, (a, b) in enumerate(zip(starts, starts[1:], strict=False)):
        if not 0 < b - a <= window:
            raise ValueError(
                f"window {i + 1} starts at {b}, {b - a} samples after window {i}: starts must increase "
                f"by 1 to {window} (the window) samples"
            )
    if starts[-1] >= length or starts[-1] + window < length:
        raise ValueError(
            f"the last window ({starts[-1]} to {starts[-1] + window}) must start before and reach the end "
            f"of the recording ({length} samples)"
        )


class OverlapAdd:
    """Joins per-window outputs into one signal, streaming: it holds at most one window of samples.

    Args:
        plan: Where the windows lie.
        channels: Channels of every window's output.
        sink: Called with each finished block of samples, ``[C, n]`` float32, in order; the blocks
            together are ``plan.length`` samples long.
    """

    def __init__(self, plan: WindowPlan, channels: int, sink: Callable[[torch.Tensor], None]) -> None:
        if channels < 1:
            raise ValueError(f"channels must be at least 1, got {channels}")
        self.plan = plan
        self.channels = channels
        self._sink = sink
        self._next = 0
        self._emitted = 0
        # Weighted samples from `emitted` on that a later window still adds to: [C, overlap].
        self._pending: torch.Tensor | None = None

    @property
    def emitted(self) -> int:
        """Samples passed to the sink so far."""
        return self._emitted

    def add(self, index: int, segment: torch.Tensor) -> None:
        """Add the output of window ``index`` and pass on every sample no later window touches.

        Args:
            index: The window, in order 0, 1, 2, ...
            segment: ``[C, W]`` output of that window.

        Raises:
            ValueError: The windows come out of order, or ``segment`` has the wrong shape.
        """
        plan = self.plan
        if index != self._next:
            expected = "no more windows" if self._next == plan.num_windows else f"window {self._next}"
            raise ValueError(f"windows must be added in order: expected {expected}, got window {index}")
        shape = (self.channels, plan.window)
        if tuple(segment.shape) != shape:
            raise ValueError(f"window {index} must have shape {list(shape)}, got {list(segment.shape)}")
        weighted = segment.detach().float() * plan.weights(index).to(segment.device)
        if self._pending is not None:
            weighted[:, : self._pending.shape[-1]] += self._pending
        last = index == plan.num_windows - 1
        done = plan.length - plan.starts[index] if last else plan.starts[index + 1] - plan.starts[index]
        # Copies, so that a sink that keeps its blocks does not keep whole windows alive.
        self._emit(weighted[:, :done].clone() if done < plan.window else weighted)
        self._pending = None if last else weighted[:, done:].clone()
        self._next += 1

    def finish(self) -> None:
        """Check that every window came; the last window's samples are already passed on.

        Raises:
            ValueError: Windows are missing.
        """
        if self._next != self.plan.num_windows:
            raise ValueError(
                f"only {self._next} of {self.plan.num_windows} windows were added: add windows "
                f"{self._next} to {self.plan.num_windows - 1} before finishing"
            )

    def _emit(self, block: torch.Tensor) -> None:
        if block.shape[-1]:
            self._sink(block)
            self._emitted += block.shape[-1]
