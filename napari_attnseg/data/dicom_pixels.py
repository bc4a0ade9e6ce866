"""DICOM pixel data -> one array: rescaled (CT in Hounsfield units), MONOCHROME1 inverted, RGB kept.

Each file is read, decoded, copied into the preallocated stack and dropped before the next, so the
peak memory is the result plus one file (not every decoded slice, as a list of datasets would keep).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .dicom_geometry import Frame

INSTALL_DECODERS = ("pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg (or pip install python-gdcm), "
                    "or convert the series to NIfTI with dcm2niix")
INT16 = (-32768, 32767)


def _transfer_syntax(ds: Any):
    meta = getattr(ds, "file_meta", None)
    return getattr(meta, "TransferSyntaxUID", None) if meta is not None else None


def _decode(path: Path) -> np.ndarray:
    """All frames of one file as an array (frames, rows, cols[, samples]); the dataset is dropped."""
    import pydicom
    from pydicom.uid import ImplicitVRLittleEndian

    try:
        ds = pydicom.dcmread(str(path), force=True)
    except Exception as exc:
        raise InputError(f"{path}: not a readable DICOM file ({exc}).") from None
    ts = _transfer_syntax(ds)
    if ts is None:  # a file without its meta header (no preamble): pydicom found the encoding itself
        ds.file_meta = getattr(ds, "file_meta", None) or pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if ds.original_encoding[0] else \
            pydicom.uid.ExplicitVRLittleEndian
        ts = ds.file_meta.TransferSyntaxUID
    try:
        arr = ds.pixel_array
    except Exception as exc:
        if getattr(ts, "is_compressed", False):
            raise InputError(f"{path}: its pixel data are compressed ({ts.name}) and no decoder for it is installed: "
                             f"{INSTALL_DECODERS}.") from None
        raise InputError(f"{path}: could not decode its pixel data ({exc}); the file looks damaged or cut short: copy "
                         "it again from the PACS or the export.") from None
    n = int(ds.get("NumberOfFrames") or 1)
    samples = int(ds.get("SamplesPerPixel") or 1)
    del ds  # the encoded pixel data go with it
    if n == 1:
        arr = arr[None]
    if arr.ndim != (4 if samples > 1 else 3):
        raise InputError(f"{path}: decoded pixel data of shape {arr.shape} do not match its header "
                         f"({n} frame(s), {samples} sample(s) per pixel).")
    return arr


def read_pixels(frames: list[Frame], source: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """The frames, in this order, as one (k, rows, cols) array (k, rows, cols, 3 for colour) and what
    the meta should say about the values."""
    first = frames[0].header
    samples = int(first.get("SamplesPerPixel") or 1)
    photometric = str(first.get("PhotometricInterpretation") or "MONOCHROME2").upper()
    shapes = defaultdict(list)
    for f in frames:
        shapes[f.shape].append(f)
    if len(shapes) > 1:
        desc = " and ".join(f"{r}x{c} (e.g. {fs[0].name})" for (r, c), fs in shapes.items())
        raise InputError(f"{source}: the series mixes image sizes: {desc}; move the odd images out of the folder "
                         "or open one file of the series you want.")
    if any(int(f.header.get("SamplesPerPixel") or 1) != samples for f in frames):
        raise InputError(f"{source}: the series mixes grey and colour images; open one file of the series you want.")
    rows, cols = frames[0].shape
    meta: dict[str, Any] = {}
    where: dict[Path, list[tuple[int, Frame]]] = defaultdict(list)
    for k, f in enumerate(frames):
        where[f.path].append((k, f))
    if samples > 1:
        data = None
        for path, items in where.items():
            arr = _decode(path)
            if data is None:
                data = np.empty((len(frames), rows, cols, arr.shape[-1]), arr.dtype)
            for k, f in items:
                data[k] = arr[f.index]
            del arr
        meta["photometric"] = "RGB" if photometric.startswith(("RGB", "YBR")) else photometric
        return data, meta
    exact = all(f.slope == int(f.slope) and f.intercept == int(f.intercept) for f in frames)
    data = np.empty((len(frames), rows, cols), np.int16 if exact else np.float32)
    for path, items in where.items():
        arr = _decode(path)
        for k, f in items:
            raw = arr[f.index]
            if data.dtype == np.int16 and raw.dtype.kind in "iu":
                values = raw.astype(np.int64) * int(f.slope) + int(f.intercept)
                if values.size and (values.min() < INT16[0] or values.max() > INT16[1]):
                    data = data.astype(np.float32)  # does not fit int16: float32 like a fractional rescale
                else:
                    data[k] = values
                    continue
            elif data.dtype == np.int16:
                data = data.astype(np.float32)
            data[k] = raw.astype(np.float32) * f.slope + f.intercept
        del arr
    if photometric == "MONOCHROME1":  # stored bright = not dense: flip to the MONOCHROME2 convention
        lo, hi = (data.min(), data.max()) if data.size else (0, 0)
        data = (np.asarray(hi, np.float64) + lo - data).astype(data.dtype) if data.dtype != np.int16 else \
            (np.int32(hi) + np.int32(lo) - data.astype(np.int32)).astype(np.int16)
        meta["photometric"] = "MONOCHROME1, inverted (max + min - value) so that bright = dense, as MONOCHROME2"
    return data, meta
