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


# After a run without a diameter: are the objects found far from the size the model learnt? Median
# equivalent diameter of the predicted objects / the card's object_diameter, nuclei-2d on the nuclei image
# rescaled with skimage (true scale: measured ratio, Dice as run -> with diameter "auto"): 0.5x 0.60
# (0.864 -> 0.936), 0.6x 0.68 (0.893 -> 0.937), 0.7x 0.77 (0.920 -> 0.941), 0.8x 0.85, 1x 1.03 (0.947),
# 1.25x 1.25, 1.4x 1.39 (0.935 -> 0.943), 1.6x 1.56 (0.929 -> 0.943), 2x 1.93 (0.924 -> 0.943), 4x 3.72
# (0.866 -> 0.87+). Small objects read too big at a small scale (merged, blurred edges), hence the
# asymmetric limits: the warning starts where "auto" gains about 0.015 Dice or more (about 1.55x and 0.62x).
SIZE_HIGH, SIZE_LOW = 1.5, 0.7
SIZE_WARNING = " px wide, but the model learnt objects of "  # marks the warning (a diameter run drops it)
FOUND_KEY = "object_diameter_found"  # Prediction.params: median diameter (image pixels) of the objects found
_CAP = {2: 4096, 3: 256}  # measure on a central crop of at most this many pixels per axis (2D plane / 3D volume)


def _central(labels, per_slice: bool) -> np.ndarray:
    """A central part of ``labels`` small enough to label at no noticeable cost (8 slices of a stack)."""
    shape = np.shape(labels)
    lead: tuple = ()
    if per_slice and len(shape) == 3:
        lead, shape = (np.unique(np.linspace(0, shape[0] - 1, min(8, shape[0])).round().astype(int)),), shape[1:]
    cap = _CAP[2] if len(shape) == 2 else _CAP[3]
    box = tuple(slice(max(0, (n - cap) // 2), max(0, (n - cap) // 2) + cap) for n in shape)
    return np.asarray(labels[lead + box] if lead else labels[box])


def object_size_check(pred, card, skip: bool = False) -> None:
    """After a run: record the median equivalent diameter of the objects found (``params[FOUND_KEY]``, image
    pixels) and warn when it is far from the card's ``object_diameter`` (more than :data:`SIZE_HIGH` times
    or less than :data:`SIZE_LOW` times), naming the remedy. Measured on the labels already predicted (a
    central part of big ones), no second pass. A run with a diameter (``params["diameter"]``) gets neither,
    from none of its passes; ``skip``: the image is unlike the training data anyway (another warning says so)."""
    params = pred.params
    if "diameter" in params:  # the outer call of a diameter run: its passes measured on rescaled grids
        params.pop(FOUND_KEY, None)
        pred.warnings = [w for w in pred.warnings if SIZE_WARNING not in w]
        return
    trained = getattr(card, "object_diameter", None)
    if not trained or pred.labels is None or np.size(pred.labels) == 0:
        return
    if getattr(card, "spacing", None):  # a scan model: sizes are in mm, the run resamples to its spacing (a CT
        return                          # model fine-tuned from nuclei-2d got "234 px wide" of its false positives)
    per_slice = params.get("mode") == "slices"
    found, n = measure_diameter(_central(pred.labels, per_slice), per_slice=per_slice)
    if found is None:
        return
    params[FOUND_KEY] = round(float(found), 2)
    ratio = found / float(trained)
    if skip or n < MIN_INTERIOR or SIZE_LOW <= ratio <= SIZE_HIGH:
        return
    name = getattr(card, "name", "") or "the model"
    pred.warnings.append(
        f"The {n} objects found are typically {found:.0f}{SIZE_WARNING}{float(trained):.0f} px ({name}'s card: "
        f"object_diameter), {max(ratio, 1 / ratio):.1f} times {'bigger' if ratio > 1 else 'smaller'}: objects of "
        "another size than the model's are segmented less well. Give their size: --diameter auto (or the "
        "diameter in pixels) with attnseg predict, Object diameter 'auto' or 'Estimate the size and run' in the "
        "Segment tab, predict(..., diameter='auto') in Python.")
