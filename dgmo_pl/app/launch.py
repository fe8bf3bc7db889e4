"""``dgmo-pl app``: the flags, the check for the optional extra, and starting the page's server."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

from dgmo_pl.app.defaults import PageDefaults

INSTALL_HINT = 'the web app needs gradio: pip install -e ".[app]" (in the checkout; see the README)'


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The app's flags (``dgmo-pl app --help``)."""
    parser = argparse.ArgumentParser(prog="dgmo-pl app", description="The web app: separate sounds in a browser.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port to listen on")
    parser.add_argument("--model", default="cvssp/audioldm", help="default model: hub id or local folder")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="longest recording taken, in seconds")
    parser.add_argument("--ddim-steps", type=int, default=100, help="default DDIM steps")
    parser.add_argument("--steps-per-round", type=int, default=300, help="default Adam steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="default rounds")
    parser.add_argument("--seed", type=int, default=0, help="default seed")
    parser.add_argument("--cache-dir", default="logs/references",
                        help="reference cache folder ('none': no cache)")  # fmt: skip
    parser.add_argument("--accelerator", default="auto", help="Lightning accelerator for the mask fits")
    return parser.parse_args(argv)


def require_gradio() -> None:
    """Exit with one line saying how to install the extra when gradio is missing (exit status 2)."""
    if importlib.util.find_spec("gradio") is None:
        print(f"error: {INSTALL_HINT}", file=sys.stderr)
        raise SystemExit(2)


def main(argv: list[str] | None = None) -> None:
    """Start the app on ``--host``:``--port`` and serve until interrupted.

    Args:
        argv: The flags (default: ``sys.argv[1:]``).
    """
    args = parse_args(argv)
    require_gradio()
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from an offline machine
    from dgmo_pl.app.models import SeparatorCache, pretrained_loader
    from dgmo_pl.app.page import build_page
    from dgmo_pl.data import DEMO_MIXTURE

    defaults = PageDefaults(args.model, args.ddim_steps, args.steps_per_round, args.rounds, args.seed,
                            args.max_seconds)  # fmt: skip
    cache_dir = None if args.cache_dir.lower() in ("none", "null", "") else args.cache_dir
    cache = SeparatorCache(pretrained_loader(cache_dir=cache_dir, trainer={"accelerator": args.accelerator}))
    work = Path(tempfile.mkdtemp(prefix="dgmo-app-"))
    page = build_page(cache, defaults, work)
    page.queue(default_concurrency_limit=1)
    page.launch(server_name=args.host, server_port=args.port, allowed_paths=[str(Path(DEMO_MIXTURE).parent)],
                footer_links=[])  # fmt: skip
