"""The typical object diameter of a mask (issue 19): what a model card records as ``object_diameter``
(measured on the training masks) and what ``diameter="auto"`` measures on each of its passes
(:mod:`.diameter`).

Objects are the connected components of ``labels > 0``. A prediction at a scale far from the model's
can hold, next to the real objects, hundreds of specks (texture inside nuclei four times the model's
size). Specks are therefore judged against the objects that carry the foreground, the area-weighted
median area (the area of the object that the median foreground pixel belongs to), not against the
median object, which a crowd of specks makes a speck itself. The diameter reported is still the median
over the objects kept: the area-weighted median overestimates more where touching objects merge.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

MIN_INTERIOR = 5  # objects not touching the edge needed to ignore the edge-cut ones
SPECK = 0.1  # components smaller than this share of the area-weighted median area are not objects


def weighted_median_area(area: np.ndarray) -> float:
    """The area of the object that holds the median foreground pixel (0 for no object)."""
    a = np.sort(np.asarray(area, np.float64))
    if a.size == 0:
        return 0.0
    cum = np.cumsum(a)
    return float(a[min(int(np.searchsorted(cum, 0.5 * cum[-1])), a.size - 1)])


def measure_diameter(labels: np.ndarray, per_slice: bool = False,
                     whole: bool = False) -> tuple[float | None, int] | tuple[float | None, int, int]:
    """Typical object diameter in pixels of a mask: ``(median equivalent diameter, objects counted)``,
    and the number of objects not cut by the edge as a third value with ``whole=True``.

    Objects are the connected components of ``labels > 0`` (every foreground class together); the
    equivalent diameter is that of the disc (sphere in 3D) of the same area (volume). Specks under
    :data:`SPECK` of the area-weighted median area (:func:`weighted_median_area`) are left out, so a
    crowd of specks cannot stand for the objects. Components that touch the array's edge are cut and
    left out when at least :data:`MIN_INTERIOR` others remain. The median of the diameters is used:
    an area-weighted median was measured too and overestimates more where touching objects merge
    (nuclei sample at its own scale: 27.3 vs 25.8 for 25.0 in the reference mask). ``per_slice``
    measures 2D objects slice by slice along the first axis (a 2D model run over a volume).
    ``(None, 0)`` when there is no object.
    """
    mask = np.asarray(labels) > 0
    planes = [mask[i] for i in range(mask.shape[0])] if per_slice else [mask]
    diam: list[np.ndarray] = []
    inner: list[np.ndarray] = []
    for plane in planes:
        cc, n = ndimage.label(plane)
        if n == 0:
            continue
        area = np.bincount(cc.ravel(), minlength=n + 1)[1:].astype(np.float64)
        edge = np.zeros(n + 1, bool)
        for ax in range(cc.ndim):
            edge[np.take(cc, 0, axis=ax)] = True
            edge[np.take(cc, -1, axis=ax)] = True
        d = np.sqrt(4.0 * area / np.pi) if cc.ndim == 2 else (6.0 * area / np.pi) ** (1.0 / 3.0)
        diam.append(np.stack([d, area]))
        inner.append(~edge[1:])
    if not diam:
        return (None, 0, 0) if whole else (None, 0)
    d, area = np.concatenate(diam, axis=1)
    interior = np.concatenate(inner)
    keep = area >= SPECK * weighted_median_area(area)
    n_whole = int(np.count_nonzero(keep & interior))
    if n_whole >= MIN_INTERIOR:
        keep &= interior
    out = float(np.median(d[keep])), int(np.count_nonzero(keep))
    return (*out, n_whole) if whole else out
