"""Resampling between the image's voxel spacing and the spacing a model was trained at."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from .normalize import apply_stats

TOLERANCE = 0.02  # relative spacing difference below which no resampling is done


def needs_resampling(image_spacing: Sequence[float], model_spacing: Sequence[float], mode: str) -> tuple[float, ...] | None:
    """Per-axis factors image-pixels-per-model-pixel, or None when the spacings agree.

    For ``slices`` mode only the in-plane (last two) axes are resampled.
    """
    img = [float(s) for s in image_spacing]
    mdl = [float(s) for s in model_spacing]
    if len(mdl) < len(img):  # a 2D model's spacing applies to the last axes
        mdl = img[: len(img) - len(mdl)] + mdl
    factors = tuple(m / i for m, i in zip(mdl[-len(img):], img))
    if mode == "slices":
        factors = (1.0,) + factors[1:]
    if all(abs(f - 1.0) < TOLERANCE for f in factors):
        return None
    return factors


def zoom_image(image, stats, factors: Sequence[float], has_channels: bool) -> np.ndarray:
    """Normalise and resample the image to the model's grid (C, *spatial) float32."""
    data = np.asarray(image)
    data = data if has_channels else data[None]
    data = apply_stats(data, stats)
    return np.stack([ndimage.zoom(c, [1.0 / f for f in factors], order=1, grid_mode=True, mode="nearest")
                     for c in data]).astype(np.float32)


def zoom_probabilities(probs: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Resample per-class probabilities (K, *model_grid) back to the image grid ``shape``."""
    out = np.empty((probs.shape[0], *shape), np.float32)
    for k in range(probs.shape[0]):
        zoom = [s / n for s, n in zip(shape, probs.shape[1:])]
        z = ndimage.zoom(probs[k], zoom, order=1, grid_mode=True, mode="nearest")
        out[k] = z[tuple(slice(0, s) for s in shape)]
    return out
