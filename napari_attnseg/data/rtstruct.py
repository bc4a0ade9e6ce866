"""DICOM RTSTRUCT (an RT Structure Set: contours per ROI, from a treatment-planning system or 3D Slicer) -> labels on
the grid of the image it was drawn on.

Each ROI's CLOSED_PLANAR contours (ContourData: x, y, z in patient mm, LPS) are mapped through the image's affine
to voxel coordinates, placed on the slice whose plane they lie in (within a quarter of a slice: a contour between
two slices was drawn on another series and is left out, with a warning) and filled with ``skimage.draw.polygon``
(pixel centres inside). Several contours of one ROI on one slice combine even-odd, so an inner contour is a hole.
ROIs become classes 1..n in the file's order (StructureSetROISequence), named by their ROIName; where ROIs overlap
the later one wins, with a note.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .dicom_labels import check_frame_of_reference, choose, finish, image_grid, label_array, paint
from .volume import Volume

__all__ = ["read_rtstruct"]

ON_SLICE = 0.25  # a contour whose plane is farther than this (in slices) from every slice lies between slices
CLOSED = ("CLOSED_PLANAR", "CLOSED_PLANAR_XOR")


def _read(path: Path) -> Any:
    import pydicom

    try:
        return pydicom.dcmread(str(path), force=True)
    except Exception as exc:
        raise InputError(f"{path}: not a readable DICOM file ({exc}).") from None


def _frames_of_reference(ds: Any) -> set[str]:
    uids = {str(item.get("FrameOfReferenceUID")) for item in ds.get("ReferencedFrameOfReferenceSequence") or []
            if item.get("FrameOfReferenceUID")}
    uids |= {str(item.get("ReferencedFrameOfReferenceUID")) for item in ds.get("StructureSetROISequence") or []
             if item.get("ReferencedFrameOfReferenceUID")}
    return uids


def _fmt_mm(z: list[float]) -> str:
    shown = sorted({round(v, 1) for v in z})
    return ", ".join(f"{v:g}" for v in shown[:5]) + (", ..." if len(shown) > 5 else "")


def read_rtstruct(path: str | Path, image: Volume, roi: Sequence[str] | None = None,
                  shape: tuple[int, ...] | None = None) -> Volume:
    """The ROIs of the RTSTRUCT ``path`` drawn onto ``image``'s grid as classes 1..n (``roi``: the ROI names to take,
    in this order); see the module's docstring."""
    from skimage.draw import polygon

    path = Path(path)
    to_voxel, grid = image_grid(path, image, shape, "RTSTRUCT")
    ds = _read(path)
    check_frame_of_reference(path, _frames_of_reference(ds), image, "RTSTRUCT")
    rois = list(ds.get("StructureSetROISequence") or [])
    if not rois:
        raise InputError(f"{path}: this RTSTRUCT lists no ROI (StructureSetROISequence is empty).")
    names = [str(r.get("ROIName") or f"ROI {r.get('ROINumber')}") for r in rois]
    picked = choose(names, roi, path, "ROI")
    contours_of = {}
    for item in ds.get("ROIContourSequence") or []:
        contours_of.setdefault(str(item.get("ReferencedROINumber")), []).extend(item.get("ContourSequence") or [])
    labels = label_array(grid, len(picked) + 1)
    notes: list[str] = []
    overlaps: dict[tuple[int, int], int] = {}
    between: list[float] = []
    outside: list[float] = []
    crossing = other_types = placed_total = 0
    for value, n in enumerate(picked, start=1):
        planes: dict[int, np.ndarray] = {}
        contours = contours_of.get(str(rois[n].get("ROINumber")), [])
        for c in contours:
            kind = str(c.get("ContourGeometricType") or "CLOSED_PLANAR").upper()
            data = c.get("ContourData")
            if kind not in CLOSED or data is None or len(data) < 9:
                other_types += 1
                continue
            lps = np.asarray([float(v) for v in data], float).reshape(-1, 3)
            ijk = (to_voxel @ np.c_[lps, np.ones(len(lps))].T)[:3]
            kk = ijk[2]
            if np.ptp(kk) > ON_SLICE:  # not in a plane of the image's slices (drawn on a reformat, another series)
                crossing += 1
                continue
            k = int(np.rint(kk.mean()))
            if abs(kk.mean() - k) > ON_SLICE:
                between.append(float(lps[0, 2]))
                continue
            if not 0 <= k < grid[0] or ijk[0].max() < -0.5 or ijk[0].min() > grid[2] - 0.5 \
                    or ijk[1].max() < -0.5 or ijk[1].min() > grid[1] - 0.5:
                outside.append(float(lps[0, 2]))
                continue
            rr, cc = polygon(ijk[1], ijk[0], shape=grid[1:])
            plane = planes.setdefault(k, np.zeros(grid[1:], bool))
            plane[rr, cc] ^= True  # even-odd: a contour inside another is a hole
            placed_total += 1
        for k, plane in sorted(planes.items()):
            paint(labels, k, plane, value, overlaps)
        if not contours:
            notes.append(f"ROI {names[n]!r} has no contours: class {value} is empty")
        elif not any(p.any() for p in planes.values()):
            notes.append(f"ROI {names[n]!r} has no contour on this image's slices: class {value} is empty")
    where = image.meta.get("source_path", "the image")
    if between:
        notes.append(f"{len(between)} contour(s) lie between the slices of {where} (z = {_fmt_mm(between)} mm): left "
                     "out; the RTSTRUCT was drawn on another series (thinner slices?)")
    if outside:
        notes.append(f"{len(outside)} contour(s) lie outside {where} (z = {_fmt_mm(outside)} mm): left out")
    if crossing:
        notes.append(f"{crossing} contour(s) are not in the plane of the slices of {where} (drawn on another "
                     "orientation): left out")
    if other_types:
        notes.append(f"{other_types} contour(s) are points or open lines, not closed contours: left out")
    if placed_total == 0 and (between or outside or crossing):
        raise InputError(f"{path}: none of its contours lies on a slice of {where}: " + "; ".join(notes[-3:])
                         + ". Give the image series the RTSTRUCT was drawn on.")
    return finish(path, image, labels, [names[n] for n in picked], notes, overlaps, "dicom-rtstruct", "ROI")
