"""Reading and writing images: TIFF, NIfTI and DICOM series, with one axis convention.

Arrays are (z, y, x) (or (y, x)); a NIfTI array stored as (i, j, k) is returned as (k, j, i), so
"slice n" is k = n, and ``spacing`` follows the returned array's axes. Writers invert this exactly
and restore the source's affine. Every write goes to a temporary name first and is then renamed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._files import atomic_write
from ..errors import InputError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
TIFF_SUFFIXES = (".tif", ".tiff")


@dataclass
class Volume:
    """An image with its geometry. ``affine`` is the NIfTI-style (RAS) 4x4 of the source, or None."""

    data: np.ndarray
    spacing: tuple[float, ...]
    affine: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def image_format(path: str | os.PathLike) -> str | None:
    """``nifti``, ``tiff``, ``dicom`` or None, from the name (and, for DICOM, the content)."""
    p = Path(path)
    name = p.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(TIFF_SUFFIXES):
        return "tiff"
    from .dicom import is_dicom_path

    if is_dicom_path(p):
        return "dicom"
    return None


def stem(path: str | os.PathLike) -> str:
    """File name without its image suffix (``.nii.gz`` counts as one)."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii", ".tiff", ".tif", ".dcm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_image(path: str | os.PathLike) -> Volume:
    """Read a TIFF, NIfTI file or DICOM series (a folder or one file of it)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p} does not exist.")
    fmt = image_format(p)
    try:
        if fmt == "nifti":
            return _read_nifti(p)
        if fmt == "tiff":
            return _read_tiff(p)
        if fmt == "dicom":
            from .dicom import read_dicom_series

            return read_dicom_series(p)
    except InputError:
        raise
    except Exception as exc:  # a corrupt file: say which and why
        raise InputError(f"Could not read {p}: {exc}") from None
    raise InputError(f"{p}: unsupported format; napari-attnseg reads .tif/.tiff, .nii/.nii.gz and DICOM series.")


def _read_nifti(p: Path) -> Volume:
    import nibabel as nib

    img = nib.load(str(p))
    data = np.asanyarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim not in (2, 3):
        raise InputError(f"{p}: expected a 2D or 3D NIfTI image, got shape {data.shape}.")
    zooms = tuple(float(z) for z in img.header.get_zooms()[: data.ndim])
    arr = np.ascontiguousarray(data.transpose(tuple(reversed(range(data.ndim)))))
    return Volume(arr, tuple(reversed(zooms)), np.asarray(img.affine, float),
                  {"source_path": str(p), "format": "nifti", "axis_order": "kji"[-data.ndim:]})


def _read_tiff(p: Path) -> Volume:
    import tifffile

    with tifffile.TiffFile(str(p)) as tif:
        data = tif.asarray()
        spacing = [1.0] * data.ndim
        ij = tif.imagej_metadata or {}
        page = tif.pages[0]
        try:
            xres = page.tags["XResolution"].value
            yres = page.tags["YResolution"].value
            if xres[0] and yres[0]:
                spacing[-1] = xres[1] / xres[0]
                spacing[-2] = yres[1] / yres[0]
        except KeyError:
            pass
        shaped = (tif.shaped_metadata or [{}])[0] or {}
        z_spacing = ij.get("spacing") or shaped.get("spacing")
        if data.ndim >= 3 and z_spacing:
            spacing[-3] = float(z_spacing)
    return Volume(data, tuple(float(s) for s in spacing), None, {"source_path": str(p), "format": "tiff"})


def write_image(
    path: str | os.PathLike, data: np.ndarray, like: Volume | None = None,
    spacing: tuple[float, ...] | None = None, affine: np.ndarray | None = None,
) -> Path:
    """Write ``data`` (array axis order) as TIFF or NIfTI, with geometry from ``like`` or the arguments."""
    p = Path(path)
    data = np.asarray(data)
    if spacing is None and like is not None:
        spacing = like.spacing[-data.ndim:] if len(like.spacing) >= data.ndim else None
    if affine is None and like is not None:
        affine = like.affine
    name = p.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        import nibabel as nib

        if data.dtype == np.bool_:
            data = data.astype(np.uint8)
        arr = data.transpose(tuple(reversed(range(data.ndim))))
        if affine is None:
            aff = np.eye(4)
            for i, s in enumerate(reversed(spacing or (1.0,) * data.ndim)):
                aff[i, i] = s
        else:
            aff = np.asarray(affine, float)
        img = nib.Nifti1Image(np.ascontiguousarray(arr), aff)
        img.header.set_data_dtype(arr.dtype)
        if spacing is not None:
            img.header.set_zooms(tuple(reversed([float(s) for s in spacing])))
        img.set_qform(aff, code=1)
        img.set_sform(aff, code=1)
        atomic_write(p, lambda tmp: nib.save(img, tmp))
    elif name.endswith(TIFF_SUFFIXES):
        import tifffile

        sp = list(spacing or (1.0,) * data.ndim)
        kwargs: dict[str, Any] = {"resolution": (1.0 / sp[-1], 1.0 / sp[-2])}
        if data.dtype in (np.float64, np.int64, np.uint64, np.bool_):
            data = data.astype({"f": np.float32, "i": np.int32, "u": np.uint32, "b": np.uint8}[data.dtype.kind])
        metadata = {"axes": "ZYX"[-data.ndim:]} if data.ndim <= 3 else None
        if data.ndim == 3:
            metadata["spacing"] = float(sp[-3])
        atomic_write(p, lambda tmp: tifffile.imwrite(tmp, data, metadata=metadata, compression="zlib",
                                                 photometric="minisblack", **kwargs))
    else:
        raise InputError(f"{p}: napari-attnseg writes .tif/.tiff and .nii/.nii.gz files.")
    return p
