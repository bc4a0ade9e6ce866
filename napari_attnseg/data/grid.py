"""Is a labels (or prediction) file on the image's grid? Compared by the affines both files carry; the
same grid stored in another orientation is moved onto the image's (``on_image_grid``)."""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .orientation import onto_grid, placed_affine
from .volume import Volume

ORIGIN_TOL_MM = 1e-3  # affines closer than this (origin, spacing) and ...
DIRECTION_TOL = 1e-4  # ... this (direction cosines) are the same grid


def check_same_grid(image: Volume, other: Volume, what: str = "labels") -> None:
    """Refuse ``other`` (labels, prediction) when both files carry an affine and they differ.

    Tiny float differences pass (``ORIGIN_TOL_MM`` for origin and spacing, ``DIRECTION_TOL`` for
    the direction cosines). A file without geometry (TIFF, a NIfTI with an identity affine or with
    qform and sform codes 0) is taken as on the image's grid. The message names both files and
    what differs.
    """
    a, b = _geometry(image), _geometry(other)
    if a is None or b is None:
        return
    za, zb = np.linalg.norm(a[:3, :3], axis=0), np.linalg.norm(b[:3, :3], axis=0)
    diffs = []
    shift = float(np.linalg.norm(a[:3, 3] - b[:3, 3]))
    if shift > ORIGIN_TOL_MM:
        diffs.append(f"origin {shift:.4g} mm apart ({_fmt(b[:3, 3])} vs {_fmt(a[:3, 3])})")
    if np.abs(za - zb).max() > ORIGIN_TOL_MM:
        diffs.append(f"voxel size {_fmt(zb)} vs {_fmt(za)} mm")
    if np.abs(a[:3, :3] / np.where(za, za, 1) - b[:3, :3] / np.where(zb, zb, 1)).max() > DIRECTION_TOL:
        diffs.append("different orientation (direction cosines)")
    if diffs:
        raise InputError(f"{other.meta.get('source_path', what)} ({what}) is not on the grid of "
                         f"{image.meta.get('source_path', 'the image')} (image): {'; '.join(diffs)}. Export the "
                         f"{what} that belong to this image, or resample them onto its grid first.")


def on_image_grid(image: Volume, other: Volume, what: str = "labels") -> tuple[Volume, str | None]:
    """``other`` on the grid of ``image``: as it is, or, when it is the same grid stored with permuted or
    flipped axes (another orientation), moved onto the image's storage voxel for voxel, with a note
    saying so. Any other difference is refused as :func:`check_same_grid` refuses it."""
    if _geometry(image) is not None and _geometry(other) is not None:
        moved = onto_grid(other, image.affine, np.shape(image.data))
        if moved is not None:
            return moved, (f"{other.meta.get('source_path', what)} ({what}) is stored in "
                           f"{moved.meta['reoriented_from']} orientation, the image in "
                           f"{''.join(_axcodes(image.affine))}: moved onto the image's grid (the same voxels)")
    check_same_grid(image, other, what)
    return other, None


def _axcodes(affine) -> tuple[str, ...]:
    import nibabel as nib

    return tuple(str(c) for c in nib.aff2axcodes(np.asarray(affine, float)))


def _geometry(v: Volume) -> np.ndarray | None:
    """The affine a file really carries, or None (none, identity, or NIfTI codes both 0)."""
    return placed_affine(v.affine, v.meta.get("nifti"))


def _fmt(v: np.ndarray) -> str:
    return "(" + ", ".join(f"{x:.4g}" for x in v) + ")"
