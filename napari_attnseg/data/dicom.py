"""DICOM series: one folder (or one file of it) -> a volume in Hounsfield units, sorted by position.

The array is (slice, row, column) = (k, j, i), the order a NIfTI conversion that keeps the DICOM
grid stores as (i, j, k); the affine maps (i, j, k) to RAS millimetres (DICOM's LPS with x and y
negated), exactly like a NIfTI affine. A lone 2D image (a radiograph) comes back as (row, column).
Only geometry, pixel values and the modality leave this module: no patient name, id, date,
institution or UID. Headers and geometry: :mod:`.dicom_geometry`; pixel data: :mod:`.dicom_pixels`.
"""

from __future__ import annotations

import os
import struct
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .dicom_choice import choose_series, split_volumes
from .dicom_geometry import LPS_TO_RAS, Frame, detector_note, frames_of, geometry, select
from .dicom_pixels import read_pixels
from .volume import Volume

__all__ = ["LPS_TO_RAS", "is_dicom_file", "is_dicom_path", "read_dicom_series"]

DICOM_SUFFIXES = (".dcm", ".ima", ".dicom")
PROBED = 50  # files looked at to decide whether a folder is a DICOM series


def _raw_dataset_start(head: bytes) -> bool:
    """The first bytes of a DICOM file written without preamble and meta header: a group 0x0002/0x0008
    element, explicit VR (two capital letters) or implicit (a short length)."""
    if len(head) < 8:
        return False
    group, element = struct.unpack("<HH", head[:4])
    if group not in (0x0002, 0x0008) or element > 0x1250:
        return False
    vr = head[4:6]
    if vr.isalpha() and vr.isupper():
        return True
    return struct.unpack("<I", head[4:8])[0] < 1024


def is_dicom_file(path: Path) -> bool:
    """True for a DICOM file: ``DICM`` after the 128-byte preamble, or a dataset without preamble
    (older exports). Never raises."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
        return (len(head) == 132 and head[128:132] == b"DICM") or _raw_dataset_start(head)
    except OSError:
        return False


def _candidates(folder: Path) -> list[Path]:
    """The folder's files, without hidden ones (macOS ``._*`` AppleDouble companions, ``.DS_Store``)."""
    return sorted(f for f in folder.iterdir() if not f.name.startswith(".") and f.is_file())


def is_dicom_path(path: Path) -> bool:
    """A DICOM file, or a folder holding at least one among its first 50 files. Never raises."""
    try:
        path = Path(path)
        if path.is_dir():
            return any(is_dicom_file(f) for f in _candidates(path)[:PROBED])
        return path.is_file() and (path.suffix.lower() in DICOM_SUFFIXES or is_dicom_file(path))
    except OSError:
        return False


def _header(path: Path) -> Any:
    import pydicom

    try:
        return pydicom.dcmread(str(path), stop_before_pixels=True, force=True)
    except Exception as exc:
        raise InputError(f"{path}: not a readable DICOM file ({exc}).") from None


def _series_folders(folder: Path, limit: int = 2) -> list[Path]:
    """Up to ``limit`` subfolders holding DICOM files (a CD export: DICOMDIR with DICOM/... below)."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        if Path(root) == folder:
            continue
        names = sorted(n for n in files if not n.startswith(".") and n != "DICOMDIR")
        if any(is_dicom_file(Path(root) / n) for n in names[:5]):
            found.append(Path(root))
            if len(found) >= limit:
                break
    return found


def _no_images(path: Path) -> InputError:
    folder = path if path.is_dir() else path.parent if path.name.upper() == "DICOMDIR" else None
    below = _series_folders(folder) if folder is not None else []
    if below:
        listed = " or ".join(str(p) for p in below)
        return InputError(f"{path}: no DICOM images here, but the subfolders of {folder} hold some (a CD/PACS export "
                          f"with a DICOMDIR?): open the series' own folder, e.g. {listed}.")
    return InputError(f"{path}: no DICOM images found.")


def _group(path: Path) -> tuple[list[Path], str | None]:
    """The files to look at and, when one file was opened, its series."""
    if path.is_dir():
        return [f for f in _candidates(path) if is_dicom_file(f)], None
    first = _header(path)
    modality = str(first.get("Modality") or "").upper()
    if modality in (*NOT_IMAGES, *NOT_IMAGE_FILES):  # (else the image series beside it was read, under this name)
        labels = (", and give this file as the labels (attnseg evaluate/export --labels)" if modality != "RTPLAN"
                  else " (a treatment plan holds no image or contours)")
        raise InputError(f"{path}: a DICOM {first.Modality}, not an image: open the image series beside it{labels}.")
    uid = str(getattr(first, "SeriesInstanceUID", "unknown"))
    files = [f for f in _candidates(path.parent) if f == path or is_dicom_file(f)]
    return (files if path in files else [path, *files]), uid


def _nested(folder: Path, limit: int = 20000) -> list[Path]:
    """The DICOM files of the subfolders (a CD/PACS export: DICOMDIR on top, IM0001-style files below)."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if Path(root) == folder:
            continue
        found += [Path(root) / n for n in sorted(files) if not n.startswith(".") and n != "DICOMDIR"
                  and is_dicom_file(Path(root) / n)]
        if len(found) >= limit:
            break
    return found


