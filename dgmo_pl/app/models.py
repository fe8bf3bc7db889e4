"""Loaded models, kept between requests: one ``Separator`` per model setting."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dgmo_pl.api import Separator


@dataclass(frozen=True)
class ModelSetting:
    """What a loaded ``Separator`` is built from; requests that share it share the loaded model.

    Rounds and seed are not part of it: they change per request without a reload.

    Attributes:
        model: Hub id or local folder (``data.model``).
        ddim_steps: ``data.ddim_steps``.
        steps_per_round: ``data.steps_per_round``.
    """

    model: str
    ddim_steps: int
    steps_per_round: int


class SeparatorCache:
    """The ``Separator`` of each model setting, loaded on first use; the least recently used goes past ``size``.

    Args:
        load: Builds a Separator (loads its model) for a setting.
        size: Separators kept at once (each holds a diffusion model in memory).
    """

    def __init__(self, load: Callable[[ModelSetting], Separator], size: int = 2) -> None:
        self._load, self._size = load, size
        self._kept: OrderedDict[ModelSetting, Separator] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, setting: ModelSetting) -> Separator:
        """The setting's Separator: the kept one, or a new one (which may evict the oldest)."""
        with self._lock:
            if setting in self._kept:
                self._kept.move_to_end(setting)
                return self._kept[setting]
            separator = self._load(setting)
            self._kept[setting] = separator
            while len(self._kept) > self._size:
                self._kept.popitem(last=False)
            return separator


def pretrained_loader(**settings: Any) -> Callable[[ModelSetting], Separator]:
    """A loader for :class:`SeparatorCache`: ``Separator.from_pretrained`` with the app's fixed settings.

    Args:
        **settings: Further ``from_pretrained`` settings for every model (``cache_dir``, ``trainer``, ...).
    """

    def load(setting: ModelSetting) -> Separator:
        return Separator.from_pretrained(setting.model, ddim_steps=setting.ddim_steps,
                                         steps_per_round=setting.steps_per_round, **settings)  # fmt: skip

    return load
