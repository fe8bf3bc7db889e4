"""Tests of the window plan and the streaming overlap-add in dgmo_pl.audio.windows."""

from __future__ import annotations

import pytest
import torch

from dgmo_pl.audio.windows import OverlapAdd, WindowPlan


def weight_sum(plan: WindowPlan) -> torch.Tensor:
    """Every window's weights placed at its start and added: ``[length]`` float64."""
    total = torch.zeros(plan.starts[-1] + plan.window, dtype=torch.float64)
    for i, start in enumerate(plan.starts):
        total[start : start + plan.window] += plan.weights(i).double()
    return total[: plan.length]


def windows_of(x: torch.Tensor, plan: WindowPlan) -> list[torch.Tensor]:
    """The windows of ``x`` ``[C, length]``, zero-padded past its end: each ``[C, window]``."""
    padded = torch.nn.functional.pad(x, (0, plan.starts[-1] + plan.window - x.shape[-1]))
    return [padded[:, s : s + plan.window] for s in plan.starts]


def join(plan: WindowPlan, segments: list[torch.Tensor]) -> tuple[torch.Tensor, list[int], OverlapAdd]:
    """Overlap-add ``segments``; returns the joined signal, the block lengths and the joiner."""
    blocks: list[torch.Tensor] = []
    ola = OverlapAdd(plan, segments[0].shape[0], blocks.append)
    for i, segment in enumerate(segments):
        ola.add(i, segment)
    ola.finish()
    return torch.cat(blocks, dim=-1), [b.shape[-1] for b in blocks], ola


def three_deep() -> WindowPlan:
    """Half-window overlaps carried to a rate where rounding makes three windows share a sample."""
    return WindowPlan.uniform(40, 10, 5).at_rate(100, 127, 51)


def widened() -> WindowPlan:
    """Windows without overlap carried to a rate where rounding would leave a gap between two."""
    return WindowPlan.uniform(30, 10, 0).at_rate(100, 114, 34)


def plan_cases() -> list[WindowPlan]:
    """Uniform plans of many shapes, and plans carried to other rates with uneven overlaps."""
    plans = [
        WindowPlan.uniform(length, window, overlap)
        for length, window, overlap in [
            (1, 100, 0),
            (37, 100, 20),
            (100, 100, 30),
            (101, 100, 30),
            (1000, 100, 50),
            (1013, 100, 49),
            (999, 64, 0),
            (5000, 400, 123),
            (7, 2, 1),
            (10, 1, 0),
        ]
    ]
    base = WindowPlan.uniform(10_000, 1000, 300)
    plans.append(base.at_rate(16000, 44100, 27_563))
    plans.append(base.at_rate(16000, 22050, 13_781))
    plans.append(base.at_rate(44100, 16000, 3_628))
    plans.append(three_deep())
    plans.append(widened())
    return plans


# --- the plan -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "window", "overlap", "starts"),
    [
        (1, 10, 0, (0,)),
        (10, 10, 5, (0,)),
        (11, 10, 5, (0, 5)),
        (15, 10, 5, (0, 5)),
        (16, 10, 5, (0, 5, 10)),
        (30, 10, 0, (0, 10, 20)),
        (31, 10, 0, (0, 10, 20, 30)),
        (100, 40, 10, (0, 30, 60)),
    ],
)
def test_uniform_starts(length, window, overlap, starts):
    """One window if it fits, else ceil((length - window) / hop) + 1 windows at i * hop."""
    plan = WindowPlan.uniform(length, window, overlap)
    assert plan.starts == starts
    assert plan.num_windows == len(starts)
    assert (plan.length, plan.window) == (length, window)


def test_uniform_model_window_on_a_minute():
    """A minute at 16 kHz in 10.24 s windows with 1 s overlap: 7 windows, hop 147,840 samples."""
    plan = WindowPlan.uniform(960_000, 163_840, 16_000)
    assert plan.num_windows == 7
    assert plan.starts[1] == 147_840
    assert plan.starts[-1] < plan.length <= plan.starts[-1] + plan.window


@pytest.mark.parametrize(
    ("length", "window", "overlap", "named"),
    [(0, 10, 0, "length"), (10, 0, 0, "window"), (10, 10, -1, "overlap"), (100, 10, 6, "overlap 6")],
)
def test_uniform_rejects_bad_values(length, window, overlap, named):
    """Bad lengths, windows and overlaps raise ValueError naming the value."""
    with pytest.raises(ValueError, match=named):
        WindowPlan.uniform(length, window, overlap)


