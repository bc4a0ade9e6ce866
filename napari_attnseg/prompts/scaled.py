"""Clicks on objects of another size than the click model's: the region around the clicks is rescaled
so its objects have the card's ``object_diameter``, segmented there, and the result mapped back.

A click model learnt nuclei about 25 px wide; on an image where they are 50 px wide one click used to
give IoU 0.22 (0.86 at the native size). ``segment_with_prompts(..., diameter=50)`` runs the model on
the region around the clicks shrunk by 2 (only that region is resampled, so a click costs the same
on a large image) and puts the mask, the probability and the attention maps back on the image's grid.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from ..errors import InputError
from .segment import MIN_CROP, PromptResult, crop_box, cut_by_box

ZOOM_RANGE = (0.25, 4.0)  # rescaling beyond this would leave too few pixels or too much image


def zoom_for(card, diameter: float | None) -> tuple[float | None, str | None]:
    """The factor that brings objects of ``diameter`` pixels to the card's ``object_diameter`` (None:
    no rescaling), and a note when it was clamped to ``ZOOM_RANGE``."""
    if diameter is None:
        return None, None
    if isinstance(diameter, bool) or not isinstance(diameter, (int, float, np.number)) or not diameter > 0:
        raise InputError(f"diameter is the objects' typical diameter in pixels (> 0); got {diameter!r}.")
    trained = getattr(card, "object_diameter", None)
    if not trained:
        raise InputError("This click model's card has no object_diameter, so it cannot rescale to your objects' "
                         "size; leave diameter out.")
    zoom = float(trained) / float(diameter)
    clamped = float(np.clip(zoom, *ZOOM_RANGE))
    note = None
    if clamped != zoom:
        note = (f"objects of {diameter:.4g} px would need a x{zoom:.2f} rescale to the model's {float(trained):.4g} px; "
                f"limited to x{clamped:g}")
    return (None if abs(clamped - 1.0) < 0.1 else clamped), note


def segment_rescaled(segment, model, img: np.ndarray, pts: np.ndarray, labs: np.ndarray, prev: np.ndarray | None,
                     zoom: float, stats: dict | None, options: dict[str, Any]) -> PromptResult:
    """``segment`` (:func:`~.segment.segment_with_prompts`) on the region around the clicks rescaled by
    ``zoom``; ``img`` (C, *spatial) as given, ``stats`` its whole-image normalisation (None: normalised)."""
    from ..inference.normalize import apply_stats

    shape = img.shape[1:]
    dims = len(shape)
    grow = 2.0 / zoom
    for _ in range(4):  # grow the region while the object reaches a side of it that is not the image's
        region = crop_box(shape, pts, labs, prev, 1, grow)
        start = np.array([s.start for s in region], float)
        sizes = np.array([s.stop - s.start for s in region])
        out_sizes = np.maximum(np.round(sizes * zoom).astype(int), min(MIN_CROP[dims], 8))
        factor = out_sizes / sizes  # the zoom actually applied per axis
        crop = img[(slice(None), *region)].astype(np.float32)
        if stats is not None:
            crop = apply_stats(crop, stats)
        small = np.stack([ndimage.zoom(c, factor, order=1, mode="nearest", grid_mode=True) for c in crop])
        small_prev = None if prev is None else ndimage.zoom(prev[region].astype(np.float32), factor, order=1,
                                                            mode="nearest", grid_mode=True) > 0.5
        local_pts = np.clip((pts - start + 0.5) * factor - 0.5, 0, out_sizes - 1)
        inner = segment(model, small if img.shape[0] > 1 else small[0], local_pts, labs, previous=small_prev,
                        normalized=True, **options)
        local = _back(inner.mask.astype(np.float32), factor, sizes) > 0.5
        if not cut_by_box(local, region, shape):
            break
        grow *= 2
    mask = np.zeros(shape, bool)
    mask[region] = local
    prob_small = np.zeros(tuple(out_sizes), np.float32)
    prob_small[inner.box] = inner.probability
    prob = _back(prob_small, factor, sizes)
    maps = []
    for m in inner.attention:  # map pixel centres: small grid -> region -> image
        scale = tuple(float(s) / f for s, f in zip(m.scale, factor))
        translate = tuple(float(b) + (float(t) + 0.5) / f - 0.5 for b, t, f in zip(start, m.translate, factor))
        maps.append(type(m)(m.name, m.level, m.data, scale, translate))
    params = {**inner.params, "zoom": [round(float(f), 4) for f in factor],
              "radius": [round(float(r) / f, 3) for r, f in zip(inner.params.get("radius", []), factor)]}
    return PromptResult(mask, region, prob.astype(np.float32), maps, pts, labs,
                        dict(inner.timings), params, list(inner.warnings))


def _back(a: np.ndarray, factor: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """``a`` on the small grid back on the region's grid, exactly ``sizes`` (edge values where rounding
    left a pixel short)."""
    z = ndimage.zoom(a, 1.0 / factor, order=1, mode="nearest", grid_mode=True)
    z = np.pad(z, [(0, max(0, int(n) - z.shape[d])) for d, n in enumerate(sizes)], mode="edge")
    return z[tuple(slice(0, int(n)) for n in sizes)]
