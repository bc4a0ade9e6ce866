"""Reading and writing images: TIFF, NIfTI and DICOM series (and reading PNG, JPEG, BMP), with one
axis convention.

Arrays are (z, y, x) (or (y, x)); a NIfTI array stored as (i, j, k) is returned as (k, j, i), so
"slice n" is k = n, and ``spacing`` follows the returned array's axes. A DICOM series comes in the
same order with a NIfTI-style (RAS) affine. Writers invert the transpose exactly and restore the
source's affine. Every write goes to a temporary name first and is then renamed. A PNG, JPEG or BMP
picture (``plain.py``) reads like a TIFF without calibration; what is written for it is TIFF.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from .metaio import META_SUFFIXES, NRRD_SUFFIXES
from .plain import PLAIN_SUFFIXES
from .volume import Volume

__all__ = ["Volume", "can_read", "image_format", "input_stat", "read_image", "stem", "write_image"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
TIFF_SUFFIXES = (".tif", ".tiff")


def image_format(path: str | os.PathLike) -> str | None:
    """``nifti``, ``metaio`` (MetaImage, NRRD), ``tiff``, ``plain`` (PNG, JPEG, BMP), ``dicom`` or None, from the
    name (and, for DICOM, the content)."""
    p = Path(path)
    name = p.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(META_SUFFIXES + NRRD_SUFFIXES):  # read as a NIfTI would be (metaio.py)
        return "metaio"
    if name.endswith(TIFF_SUFFIXES):
        return "tiff"
    if name.endswith(tuple(PLAIN_SUFFIXES)):
        return "plain"
    from .dicom import is_dicom_path

    if is_dicom_path(p):
        return "dicom"
    return None


def can_read(path: str | os.PathLike) -> bool:
    """Whether ``read_image`` would try ``path`` (by name, or DICOM content). Never raises."""
    try:
        return Path(path).exists() and image_format(path) is not None
    except (OSError, ValueError, TypeError):
        return False


def input_stat(path: str | os.PathLike) -> tuple[int, float]:
    """Size in bytes and modification time of an input as a whole: a DICOM folder's files together (the folder's
    time), a MetaImage or NRRD header with its data file (a rewritten ``.raw`` is a new input), else the file's."""
    p = Path(path)
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()), p.stat().st_mtime
    from .metaio import data_file_of

    files = [p] + [d for d in (data_file_of(p),) if d is not None]
    stats = [f.stat() for f in files]
    return sum(st.st_size for st in stats), max(st.st_mtime for st in stats)