def test_uniform_accepts_half_window_overlap():
    """Overlap == window // 2 is the largest allowed (two windows deep at most)."""
    plan = WindowPlan.uniform(100, 11, 5)
    assert plan.overlap_after(0) == 5


@pytest.mark.parametrize(
    "starts", [(1, 10), (0, 0, 5), (0, 11), (0, 4, 8)], ids=["late", "repeat", "gap", "three-deep"]
)
def test_plan_rejects_broken_windows(starts):
    """Plans with a late first window, repeated starts, gaps or three-deep overlaps are refused."""
    with pytest.raises(ValueError):
        WindowPlan(20, 10, starts)


def test_overlaps_at_the_ends_and_between():
    """Overlaps are 0 at the ends, and overlap_after(i) == overlap_before(i + 1)."""
    plan = WindowPlan.uniform(1000, 100, 30)
    assert plan.overlap_before(0) == 0
    assert plan.overlap_after(plan.num_windows - 1) == 0
    for i in range(plan.num_windows - 1):
        assert plan.overlap_after(i) == plan.overlap_before(i + 1) == 30
    with pytest.raises(IndexError):
        plan.overlap_before(plan.num_windows)


def test_at_rate_same_rate_is_identity():
    """Equal rates give the same windows."""
    plan = WindowPlan.uniform(10_000, 1000, 300)
    assert plan.at_rate(16000, 16000, 10_000) == plan


def test_at_rate_scales_seconds():
    """Starts and window are rounded seconds at the new rate; 16 -> 48 kHz is exactly x3."""
    plan = WindowPlan.uniform(10_000, 1000, 300)
    tripled = plan.at_rate(16000, 48000, 30_000)
    assert tripled.window == 3000
    assert tripled.starts == tuple(3 * s for s in plan.starts)
    carried = plan.at_rate(16000, 44100, 27_563)
    assert carried.window == round(1000 * 44100 / 16000)
    assert carried.starts == tuple(int(s * 44100 / 16000 + 0.5) for s in plan.starts)
    assert len(set(carried.overlap_after(i) for i in range(carried.num_windows - 1))) == 2


def test_at_rate_widens_the_window_over_rounding_gaps():
    """Where rounded starts lie one sample further apart than the rounded window, it is widened."""
    plan = widened()
    assert plan.starts == (0, 11, 23)
    assert plan.window == 12  # round(11.4) + 1
    assert all(plan.overlap_after(i) >= 0 for i in range(plan.num_windows - 1))


def test_at_rate_may_put_three_windows_on_a_sample():
    """Rounding can make three windows meet; such plans are valid (their weights are tested below)."""
    plan = three_deep()
    assert plan.window == 13
    assert min(c - a for a, c in zip(plan.starts, plan.starts[2:])) < plan.window


def test_at_rate_model_window_to_44100_is_exact():
    """The model's 163,840-sample window is exactly 451,584 samples at 44.1 kHz."""
    plan = WindowPlan.uniform(960_000, 163_840, 16_000).at_rate(16000, 44100, 2_646_000)
    assert plan.window == 451_584
    assert plan.starts[1] == 147_840 * 44100 // 16000


def test_at_rate_rejects_a_length_that_does_not_match():
    """A target length far from the plan's length at that rate is refused."""
    plan = WindowPlan.uniform(10_000, 1000, 300)
    with pytest.raises(ValueError, match="length"):
        plan.at_rate(16000, 44100, 40_000)


# --- weights ------------------------------------------------------------------------------------


def test_weights_shape_and_shape_of_the_fades():
    """Weights are [window] float32: 1 in the middle, sin^2 rise and cos^2 fall over the overlaps."""
    plan = WindowPlan.uniform(1000, 100, 20)
    w = plan.weights(1)
    assert w.shape == (100,) and w.dtype == torch.float32
    n = torch.arange(20, dtype=torch.float64)
    rise = torch.sin(torch.pi / 2 * (n + 0.5) / 20) ** 2
    torch.testing.assert_close(w[:20].double(), rise, atol=1e-7, rtol=0)
    torch.testing.assert_close(w[80:].double(), 1 - rise, atol=1e-7, rtol=0)
    assert torch.all(w[20:80] == 1)
    assert torch.all(plan.weights(0)[:80] == 1)  # the first window does not rise
    assert torch.all(plan.weights(plan.num_windows - 1)[20:] == 1)  # the last does not fall


