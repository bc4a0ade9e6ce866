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
                         f"{image.meta.get('source_path', 'the image')} (image): {'; '.join(diffs)}. Use the "
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
        padded = _pad_onto(image, other)
        if padded is not None:
            return padded, (f"{other.meta.get('source_path', what)} ({what}) covers part of the image (saved cropped, as "
                            f"3D Slicer's 'crop to minimum extent' does): placed at voxel "
                            f"{tuple(padded.meta['padded_at'])} of its grid, background elsewhere")
    check_same_grid(image, other, what)
    return other, None


def _pad_onto(image: Volume, other: Volume) -> Volume | None:
    """``other`` padded with zeros onto ``image``'s grid when it is a block of that grid: the same voxel size and
    directions, its corner on an image voxel, inside the image. None otherwise."""
    a, b = _geometry(image), _geometry(other)
    shape, part = np.shape(image.data), np.shape(other.data)
    if len(shape) != 3 or len(part) != 3 or np.abs(a[:3, :3] - b[:3, :3]).max() > DIRECTION_TOL * np.abs(a).max():
        return None
    if tuple(part) == tuple(shape):  # the image's own size: on its grid (checked as such), or off it, never a block
        return None
    corner = (np.linalg.inv(a) @ b[:, 3])[:3]  # (i, j, k) of the block's first voxel in the image's storage
    at = np.round(corner[::-1]).astype(int)  # (k, j, i): the array's axes
    if np.abs(corner[::-1] - at).max() > 1e-3 or (at < 0).any() or (at + part > np.asarray(shape)).any():
        return None
    data = np.zeros(shape, np.asarray(other.data).dtype)
    data[tuple(slice(o, o + n) for o, n in zip(at, part))] = np.asarray(other.data)
    meta = {**other.meta, "padded_at": at.tolist(), "nifti": image.meta.get("nifti")}
    if meta.get("reviewed_slices") is not None:  # (numbered on the block's own first axis)
        meta["reviewed_slices"] = [int(z) + int(at[0]) for z in meta["reviewed_slices"]]
    return Volume(data, tuple(image.spacing), image.affine, meta)


def _axcodes(affine) -> tuple[str, ...]:
    import nibabel as nib

    return tuple(str(c) for c in nib.aff2axcodes(np.asarray(affine, float)))


def _geometry(v: Volume) -> np.ndarray | None:
    """The affine a file really carries, or None (none, identity, or NIfTI codes both 0)."""
    return placed_affine(v.affine, v.meta.get("nifti"))


def _fmt(v: np.ndarray) -> str:
    return "(" + ", ".join(f"{x:.4g}" for x in v) + ")"
