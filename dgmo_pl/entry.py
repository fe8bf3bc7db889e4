"""The program's entry point: ``python main.py ...``, ``python -m dgmo_pl ...``, ``dgmo-pl ...`` (``dgmo-pl app``).

It checks that torch and torchaudio load together before importing the command line (which
imports both), so a broken install ends with one line saying what to install, not a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dgmo_pl.environment import BrokenInstallError, require_torchaudio

if TYPE_CHECKING:
    from lightning.pytorch.cli import ArgsType


def main(args: ArgsType = None, app_callbacks: Callable[[], dict[str, Any]] | None = None) -> None:
    """Check the install, then run the LightningCLI of :func:`dgmo_pl.cli.main` with ``args``.

    ``app`` as the first argument starts the web app instead (:mod:`dgmo_pl.app.launch`, which
    needs the optional extra ``app``), with the arguments after it as its flags.

    Args:
        args: The command line's arguments (default: ``sys.argv[1:]``).
        app_callbacks: Returns an application's callback groups (see :class:`dgmo_pl.cli.DGMOCLI`);
            called after the check, so that it may import torch.
    """
    try:
        require_torchaudio()
    except BrokenInstallError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    argv = sys.argv[1:] if args is None else args if isinstance(args, list) else []
    if argv[:1] == ["app"]:
        from dgmo_pl.app.launch import main as app_main

        app_main([str(arg) for arg in argv[1:]])
        return
    from dgmo_pl.cli import main as cli_main

    cli_main(args, app_callbacks() if app_callbacks else None)
