"""Sharing an evaluation's rows between processes, on Lightning's launchers and cluster environments.

``main.py evaluate --trainer.devices N [--trainer.num_nodes M]`` starts (or, under ``torchrun``
or SLURM, joins) ``N x M`` processes through Lightning Fabric's DDP launcher; each takes every
``world``-th row from its rank and runs its rows' fits on its own device alone. The processes
meet at a barrier before rank 0 merges the results on disk.
"""

from __future__ import annotations

from typing import Any

from lightning.fabric import Fabric
from lightning.fabric.utilities.rank_zero import rank_zero_only


def launch(accelerator: str, devices: Any, num_nodes: int) -> Fabric:
    """Start or join the processes of an evaluation (one process when there is one device).

    Args:
        accelerator: Lightning accelerator name (``cpu``, ``gpu``, ``auto``).
        devices: Lightning devices setting (a count, a list, ``auto``).
        num_nodes: Nodes taking part.

    Returns:
        The launched Fabric: ``global_rank``, ``world_size``, ``local_rank``, ``barrier()``.
    """
    fabric = Fabric(accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy="auto")
    if fabric.world_size > 1:
        fabric = Fabric(accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy="ddp")
    fabric.launch()
    return fabric


def single_device_trainer_settings(fabric: Fabric) -> dict[str, Any]:
    """Trainer settings for this process's fits: its own device only, no process group of their own.

    Each fit is a whole single-device job, so within it this process is "rank zero" (its
    loggers and file-writing callbacks must run), whatever its rank among the evaluators.
    """
    rank_zero_only.rank = 0
    device = fabric.device
    if device.type == "cpu":
        return {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "auto"}
    return {"accelerator": device.type, "devices": [device.index or 0], "num_nodes": 1, "strategy": "auto"}
