"""The install: exact pins, the torch/torchaudio pair, one clear line when the pair is broken, and
the ``dgmo-pl`` command."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import soundfile as sf
from helpers import QUIET, REPO, run_dirs
from packaging.requirements import Requirement

from dgmo_pl.environment import PAIR, install_advice, installed_version, pinned_versions


def pyproject_pins() -> dict[str, str]:
    """``pyproject.toml``'s runtime requirements as name -> exact version (or the spec text)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = {}
    for text in project["dependencies"]:
        requirement = Requirement(text)
        exact = [spec.version for spec in requirement.specifier if spec.operator == "=="]
        pins[requirement.name.lower()] = exact[0] if exact else str(requirement.specifier)
    return pins


def constraints() -> dict[str, str]:
    """``constraints.txt`` as lower-cased name -> version."""
    lines = (REPO / "constraints.txt").read_text().splitlines()
    pairs = (line.split("==") for line in lines if line.strip() and not line.startswith("#"))
    return {name.strip().lower().replace("_", "-"): version.strip() for name, version in pairs}


def test_every_direct_dependency_is_pinned_exactly() -> None:
    """A range would let a new upstream release change a fresh install (torchaudio 2.11.1 did)."""
    loose = {name: spec for name, spec in pyproject_pins().items() if spec.startswith(("<", ">", "~", "!"))}
    assert not loose, f"pin these with ==: {loose}"


def test_constraints_agree_with_the_pins() -> None:
    """The full resolved set (constraints.txt) holds each direct pin at the same version."""
    resolved = constraints()
    assert {name: resolved.get(name) for name in pyproject_pins()} == pyproject_pins()
    assert len(resolved) > 50, "constraints.txt should list the whole resolved set, not only the pins"


def test_the_extras_are_pinned_exactly_as_in_the_constraints() -> None:
    """The optional extras (dev, app) hold to the same rule as the dependencies."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    pins = {}
    for text in (text for group in extras.values() for text in group):
        requirement = Requirement(text)
        pins[requirement.name.lower()] = next((s.version for s in requirement.specifier if s.operator == "=="), None)
    assert {"gradio", "playwright", "pytest", "ruff"} <= pins.keys()
    assert {name: constraints().get(name) for name in pins} == pins


def test_installed_torch_and_torchaudio_are_the_pinned_pair() -> None:
    """The environment running the tests has exactly the pair that pyproject.toml pins."""
    pins = pyproject_pins()
    installed = {name: (installed_version(name) or "").split("+")[0] for name in PAIR}
    assert installed == {name: pins[name] for name in PAIR}


def test_installed_metadata_has_the_current_pins() -> None:
    """The installed package's metadata (which the install check reads) matches pyproject.toml:
    a stale install, made before a pin changed, fails here."""
    assert pinned_versions() == pyproject_pins()
    assert install_advice(pinned_versions()) == "pip install torch==2.11.0 torchaudio==2.11.0"


@pytest.fixture()
def broken_torchaudio(tmp_path: Path) -> dict[str, str]:
    """An environment in which torchaudio 2.11.1 fails to load as it does against torch 2.11.0."""
    fake = tmp_path / "site"
    (fake / "torchaudio").mkdir(parents=True)
    library = "/venv/lib/torchaudio/lib/libtorchaudio.so"
    (fake / "torchaudio" / "__init__.py").write_text(  # torch's loader wraps the linker's message so
        f"raise OSError('Could not load this library: {library}') from OSError("
        f"'{library}: undefined symbol: torch_exception_get_what_without_backtrace')\n"
    )
    info = fake / "torchaudio-2.11.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: torchaudio\nVersion: 2.11.1\n")
    return {**os.environ, "PYTHONPATH": f"{fake}{os.pathsep}{REPO}"}


def console_script() -> Path:
    """The ``dgmo-pl`` script that ``pip install -e .`` puts beside the interpreter."""
    script = Path(sys.executable).parent / "dgmo-pl"
    assert script.is_file(), f"{script} is missing: install the project with the README's install command"
    return script


@pytest.mark.integration
@pytest.mark.parametrize(
    "command",
    [
        ["{python}", "main.py", "fit", "--config", "configs/tiny.yaml"],
        ["{python}", "-m", "dgmo_pl", "--help"],
        ["{script}", "fit", "--config", "configs/tiny.yaml"],
    ],
    ids=["main.py", "python -m dgmo_pl", "dgmo-pl"],
)
def test_a_broken_torchaudio_is_one_line_naming_versions_and_the_pair(
    command: list[str], broken_torchaudio: dict[str, str]
) -> None:
    """No traceback: one line with the installed versions and the command that fixes them."""
    argv = [part.format(python=sys.executable, script=console_script()) for part in command]
    done = subprocess.run(argv, cwd=REPO, env=broken_torchaudio, capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    installed_torch = installed_version("torch")
    assert lines[0].startswith(f"error: torchaudio 2.11.1 does not load against torch {installed_torch} (")
    loader = "/venv/lib/torchaudio/lib/libtorchaudio.so: undefined symbol: torch_exception_get_what_without_backtrace"
    assert f"({loader})" in lines[0]
    assert lines[0].endswith("pip install torch==2.11.0 torchaudio==2.11.0")
    assert not done.stdout.strip(), "nothing may run on a broken install"


@pytest.mark.integration
def test_a_broken_torchaudio_fails_the_library_import_with_the_same_advice(broken_torchaudio: dict[str, str]) -> None:
    """``from dgmo_pl import MaskSeparator`` raises BrokenInstallError (an ImportError) with the advice."""
    code = "from dgmo_pl import MaskSeparator"
    done = subprocess.run([sys.executable, "-c", code], env=broken_torchaudio, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("dgmo_pl.environment.BrokenInstallError: torchaudio 2.11.1 does not load")
    assert last.endswith("pip install torch==2.11.0 torchaudio==2.11.0")


@pytest.mark.integration
def test_environment_report_prints_versions_and_passes(tmp_path: Path) -> None:
    """``python -m dgmo_pl.environment`` (run by CI) prints the key versions and exits 0 here."""
    done = subprocess.run([sys.executable, "-m", "dgmo_pl.environment"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    for name in ("torch", "torchaudio", "lightning", "diffusers", "transformers"):
        assert f"{name} {installed_version(name)}" in done.stdout


@pytest.mark.integration
def test_dgmo_pl_command_fits_the_tiny_config(tiny_model: Path, tmp_path: Path) -> None:
    """``dgmo-pl fit --config configs/tiny.yaml`` (the installed command) runs a fit and writes the wav."""
    argv = [str(console_script()), "fit", "--config", "configs/tiny.yaml", "--data.model", str(tiny_model),
            "--trainer.default_root_dir", str(tmp_path), "--data.cache_dir", str(tmp_path / "references"),
            "--trainer.max_epochs", "1", "--data.ddim_steps", "2", "--data.steps_per_round", "10", *QUIET]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = run_dirs(tmp_path)
    info = sf.info(str(run / "dog-barking" / "dog-barking.wav"))
    assert (info.samplerate, info.frames) == (16000, 163840)
