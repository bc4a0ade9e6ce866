"""The advice of an export refused for its labels' values (:mod:`.export_plan`): which labels (a file, a napari
layer), and what to do with another tool's 'unlabelled' value, where the marks of reviewed slices can help."""

from __future__ import annotations

import numpy as np


def the_labels(what: str) -> str:
    return "The labels" if what == "the labels" else f"The labels ({what})"


def unlabelled_advice(top: int, labels: np.ndarray, rows: list[int] | None, time_lapse: bool) -> str:
    """What to do with a mask of a few classes and 255 (or 65535), another tool's 'unlabelled': the marks of reviewed
    slices (frames) only where they can help, i.e. not for a 2D mask, whose every pixel counts."""
    said = f"a few classes and {top}, the value other tools write for 'unlabelled'. "
    fix = (f"set {top} to 0 first (napari: paint it with label 0); --foreground or 'One class (labels > 0)' would make "
           "it foreground.")
    if labels.ndim != 3:
        return f"{said}To export it, {fix}"
    unit, rest = ("frames", "is left out") if time_lapse else ("slices", "becomes 'ignore'")
    if rows is None:
        return (f"{said}Mark only the {unit} you checked (attnseg export --reviewed-slices; napari: R on each): {top} on "
                f"the others {rest}; or {fix}")
    from ..correct import format_slice_ranges

    on = format_slice_ranges(r for r in rows if (labels[r] == top).any())
    return f"{said}It is on {unit} marked reviewed ({on}): unmark them, or {fix}"
