"""Mask correction helpers (numpy/scipy/scikit-image only): each takes and returns a label array.

``classes`` selects the label values to work on (None = every non-zero class). ``ignore``: the 'ignore' value of
labels ``export`` wrote (unreviewed slices; the label table's length, ``data.manifest.ignore_value_of(path)``
reads it), never worked on as a class nor overwritten. Helpers never modify their input in place; the napari
panel assigns the result so the layer's undo can revert it.

The argument checks live in :mod:`.correct_checks`; the edit statistics (:func:`edit_stats`, :class:`EditCounts`)
in :mod:`.edit_counts`, re-exported here (callers use ``correct.edit_stats`` and ``correct.EditCounts``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from scipy import ndimage

from .correct_checks import _array, _ints, _whole
from .edit_counts import EditCounts, edit_stats  # noqa: F401 (re-exported: correct.edit_stats, correct.EditCounts)
from .errors import InputError


def _classes(labels: np.ndarray, classes: Iterable[int] | int | None, ignore: int | None = None) -> list[int]:
    """The classes to work on; never the 'ignore' value (exported labels: it filled, bridged and interpolated the
    unreviewed slices as an object, into reviewed ones, and keep-largest erased them to background)."""
    skip = {0} if ignore is None else {0, _whole(ignore, "ignore", low=1)}
    present = [int(c) for c in np.unique(labels) if c not in skip]
    return present if classes is None else [c for c in _ints(classes, "classes") if c in present]


def _ball(ndim: int, radius: int, spacing: Sequence[float] | None = None) -> np.ndarray:
    """A ball of ``radius`` pixels; with ``spacing``, of ``radius`` times the finest spacing in every axis (thick CT
    slices: 0 slices up and down, where a ball of voxels erased a 3-slice tumour at 5 mm / 0.57 mm, radius 2)."""
    radius = _whole(radius, "radius", low=1)
    if spacing is None:
        spacing = [1.0] * ndim
    elif len(spacing) != ndim or not all(np.isfinite(v) and v > 0 for v in spacing):
        raise InputError(f"spacing must be {ndim} positive numbers, one per axis of the mask; got {spacing!r}.")
    reach = [int(radius * min(spacing) / v + 1e-6) for v in spacing]
    grid = np.ogrid[tuple(slice(-r, r + 1) for r in reach)]
    return sum((g * v) ** 2 for g, v in zip(grid, spacing)) <= (radius * min(spacing)) ** 2 + 1e-9


def fill_holes(labels: np.ndarray, classes: Iterable[int] | None = None, *, ignore: int | None = None) -> np.ndarray:
    """Fill background holes fully enclosed by a class (slice by slice for volumes, as people draw)."""
    labels = _array(labels)
    out = labels.copy()
    for c in _classes(labels, classes, ignore):
        mask = labels == c
        if mask.ndim == 3:
            filled = np.stack([ndimage.binary_fill_holes(s) for s in mask])
        else:
            filled = ndimage.binary_fill_holes(mask)
        out[filled & (labels == 0)] = c
    return out


def remove_small_objects(labels: np.ndarray, min_voxels: int, classes: Iterable[int] | None = None, *,
                         ignore: int | None = None) -> np.ndarray:
    """Set connected components smaller than ``min_voxels`` to background."""
    labels = _array(labels)
    out = labels.copy()
    for c in _classes(labels, classes, ignore):
        comp, n = ndimage.label(labels == c)
        if n == 0:
            continue
        sizes = np.bincount(comp.ravel())
        small = sizes < _whole(min_voxels, "min_voxels")
        small[0] = False
        out[small[comp]] = 0
    return out


def keep_largest_component(labels: np.ndarray, classes: Iterable[int] | None = None, *,
                           ignore: int | None = None) -> np.ndarray:
    """Keep only the largest connected component of each class."""
    labels = _array(labels)
    out = labels.copy()
    for c in _classes(labels, classes, ignore):
        comp, n = ndimage.label(labels == c)
        if n <= 1:
            continue
        sizes = np.bincount(comp.ravel())
        sizes[0] = 0
        out[(comp != 0) & (comp != sizes.argmax())] = 0
    return out


def keep_component_at(labels: np.ndarray, point: Sequence[float], *, ignore: int | None = None) -> np.ndarray:
    """Keep the object under ``point`` (an index per axis) and remove every other object of its class.

    Objects are face-connected components; other classes are left as they are. This is the helper
    for a mask whose largest object is not the one that matters (a tumour beside bigger false
    positives): the clinician points at the right one."""
    labels = _array(labels)
    try:
        idx = tuple(int(round(float(p))) for p in point)
    except (TypeError, ValueError):
        raise InputError(f"The point must be one finite index per axis of the mask (shape {tuple(labels.shape)}), "
                         f"e.g. {tuple(n // 2 for n in labels.shape)}; got {point!r}.") from None
    if len(idx) != labels.ndim or any(not 0 <= i < n for i, n in zip(idx, labels.shape)):
        raise InputError(f"The point {idx} is outside the mask (shape {tuple(labels.shape)}, one index per axis); "
                         "give a point on the object to keep (in napari: put the cursor on it).")
    c = labels[idx]
    if c == 0:
        raise InputError(f"There is no object at {idx} (background); give a point on the object to keep (in napari: "
                         "put the cursor on it).")
    if ignore is not None and c == _whole(ignore, "ignore", low=1):
        raise InputError(f"{idx} holds the 'ignore' value {c} (a slice nobody reviewed), not an object; give a point "
                         "on the object to keep.")
    comp, _ = ndimage.label(labels == c)
    out = labels.copy()
    out[(comp != 0) & (comp != comp[idx])] = 0
    return out


def binary_open(labels: np.ndarray, radius: int = 1, classes: Iterable[int] | None = None,
                 spacing: Sequence[float] | None = None, ignore: int | None = None) -> np.ndarray:
    """Morphological opening per class (removes thin spurs and specks). ``radius`` in pixels; give the
    volume's ``spacing`` (array axis order) for thick slices, else the ball spans ``radius`` slices too."""
    labels = _array(labels)
    out = labels.copy()
    for c in _classes(labels, classes, ignore):
        mask = labels == c
        opened = ndimage.binary_opening(mask, structure=_ball(labels.ndim, radius, spacing))
        out[mask & ~opened] = 0
    return out