def _series_of(files: list[Path]) -> dict[str, list[Frame]]:
    series: dict[str, list[Frame]] = defaultdict(list)
    for f in files:
        ds = _header(f)
        if not _is_image(ds):
            continue  # DICOMDIR, structured reports (dose reports), presentation states, ...
        series[str(getattr(ds, "SeriesInstanceUID", "unknown"))].extend(frames_of(f, ds))
    return series


def _frames(path: Path) -> tuple[list[Frame], str | None]:
    frames, chosen, _ = _frames_seen(path)
    return frames, chosen


def _frames_seen(path: Path) -> tuple[list[Frame], str | None, set[Path]]:
    """:func:`_frames`, and the files read as images of any series there (which :func:`_damaged` need not read again:
    a 1,200-file folder of 20 series read each other series' headers twice)."""
    files, target_uid = _group(path)
    series = _series_of(files)
    if not series and (path.is_dir() or path.name.upper() == "DICOMDIR"):
        folder = path if path.is_dir() else path.parent  # only a DICOMDIR (or reports) on top: the series are below
        if series := _series_of(_nested(folder)):
            return (*choose_series(series, folder, nested=True), _paths(series))
    if not series:
        raise _no_images(path)
    if target_uid is not None:
        return series.get(target_uid) or next(iter(series.values())), None, _paths(series)
    return (*choose_series(series, path), _paths(series))


def _paths(series: dict[str, list[Frame]]) -> set[Path]:
    return {f.path for frames in series.values() for f in frames}


NOT_IMAGE_FILES = ("RTSTRUCT", "RTPLAN")  # contours and a plan (no pixels): given as the image, refused, not the series beside
NOT_IMAGES = ("SEG", "RTDOSE")  # sized like images, but a segmentation and a dose grid drawn on the series beside


def _is_image(ds: Any) -> bool:
    """A header read with ``stop_before_pixels`` has no PixelData element: an image is told by its size. A DICOM SEG
    or RT dose beside a CT series (a treatment-planning export) is not one of its images."""
    return "Rows" in ds and "Columns" in ds and "BitsAllocated" in ds and \
        str(ds.get("Modality") or "").upper() not in NOT_IMAGES


def series_geometry(path: Path):
    """The frames of the series of ``path`` in the volume's slice order, with its geometry (what
    :func:`read_dicom_series` reads, and the DICOM SEG writer places its frames on), and the notes on what was chosen."""
    path = Path(path)
    opened = None if path.is_dir() else path
    frames, chosen, seen = _frames_seen(path)
    frames, note = select(frames, opened)
    frames, volumes = split_volumes(frames, opened)
    geo = geometry(frames, path)
    damaged = _damaged(path if opened is None else path.parent, frames, geo.slots is not None, seen)
    return geo, [n for n in (chosen, note, volumes, damaged) if n]


