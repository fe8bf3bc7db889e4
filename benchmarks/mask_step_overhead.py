"""Time per Adam step of the mask optimisation: Lightning's fit loop against a plain PyTorch loop.

Every loop runs the same step (full-size mask [1, 513, 1024], K = 4 references, Adam at lr 0.01)
on the same data, side by side in one process: the plain loop, then Lightning with one Adam step
per loader batch and with the data module's default ``steps_per_batch``, each with and without
the mask monitor. The repeats alternate (the order rotates) and the medians are printed, as ms
per Adam step and as a ratio to the plain loop. The Lightning runs are the real ones of
``main.py fit`` (``loss/train`` written to TensorBoard at every step by the module's
StepLossLogger, the monitor's statistics every 10 steps, the progress bar off), minus reference
generation.

Usage: ``python benchmarks/mask_step_overhead.py [--steps 300] [--repeats 5] [--steps-per-batch N]``.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from lightning.pytorch import Callback, Trainer  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from callbacks import MaskMonitor  # noqa: E402
from dgmo_pl.data import SeparationDataModule  # noqa: E402
from dgmo_pl.model import MaskSeparator  # noqa: E402
from dgmo_pl.rounds import RoundDataset  # noqa: E402

#: The grouping ``main.py fit`` uses unless told otherwise.
DEFAULT_STEPS_PER_BATCH: int = inspect.signature(SeparationDataModule).parameters["steps_per_batch"].default


def batch() -> dict[str, torch.Tensor]:
    """A seeded full-size round batch: one window's mixture magnitude and K = 4 reference log-mels of one query."""
    torch.manual_seed(0)
    return {"mixture_magnitude": torch.rand(1, 513, 1024) * 5, "references": torch.randn(1, 1, 4, 1, 1024, 64) - 4}


def plain_loop(data: dict[str, torch.Tensor], steps: int) -> float:
    """Seconds per step of the bare PyTorch loop."""
    module = MaskSeparator()
    optimiser = torch.optim.Adam(module.parameters(), lr=0.01)
    start = time.perf_counter()
    for _ in range(steps):
        optimiser.zero_grad()
        loss = module.loss(data)  # the module's loss, outside any Lightning machinery
        loss.backward()
        optimiser.step()
        float(loss)  # the fit loop reads the loss back too
    return (time.perf_counter() - start) / steps


class _Timer(Callback):
    """Wall time of the training epoch: the mask steps and the loop around them, not the set-up."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds = time.perf_counter() - self.start


def lightning_loop(data: dict[str, torch.Tensor], steps: int, root: str, steps_per_batch: int,
                   monitor: bool) -> float:
    """Seconds per Adam step inside ``Trainer.fit`` (one epoch), TensorBoard logging every step."""
    timer = _Timer()
    callbacks = [timer, MaskMonitor()] if monitor else [timer]
    trainer = Trainer(max_epochs=1, log_every_n_steps=1, default_root_dir=root, enable_progress_bar=False,
                      enable_model_summary=False, enable_checkpointing=False, callbacks=callbacks,
                      accelerator="cpu")
    loader = DataLoader(RoundDataset(data, steps, steps_per_batch), batch_size=None)
    trainer.fit(MaskSeparator(), train_dataloaders=loader)
    assert trainer.global_step == steps
    return timer.seconds / steps


#: A loop to time: (name, Adam steps per loader batch or None for the plain loop, with the monitor).
Loop = tuple[str, int | None, bool]


def loops(steps_per_batch: int) -> list[Loop]:
    """The plain loop, then Lightning at 1 and ``steps_per_batch`` steps per batch, without and with the monitor."""
    return [("plain", None, False)] + [
        ("lightning", group, monitor) for group in dict.fromkeys((1, steps_per_batch)) for monitor in (False, True)
    ]


def measure(loop: Loop, data: dict[str, torch.Tensor], steps: int, root: str) -> float:
    """Seconds per Adam step of one run of ``loop``."""
    _, group, monitor = loop
    return plain_loop(data, steps) if group is None else lightning_loop(data, steps, root, group, monitor)


def cpu_ticks() -> tuple[int, int, int] | None:
    """Clock ticks so far: all CPUs, all CPUs busy, this process (Linux ``/proc``; None elsewhere)."""
    try:
        machine = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError):
        return None
    idle = machine[3] + machine[4]  # idle and iowait
    return sum(machine), sum(machine) - idle, int(own[11]) + int(own[12])  # utime + stime


def busy_elsewhere(start: tuple[int, int, int] | None, end: tuple[int, int, int] | None) -> float | None:
    """Fraction of the CPUs' time that other processes used between two :func:`cpu_ticks`."""
    if start is None or end is None or end[0] == start[0]:
        return None
    total, busy, own = (b - a for a, b in zip(start, end, strict=True))
    return max(busy - own, 0) / total


def print_table(times: dict[Loop, list[float]], steps: int, repeats: int) -> None:
    """Medians in ms per Adam step and their ratio to the plain loop."""
    plain = statistics.median(times[("plain", None, False)])
    print(f"{steps} Adam steps per run, median of {repeats} alternating runs, {torch.get_num_threads()} threads")
    print(f"{'loop':<10} {'steps/batch':>11} {'monitor':>8} {'ms/step':>8} {'ratio':>6}")
    for (name, group, monitor), values in times.items():
        median = statistics.median(values)
        columns = ("-", "-") if group is None else (group, "yes" if monitor else "no")
        print(f"{name:<10} {columns[0]:>11} {columns[1]:>8} {median * 1e3:8.2f} {median / plain:6.2f}")


def quiet() -> None:
    """Keep Lightning's per-fit banners and warnings out of the table."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


def measure_overhead(steps: int, repeats: int, steps_per_batch: int) -> dict[Loop, list[float]]:
    """Seconds per Adam step of every loop, ``repeats`` times each, in rotating order."""
    data = batch()
    order = loops(steps_per_batch)
    times: dict[Loop, list[float]] = {loop: [] for loop in order}
    with tempfile.TemporaryDirectory() as root:
        for repeat in range(repeats):
            shift = repeat % len(order)  # rotate, so that no loop always runs first or last
            for loop in order[shift:] + order[:shift]:
                times[loop].append(measure(loop, data, steps, root))
    return times


def main() -> None:
    """Run the benchmark and print its table."""
    quiet()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps-per-batch", type=int, default=DEFAULT_STEPS_PER_BATCH,
                        help="grouping to compare with 1 (default: the data module's)")
    args = parser.parse_args()
    start = cpu_ticks()
    times = measure_overhead(args.steps, args.repeats, args.steps_per_batch)
    print_table(times, args.steps, args.repeats)
    elsewhere = busy_elsewhere(start, cpu_ticks())
    if elsewhere is not None:
        # Another busy process makes the threads wait for each other: the times mean nothing then.
        note = "" if elsewhere < 0.05 else "  <- not a quiet machine: measure again"
        print(f"other processes used {elsewhere:.0%} of the CPUs meanwhile{note}")


if __name__ == "__main__":
    main()
