"""What the RTSTRUCT and DICOM SEG readers (:mod:`.rtstruct`, :mod:`.dicom_seg`) share: the image's grid in patient
millimetres, the frame-of-reference check, the choice of ROIs/segments, painting classes and the labels' Volume."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .dicom_geometry import LPS_TO_RAS
from .volume import Volume

LABEL_MODALITIES = ("RTSTRUCT", "SEG")


def image_grid(path: Path, image: Volume, shape: tuple[int, ...] | None, kind: str) -> tuple[np.ndarray, tuple]:
    """The matrix taking LPS mm (homogeneous, as columns) to the image's (i, j, k) voxel coordinates, and the grid's
    (k, j, i) shape (a 2D image: one slice). Refuses an image without a position in space."""
    from .orientation import placed_affine

    affine = placed_affine(image.affine, image.meta.get("nifti"))
    source = image.meta.get("source_path", "the image")
    if affine is None:
        raise InputError(f"{path}: a DICOM {kind} is placed in patient millimetres, but {source} carries no position "
                         "in space (a TIFF, or a NIfTI without qform/sform): give the CT/MR series it was drawn on "
                         "(its DICOM folder, or a NIfTI converted from it with dcm2niix) as the image.")
    grid = tuple(shape if shape is not None else np.shape(image.data))
    if image.meta.get("axes", "").endswith("S") and shape is None:  # (colour: the samples are the last axis)
        grid = grid[:-1]
    if len(grid) == 2:
        grid = (1, *grid)
    if len(grid) != 3:
        raise InputError(f"{path}: {source} has shape {grid}; a DICOM {kind} is drawn on a 3D (or 2D) image.")
    return np.linalg.inv(affine) @ LPS_TO_RAS, grid


def _image_files(image: Volume) -> tuple[list[Path], str]:
    """The DICOM files ``image`` was read from (the folder's files, or the one file), and that source; none when it
    is no DICOM (a NIfTI: nothing to compare)."""
    source = Path(str(image.meta.get("source_path", "")))
    if image.meta.get("format") != "dicom" or not source.exists():
        return [], str(source)
    if source.is_file():
        return [source], str(source)
    return [f for f in sorted(source.iterdir()) if f.is_file() and not f.name.startswith(".")], str(source)


def _image_uids(image: Volume):
    """The FrameOfReferenceUIDs of ``image``'s DICOM image files, in turn (read lazily: headers only)."""
    import pydicom

    from .dicom import is_dicom_file

    for f in _image_files(image)[0]:
        if not is_dicom_file(f):
            continue
        try:
            ds = pydicom.dcmread(str(f), stop_before_pixels=True, force=True,
                                 specific_tags=["FrameOfReferenceUID", "Modality", "Rows"])
        except Exception:  # noqa: BLE001 - the image reader read what it could
            continue
        if "Rows" in ds and str(ds.get("Modality") or "").upper() not in LABEL_MODALITIES and ds.get("FrameOfReferenceUID"):
            yield str(ds.FrameOfReferenceUID)


def image_frame_of_reference(image: Volume) -> str | None:
    """The FrameOfReferenceUID of ``image``'s first DICOM image file; None for an image read from no DICOM."""
    return next(_image_uids(image), None)


def check_frame_of_reference(path: Path, uids: set[str], image: Volume, kind: str) -> None:
    """Refuse a segmentation whose FrameOfReferenceUID is none of the image's DICOM files' (drawn on another scan or
    patient). Reads the image files' headers until one matches (the first, mostly)."""
    source = _image_files(image)[1]
    theirs: set[str] = set()
    for uid in _image_uids(image) if uids else ():
        if uid in uids:
            return
        theirs.add(uid)
    if theirs:
        raise InputError(f"{path}: this {kind} belongs to another frame of reference (FrameOfReferenceUID "
                         f"{sorted(uids)[0]}) than the image {source} ({sorted(theirs)[0]}): it was drawn on another "
                         "scan (or patient), so its contours would land on the wrong anatomy. Give the image series "
                         "it references as the image.")


def choose(names: list[str], roi: Sequence[str] | None, path: Path, what: str) -> list[int]:
    """The indices into ``names`` that ``roi`` asks for, in its order (all, in the file's order, without ``roi``).
    Matched case and spaces aside; a name the file lacks is refused, listing the file's names."""
    if not roi:
        return list(range(len(names)))

    def key(s: str) -> str:
        return "".join(str(s).lower().split())

    index = {key(n): i for i, n in reversed(list(enumerate(names)))}
    wanted = [r for r in (str(r).strip() for r in roi) if r]
    missing = [r for r in wanted if key(r) not in index]
    if missing:
        raise InputError(f"{path}: no {what} named {', '.join(repr(m) for m in missing)}; it holds "
                         f"{', '.join(repr(n) for n in names) or 'none'}: give --roi one of these names.")
    return [index[key(r)] for r in wanted]


def ranks(sizes: Sequence[int]) -> np.ndarray:
    """Each class's priority where classes overlap (index: class value, 0 the background): the smaller structure
    wins (a tumour inside a lung, the cord inside the body outline); equal sizes: the later class wins."""
    order = sorted(range(1, len(sizes) + 1), key=lambda v: (-int(sizes[v - 1]), v))
    rank = np.zeros(len(sizes) + 1, np.int32)
    rank[order] = np.arange(1, len(order) + 1)
    return rank


def paint(labels: np.ndarray, k: int, mask: np.ndarray, value: int, overlaps: dict[tuple[int, int], int],
          rank: np.ndarray | None = None) -> None:
    """Write class ``value`` on slice ``k`` where ``mask`` is set, except over a class of a higher ``rank`` (without
    ranks: the later class wins); overlaps counted as (loser, winner)."""
    plane = labels[k]
    other = mask & (plane != 0) & (plane != value)
    if other.any():
        kept = other & (rank[plane] > rank[value]) if rank is not None else np.zeros_like(other)
        for hit, lost in ((other & ~kept, True), (kept, False)):
            for old in np.unique(plane[hit]).tolist():
                pair = (int(old), value) if lost else (value, int(old))
                overlaps[pair] = overlaps.get(pair, 0) + int(np.count_nonzero(hit & (plane == old)))
        mask = mask & ~kept
    plane[mask] = value


def finish(path: Path, image: Volume, labels: np.ndarray, names: list[str], notes: list[str],
           overlaps: dict[tuple[int, int], int], fmt: str, what: str) -> Volume:
    """The labels as a Volume on the image's grid, with the class names and what was noticed."""
    named = ["background", *names]  # (by class value)
    if overlaps:
        counts = class_counts(labels, len(named))
        left = {v: int(counts[v]) for v in {o for o, _ in overlaps}}
        notes.append(f"{what}s overlap; where they do, the smaller one kept the voxels: " + "; ".join(
            f"{n} voxel(s) of {named[old]!r} went to {named[new]!r}" for (old, new), n in sorted(overlaps.items()))
            + "".join(f" ({named[v]!r} has no voxel left: choose the {what}s with attnseg export/evaluate --roi)" for v, c in left.items()
                      if c == 0))
    data = labels if np.ndim(image.data) >= 3 or labels.shape[0] != 1 else labels[0]
    meta: dict[str, Any] = {"source_path": str(path), "format": fmt, "class_names": named,
                            "axis_order": image.meta.get("axis_order", "kji"), "nifti": image.meta.get("nifti")}
    if notes:
        meta["warning"] = "; ".join(notes)
    return Volume(data, tuple(image.spacing)[-data.ndim:], image.affine, meta)


def class_counts(labels: np.ndarray, n: int) -> np.ndarray:
    """Voxels of each class 0..n-1, slice by slice (``np.bincount`` of the whole volume makes an int64 copy of it:
    600 MiB for 300 x 512 x 512)."""
    counts = np.zeros(n, np.int64)
    for plane in labels.reshape(-1, *labels.shape[-2:]):
        counts += np.bincount(plane.ravel(), minlength=n)[:n]
    return counts


def label_array(grid: tuple, classes: int) -> np.ndarray:
    return np.zeros(grid, np.uint8 if classes < 256 else np.uint16)