def _damaged(folder: Path, frames: list, gaps: bool = False, seen: set[Path] | frozenset = frozenset()) -> str | None:
    """A note naming the files of ``folder`` that look like images of the series but cannot be read as one (a header
    cut short: the image's SOP class without its size; or an empty file), left out of it: the slices they held are then
    reported missing, and the user must learn which file to copy again, not look for an image the export lacks."""
    import pydicom

    if not frames:
        return None
    used = {f.path for f in frames} | set(seen)  # (read as images of a series already: not damaged)
    classes = {str(f.header.get("SOPClassUID") or "") for f in frames}
    like = {(f.path.suffix.lower(), len(f.path.name)) for f in frames}
    cut = []
    for f in _candidates(folder):
        if f in used or f.name.upper() == "DICOMDIR":
            continue
        if f.stat().st_size == 0:
            if gaps or (f.suffix.lower(), len(f.name)) in like:  # (an empty VERSION / LOCK file is no image)
                cut.append(f"{f.name} (empty)")
            continue
        if not is_dicom_file(f):
            continue
        try:
            ds = pydicom.dcmread(str(f), stop_before_pixels=True, force=True)
        except Exception:  # (unreadable at all: damaged)
            cut.append(f.name)
            continue
        sop = str(ds.get("SOPClassUID") or getattr(ds, "file_meta", {}).get("MediaStorageSOPClassUID") or "")
        if "Rows" not in ds and sop in classes:
            cut.append(f"{f.name} (cut short)")
    if not cut:
        return None
    return (f"{len(cut)} file{'s' if len(cut) != 1 else ''} of {folder} could not be read as images of the series and "
            f"{'were' if len(cut) != 1 else 'was'} left out: {', '.join(cut[:5])}{', ...' if len(cut) > 5 else ''}; "
            "copy them again from the PACS or the export")


def read_dicom_series(path: Path) -> Volume:
    """The series of ``path`` (a folder of one series, or one file of it) as a :class:`Volume`."""
    path = Path(path)
    geo, notes = series_geometry(path)
    data, pixel_meta = read_pixels(geo.frames, path)
    if geo.slots is not None:  # slices missing from the series: empty ones keep the others in place
        full = np.full((geo.slots[-1] + 1, *data.shape[1:]), data.min() if data.ndim == 3 else 0, data.dtype)
        full[geo.slots] = data
        data = full
    inserted = _inserted(geo.slots)
    first = geo.frames[0].header
    warnings = notes + geo.warnings
    meta: dict[str, Any] = {"source_path": str(path), "format": "dicom", "axis_order": "kji",
                            "modality": str(getattr(first, "Modality", "") or ""), **pixel_meta}
    if geo.frames[0].detector is not None and geo.frames[0].pixel_spacing:  # a radiograph's, at the detector: said
        meta["pixel_spacing_source"] = "ImagerPixelSpacing"  # (a note: predict prints it, napari shows it)
        meta["note"] = detector_note(geo.frames[0].pixel_spacing, geo.frames[0].detector)
    if getattr(first, "SeriesInstanceUID", None):  # (an RTSTRUCT/SEG opened later finds the series it references)
        meta["series_uid"] = str(first.SeriesInstanceUID)
    spacing: tuple[float, ...] = (geo.dz, *geo.pixel_spacing)
    if len(geo.frames) == 1:  # a lone 2D image (a radiograph, a screenshot): (row, column)
        data = data[0]
        spacing = geo.pixel_spacing
        meta["axis_order"] = "ji"
    if data.ndim == len(spacing) + 1:  # colour: the samples are the last axis
        meta["axes"] = "ZYXS" if data.ndim == 4 else "YXS"
    if warnings:
        meta["warning"] = "; ".join(warnings)
    if inserted:  # (slices with no image: export leaves them 'ignore', never a reviewed slice; a model sees
        meta["inserted_slices"] = inserted  # their neighbours there, cohort.cases.fill_inserted)
    return Volume(data, tuple(float(s) for s in spacing), np.asarray(geo.affine, float), meta)


MISSING_NOTE = "look missing from the series"  # (in the reader's warning when it inserted slices: dicom_geometry)


def _inserted(slots: list[int] | None) -> list[int]:
    return sorted(set(range(slots[-1] + 1)) - set(slots)) if slots is not None else []


def inserted_slices(meta: dict, n_slices: int) -> list[int]:
    """The slices of a volume of ``n_slices`` that the DICOM reader inserted where its series misses images
    (``meta["inserted_slices"]``). A napari layer's metadata keeps the reader's warning and path but not that list:
    found again from the series' headers then (no pixels read). [] for anything else."""
    if "inserted_slices" in meta:
        return [int(k) for k in meta["inserted_slices"] or () if 0 <= int(k) < n_slices]
    if meta.get("format") != "dicom" or MISSING_NOTE not in str(meta.get("warning") or "") or not meta.get("source_path"):
        return []
    try:
        geo, _ = series_geometry(Path(str(meta["source_path"])))
    except (OSError, ValueError):  # (moved or changed since it was opened: InputError is a ValueError)
        return []
    gone = _inserted(geo.slots)
    return gone if geo.slots is not None and geo.slots[-1] + 1 == n_slices else []
