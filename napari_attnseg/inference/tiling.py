"""Sliding-window geometry: tile positions, separable Gaussian importance and its running sums.

The Gaussian importance map is separable, so the total weight at any voxel is the product of
per-axis sums: no weight volume is ever allocated. Tile starts are multiples of the coarsest
attention stride, so every attention map tile lands exactly on the map's own grid.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np


def round_up(n: int, m: int) -> int:
    return -(-int(n) // int(m)) * int(m)


def axis_positions(size: int, tile: int, overlap: float, align: int) -> list[int]:
    """Start positions along one axis; the last tile ends at or past ``size`` (the rest is padding)."""
    if size <= tile:
        return [0]
    step = max(align, (int(tile * (1.0 - overlap)) // align) * align)
    last = round_up(size - tile, align)
    return sorted(set(range(0, last, step)) | {last})


def gaussian_1d(tile: int, sigma_scale: float = 0.125, floor: float = 1e-3) -> np.ndarray:
    """Importance along one axis: a Gaussian centred on the tile (sigma = tile / 8), max 1."""
    if tile == 1:
        return np.ones(1, np.float32)
    x = np.arange(tile, dtype=np.float64) - (tile - 1) / 2.0
    g = np.exp(-0.5 * (x / (tile * sigma_scale)) ** 2)
    return np.maximum(g / g.max(), floor).astype(np.float32)


def axis_weight_sum(extent: int, positions: Sequence[int], weights: np.ndarray) -> np.ndarray:
    """Sum of the shifted 1D importance over all tile positions along an axis of length ``extent``."""
    total = np.zeros(extent, np.float64)
    for p in positions:
        total[p : p + len(weights)] += weights
    return total.astype(np.float32)


def pooled(weights: np.ndarray, stride: int) -> np.ndarray:
    """Importance of a map pixel of ``stride``: the mean of the pixels it covers."""
    return weights.reshape(-1, stride).mean(1) if stride > 1 else weights


def outer(vectors: Sequence[np.ndarray]) -> np.ndarray:
    """Outer product of 1D arrays: the full N-D weight from its separable factors."""
    out = vectors[0]
    for v in vectors[1:]:
        out = np.multiply.outer(out, v)
    return out


class TileGrid:
    """Positions of all tiles over an N-D extent, in row-major order (first axis slowest)."""

    def __init__(self, shape: Sequence[int], tile: Sequence[int], overlap: Sequence[float], align: Sequence[int]):
        self.shape = tuple(int(s) for s in shape)
        self.tile = tuple(int(t) for t in tile)
        self.axes = [axis_positions(s, t, o, a) for s, t, o, a in zip(self.shape, self.tile, overlap, align)]
        self.extent = tuple(p[-1] + t for p, t in zip(self.axes, self.tile))
        self.weights = [gaussian_1d(t) for t in self.tile]
        self.weight_sums = [axis_weight_sum(e, p, w) for e, p, w in zip(self.extent, self.axes, self.weights)]

    def __len__(self) -> int:
        return math.prod(len(p) for p in self.axes)

    def starts(self) -> list[tuple[int, ...]]:
        return list(itertools.product(*self.axes))
