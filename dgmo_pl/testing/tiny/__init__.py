"""Seeded, randomly initialised diffusion models in diffusers layout, built offline: tiny or full size.

Usage: ``python -m dgmo_pl.tiny OUT_DIR [--backbone audioldm|audioldm2|auffusion] [--size SIZE] [--seed N]``.

``tiny`` (the default size): every tensor the pipeline sees has the real model's shape (latent
channels, mel bins, VAE factor, condition sequence lengths), only the widths are small, so every code
path runs in seconds on a CPU. The full sizes build each backbone's real architecture, to measure
its speed and memory, which do not depend on the weights' values. The weights are random: what such
a model "separates" is not a separation.

Each backbone's builder is a module here with ``SIZES`` (size -> description), ``build(size, seed)``
(the components) and ``save(components, out_dir)`` (the diffusers folder).
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from types import ModuleType

from dgmo_pl.testing.tiny.audioldm import (
    FULL_ATTENTION_HEADS,
    full_components,
    full_unet_config,
    save_audioldm,
    save_full_audioldm,
    save_tiny_audioldm,
    tiny_components,
)
from dgmo_pl.testing.tiny.common import parameter_counts, tiny_tokenizer

__all__ = ["BUILDERS", "FULL_ATTENTION_HEADS", "builder", "full_components", "full_unet_config", "main",
           "parameter_counts", "save_audioldm", "save_full_audioldm", "save_model", "save_tiny_audioldm",
           "tiny_components", "tiny_tokenizer"]

#: Command-line backbone name -> the module that builds its random models.
BUILDERS = {
    "audioldm": "dgmo_pl.testing.tiny.audioldm",
    "audioldm2": "dgmo_pl.testing.tiny.audioldm2",
    "auffusion": "dgmo_pl.testing.tiny.auffusion",
}


def builder(backbone: str) -> ModuleType:
    """The builder module of ``backbone`` (a key of :data:`BUILDERS`)."""
    if backbone not in BUILDERS:
        raise ValueError(f"backbone must be one of {', '.join(BUILDERS)}, got {backbone!r}")
    return importlib.import_module(BUILDERS[backbone])


def save_model(out_dir: str | Path, backbone: str = "audioldm", size: str = "tiny", seed: int = 0) -> Path:
    """Write the random ``backbone`` model of ``size`` to ``out_dir``; returns the folder."""
    module = builder(backbone)
    return module.save(module.build(size, seed), out_dir)


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m dgmo_pl.tiny OUT_DIR [--backbone NAME] [--size SIZE] [--seed N]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="folder to write (created if needed)")
    parser.add_argument(
        "--backbone", choices=tuple(BUILDERS), default="audioldm", help="model family (default audioldm)"
    )
    parser.add_argument("--size", default="tiny", help="tiny (default), or a full size of the backbone "
                        "(audioldm: full, full-m, full-l; audioldm2: full, full-large; auffusion: full)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = parser.parse_args(argv)
    module = builder(args.backbone)
    if args.size not in module.SIZES:
        parser.error(f"--size {args.size!r} is not a size of {args.backbone}: choose one of {', '.join(module.SIZES)}")
    components = module.build(args.size, args.seed)
    out = module.save(components, args.out_dir)
    print(f"wrote a {module.SIZES[args.size]} (not a separation model) to {out}")
    for name, count in parameter_counts(components).items():
        print(f"  {name:<18} {count / 1e6:8.2f} M parameters")
