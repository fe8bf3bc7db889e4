"""DGMO separation, the application: ``python main.py fit --config configs/dgmo.yaml``.

The library's command line (:mod:`dgmo_pl.cli`) with the application's callbacks (``callbacks/``)
as argument groups of their own: ``--monitor.every_n_steps``.
"""

from __future__ import annotations

from typing import Any

from dgmo_pl.entry import main as run


def app_callbacks() -> dict[str, Any]:
    """The application's callback groups (imported after the install check: they import torch)."""
    from callbacks import MaskMonitor

    return {"monitor": MaskMonitor}


def main(args: list[str] | None = None) -> None:
    """Run the command line with ``args`` (default: ``sys.argv[1:]``)."""
    run(args, app_callbacks)


if __name__ == "__main__":
    main()
