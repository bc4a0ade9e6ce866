"""What a click model's answer becomes before it is written: the components under the positive clicks
(:func:`_keep_clicked`), a correction applied where it was made (:func:`merge_local`, FocalClick's progressive merge)
and every click's own pixel ending with the label it asked for (:func:`honour_clicks`). Used by
:func:`~.segment.segment_with_prompts` (which re-exports them)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _keep_clicked(mask: np.ndarray, points: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The connected components of ``mask`` under a positive click (all of it if none is)."""
    from scipy import ndimage as ndi

    cc, n = ndi.label(mask)
    if n <= 1:
        return mask
    ids = {int(cc[tuple(np.round(p).astype(int))]) for p, lab in zip(points, labels)
           if lab == 1 and _inside(p, mask.shape)}
    ids.discard(0)
    return np.isin(cc, list(ids)) if ids else mask


def _inside(point: np.ndarray, shape: Sequence[int]) -> bool:
    """Whether a click (crop coordinates) lies in the crop: a capped crop (``MAX_CROP``) may leave older clicks out."""
    return bool(((np.round(point) >= 0) & (np.round(point) < np.array(shape))).all())


HONOUR_REACH = 6.0  # click radii a click ignored by the model reaches, when the card gives no object_diameter


def honour_clicks(mask: np.ndarray, prob: np.ndarray, points: np.ndarray, labels: np.ndarray,
                  reach: np.ndarray) -> tuple[np.ndarray, int]:
    """Each click's own pixel ends with the label it asked for, oldest click first, the newest last.

    A click the model's answer ignored (a negative click still inside the mask, a positive one still
    outside) moves the boundary through it locally: within ``reach`` pixels per axis of the click, the
    pixels connected to it that the model finds no more likely (negative: probability at most the
    click's, taken off) or no less likely (positive: at least the click's, added) than the clicked one.
    The boundary then follows the model's own probability contour through the click, near it only.
    Returns the mask and how many clicks needed it."""
    from scipy import ndimage as ndi

    from .encode import draw_disks

    out = mask.copy()
    top = np.array(mask.shape) - 1
    pixels = [tuple(np.clip(np.round(p).astype(int), 0, top)) for p in np.asarray(points, float)]
    labels = np.asarray(labels).astype(int)
    moved = 0
    for i, (p, lab) in enumerate(zip(np.asarray(points, float), labels)):
        idx = pixels[i]
        if not _inside(p, mask.shape) or out[idx] == bool(lab):
            continue
        near = draw_disks(mask.shape, p[None], reach)
        cand = near & ((prob >= prob[idx]) if lab else (prob <= prob[idx]))
        # the pixels of the clicks of the other kind stay as they asked (a click newer than this one on the
        # same pixel comes later in this loop and wins)
        for j, other in enumerate(pixels):
            if labels[j] != lab and other != idx and _inside(np.asarray(points[j], float), mask.shape):
                cand[other] = False
        cc, _ = ndi.label(cand)
        region = cc == cc[idx]
        out = (out | region) if lab else (out & ~region)
        moved += 1
    return out, moved


def merge_local(previous: np.ndarray, new: np.ndarray, point: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Progressive merge (FocalClick, Chen et al. CVPR 2022): keep ``previous`` except where the model's
    ``new`` mask differs from it in a connected region that reaches the newest click (a ball of ``radius``
    pixels per axis around ``point``; several points, (N, ndim): the clicks this run is the first to use,
    e.g. quick clicks that queued while a run was busy). A correction click then changes the object where
    it was made and nowhere else; a region the model changes far from the click stays as it was. When
    nothing changes near the click, ``previous`` is returned."""
    from scipy import ndimage as ndi

    from .encode import draw_disks

    diff = previous ^ new
    if not diff.any():
        return previous.copy()
    cc, _ = ndi.label(diff)
    ids = np.unique(cc[draw_disks(diff.shape, np.asarray(point, float).reshape(-1, diff.ndim), radius)])
    ids = ids[ids > 0]
    return previous ^ np.isin(cc, ids) if ids.size else previous.copy()
