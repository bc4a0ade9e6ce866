"""One object corrected by clicks: the clicks in order and the object's mask after each run.

What the napari prompt mode keeps between clicks (and what the robot clicker does): the next run's
``previous`` is the object's mask after the last run, not its state before the first click, so a
correction click refines the newest mask and its change is written against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class PromptSession:
    """Clicks on one object and its mask after each run.

    Attributes:
        initial: the object's mask before the first click (an existing object being corrected), or None.
        clicks: ``(point, label)`` in order, newest last (label 1 positive, 0 negative).
        states: ``(clicks used, mask)`` after each run that was applied, oldest first.
    """

    initial: np.ndarray | None = None
    clicks: list[tuple[tuple[float, ...], int]] = field(default_factory=list)
    states: list[tuple[int, np.ndarray]] = field(default_factory=list)

    @property
    def current(self) -> np.ndarray | None:
        """The object's mask now: after the newest applied run, else ``initial``."""
        return self.states[-1][1] if self.states else self.initial

    @property
    def points(self) -> np.ndarray:
        return np.array([p for p, _ in self.clicks], float)

    @property
    def labels(self) -> np.ndarray:
        return np.array([lab for _, lab in self.clicks], int)

    def add(self, point, positive: bool = True) -> None:
        self.clicks.append((tuple(float(c) for c in point), 1 if positive else 0))

    def record(self, mask: np.ndarray, clicks: int | None = None) -> None:
        """The object's mask after a run that used the first ``clicks`` clicks (default: all)."""
        self.states.append((len(self.clicks) if clicks is None else int(clicks), np.asarray(mask, bool)))

    def undo(self) -> int:
        """Remove the newest click; returns how many applied runs used it (their changes are to be undone:
        ``current`` is then the mask before them). More than one only when several runs were applied
        since the click before it, which the prompt mode does not do."""
        if not self.clicks:
            return 0
        self.clicks.pop()
        dropped = 0
        while self.states and self.states[-1][0] > len(self.clicks):
            self.states.pop()
            dropped += 1
        return dropped
