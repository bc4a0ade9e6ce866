"""Clicks as input channels: binary disks (2D) / balls (3D) of a radius given per axis in pixels."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def radius_per_axis(radius: float, ndim: int, spacing: Sequence[float] | None = None,
                    model_spacing: Sequence[float] | None = None) -> np.ndarray:
    """``radius`` pixels at the model's spacing, as pixels of an image of ``spacing`` per axis."""
    r = np.full(ndim, float(radius))
    if spacing is not None and model_spacing is not None and len(spacing) == ndim and len(model_spacing) == ndim:
        r = r * np.asarray(model_spacing, float) / np.maximum(np.asarray(spacing, float), 1e-9)
    return np.maximum(r, 0.5)


def draw_disks(shape: Sequence[int], points: np.ndarray, radius: np.ndarray | float) -> np.ndarray:
    """A bool array of ``shape`` with a disk/ball of ``radius`` (per axis) around each point."""
    shape = tuple(int(s) for s in shape)
    out = np.zeros(shape, bool)
    r = np.broadcast_to(np.asarray(radius, float), (len(shape),))
    for c in np.asarray(points, float).reshape(-1, len(shape)):
        lo = [max(int(np.floor(ci - ri)), 0) for ci, ri in zip(c, r)]
        hi = [min(int(np.ceil(ci + ri)) + 1, s) for ci, ri, s in zip(c, r, shape)]
        if any(h <= low for low, h in zip(lo, hi)):
            continue
        grids = np.ogrid[tuple(slice(low, h) for low, h in zip(lo, hi))]
        d = sum(((g - ci) / ri) ** 2 for g, ci, ri in zip(grids, c, r))
        out[tuple(slice(low, h) for low, h in zip(lo, hi))] |= d <= 1.0
    return out


def click_channels(shape: Sequence[int], points: np.ndarray, labels: np.ndarray, radius: np.ndarray | float,
                   previous: np.ndarray | None = None) -> np.ndarray:
    """(3, *shape) float32: previous mask, positive-click disks, negative-click disks."""
    shape = tuple(int(s) for s in shape)
    pts = np.asarray(points, float).reshape(-1, len(shape))
    labs = np.asarray(labels).reshape(-1).astype(int)
    out = np.zeros((3, *shape), np.float32)
    if previous is not None:
        out[0] = np.asarray(previous) > 0
    out[1] = draw_disks(shape, pts[labs == 1], radius)
    out[2] = draw_disks(shape, pts[labs == 0], radius)
    return out
