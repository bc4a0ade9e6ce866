"""Sliding-window geometry: tile positions and the Gaussian importance map.

The importance map is MONAI's: a Gaussian centred on the tile with sigma = tile / 8 per axis, and
clamped from below at 1e-3 over the whole N-D tile (so tile corners keep a
small but non-zero weight). Using the very same map is what makes our masks agree with MONAI's
``sliding_window_inference`` voxel for voxel on the same model. Tile starts are multiples of the
coarsest attention stride, so every attention map tile lands exactly on the map's own grid.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

SIGMA_SCALE = 0.125
MIN_WEIGHT = 1e-3


def round_up(n: int, m: int) -> int:
    return -(-int(n) // int(m)) * int(m)


def axis_positions(size: int, tile: int, overlap: float, align: int) -> list[int]:
    """Start positions along one axis; the last tile ends at or past ``size`` (the rest is padding)."""
    if size <= tile:
        return [0]
    step = max(align, (int(tile * (1.0 - overlap)) // align) * align)
    last = round_up(size - tile, align)
    return sorted(set(range(0, last, step)) | {last})


def gaussian_1d(tile: int, sigma_scale: float = SIGMA_SCALE) -> np.ndarray:
    """Unclamped Gaussian along one axis, centred on the tile (peak ~1; 1 for a 1-pixel axis)."""
    if tile == 1:
        return np.ones(1, np.float32)
    x = np.arange(tile, dtype=np.float64) - (tile - 1) / 2.0
    g = np.exp(-0.5 * (x / (tile * sigma_scale)) ** 2)
    return g.astype(np.float32)


def importance_map(tile: Sequence[int], sigma_scale: float = SIGMA_SCALE) -> np.ndarray:
    """The N-D importance of a tile (float32, shape ``tile``), as MONAI computes it."""
    w = outer([gaussian_1d(int(t), sigma_scale) for t in tile]).astype(np.float32)
    np.maximum(w, max(float(w.min()), MIN_WEIGHT), out=w)
    return w


def block_mean(weights: np.ndarray, strides: Sequence[int]) -> np.ndarray:
    """Importance of the pixels of a map of ``strides``: the mean over the tile pixels each covers."""
    shape = []
    for n, s in zip(weights.shape, strides):
        shape += [n // s, s]
    w = weights[tuple(slice(0, (n // s) * s) for n, s in zip(weights.shape, strides))]
    return w.reshape(shape).mean(axis=tuple(range(1, 2 * weights.ndim, 2))).astype(np.float32)


def outer(vectors: Sequence[np.ndarray]) -> np.ndarray:
    """Outer product of 1D arrays: the full N-D array from its separable factors."""
    out = vectors[0]
    for v in vectors[1:]:
        out = np.multiply.outer(out, v)
    return out


class TileGrid:
    """Positions of all tiles over an N-D extent, in row-major order (first axis slowest)."""

    def __init__(self, shape: Sequence[int], tile: Sequence[int], overlap: Sequence[float], align: Sequence[int]):
        self.shape = tuple(int(s) for s in shape)
        self.tile = tuple(int(t) for t in tile)
        if min(self.shape + self.tile, default=1) < 1:
            raise ValueError(f"Cannot tile an extent of {self.shape} with tiles of {self.tile}: every axis needs a voxel.")
        self.axes = [axis_positions(s, t, o, a) for s, t, o, a in zip(self.shape, self.tile, overlap, align)]
        self.extent = tuple(p[-1] + t for p, t in zip(self.axes, self.tile))
        self.importance = importance_map(self.tile)

    def __len__(self) -> int:
        return math.prod(len(p) for p in self.axes)

    def starts(self) -> list[tuple[int, ...]]:
        return list(itertools.product(*self.axes))