def stem(path: str | os.PathLike) -> str:
    """File name without its image suffix (``.nii.gz`` and ``.ome.tif`` count as one: an OME-TIFF's mask was
    ``x.ome_mask.tif``). A folder given as ``.`` or ``..`` (``attnseg predict .`` inside a DICOM series) is named by
    its own name (its outputs were ``_mask.nii.gz``, ``_predict.json``)."""
    name = Path(path).name
    if name in ("", ".."):
        name = Path(os.path.abspath(path)).name
    for suffix in (".nii.gz", ".nii", ".ome.tiff", ".ome.tif", ".tiff", ".tif", ".dcm", *PLAIN_SUFFIXES, *META_SUFFIXES, *NRRD_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def looked_in(path: str | os.PathLike) -> str:
    """For a relative path that does not exist: where it was looked for (a command run from another folder said only
    "CT.nii.gz does not exist."); '' for an absolute path."""
    if Path(path).is_absolute():
        return ""
    try:
        here = os.getcwd()
    except OSError:  # (the current folder was deleted)
        return " (a path relative to the current folder, which no longer exists)"
    return f" (looked in {here}, the current folder: give the path from there, or an absolute path)"


def read_image(path: str | os.PathLike) -> Volume:
    """Read a TIFF, NIfTI file, DICOM series (a folder or one file of it) or a PNG, JPEG or BMP picture.

    Raises ``InputError`` naming the file when it is missing, of another format or unreadable.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p} does not exist{looked_in(p)}.")
    fmt = image_format(p)
    try:
        if fmt == "nifti":
            from .nifti import read_nifti

            return read_nifti(p)
        if fmt == "metaio":
            from .metaio import read_metaimage, read_nrrd

            return read_metaimage(p) if p.name.lower().endswith(META_SUFFIXES) else read_nrrd(p)
        if fmt == "tiff":
            from .tiff import read_tiff

            return read_tiff(p)
        if fmt == "plain":
            from .plain import read_plain

            return read_plain(p)
        if fmt == "dicom":
            return _read_dicom(p)
    except InputError:
        raise
    except Exception as exc:  # a corrupt file: say which and why
        raise InputError(f"Could not read {p}: {exc}") from None
    raise InputError(f"{p}: unsupported format; napari-attnseg reads .tif/.tiff, .nii/.nii.gz, .mha/.mhd, .nrrd/.nhdr, "
                     "DICOM series and .png/.jpg/.jpeg/.bmp pictures.")


def _read_dicom(p: Path) -> Volume:
    """A DICOM series, from its folder or one file of it. A link to one file (``attnseg predict``'s
    ``<stem>_image.dcm`` beside the outputs) read as that lone slice, since no other file of the series is beside
    the link: the series is read around the file linked to (the export of that link and the run's mask was refused
    as 'not on the grid')."""
    from .dicom import read_dicom_series

    vol = read_dicom_series(p)
    if vol.meta.get("axis_order") == "ji" and p.is_symlink() and p.is_file() and p.resolve().parent != p.parent:
        around = read_dicom_series(p.resolve())
        if around.meta.get("axis_order") != "ji":
            return around
    return vol


def write_image(
    path: str | os.PathLike, data: np.ndarray, like: Volume | None = None,
    spacing: tuple[float, ...] | None = None, affine: np.ndarray | None = None,
    reviewed_slices: list[int] | None = None,
    class_names: list[str] | None = None,
    unit: str | tuple[str, ...] | None = None,
    origin: tuple[float, ...] | None = None,
    model_info: dict | None = None,
) -> Path:
    """Write ``data`` (array axis order) as TIFF or NIfTI, atomically (temp name + rename).

    Geometry comes from the arguments, else from ``like`` (the Volume the data was derived from):
    a NIfTI written ``like`` a NIfTI or DICOM source gets back its affine and header codes, a TIFF
    written ``like`` a TIFF its axes label (and an ImageJ source's format and unit).
    ``reviewed_slices`` (a mask's reviewed first-axis indices) are stored in the file and read back as
    ``Volume.meta["reviewed_slices"]``; ``class_names`` (a mask's names per label value, NIfTI only) as
    ``Volume.meta["class_names"]``. ``unit``: the length unit of the spacing (``"µm"``, ``"mm"``,
    or one per axis as napari's layer ``units``), else the source's; with one the TIFF carries an ImageJ
    calibration, and a NIfTI its xyz unit (micron, mm or meter; a NIfTI source's own unit wins). ``origin``
    (TIFF, one per array axis): the ImageJ calibration origin in pixels, for a coarser map that does not start
    at the image's corner (a NIfTI's affine says it). A NIfTI written ``like`` a source
    on another grid (``affine`` given: an attention map) gets the source's qform moved onto its own grid.
    ``model_info`` (a mask: the model that made it, ``model`` / ``weights_sha256`` / ``checkpoint``) is stored
    in the file and read back as ``Volume.meta["model_info"]``.
    """
    p = Path(path)
    data = np.asarray(data)
    if spacing is None and like is not None and len(like.spacing) >= data.ndim:
        spacing = tuple(like.spacing[-data.ndim:])
    if affine is None and like is not None:
        affine = like.affine
    name = p.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        from .nifti import write_nifti

        write_nifti(p, data, spacing, affine, like.meta if like is not None else None, reviewed_slices, class_names,
                    source_affine=like.affine if like is not None else None, model_info=model_info,
                    unit=unit if unit is not None or like is None else like.meta.get("unit"))  # (a TIFF's micron)
    elif name.endswith(TIFF_SUFFIXES):
        from .tiff import write_tiff

        write_tiff(p, data, spacing, reviewed_slices, like.meta if like is not None else None, unit, origin, model_info)
    else:
        raise InputError(f"{p}: napari-attnseg writes .tif/.tiff and .nii/.nii.gz files.")
    return p