@pytest.mark.parametrize("plan", plan_cases(), ids=lambda p: f"{p.length}-{p.window}-{p.num_windows}")
def test_weights_add_to_one(plan):
    """Summed over all windows at their starts, the weights are 1 on [0, length)."""
    torch.testing.assert_close(weight_sum(plan), torch.ones(plan.length, dtype=torch.float64), atol=1e-6, rtol=0)


def test_weights_add_to_one_on_model_windows_at_44100():
    """The same on the model's 10.24 s windows carried to 44.1 kHz over half a minute."""
    plan = WindowPlan.uniform(480_000, 163_840, 16_000).at_rate(16000, 44100, 1_323_000)
    torch.testing.assert_close(weight_sum(plan), torch.ones(plan.length, dtype=torch.float64), atol=1e-6, rtol=0)


# --- overlap-add --------------------------------------------------------------------------------


@pytest.mark.parametrize("plan", plan_cases(), ids=lambda p: f"{p.length}-{p.window}-{p.num_windows}")
def test_overlap_add_of_windows_gives_the_signal_back(plan):
    """Joining the (zero-padded) windows of a signal gives the signal back, exactly as long."""
    x = torch.randn(2, plan.length, generator=torch.Generator().manual_seed(plan.length))
    y, lengths, ola = join(plan, windows_of(x, plan))
    assert y.shape == x.shape and y.dtype == torch.float32
    assert ola.emitted == plan.length == sum(lengths)
    torch.testing.assert_close(y, x, atol=1e-6, rtol=0)


def test_overlap_add_emits_as_soon_as_possible():
    """After add(i), every sample before the next window's start is passed on, and no more.

    So the joiner holds only the overlap with the next window, however long the recording.
    """
    plan = WindowPlan.uniform(10_000, 300, 100)
    blocks: list[torch.Tensor] = []
    ola = OverlapAdd(plan, 1, blocks.append)
    x = torch.randn(1, plan.length, generator=torch.Generator().manual_seed(0))
    for i, segment in enumerate(windows_of(x, plan)):
        ola.add(i, segment)
        expected = plan.starts[i + 1] if i + 1 < plan.num_windows else plan.length
        assert ola.emitted == expected
        assert sum(b.shape[-1] for b in blocks) == expected
    ola.finish()
    assert ola.emitted == plan.length


def test_overlap_add_takes_float64_and_gives_float32():
    """Segments of other dtypes are accepted; blocks are float32."""
    plan = WindowPlan.uniform(500, 200, 50)
    x = torch.randn(3, 500, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y, _, _ = join(plan, windows_of(x, plan))
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, x.float(), atol=1e-6, rtol=0)


def test_overlap_add_does_not_modify_segments():
    """The caller's segments are left as they were."""
    plan = WindowPlan.uniform(500, 200, 50)
    segments = windows_of(torch.randn(1, 500, generator=torch.Generator().manual_seed(2)), plan)
    copies = [s.clone() for s in segments]
    join(plan, segments)
    assert all(torch.equal(s, c) for s, c in zip(segments, copies))


def test_overlap_add_rejects_out_of_order_windows():
    """Windows out of order raise ValueError naming the expected and the given index."""
    plan = WindowPlan.uniform(500, 200, 50)
    ola = OverlapAdd(plan, 1, lambda block: None)
    with pytest.raises(ValueError, match="expected window 0, got window 1"):
        ola.add(1, torch.zeros(1, 200))
    ola.add(0, torch.zeros(1, 200))
    with pytest.raises(ValueError, match="expected window 1, got window 0"):
        ola.add(0, torch.zeros(1, 200))


def test_overlap_add_rejects_a_wrong_shape():
    """A segment of the wrong shape raises ValueError naming both shapes."""
    plan = WindowPlan.uniform(500, 200, 50)
    ola = OverlapAdd(plan, 2, lambda block: None)
    with pytest.raises(ValueError, match=r"\[2, 200\].*\[1, 200\]"):
        ola.add(0, torch.zeros(1, 200))
    with pytest.raises(ValueError, match=r"\[2, 200\].*\[2, 199\]"):
        ola.add(0, torch.zeros(2, 199))


def test_finish_with_missing_windows_raises():
    """finish() before the last window raises ValueError."""
    plan = WindowPlan.uniform(500, 200, 50)
    ola = OverlapAdd(plan, 1, lambda block: None)
    ola.add(0, torch.zeros(1, 200))
    with pytest.raises(ValueError, match="1 of 3 windows"):
        ola.finish()
