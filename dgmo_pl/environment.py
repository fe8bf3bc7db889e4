"""Is the installed torch/torchaudio pair one that loads together?

Each torchaudio build links against the C++ symbols of one torch release, and a mismatched pair
fails at ``import torchaudio`` with a loader message (``undefined symbol: ...``) deep inside a
traceback; ``transformers`` imports torchaudio, so it fails the same way. This module turns that
failure into one line that names the installed versions and the pair to install. It imports
nothing heavy itself, so it can run before anything imports torch.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import sys

#: The distribution whose pins say which pair to install.
DISTRIBUTION = "dgmo-pl"

#: The packages that must be installed as one exact pair.
PAIR = ("torch", "torchaudio")


class BrokenInstallError(ImportError):
    """torch or torchaudio cannot be imported: the message says what to install."""


def installed_version(name: str) -> str | None:
    """The installed version of a distribution, or None when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def pinned_versions(distribution: str = DISTRIBUTION) -> dict[str, str]:
    """The exact (``==``) pins of ``distribution``'s requirements, by lower-cased package name.

    Read from the installed package's metadata, so the pins are written once, in
    ``pyproject.toml``. Empty when the distribution is not installed (a bare source checkout).
    """
    from packaging.requirements import Requirement

    try:
        requirements = metadata.requires(distribution) or []
    except metadata.PackageNotFoundError:
        return {}
    pins = {}
    for text in requirements:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue  # an extra's requirement (dev tools), not the runtime set
        exact = [spec.version for spec in requirement.specifier if spec.operator == "=="]
        if exact:
            pins[requirement.name.lower()] = exact[0]
    return pins


def install_advice(pins: dict[str, str]) -> str:
    """What to run to get the pinned pair, e.g. ``pip install torch==2.11.0 torchaudio==2.11.0``."""
    if all(name in pins for name in PAIR):
        return "pip install " + " ".join(f"{name}=={pins[name]}" for name in PAIR)
    return 'pip install -e ".[dev]" in this checkout, which installs the pair pinned in pyproject.toml'


def _one_line(error: BaseException, limit: int = 300) -> str:
    """The root cause's message on one line, at most ``limit`` characters.

    torch wraps the dynamic loader's message (``...so: undefined symbol: ...``), the informative
    one, in a generic ``Could not load this library``: the innermost cause is the one to show.
    """
    while error.__cause__ is not None:
        error = error.__cause__
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def require_torchaudio() -> None:
    """Import torch and torchaudio, or raise one actionable line.

    Raises:
        BrokenInstallError: torch or torchaudio is missing or does not load; the message names
            the installed versions and the pinned pair to install.
    """
    versions = {name: installed_version(name) or "(not installed)" for name in PAIR}
    advice = install_advice(pinned_versions())
    for name in PAIR:
        try:
            importlib.import_module(name if name == "torch" else "torchaudio.functional")
        except Exception as err:  # an import of a native extension fails in many ways; all mean this
            if installed_version(name) is None:
                problem = f"{name} is not installed"
            elif name == "torch":
                problem = f"torch {versions['torch']} does not import ({_one_line(err)})"
            else:
                problem = (
                    f"torchaudio {versions['torchaudio']} does not load against torch {versions['torch']} "
                    f"({_one_line(err)})"
                )
            raise BrokenInstallError(
                f"{problem}; dgmo-pl needs its exact torch/torchaudio pair: {advice}"
            ) from err


#: The packages whose versions ``python -m dgmo_pl.environment`` reports.
REPORTED = ("torch", "torchaudio", "lightning", "diffusers", "transformers")


def report() -> str:
    """One line per key package: installed version, and the pin where it differs."""
    pins = pinned_versions()
    lines = []
    for name in REPORTED:
        version = installed_version(name) or "(not installed)"
        pinned = pins.get(name)
        differs = pinned is not None and version.split("+")[0] != pinned
        lines.append(f"{name} {version}" + (f"  (pinned: {pinned})" if differs else ""))
    return "\n".join(lines)


def main() -> int:
    """Print the key versions, then check that torch and torchaudio load; 0 when they do."""
    print(report())
    try:
        require_torchaudio()
    except BrokenInstallError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("torch and torchaudio load together")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
