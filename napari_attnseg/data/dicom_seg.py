"""DICOM SEG (a Segmentation object: one frame per segment and slice) -> labels on the grid of the image it
segments.

Each frame is placed by its PlanePositionSequence (per-frame functional groups) and the orientation and pixel
spacing of the shared (or per-frame) groups, mapped through the image's affine onto the image's slices (a frame
between slices or outside the image is left out, with a warning; one not parallel to the slices is refused). A SEG
without a Frame of Reference (made on a radiograph, a secondary capture: images without a position in space) is
placed, pixel for pixel, on the slice of the DICOM image whose source image (and frame) each frame names. Its
segment (SegmentIdentificationSequence ReferencedSegmentNumber) gives the class: segments are classes 1..n in the
order of SegmentSequence, named by their SegmentLabel. BINARY frames are taken as they are, FRACTIONAL ones from
half the MaximumFractionalValue up; a LABELMAP SEG's pixels are segment numbers. Frames are read one at a time.
Where segments overlap, the smaller segment keeps the voxels (whatever the order of segments and frames), with a
note. The slices a person marked reviewed (a SEG napari's Save mask wrote, :mod:`.dicom_seg_write`) are placed the
same way, by their positions, as ``meta["reviewed_slices"]`` (one no longer on a slice is left out, with a note).
The algorithm that made its segments (not MANUAL: ``attnseg predict --dicom-seg``'s model, or the one a corrected
mask came from) is ``meta["model_info"]``, as a mask file saved with its model keeps it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .dicom_geometry import functional
from .dicom_labels import (
    check_frame_of_reference,
    choose,
    class_counts,
    finish,
    image_grid,
    label_array,
    paint,
    ranks,
)
from .volume import Volume

__all__ = ["read_dicom_seg"]

ON_SLICE = 0.25  # a frame whose plane is farther than this (in slices) from every slice lies between slices


def _header(path: Path) -> Any:
    import pydicom

    try:
        return pydicom.dcmread(str(path), stop_before_pixels=True, force=True)
    except Exception as exc:
        raise InputError(f"{path}: not a readable DICOM file ({exc}).") from None


def _floats(value: Any, n: int) -> np.ndarray | None:
    try:
        out = np.asarray([float(v) for v in value], float)
    except (TypeError, ValueError):
        return None
    return out if out.shape == (n,) else None


def _placement(ds: Any, i: int, to_voxel: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame ``i``'s first pixel, column step and row step in the image's (i, j, k) voxel coordinates."""
    pos = _floats(functional(ds, i, "PlanePositionSequence", "ImagePositionPatient"), 3)
    orient = _floats(functional(ds, i, "PlaneOrientationSequence", "ImageOrientationPatient"), 6)
    spacing = _floats(functional(ds, i, "PixelMeasuresSequence", "PixelSpacing"), 2)
    if pos is None or orient is None or spacing is None:
        missing = [n for n, v in (("ImagePositionPatient", pos), ("ImageOrientationPatient", orient),
                                  ("PixelSpacing", spacing)) if v is None]
        raise InputError(f"{path}: frame {i + 1} of this SEG has no {', '.join(missing)} (in its functional groups): "
                         "it cannot be placed on the image.")
    rot = to_voxel[:3, :3]
    return to_voxel[:3] @ np.r_[pos, 1.0], rot @ (orient[:3] * spacing[1]), rot @ (orient[3:] * spacing[0])


def _onto_plane(frame: np.ndarray, origin: np.ndarray, dc: np.ndarray, dr: np.ndarray,
                plane_shape: tuple[int, int]) -> np.ndarray:
    """A frame's values on an image slice of ``plane_shape`` (rows j, columns i): copied when its pixels are the
    image's (the usual SEG), else sampled at the nearest frame pixel (another pixel size or in-plane orientation)."""
    rows, cols = frame.shape
    out = np.zeros(plane_shape, frame.dtype)
    m = np.array([[dc[0], dr[0]], [dc[1], dr[1]]])  # (c, r) -> (i, j) - origin
    if np.allclose(m, np.eye(2), atol=1e-3) and np.allclose(origin[:2], np.rint(origin[:2]), atol=1e-3):
        i0, j0 = int(np.rint(origin[0])), int(np.rint(origin[1]))
        ja, jb, ia, ib = max(j0, 0), min(j0 + rows, plane_shape[0]), max(i0, 0), min(i0 + cols, plane_shape[1])
        if ja < jb and ia < ib:
            out[ja:jb, ia:ib] = frame[ja - j0:jb - j0, ia - i0:ib - i0]
        return out
    jj, ii = np.mgrid[0:plane_shape[0], 0:plane_shape[1]]
    c, r = np.rint(np.linalg.inv(m) @ np.stack([ii.ravel() - origin[0], jj.ravel() - origin[1]])).astype(int)
    inside = (c >= 0) & (c < cols) & (r >= 0) & (r < rows)
    out.ravel()[inside] = frame[r[inside], c[inside]]
    return out


