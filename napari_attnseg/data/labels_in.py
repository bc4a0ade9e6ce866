"""Reference labels for an image: a label file (``read_image``) or a radiologist's DICOM segmentation drawn on the
image's grid: an RTSTRUCT (contours per ROI, :mod:`.rtstruct`) or a DICOM SEG (segment frames, :mod:`.dicom_seg`).

An RTSTRUCT or SEG carries no grid of its own: it is placed in patient millimetres (DICOM's LPS) and is drawn here
onto the grid of the image it belongs to (its ``Volume.affine``: array (k, j, i) <- (i, j, k) -> RAS mm). Classes are
1..n in the file's order of ROIs/segments (or in the order ``roi`` names them); their names go to
``meta["class_names"]``, background first, as a saved mask's do. What the reader noticed (overlaps, empty ROIs,
contours off the image's slices) is in ``meta["warning"]``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from itertools import islice
from pathlib import Path

from ..errors import InputError
from .dicom_labels import LABEL_MODALITIES
from .volume import Volume

__all__ = ["LABEL_MODALITIES", "dicom_labels_file", "dicom_labels_kind", "frames_of_reference", "read_labels"]

SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.481.3": "RTSTRUCT", "1.2.840.10008.5.1.4.1.1.66.4": "SEG",
               "1.2.840.10008.5.1.4.1.1.66.7": "SEG"}  # RT Structure Set, Segmentation, Label Map Segmentation


def _kind_of_file(path: Path) -> str | None:
    from .dicom import is_dicom_file

    if not is_dicom_file(path):
        return None
    import pydicom

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True, force=True, specific_tags=["Modality", "SOPClassUID"])
    except Exception:  # noqa: BLE001 - not readable: not ours to say here (read_image names it)
        return None
    modality = str(ds.get("Modality") or "").upper()
    return modality if modality in LABEL_MODALITIES else SOP_CLASSES.get(str(ds.get("SOPClassUID") or ""))


def _label_file(path: Path) -> tuple[Path, str] | None:
    """The RTSTRUCT/SEG file ``path`` is, or the one a folder holds (TCIA keeps each in a folder of its own); None
    when there is none. A folder holding several is refused, naming them."""
    if path.is_file():
        kind = _kind_of_file(path)
        return (path, kind) if kind else None
    if not path.is_dir():
        return None
    found = [(f, k) for f in sorted(path.iterdir()) if f.is_file() and not f.name.startswith(".")
             and (k := _kind_of_file(f))]
    if len(found) > 1:
        raise InputError(f"{path} holds {len(found)} DICOM segmentations ("
                         + ", ".join(f"{f.name}: {k}" for f, k in found[:6]) + "); give one of these files as the "
                         "labels.")
    return found[0] if found else None


def dicom_labels_kind(path: str | os.PathLike) -> str | None:
    """``"RTSTRUCT"`` or ``"SEG"`` when ``path`` is such a DICOM file (or a folder holding one), else None. Raises
    ``InputError`` only for a folder holding several."""
    try:
        found = _label_file(Path(path))
    except OSError:
        return None
    return found[1] if found else None


def dicom_labels_file(path: str | os.PathLike) -> tuple[Path, str] | None:
    """(the file, ``"RTSTRUCT"`` or ``"SEG"``) when ``path`` is such a DICOM file or a folder holding one and no other
    DICOM file (TCIA's folder of its own: not a CT folder with an RS.dcm beside its images); else None. Never raises."""
    from .dicom import is_dicom_file

    p = Path(path)
    try:
        if p.is_dir() and len(list(islice((f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")
                                           and is_dicom_file(f)), 2))) != 1:  # (a CT folder: stops at its second)
            return None
        return _label_file(p)
    except (OSError, InputError):
        return None


def frames_of_reference(path: str | os.PathLike) -> set[str]:
    """The FrameOfReferenceUIDs an RTSTRUCT or SEG file is drawn in (empty when it names none)."""
    import pydicom

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True, force=True)
    except Exception:  # noqa: BLE001 - its reader names an unreadable file
        return set()
    from .rtstruct import frames_of_reference as of_rtstruct

    uids = of_rtstruct(ds)
    return uids | ({str(ds.FrameOfReferenceUID)} if ds.get("FrameOfReferenceUID") else set())


def read_labels(path: str | os.PathLike, image: Volume, roi: Sequence[str] | None = None,
                shape: tuple[int, ...] | None = None) -> Volume:
    """Reference labels for ``image``: an RTSTRUCT or DICOM SEG (a file, or the folder holding it) drawn onto the
    image's grid (``shape``: its spatial shape, when ``image.data`` has a channel axis), ``roi`` naming the ROIs or
    segments to take (classes 1..n in that order; all by default); any other file read by ``read_image``."""
    p = Path(path)
    found = _label_file(p) if p.exists() else None
    if found is None:
        from .io import read_image

        return read_image(p)
    file, kind = found
    if kind == "RTSTRUCT":
        from .rtstruct import read_rtstruct

        return read_rtstruct(file, image, roi, shape)
    from .dicom_seg import read_dicom_seg

    return read_dicom_seg(file, image, roi, shape)
