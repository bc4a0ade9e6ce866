"""Argument checks shared by the mask correction helpers (:mod:`.correct`) and the edit statistics
(:mod:`.edit_counts`): a label array from an array-like, whole numbers, lists of label values or slice indices;
each refuses a wrong value with an ``InputError`` that names the argument."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .errors import InputError


def _array(labels) -> np.ndarray:
    """A label array from an array-like (a list, a dask or zarr array); a clear error when it is not one."""
    try:
        labels = np.asarray(labels)
    except (TypeError, ValueError) as exc:
        raise InputError(f"The labels cannot be read as an array ({exc}); pass a numpy label array.") from None
    if labels.ndim == 0 or not (np.issubdtype(labels.dtype, np.number) or labels.dtype == np.bool_) \
            or np.issubdtype(labels.dtype, np.complexfloating):
        raise InputError(f"The labels must be an integer label array of 1 or more axes; got shape "
                         f"{labels.shape} and dtype {labels.dtype}. Convert it, e.g. labels.astype(np.uint8).")
    return labels


def _whole(value, name: str, low: int = 0) -> int:
    """A whole number >= ``low`` given as an int (or a float such as 2.0); an InputError naming ``name`` otherwise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)) \
            or not np.isfinite(value) or value != int(value) or value < low:
        raise InputError(f"{name} must be a whole number >= {low}; got {value!r}.")
    return int(value)


def _ints(values, name: str) -> list[int]:
    """A list of label values or slice indices: one number, or a list of whole numbers."""
    values = [values] if np.isscalar(values) and not isinstance(values, str) else values
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise InputError(f"{name} must be a list of whole numbers (e.g. [1, 2]); got {values!r}.")
    return [_whole(v, name, low=-(2**63)) for v in values]
