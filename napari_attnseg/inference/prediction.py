"""What a prediction returns, and the cancel token long work checks."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class AttentionMap:
    """Attention coefficients of one level, at the level's own resolution.

    ``scale`` and ``translate`` are in image pixel units, per axis of ``data``: pixel ``i`` of the map is
    centred on image coordinate ``translate + i * scale``. For a napari layer, multiply by the image
    layer's ``scale`` and add its ``translate``.
    """

    name: str
    level: int
    data: np.ndarray
    scale: tuple[float, ...]
    translate: tuple[float, ...]


@dataclass
class Prediction:
    """A model's output on one image, on the image's own grid."""

    labels: np.ndarray
    probabilities: np.ndarray | None
    attention: list[AttentionMap]
    classes: list[str]
    device: str
    precision: str
    timings: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class CancelToken:
    """Thread-safe flag: the UI calls ``cancel()``, the engine checks ``cancelled`` between tiles."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()
