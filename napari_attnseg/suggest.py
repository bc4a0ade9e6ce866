""""Review this slice next": where a model is least sure, per voxel and per slice.

The uncertainty of a voxel is the larger of

- the normalised entropy of the class probabilities (0: one class certain, 1: all classes equal), and
- the flip disagreement: half the L1 distance between the probabilities of the image and of its
  mirror image (the patient's left-right when the orientation is given, else the last axis), mirrored back
  (0: both agree, 1: they predict different classes).

A slice's score is the mean uncertainty over its voxels, multiplied by how far it lies from the
slices already reviewed (``1 - exp(-distance / spread)``: a slice next to a reviewed one has been
partly taught). :func:`suggest_slices` ranks the unreviewed slices greedily, leaving out the
neighbours (``min_gap``) of a slice already suggested, so the suggestions cover the volume. This is
MONAI Label's "epistemic"-style strategy with test-time flips instead of MC dropout.

Core API (no napari)::

    from napari_attnseg.suggest import suggest_slices, uncertainty_map
    for index, score in suggest_slices(model, volume, reviewed=[3, 10, 11], n=5):
        ...
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["uncertainty_map", "slice_scores", "rank_slices", "suggest_slices", "predict_uncertainty", "mirror_axis",
           "left_to_review"]


UNCERTAINTY_BLOCK = 2**22  # probabilities converted to float32 at a time (voxels x classes)


def uncertainty_map(probabilities: np.ndarray, flipped: np.ndarray | None = None) -> np.ndarray:
    """Voxel uncertainty in [0, 1] (float32) from class probabilities ``(K, *spatial)`` (and, optionally, those
    of the flipped image mapped back to the same grid). Computed a block of slices at a time: the float16
    probabilities of a 300 x 512 x 512 CT were converted whole, 630 MB plus as much again in temporaries."""
    p = probabilities
    k = int(p.shape[0])
    out = np.empty(tuple(p.shape[1:]), np.float32)
    step = max(1, UNCERTAINTY_BLOCK // max(1, k * int(np.prod(p.shape[2:]))))
    for i in range(0, out.shape[0], step):
        q = np.clip(np.asarray(p[:, i:i + step], np.float32), 1e-6, 1.0)
        u = -(q * np.log(q)).sum(0) / math.log(max(k, 2))
        if flipped is not None:
            u = np.maximum(u, 0.5 * np.abs(np.asarray(p[:, i:i + step], np.float32)
                                           - np.asarray(flipped[:, i:i + step], np.float32)).sum(0))
        out[i:i + step] = np.clip(u, 0.0, 1.0)
    return out


def slice_scores(uncertainty: np.ndarray, axis: int = 0) -> np.ndarray:
    """Mean uncertainty of every slice along ``axis``."""
    u = np.moveaxis(np.asarray(uncertainty, np.float32), axis, 0)
    return u.reshape(u.shape[0], -1).mean(1)


def left_to_review(n_slices: int, reviewed: Iterable[int] = (), meta: dict | None = None) -> list[int]:
    """The slices of a volume of ``n_slices`` that are neither ``reviewed`` nor inserted by the DICOM reader where
    the series misses images (``meta``: the image's, :func:`~napari_attnseg.data.dicom.inserted_slices`; no image
    there, nothing to review): the ones :func:`rank_slices` may suggest (``attnseg suggest``, napari's N)."""
    from .data.dicom import inserted_slices

    done = {int(r) for r in reviewed} | set(inserted_slices(meta or {}, int(n_slices)))
    return [z for z in range(int(n_slices)) if z not in done]


NEAR_MM = 10.0  # with the slice distance known, suggestions lie at least this many mm apart (while others remain)


def rank_slices(scores: Sequence[float], reviewed: Iterable[int] = (), n: int = 5, *, spread: float = 2.0,
                min_gap: int = 2, slice_mm: float | None = None, meta: dict | None = None) -> list[tuple[int, float]]:
    """The ``n`` unreviewed slices to review next, best first, as ``(index, score)``; never one the DICOM reader
    inserted where the series misses images (``meta``: the image's; :func:`left_to_review`).

    ``score`` = per-slice uncertainty x ``(1 - exp(-d / spread))``, d the distance to the nearest
    reviewed slice (1 when none is reviewed). Slices closer than ``min_gap`` to one already suggested
    are skipped while others remain. ``slice_mm``: the distance between slices in mm (a NIfTI or DICOM
    volume); ``min_gap`` then covers at least ``NEAR_MM`` (10 mm: 2 slices of a 5 mm CT, as without it, 4 of
    a 2.5 mm one, 10 of a 1 mm MRI), so thin slices do not bring four neighbours of one finding (an audit on
    a 2.5 mm CT got 14, 16, 18, 12)."""
    if slice_mm is not None and slice_mm > 0:
        min_gap = max(min_gap, math.ceil(NEAR_MM / slice_mm - 1e-9))
    s = np.asarray(scores, np.float64)
    idx = np.arange(len(s))
    rev = sorted({int(r) for r in reviewed if 0 <= int(r) < len(s)})
    if rev:
        dist = np.min(np.abs(idx[:, None] - np.asarray(rev)[None, :]), axis=1).astype(np.float64)
        weight = 1.0 - np.exp(-dist / max(spread, 1e-9))
    else:
        weight = np.ones(len(s))
    final = s * weight
    left = set(left_to_review(len(s), rev, meta))
    candidates = [i for i in np.argsort(-final, kind="stable").tolist() if i in left]
    picked: list[int] = []
    for gap in (min_gap, 1):  # first spread out; then, if too few, any remaining slice
        for i in candidates:
            if len(picked) >= n:
                break
            if i not in picked and all(abs(i - j) >= gap for j in picked):
                picked.append(i)
    return [(i, float(final[i])) for i in picked[:n]]


def predict_uncertainty(model, image, *, flips: bool = True, warnings: list[str] | None = None,
                        **predict_kwargs) -> tuple[np.ndarray, np.ndarray]:
    """Run the model (through :func:`napari_attnseg.inference.predict`) and return ``(labels, uncertainty)``
    on the image's grid; ``flips`` adds the left-right mirror's disagreement (twice the inference time).
    ``warnings``: a list that receives the prediction's warnings (input unlike the training data, ...)."""
    from .inference import predict

    predict_kwargs.pop("return_probabilities", None)
    pred = predict(model, image, return_probabilities=True, **predict_kwargs)
    if warnings is not None:
        warnings.extend(pred.warnings)
    probs = np.asarray(pred.probabilities, np.float32)
    flipped = None
    if flips:  # the patient's left-right axis when the orientation is known (a sagittal scan: not its last axis)
        axis = mirror_axis(model, predict_kwargs.get("orientation"))
        mirrored = np.ascontiguousarray(np.flip(np.asarray(image), axis))
        other = predict(model, mirrored, return_probabilities=True, **predict_kwargs)
        flipped = np.ascontiguousarray(np.flip(np.asarray(other.probabilities, np.float32), axis))
    return np.asarray(pred.labels), uncertainty_map(probs, flipped)


def mirror_axis(model, orientation: Sequence[str] | None) -> int:
    """The array axis (negative: from the end) that mirrors the image left to right: the one whose orientation code
    is R or L; the last one when the orientation is unknown (a TIFF), or when that axis is the one a 2D model steps
    through without turning the volume (mirroring it would only reorder the model's slices)."""
    codes = [str(c).upper() for c in orientation or ()]
    axis = next((i - len(codes) for i, c in enumerate(codes) if c in ("L", "R")), -1)
    turned = getattr(getattr(model, "card", None), "orientation", None)  # (the model's own orientation: turned to it)
    return -1 if axis == -3 and getattr(model, "spatial_dims", 3) == 2 and not turned else axis


def suggest_slices(model, image, reviewed: Iterable[int] = (), n: int = 5, *, axis: int = 0, flips: bool = True,
                   spread: float = 2.0, min_gap: int = 2, slice_mm: float | None = None,
                   uncertainty: np.ndarray | None = None, meta: dict | None = None,
                   **predict_kwargs) -> list[tuple[int, float]]:
    """Rank the unreviewed slices of a volume (along ``axis``) by how unsure ``model`` is there.

    Args:
        model: a loaded model (:func:`napari_attnseg.load_model`).
        image: the volume, (z, y, x) (channels first for multi-channel models).
        reviewed: slices a person has checked already (never suggested; their neighbours rank lower).
        n: how many slices to return.
        slice_mm: the distance between slices in mm, when known (see :func:`rank_slices`).
        uncertainty: a map from :func:`predict_uncertainty` to reuse (no inference then).
        meta: the image's metadata (``Volume.meta``, a napari layer's): the slices its DICOM reader inserted where
            the series misses images are never suggested (no image there to review).
        predict_kwargs: passed to ``predict`` (device, tile, precision, ...).
    Returns: ``[(slice index, score), ...]``, most uncertain first.
    """
    if uncertainty is None:
        _, uncertainty = predict_uncertainty(model, image, flips=flips, **predict_kwargs)
    return rank_slices(slice_scores(uncertainty, axis), reviewed, n, spread=spread, min_gap=min_gap, slice_mm=slice_mm,
                       meta=meta if axis % np.ndim(uncertainty) == 0 else None)  # (inserted: along the first axis)
