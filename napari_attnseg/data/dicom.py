"""DICOM series: one folder (or one file of it) -> a volume in Hounsfield units, sorted by position.

The array is (slice, row, column) = (k, j, i), the order a NIfTI conversion that keeps the DICOM
grid stores as (i, j, k); the affine maps (i, j, k) to RAS millimetres (DICOM's LPS with x and y
negated), exactly like a NIfTI affine. Only geometry, pixel values and the modality leave this
module: no patient name, id, date, institution or UID.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from ..errors import InputError
from .volume import Volume

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
DICOM_SUFFIXES = (".dcm", ".ima", ".dicom")


def is_dicom_file(path: Path) -> bool:
    """True for a Part-10 DICOM file (``DICM`` after the 128-byte preamble). Never raises."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
        return len(head) == 132 and head[128:132] == b"DICM"
    except OSError:
        return False


def is_dicom_path(path: Path) -> bool:
    """A DICOM file, or a folder holding at least one among its first 50 files. Never raises."""
    try:
        path = Path(path)
        if path.is_dir():
            return any(is_dicom_file(f) for f in sorted(path.iterdir())[:50] if f.is_file())
        return path.is_file() and (path.suffix.lower() in DICOM_SUFFIXES or is_dicom_file(path))
    except OSError:
        return False


def _position(ds) -> np.ndarray:
    pos = getattr(ds, "ImagePositionPatient", None)
    if pos is None:  # no geometry: fall back to the instance order, 1 mm apart
        return np.array([0.0, 0.0, float(getattr(ds, "InstanceNumber", 0) or 0)])
    return np.array([float(v) for v in pos])


def read_dicom_series(path: Path):
    import pydicom

    path = Path(path)
    target_uid = None
    if path.is_dir():
        files = sorted(f for f in path.iterdir() if f.is_file())
    else:  # one file: read its whole series from the folder
        first = pydicom.dcmread(str(path), stop_before_pixels=True)
        target_uid = str(getattr(first, "SeriesInstanceUID", "unknown"))
        files = sorted(f for f in path.parent.iterdir() if f.is_file())
    series: dict[str, list] = defaultdict(list)
    for f in files:
        if not (is_dicom_file(f) or f == path):
            continue
        ds = pydicom.dcmread(str(f), stop_before_pixels=True)
        if not hasattr(ds, "Rows"):
            continue  # DICOMDIR, structured reports, ...
        series[str(getattr(ds, "SeriesInstanceUID", "unknown"))].append(f)
    if not series:
        raise InputError(f"{path}: no DICOM images found.")
    if target_uid is not None:
        chosen = series.get(target_uid) or [path]
    elif len(series) > 1:
        desc = "; ".join(f"series {n + 1}: {len(s)} files, e.g. {s[0].name}" for n, s in enumerate(series.values()))
        raise InputError(f"{path} holds {len(series)} DICOM series ({desc}); open one file of the series you want.")
    else:
        chosen = next(iter(series.values()))

    slices = [pydicom.dcmread(str(f)) for f in chosen]
    first = slices[0]
    if int(getattr(first, "NumberOfFrames", 1) or 1) > 1:
        raise InputError(f"{path}: multi-frame (enhanced) DICOM is not supported; convert it to NIfTI first.")
    orient = np.array([float(v) for v in getattr(first, "ImageOrientationPatient", [1, 0, 0, 0, 1, 0])])
    row, col = orient[:3], orient[3:]  # direction of increasing column index, of increasing row index
    normal = np.cross(row, col)
    slices.sort(key=lambda ds: float(_position(ds) @ normal))
    shape = (int(first.Rows), int(first.Columns))
    frames = []
    exact = True
    for ds in slices:
        if (int(ds.Rows), int(ds.Columns)) != shape:
            raise InputError(f"{path}: the series mixes image sizes ({shape} and {(int(ds.Rows), int(ds.Columns))}).")
        raw = ds.pixel_array
        slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
        intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
        exact &= slope == int(slope) and intercept == int(intercept)
        frames.append(raw.astype(np.float32) * slope + intercept)
    data = np.stack(frames)  # (k, rows, cols) = (k, j, i)
    if exact and data.min(initial=0) >= -32768 and data.max(initial=0) <= 32767:
        data = data.astype(np.int16)  # CT in HU: whole numbers, half the memory of float32
    ps = [float(v) for v in getattr(first, "PixelSpacing", [1.0, 1.0])]  # (between rows, between columns)
    offsets = np.array([float(_position(ds) @ normal) for ds in slices])
    meta = {"source_path": str(path), "format": "dicom", "axis_order": "kji",
            "modality": str(getattr(first, "Modality", "") or "")}
    if len(slices) > 1:
        gaps = np.diff(offsets)
        if np.any(gaps < 1e-6):
            raise InputError(f"{path}: two slices share a position; the folder holds duplicates or several series.")
        dz = float(np.median(gaps))
        if np.max(np.abs(gaps - dz)) > 0.01 * dz:
            meta["warning"] = f"uneven slice spacing ({gaps.min():.3g}-{gaps.max():.3g} mm); using the median {dz:.3g} mm"
    else:
        dz = float(getattr(first, "SpacingBetweenSlices", 0) or getattr(first, "SliceThickness", 1.0) or 1.0)
    # voxel (i = column, j = row, k = slice) -> LPS millimetres, then RAS like NIfTI
    lps = np.eye(4)
    lps[:3, 0] = row * ps[1]
    lps[:3, 1] = col * ps[0]
    lps[:3, 2] = normal * dz
    lps[:3, 3] = _position(slices[0])
    return Volume(data, (dz, ps[0], ps[1]), LPS_TO_RAS @ lps, meta)
