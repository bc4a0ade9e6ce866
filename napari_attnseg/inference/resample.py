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
    """Normalise and resample the image to the model's grid (C, *spatial) float32, a few rows at a time
    (:func:`_zoom_rows`): normalising the whole image first, then zooming it, peaked at 7x the input."""
    spatial = tuple(image.shape[1:] if has_channels else image.shape)
    shape = tuple(int(round(n / f)) for n, f in zip(spatial, factors))  # what ndimage.zoom gives
    out = np.empty((image.shape[0] if has_channels else 1, *shape), np.float32)

    def rows_of(lo: int, hi: int) -> np.ndarray:  # (only these rows are read: a lazy image stays lazy)
        block = np.asarray(image[:, lo:hi] if has_channels else image[lo:hi])
        return apply_stats(block if has_channels else block[None], stats)

    def put(a: int, b: int, chunk: np.ndarray) -> None:
        out[:, a:b] = chunk

    _zoom_rows(rows_of, spatial[0], shape, put)
    return out


def zoom_probabilities(probs: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Resample per-class probabilities (K, *model_grid) back to the image grid ``shape``."""
    out = np.empty((probs.shape[0], *shape), np.float32)
    for k in range(probs.shape[0]):
        zoom = [s / n for s, n in zip(shape, probs.shape[1:])]
        z = ndimage.zoom(probs[k], zoom, order=1, grid_mode=True, mode="nearest")
        out[k] = z[tuple(slice(0, s) for s in shape)]
    return out


def zoom_back_into(probs: np.ndarray, shape: Sequence[int], labels_out, probs_out=None, rows: int = 16) -> None:
    """:func:`zoom_probabilities` written straight into ``labels_out`` (their argmax) and ``probs_out`` a few
    output rows (first axis) at a time, so no whole-image float32 copy of every class (and no int64 argmax of
    it) is ever held: on a 512 x 512 x 600 CT that copy and its argmax peaked at 12x the input."""

    def put(a: int, b: int, chunk: np.ndarray) -> None:
        labels_out[a:b] = chunk.argmax(0)
        if probs_out is not None:
            probs_out[:, a:b] = chunk

    _zoom_rows(lambda lo, hi: probs[:, lo:hi], probs.shape[1], shape, put, rows)


def _zoom_rows(read, n_in: int, shape: Sequence[int], put, rows: int = 16) -> None:
    """Linear resampling of a (K, n_in, ...) array to (K, *shape), ``rows`` output rows at a time: ``read(lo,
    hi)`` gives input rows lo:hi, ``put(a, b, chunk)`` takes output rows a:b (float32). Linear interpolation is
    separable: the first axis here, with ``ndimage.zoom(grid_mode=True)``'s grid mapping and edges clamped as
    its ``mode="nearest"``; the others by ``ndimage.zoom`` on each block (equal to zooming the whole array to
    float32 rounding)."""
    n_out = int(shape[0])
    for a in range(0, n_out, rows):
        b = min(n_out, a + rows)
        x = np.clip((np.arange(a, b) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        i0 = np.floor(x).astype(np.int64)
        i1 = np.minimum(i0 + 1, n_in - 1)
        lo = int(i0.min())
        block = np.asarray(read(lo, int(i1.max()) + 1), np.float64)
        w = (x - i0).reshape(-1, *([1] * (block.ndim - 2)))
        rest = [s / n for s, n in zip(shape[1:], block.shape[2:])]
        crop = (slice(None), *(slice(0, s) for s in shape[1:]))
        chunk = np.empty((block.shape[0], b - a, *shape[1:]), np.float32)
        for k in range(block.shape[0]):
            rows_k = block[k, i0 - lo] * (1 - w) + block[k, i1 - lo] * w
            chunk[k] = ndimage.zoom(rows_k, [1.0, *rest], order=1, grid_mode=True, mode="nearest")[crop]
        put(a, b, chunk)
