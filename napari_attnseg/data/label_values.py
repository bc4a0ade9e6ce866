"""How a mask's label values and names are checked and reported: class ids only, names as typed, and the
values a dataset's label table has no name for (where they are)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import InputError


def check_class_ids(a: np.ndarray, what: str) -> None:
    """Refuse a mask that is not class ids (whole, not negative); ``what`` names it ("Labels", a file)."""
    a = np.asarray(a)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.all(np.mod(a, 1) == 0):
            raise InputError(f"{what} must be whole numbers (class ids); got fractional or NaN values (a probability "
                             "map?). Use a Labels layer or a thresholded mask (e.g. probability > 0.5).")
    elif a.dtype.kind not in "iub":
        raise InputError(f"{what} must be integers (class ids); got dtype {a.dtype}.")
    if a.size and a.min() < 0:
        raise InputError(f"{what} must not be negative; class ids start at 0 (background).")


def class_key(name: str) -> str:
    """A class name as compared across cards, masks and datasets: case, ``_`` / ``-`` and spacing aside
    (``White_Matter`` is ``white matter``), ``bg`` / ``back`` / ``0`` the background."""
    key = " ".join(str(name).strip().lower().replace("_", " ").replace("-", " ").split())
    return "background" if key in ("bg", "back", "0") else key


def clean_names(names: Sequence[str] | None, kind: str) -> list[str] | None:
    """Names as typed ("background, tumour" from a comma list) without the spaces around them; an empty one refused."""
    if names is None:
        return None
    out = [str(n).strip() for n in names]
    if any(not n for n in out):
        raise InputError(f"{kind} names must not be empty; got {list(names)}. Give one name per value, separated by "
                         "commas, e.g. background,necrotic,enhancing,oedema.")
    return out


def values_outside_table(labels: np.ndarray, n_names: int, rows: list[int] | None, what: str) -> str:
    """'Label value 4 (1 voxel, slice 16) in <what> is': the values beyond a table of ``n_names`` names, their
    voxel counts and slices (3D; ``labels`` holds the slices ``rows`` of the volume when not None)."""
    from ..correct import format_slice_ranges

    values, parts = [int(v) for v in np.unique(labels) if v >= n_names], []
    for v in values[:5]:
        hit, n = labels == v, int((labels == v).sum())
        z = np.flatnonzero(hit.any(axis=(1, 2))).tolist() if hit.ndim == 3 else []
        z = [rows[i] for i in z] if rows is not None else z
        at = f", slice{'s' if len(z) > 1 else ''} {format_slice_ranges(z)}" if z else ""
        parts.append(f"{v} ({n} voxel{'s' if n > 1 else ''}{at})")
    many = len(values) > 1
    return f"Label value{'s' if many else ''} {', '.join(parts)} in {what} {'are' if many else 'is'}"
