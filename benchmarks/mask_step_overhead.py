"""Time per mask-optimisation step: Lightning's fit loop against a plain PyTorch loop.

Both run the same step (full-size mask [1, 513, 1024], K = 4 references, Adam at lr 0.01) on the
same data, side by side in one process, alternating, and the median of the repeats is printed.
The Lightning run is the real one of ``main.py fit`` (logging every step to TensorBoard, the
mask monitor's statistics, the progress bar off), minus reference generation.

Usage: ``python benchmarks/mask_step_overhead.py [--steps 300] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from lightning.pytorch import Callback, Trainer  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from callbacks import MaskMonitor  # noqa: E402
from dgmo_pl.audio.frontend import diffusion_log_mel  # noqa: E402
from dgmo_pl.rounds import RoundDataset  # noqa: E402
from dgmo_pl.model import MaskSeparator  # noqa: E402


def batch() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {"mixture_magnitude": torch.rand(1, 513, 1024) * 5, "references": torch.randn(4, 1, 1024, 64) - 4}


def plain_loop(data: dict[str, torch.Tensor], steps: int) -> float:
    """Seconds per step of the bare PyTorch loop."""
    module = MaskSeparator()
    optimiser = torch.optim.Adam(module.parameters(), lr=0.01)
    magnitude, refs = data["mixture_magnitude"], data["references"]
    start = time.perf_counter()
    for _ in range(steps):
        optimiser.zero_grad()
        estimate = diffusion_log_mel(magnitude * module.mask(), module.mel_basis, 1024)
        loss = F.mse_loss(estimate.expand_as(refs), refs)
        loss.backward()
        optimiser.step()
        float(loss)  # the fit loop reads the loss back too
    return (time.perf_counter() - start) / steps


class _Timer(Callback):
    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds = time.perf_counter() - self.start


def lightning_loop(data: dict[str, torch.Tensor], steps: int, root: str, monitor: bool) -> float:
    """Seconds per step inside ``Trainer.fit`` (one epoch), TensorBoard logging every step."""
    timer = _Timer()
    callbacks = [timer, MaskMonitor()] if monitor else [timer]
    trainer = Trainer(max_epochs=1, log_every_n_steps=1, default_root_dir=root, enable_progress_bar=False,
                      enable_model_summary=False, enable_checkpointing=False, callbacks=callbacks,
                      accelerator="cpu")
    loader = DataLoader(RoundDataset(data, steps), batch_size=None)
    trainer.fit(MaskSeparator(), train_dataloaders=loader)
    return timer.seconds / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = batch()
    times: dict[str, list[float]] = {"plain": [], "lightning": [], "lightning + monitor": []}
    with tempfile.TemporaryDirectory() as root:
        for _ in range(args.repeats):
            times["plain"].append(plain_loop(data, args.steps))
            times["lightning"].append(lightning_loop(data, args.steps, root, monitor=False))
            times["lightning + monitor"].append(lightning_loop(data, args.steps, root, monitor=True))
    plain = statistics.median(times["plain"])
    print(f"{'loop':<22} {'ms/step':>8} {'ratio':>6}   ({args.steps} steps, median of {args.repeats}, "
          f"{torch.get_num_threads()} threads)")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<22} {median * 1e3:8.2f} {median / plain:6.2f}")


if __name__ == "__main__":
    main()
