"""Build a small evaluation set of 0 dB two-source mixtures of the shared recordings.

Usage: ``python scripts/make_eval_set.py OUT_DIR [--pairs N] [--seed S] [--shared DIR]``.

Writes ``OUT_DIR/mixtures/<id>.wav``, ``OUT_DIR/sources/<id>.wav`` (the queried source),
``OUT_DIR/others/<id>.wav`` (the other source) and ``OUT_DIR/manifest.csv`` (columns id,
mixture, query, source), all 16 kHz mono, 10.24 s; see
:func:`dgmo_pl.testing.example_set.make_eval_set`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dgmo_pl.errors import InputError
from dgmo_pl.testing.example_set import DEFAULT_SHARED, make_eval_set


def main(argv: list[str] | None = None) -> int:
    """Command line; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder to write (created if needed)")
    parser.add_argument("--pairs", type=int, default=6, help="number of mixtures (default 6)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the choice of pairs (default 0)")
    parser.add_argument(
        "--shared", type=Path, default=DEFAULT_SHARED,
        help=f"folder of recordings with a manifest.csv of labels (default {DEFAULT_SHARED})",
    )
    args = parser.parse_args(argv)
    try:
        manifest = make_eval_set(args.out_dir, args.pairs, args.seed, args.shared)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.pairs} mixtures and {manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
