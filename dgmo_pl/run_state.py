"""What a run folder records so that a killed run can be finished: what the run is, and which fits are done.

A run folder holds ``run.json`` (the run's identity: mixture content, queries, model, settings,
seed) and, in each fit's folder, ``masks.safetensors`` once the fit is finished (its output
masks, plain tensors) and ``checkpoints/last.ckpt`` while it runs (the resume checkpoint).
Resuming checks the identity, re-adds the finished fits' masks to the outputs, resumes the
interrupted fit from its checkpoint and runs the rest.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from dgmo_pl.errors import InputError
from dgmo_pl.job import FitPlan
from dgmo_pl.publish import read_record, write_text_atomically

#: The run's identity, in the run folder.
RUN_RECORD = "run.json"
#: A finished fit's output masks ``[S, W, F, T]``, in the fit's folder.
FINISHED = "masks.safetensors"
#: The resume checkpoint of a fit, in the fit's folder.
CHECKPOINT = Path("checkpoints") / "last.ckpt"
#: Held (``flock``) while a process runs in the folder.
LOCK = ".run.lock"


def differences(recorded: Mapping[str, Any], current: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The settings that differ between two identities, as ``name: recorded -> current``, nested names dotted."""
    found = []
    for key in sorted(set(recorded) | set(current)):
        was, now = recorded.get(key, _MISSING), current.get(key, _MISSING)
        if isinstance(was, Mapping) and isinstance(now, Mapping):
            found += differences(was, now, f"{prefix}{key}.")
        elif was != now:
            found.append(f"{prefix}{key}: {_short(was)} -> {_short(now)}")
    return found


_MISSING = object()


def _short(value: Any) -> str:
    if value is _MISSING:
        return "(none)"
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _plain(identity: Mapping[str, Any]) -> dict[str, Any]:
    """The identity as JSON would give it back (tuples as lists), so that a fresh one compares equal."""
    return json.loads(json.dumps(identity, sort_keys=True, default=str))


class RunState:
    """The records of one run folder (see the module's description).

    Use :meth:`start` for a new run and :meth:`resume` to finish one; both check what they must.

    Args:
        folder: The run folder.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @classmethod
    def start(cls, folder: Path, identity: Mapping[str, Any]) -> RunState:
        """Record a new run's identity in ``folder`` (which holds no run yet)."""
        state = cls(folder)
        if (folder / RUN_RECORD).exists():
            raise InputError(f"'{folder}' already holds a run ({RUN_RECORD}): start a new run in a new folder, or "
                             f"finish that one (--resume {folder} on the command line)")  # fmt: skip
        write_text_atomically(folder / RUN_RECORD, json.dumps(_plain(identity), indent=2, sort_keys=True) + "\n")
        return state

    @classmethod
    def resume(cls, folder: Path, identity: Mapping[str, Any]) -> RunState:
        """The state of the run in ``folder``, refused unless it was made with this identity.

        Raises:
            InputError: No run there, or one made for another mixture, queries, model or settings
                (the message names each difference).
        """
        record = read_record(folder / RUN_RECORD)
        if record is None:
            raise InputError(f"--resume '{folder}' holds no readable {RUN_RECORD}: pass the run folder that a fit "
                             "printed ('run directory: ...')")  # fmt: skip
        if changed := differences(record, _plain(identity)):
            shown = "; ".join(changed[:4]) + (f"; and {len(changed) - 4} more" if len(changed) > 4 else "")
            seed = f" (--seed_everything {record['seed']})" if any(c.startswith("seed:") for c in changed) else ""
            raise InputError(f"--resume '{folder}' was made for another run ({shown}): resume it with the settings "
                             f"it was started with{seed}, or start a new run without --resume")  # fmt: skip
        return cls(folder)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the folder's lock while the block runs: a second process resuming the same run is refused."""
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            yield
            return
        with open(self.folder / LOCK, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                # The holder removes the file before it lets go: a lock on a removed file is no lock.
                if os.fstat(handle.fileno()).st_ino != (self.folder / LOCK).stat().st_ino:
                    raise BlockingIOError
            except (BlockingIOError, FileNotFoundError):
                raise InputError(f"run folder '{self.folder}' is in use by another process: wait for it to end, "
                                 "or resume another run") from None  # fmt: skip
            try:
                yield
            finally:
                (self.folder / LOCK).unlink(missing_ok=True)  # while still held: no stray file is left
                fcntl.flock(handle, fcntl.LOCK_UN)

    def checkpoint(self, plan: FitPlan) -> Path:
        """The resume checkpoint of fit ``plan``."""
        return self.folder / plan.version / CHECKPOINT

    def is_finished(self, plan: FitPlan) -> bool:
        """Whether fit ``plan`` has finished (its masks are recorded)."""
        return (self.folder / plan.version / FINISHED).is_file()

    def finished_masks(self, plan: FitPlan) -> torch.Tensor:
        """The output masks ``[S, W, F, T]`` of finished fit ``plan``."""
        path = self.folder / plan.version / FINISHED
        try:
            masks = load_file(path)["masks"]
        except (SafetensorError, OSError, KeyError) as err:
            raise InputError(f"'{path}' is not a readable record of a finished fit ({type(err).__name__}): delete "
                             "it to fit that part again") from None  # fmt: skip
        if masks.shape[:2] != (plan.masks, len(plan.windows)):
            raise InputError(f"'{path}' holds masks of shape {list(masks.shape)}, not {plan.masks} masks of "
                             f"{len(plan.windows)} windows: delete it to fit that part again")  # fmt: skip
        return masks

    def output_masks(self, plans: Sequence[FitPlan]) -> dict[str, torch.Tensor]:
        """Each output's final mask over the whole recording, from finished fits: ``{name: [windows, F, T]}``."""
        masks: dict[str, list[torch.Tensor]] = {}
        for plan in plans:
            for name, mask in zip(plan.outputs, self.finished_masks(plan), strict=True):
                masks.setdefault(name, []).append(mask)
        return {name: torch.cat(parts) for name, parts in masks.items()}

    def finish(self, plan: FitPlan, masks: torch.Tensor) -> None:
        """Record fit ``plan`` as finished with its output masks (written, then renamed), and remove its checkpoint."""
        path = self.folder / plan.version / FINISHED
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            save_file({"masks": masks.detach().float().cpu().contiguous()}, str(tmp))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        self.checkpoint(plan).unlink(missing_ok=True)

    def remove_temporaries(self) -> list[Path]:
        """Remove what a killed process left half-written: hidden temporary files of outputs and checkpoints."""
        stale = [p for p in self.folder.rglob(".*") if p.is_file() and p.name != LOCK
                 and (p.name.endswith(".tmp") or p.suffix == ".wav")]  # fmt: skip
        for path in stale:
            path.unlink(missing_ok=True)
        return stale
