"""The slices the DICOM reader inserted where a series misses images (:func:`~.dicom.inserted_slices`): no image
there, so nothing to review, mark or export as reviewed. What ``attnseg export`` and napari's Correct tab (Mark all,
R, Export) say and do about them lives here, once; ``attnseg suggest`` and Next suggested slice leave them out
(:func:`napari_attnseg.suggest.left_to_review`)."""

from __future__ import annotations

import sys
from collections.abc import Iterable


def no_image_text(slices: Iterable[int]) -> str:
    """``"slice 12 has no image (missing from the DICOM series)"``, ``"slices 3,7 have ..."`` for several."""
    from ..correct import format_slice_ranges

    gone = sorted({int(s) for s in slices})
    one = len(gone) == 1
    return (f"slice{'' if one else 's'} {format_slice_ranges(gone)} {'has' if one else 'have'} no image (missing from "
            "the DICOM series)")


def drop_inserted(meta: dict, reviewed: list[int] | None, n_slices: int) -> tuple[list[int] | None, str | None]:
    """``(reviewed, note)``: ``reviewed`` without the slices the DICOM reader inserted in the volume of ``n_slices``
    that ``meta`` describes (every slice but those when ``reviewed`` is None: all reviewed), and the note saying they
    are exported as 'ignore'; ``(reviewed, None)`` as given when none of them is among ``reviewed``."""
    from ..correct import format_slice_ranges
    from .dicom import inserted_slices

    inserted = inserted_slices(meta, n_slices)
    if not inserted or (reviewed is not None and not set(inserted) & {int(z) for z in reviewed}):
        return reviewed, None
    note = (f"slice(s) {format_slice_ranges(inserted)} hold no image (inserted where the series misses images): "
            "exported as 'ignore', not as reviewed.")
    return [int(z) for z in (range(n_slices) if reviewed is None else reviewed) if int(z) not in set(inserted)], note


def without_inserted(meta: dict, reviewed: list[int] | None, n_slices: int, source: str) -> list[int] | None:
    """``reviewed`` without the slices the DICOM reader inserted where the series misses images (no image there: a
    mask on them is nobody's reading), with a note on stderr; every slice but those when ``reviewed`` is None
    (``attnseg export``; napari's Correct tab shows :func:`drop_inserted`'s note)."""
    kept, note = drop_inserted(meta, reviewed, n_slices)
    if note:
        print(f"{source}: note: {note}", file=sys.stderr)
    return kept
