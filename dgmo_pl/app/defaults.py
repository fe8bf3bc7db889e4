"""What the page starts with: the advanced settings' initial values and the length limit (the app's flags)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PageDefaults:
    """The page's initial settings (each can be changed per request) and its fixed length limit.

    Attributes:
        model: Hub id or local folder.
        ddim_steps: DDIM steps of reference generation.
        steps_per_round: Adam steps per round.
        rounds: Rounds of references and mask fitting.
        seed: Seed of every request.
        max_seconds: The longest recording taken (not changeable in the page).
    """

    model: str = "cvssp/audioldm"
    ddim_steps: int = 100
    steps_per_round: int = 300
    rounds: int = 3
    seed: int = 0
    max_seconds: float = 60.0