def binary_close(labels: np.ndarray, radius: int = 1, classes: Iterable[int] | None = None,
                  spacing: Sequence[float] | None = None, ignore: int | None = None) -> np.ndarray:
    """Morphological closing per class (bridges small gaps); only background is overwritten. ``radius`` in pixels; give the
    volume's ``spacing`` (array axis order) for thick slices, else the ball spans ``radius`` slices too."""
    labels = _array(labels)
    out = labels.copy()
    for c in _classes(labels, classes, ignore):
        mask = labels == c
        closed = ndimage.binary_closing(mask, structure=_ball(labels.ndim, radius, spacing), border_value=0)
        out[closed & (out == 0)] = c
    return out


def _signed_distance(mask: np.ndarray) -> np.ndarray:
    """Positive inside, negative outside, in pixels (the boundary between +1 and -1)."""
    if not mask.any():
        return np.full(mask.shape, -1e6, np.float32)
    inside = ndimage.distance_transform_edt(mask)
    outside = ndimage.distance_transform_edt(~mask)
    return (inside - outside).astype(np.float32)


def interpolate_slices(labels: np.ndarray, slices: Sequence[int] | None = None, classes: Iterable[int] | None = None,
                       *, axis: int = 0, reviewed: Sequence[int] | None = None,
                       ignore: int | None = None) -> np.ndarray:
    """Shape-based interpolation between annotated slices, on signed distance maps, per class.

    ``slices`` are the annotated slice indices along ``axis`` (default: the axial axis 0); by default
    every slice that holds the class. Slices strictly between two annotated ones get the zero level
    of the linearly blended signed distances (only their background is written); annotated slices
    are left as they are. An annotated slice without the class makes the shape taper off to nothing
    halfway towards it, rather than stop abruptly. ``reviewed``: slices a person checked; they are
    annotated slices too (a reviewed empty slice says "nothing here") and are never written.
    """
    labels = _array(labels)
    if labels.ndim != 3:
        raise InputError("Interpolation between slices needs a 3D label volume.")
    if not -3 <= axis < 3:
        raise InputError(f"axis must be 0, 1 or 2; got {axis}.")
    n = labels.shape[axis]
    slices = None if slices is None else _ints(slices, "slices")
    reviewed = None if reviewed is None else _ints(reviewed, "reviewed")
    for given in (slices, reviewed):
        bad = sorted({s for s in given or () if not 0 <= s < n})
        if bad:
            raise InputError(f"Slices {bad} are outside the volume (0..{n - 1} along axis {axis}).")
    checked = {int(s) for s in reviewed or ()}
    src = np.moveaxis(labels, axis, 0)
    out = src.copy()
    for c in _classes(labels, classes, ignore):
        mask = src == c
        keys = {int(s) for s in slices} if slices is not None else \
            {int(i) for i in np.flatnonzero(mask.reshape(len(mask), -1).any(1))}
        keys = sorted(keys | checked)
        for a, b in zip(keys, keys[1:]):
            if b - a < 2 or not (mask[a].any() or mask[b].any()):
                continue
            da, db = _signed_distance(mask[a]), _signed_distance(mask[b])
            if not mask[a].any():
                da = np.full_like(db, -(db.max() + 1))
            elif not mask[b].any():
                db = np.full_like(da, -(da.max() + 1))
            for z in range(a + 1, b):
                t = (z - a) / (b - a)
                fill = ((1 - t) * da + t * db) > 0
                out[z][fill & (out[z] == 0)] = c
    return np.ascontiguousarray(np.moveaxis(out, 0, axis))


