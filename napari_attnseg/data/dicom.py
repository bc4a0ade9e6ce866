"""DICOM series: one folder (or one file of it) -> a volume in Hounsfield units, sorted by position.

Only geometry and pixel values are kept: no patient name, id, date or institution leaves this module.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from ..errors import InputError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def is_dicom_file(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(132)
        return len(head) == 132 and head[128:132] == b"DICM"
    except OSError:
        return False


def is_dicom_path(path: Path) -> bool:
    path = Path(path)
    if path.is_dir():
        return any(is_dicom_file(f) for f in sorted(path.iterdir())[:50] if f.is_file())
    return path.is_file() and (path.suffix.lower() in (".dcm", ".ima") or is_dicom_file(path))


def read_dicom_series(path: Path):
    import pydicom

    from .io import Volume

    path = Path(path)
    files = sorted(f for f in path.iterdir() if f.is_file()) if path.is_dir() else None
    target_uid = None
    if files is None:  # one file: read its whole series from the folder
        first = pydicom.dcmread(str(path), stop_before_pixels=True)
        target_uid = getattr(first, "SeriesInstanceUID", None)
        files = sorted(f for f in path.parent.iterdir() if f.is_file())
    series: dict[str, list] = defaultdict(list)
    for f in files:
        if not is_dicom_file(f):
            continue
        ds = pydicom.dcmread(str(f))
        if "PixelData" not in ds:
            continue
        series[str(getattr(ds, "SeriesInstanceUID", "unknown"))].append(ds)
    if not series:
        raise InputError(f"{path}: no DICOM images found.")
    if target_uid is not None:
        slices = series.get(str(target_uid), [])
    elif len(series) > 1:
        desc = ", ".join(f"{uid} ({len(s)} slices)" for uid, s in series.items())
        raise InputError(f"{path} holds {len(series)} DICOM series ({desc}); open one file of the series you want.")
    else:
        slices = next(iter(series.values()))

    orient = np.array(getattr(slices[0], "ImageOrientationPatient", [1, 0, 0, 0, 1, 0]), float)
    row, col = orient[:3], orient[3:]
    normal = np.cross(row, col)

    def position(ds) -> np.ndarray:
        return np.array(getattr(ds, "ImagePositionPatient", [0, 0, float(getattr(ds, "InstanceNumber", 0))]), float)

    slices.sort(key=lambda ds: float(position(ds) @ normal))
    frames = []
    for ds in slices:
        arr = ds.pixel_array.astype(np.float32)
        slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
        intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
        frames.append(arr * slope + intercept)
    data = np.stack(frames)  # (k, rows, cols) = (k, j, i)
    if np.all(np.mod(data, 1) == 0) and data.min() >= -32768 and data.max() <= 32767:
        data = data.astype(np.int16)
    ps = [float(v) for v in getattr(slices[0], "PixelSpacing", [1.0, 1.0])]  # (row spacing, col spacing)
    if len(slices) > 1:
        dz = float(np.median(np.diff([position(ds) @ normal for ds in slices])))
    else:
        dz = float(getattr(slices[0], "SliceThickness", 1.0) or 1.0)
    # LPS affine mapping (i=col, j=row, k=slice) -> patient mm, then RAS
    lps = np.eye(4)
    lps[:3, 0] = row * ps[1]
    lps[:3, 1] = col * ps[0]
    lps[:3, 2] = normal * dz
    lps[:3, 3] = position(slices[0])
    affine = LPS_TO_RAS @ lps
    return Volume(data, (abs(dz), ps[0], ps[1]), affine, {"source_path": str(path), "format": "dicom", "axis_order": "kji"})