def _frames(path: Path):
    from pydicom.pixels import iter_pixels

    try:
        yield from iter_pixels(str(path))
    except InputError:
        raise
    except Exception as exc:
        from .dicom_pixels import INSTALL_DECODERS

        raise InputError(f"{path}: could not decode this SEG's frames ({exc}); if they are compressed: "
                         f"{INSTALL_DECODERS}.") from None


def _source_of(ds: Any, i: int) -> tuple[str, int] | None:
    """(SOPInstanceUID, 1-based frame number) of the image frame ``i`` of the SEG derives from (its Derivation Image
    Sequence), or None."""
    try:
        group = ds.PerFrameFunctionalGroupsSequence[i]
        source = group.DerivationImageSequence[0].SourceImageSequence[0]
        return str(source.ReferencedSOPInstanceUID), int(source.get("ReferencedFrameNumber") or 1)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        return None


def _image_sources(path: Path, image: Volume) -> dict[tuple[str, int], int]:
    """The slice k of ``image`` each of its source frames (SOPInstanceUID, 1-based frame number) is, for a SEG
    without a Frame of Reference: its frames lie, pixel for pixel, on the images they derive from (PS3.3 A.51.5.1)."""
    from .dicom_seg_write import source_slices

    source = image.meta.get("source_path")
    if image.meta.get("format") != "dicom" or not source or not Path(str(source)).exists():
        raise InputError(f"{path}: this SEG has no position in space (no FrameOfReferenceUID: made on a radiograph or "
                         "a secondary capture), its frames lie on the DICOM images they derive from: give that DICOM "
                         f"image (its file or folder) as the image, not {source or 'this image'}.")
    slices, _ = source_slices(Path(str(source)))
    return {(str(f.header.SOPInstanceUID), f.index + 1): k for k, f in enumerate(slices) if f is not None}


def _placed(path: Path, ds: Any, image: Volume, to_voxel: np.ndarray, grid: tuple, value_of: dict[int, int],
            lookup: np.ndarray, count: dict[str, int], sources: dict[tuple[str, int], int] | None = None):
    """(slice k, class, mask on the slice) of each frame on the image's slices, one at a time (a LABELMAP frame: one
    per class in it); frames between or outside the slices counted in ``count``. ``sources``: a SEG without a Frame
    of Reference, each frame on the slice whose source frame it names (:func:`_image_sources`; 'elsewhere': none)."""
    seg_type = str(ds.get("SegmentationType") or "BINARY").upper()
    top = float(ds.get("MaximumFractionalValue") or 255)
    for i, frame in enumerate(_frames(path)):
        number = functional(ds, i, "SegmentIdentificationSequence", "ReferencedSegmentNumber")
        value = value_of.get(int(number)) if number is not None and seg_type != "LABELMAP" else None
        if value is None and seg_type != "LABELMAP":
            continue  # a segment not asked for
        if sources is not None:
            k = sources.get(_source_of(ds, i) or ("", 0), -1)
            if k < 0 or tuple(frame.shape[:2]) != tuple(grid[1:]):  # (not of this image, or not its pixels)
                count["elsewhere"] = count.get("elsewhere", 0) + 1
                continue
            origin, dc, dr = np.array([0.0, 0.0, k]), np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
        else:
            origin, dc, dr = _placement(ds, i, to_voxel, path)
        if abs(dc[2]) * frame.shape[1] + abs(dr[2]) * frame.shape[0] > ON_SLICE:
            raise InputError(f"{path}: its frames are not parallel to the slices of {image.meta.get('source_path')} "
                             "(segmented on another orientation): give the series the SEG was made on.")
        k = int(np.rint(origin[2]))
        where = "between" if abs(origin[2] - k) > ON_SLICE else "outside" if not 0 <= k < grid[0] else "placed"
        count[where] = count.get(where, 0) + 1
        if where != "placed":
            continue
        if seg_type == "LABELMAP":
            frame = lookup[np.clip(frame, 0, len(lookup) - 1)]
        elif seg_type == "FRACTIONAL":
            frame = (frame.astype(np.float32) >= 0.5 * top).astype(np.uint8)
        values = _onto_plane(np.asarray(frame), origin, dc, dr, grid[1:])
        for v in ([value] if value is not None else [int(x) for x in np.unique(values) if x]):
            yield k, v, (values == v if value is None else values > 0)