def interpolation_gaps(labels: np.ndarray, interpolated: np.ndarray, classes: Iterable[int] | None = None, *,
                       axis: int = 0, reviewed: Sequence[int] | None = None, ignore: int | None = None,
                       ) -> list[tuple[int, int, int]]:
    """``(class, a, b)`` for the neighbouring annotated slices ``a`` and ``b`` (as :func:`interpolate_slices` finds
    them, ``reviewed`` included) that both hold the class, in shapes that do not overlap, and between which
    ``interpolated`` added none of it: signed distances blend a shape where it is, so a tumour drawn at two places
    3 slices apart (27 mm apart on a 6.5 mm MRI) got nothing between, and the panel's advice did not fit."""
    labels, interpolated = _array(labels), _array(interpolated)
    if labels.ndim != 3 or interpolated.shape != labels.shape:
        return []
    src, out = np.moveaxis(labels, axis, 0), np.moveaxis(interpolated, axis, 0)
    checked = {int(s) for s in reviewed or ()}
    gaps = []
    for c in _classes(labels, classes, ignore):
        mask = src == c
        held = {int(i) for i in np.flatnonzero(mask.reshape(len(mask), -1).any(1))}
        keys = sorted(held | checked)
        for a, b in zip(keys, keys[1:]):
            if b - a >= 2 and a in held and b in held and not (mask[a] & mask[b]).any() \
                    and not ((out[a + 1:b] == c) & ~mask[a + 1:b]).any():
                gaps.append((c, a, b))
    return gaps


def restore_slices(out: np.ndarray, labels: np.ndarray, slices: Sequence[int]) -> dict[int, int]:
    """Put ``labels``' ``slices`` (first axis) back into ``out`` in place; ``{slice: voxels out had changed there}``
    for those it had (the napari panel's helpers leave the reviewed slices off screen as they were)."""
    slices = sorted({int(z) for z in slices})
    differ = (out[slices] != labels[slices]).reshape(len(slices), -1).sum(1) if slices else []
    out[slices] = labels[slices]
    return {z: int(n) for z, n in zip(slices, differ) if n}


def parse_slice_ranges(text: str) -> list[int]:
    """``"3,5,10-12"`` -> ``[3, 5, 10, 11, 12]``."""
    result: set[int] = set()
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        try:
            lo, hi = (int(v) for v in part.split("-", 1)) if "-" in part else (int(part),) * 2
            if hi < lo:
                raise ValueError
        except ValueError:
            raise InputError(f"Cannot read slice range {part!r}; write slices like 3,5,10-12.") from None
        if hi - lo >= 100_000:  # (a range is built whole before the volume's range is checked: napari hung on a typo)
            raise InputError(f"Slice range {part!r} spans {hi - lo + 1} slices; no volume has that many. Write the "
                             "slices of this volume, like 3,5,10-12.")
        result.update(range(lo, hi + 1))
    if any(v < 0 for v in result):
        raise InputError("Slice numbers start at 0.")
    return sorted(result)


def format_slice_ranges(slices: Iterable[int]) -> str:
    """``[3, 5, 10, 11, 12]`` -> ``"3,5,10-12"``."""
    values = sorted(set(int(s) for s in slices))
    parts, i = [], 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        parts.append(str(values[i]) if i == j else f"{values[i]}-{values[j]}")
        i = j + 1
    return ",".join(parts)


def ignore_unreviewed(labels: np.ndarray, reviewed_slices: Iterable[int], ignore_value: int) -> np.ndarray:
    """Labels with every slice (first axis) that was not reviewed set to ``ignore_value``."""
    labels = _array(labels)
    out = labels.astype(np.result_type(labels.dtype, np.min_scalar_type(ignore_value)), copy=True)
    keep = np.zeros(labels.shape[0], bool)
    reviewed = [int(s) for s in reviewed_slices]
    bad = [s for s in reviewed if not 0 <= s < labels.shape[0]]
    if bad:
        raise InputError(f"Reviewed slices {bad} are outside the volume (0..{labels.shape[0] - 1}).")
    keep[reviewed] = True
    out[~keep] = ignore_value
    return out
