"""The program's entry point: ``python main.py ...``, ``python -m dgmo_pl ...`` and ``dgmo-pl ...``.

It checks that torch and torchaudio load together before importing the command line (which
imports both), so a broken install ends with one line saying what to install, not a traceback.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from dgmo_pl.environment import BrokenInstallError, require_torchaudio

if TYPE_CHECKING:
    from lightning.pytorch.cli import ArgsType


def main(args: ArgsType = None) -> None:
    """Check the install, then run the LightningCLI of :func:`dgmo_pl.cli.main` with ``args``."""
    try:
        require_torchaudio()
    except BrokenInstallError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    from dgmo_pl.cli import main as cli_main

    cli_main(args)