def read_dicom_seg(path: str | Path, image: Volume, roi: Sequence[str] | None = None,
                   shape: tuple[int, ...] | None = None) -> Volume:
    """The segments of the DICOM SEG ``path`` on ``image``'s grid as classes 1..n (``roi``: the SegmentLabels to
    take, in this order); see the module's docstring."""
    path = Path(path)
    ds = _header(path)
    uid = ds.get("FrameOfReferenceUID")
    sources = None if uid else _image_sources(path, image)  # (no frame of reference: placed by their source images)
    to_voxel, grid = image_grid(path, image, shape, "SEG")
    check_frame_of_reference(path, {str(uid)} if uid else set(), image, "SEG")
    segments = list(ds.get("SegmentSequence") or [])
    if not segments:
        raise InputError(f"{path}: this SEG lists no segment (SegmentSequence is empty).")
    names = [str(s.get("SegmentLabel") or f"segment {s.get('SegmentNumber')}") for s in segments]
    picked = choose(names, roi, path, "segment")
    value_of = {int(segments[n].get("SegmentNumber") or n + 1): v for v, n in enumerate(picked, start=1)}
    labels = label_array(grid, len(picked) + 1)
    overlaps: dict[tuple[int, int], int] = {}
    notes: list[str] = []
    lookup = np.zeros(max(value_of, default=0) + 1, labels.dtype)
    for number, v in value_of.items():
        lookup[number] = v
    # the smaller segment wins where segments overlap, so their sizes come first (the frames are read twice, one
    # at a time, rather than held)
    sizes = np.zeros(len(picked), np.int64)
    count = {"between": 0, "outside": 0, "placed": 0, "elsewhere": 0}
    for _k, v, mask in _placed(path, ds, image, to_voxel, grid, value_of, lookup, count, sources):
        sizes[v - 1] += int(np.count_nonzero(mask))
    between, outside, placed = count["between"], count["outside"], count["placed"]
    rank = ranks(sizes.tolist())
    for k, v, mask in _placed(path, ds, image, to_voxel, grid, value_of, lookup, {}, sources):
        paint(labels, k, mask, v, overlaps, rank)
    where = image.meta.get("source_path", "the image")
    if count["elsewhere"]:
        if not placed:
            raise InputError(f"{path}: none of its frames derives from an image of {where} (it has no position in "
                             "space: its frames are placed on the images they name). Give the DICOM image the SEG was "
                             "made on.")
        notes.append(f"{count['elsewhere']} frame(s) derive from images that are not those of {where}: left out")
    if between:
        notes.append(f"{between} frame(s) lie between the slices of {where}: left out; the SEG was made on another "
                     "series (thinner slices?)")
    if outside:
        notes.append(f"{outside} frame(s) lie outside the slices of {where}: left out")
    if placed == 0 and (between or outside):
        raise InputError(f"{path}: none of its frames lies on a slice of {where}: " + "; ".join(notes)
                         + ". Give the image series the SEG was made on.")
    reviewed = _reviewed(ds, to_voxel, grid, notes)
    counts = class_counts(labels, len(picked) + 1)
    for v, n in enumerate(picked, start=1):
        if not counts[v] and not sizes[v - 1]:  # (one covered by smaller segments: said with the overlaps)
            notes.append(f"segment {names[n]!r} has no voxel on this image: class {v} is empty")
    out = finish(path, image, labels, [names[n] for n in picked], notes, overlaps, "dicom-seg", "segment")
    if reviewed is not None:
        out.meta["reviewed_slices"] = reviewed
    if (model := _model(ds, segments)) is not None:
        out.meta["model_info"] = model
    return out


def _model(ds: Any, segments: list) -> dict | None:
    """The model that made the SEG's segments (its first segment an algorithm made), as ``model_info``; None when a
    person drew them all (MANUAL)."""
    from .dicom_seg_write import MANUFACTURER, REVIEWED_GROUP

    for item in segments:
        if str(item.get("SegmentAlgorithmType") or "MANUAL").upper() != "MANUAL" and item.get("SegmentAlgorithmName"):
            try:
                sha = str(ds.private_block(REVIEWED_GROUP, MANUFACTURER)[0x03].value) or None
            except (KeyError, ValueError, AttributeError):
                sha = None
            return {"model": str(item.SegmentAlgorithmName), "weights_sha256": sha, "checkpoint": None}
    return None


def _reviewed(ds: Any, to_voxel: np.ndarray, grid: tuple, notes: list[str]) -> list[int] | None:
    """The image's slices the SEG's private block marks reviewed (positions in LPS mm onto the image's slices);
    None when it marks none (not written by napari's Save mask, or the block was stripped)."""
    from .dicom_seg_write import MANUFACTURER, REVIEWED_GROUP

    try:
        block = ds.private_block(REVIEWED_GROUP, MANUFACTURER)
        values = block[0x01].value
    except (KeyError, ValueError, AttributeError):
        return None
    pos = _floats([values] if isinstance(values, (str, float, int)) else values, np.size(values))
    if pos is None or pos.size == 0 or pos.size % 3:
        notes.append("its reviewed-slice marks could not be read (not 3 numbers a slice): none are kept")
        return None
    k = (to_voxel[:3] @ np.c_[pos.reshape(-1, 3), np.ones(pos.size // 3)].T)[2]
    on = (np.abs(k - np.rint(k)) <= ON_SLICE) & (np.rint(k) >= 0) & (np.rint(k) < grid[0])
    if not on.all():
        notes.append(f"{int((~on).sum())} of its {on.size} reviewed slices lie on no slice of this image: their marks "
                     "are left out")
    return sorted({int(z) for z in np.rint(k[on])}) or None
