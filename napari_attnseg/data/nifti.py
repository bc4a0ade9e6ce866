"""NIfTI (.nii / .nii.gz) with nibabel: the stored (i, j, k) array is returned as (k, j, i).

The header facts needed to write a result back with the same geometry (affine, qform/sform codes,
units) travel in ``Volume.meta["nifti"]`` as plain JSON values, never the free-text fields. A mask's
reviewed slices, class names and 'ignore' value travel in a header extension (NIfTI "comment", JSON under
``napari_attnseg``), read back as ``Volume.meta["reviewed_slices"]`` / ``["class_names"]`` / ``["ignore_value"]``;
other tools skip the extension.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .._files import atomic_write
from ..errors import InputError
from .volume import Volume, model_info_of


def nifti_volumes(p: Path) -> int:
    """How many volumes a NIfTI file stacks along its 4th axis (1 for a 2D or 3D file), from its header alone."""

    try:
        shape = _shape(load_nifti(p).shape)
    except Exception:  # noqa: BLE001 - a damaged file: the reader that follows says what is wrong with it
        return 1
    return int(shape[3]) if len(shape) == 4 else 1


def _shape(shape) -> tuple[int, ...]:
    """The image's shape without the singleton axes after the 4th: ITK-based tools write a 3D scalar image as
    (x, y, z, 1, 1) (NIfTI dim 5, one time point, one component), which is a 3D volume."""
    shape = tuple(int(n) for n in shape)
    while len(shape) > 4 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def load_nifti(p: Path):
    """``nibabel.load`` for any case of the suffix: nibabel looks for ``scan.nii.gz`` when given ``scan.Nii.gz``.
    nibabel's "pixdim[1,2,3] should be non-zero; setting 0 dims to 1" (printed on every load, without the file's
    name) is kept quiet: :func:`read_nifti` says it once, naming the file (``img.attnseg_zero_pixdim``)."""
    import logging

    log, quiet = logging.getLogger("nibabel.global"), _ZeroPixdim()
    log.addFilter(quiet)
    try:
        img = _load_nifti(p)
    finally:
        log.removeFilter(quiet)
    img.attnseg_zero_pixdim = quiet.seen
    return img


class _ZeroPixdim:
    """A logging filter that drops nibabel's zero-pixdim message of this thread's load and remembers it."""

    def __init__(self) -> None:
        import threading

        self.seen, self.thread = False, threading.get_ident()

    def filter(self, record) -> bool:
        if record.thread == self.thread and "pixdim[1,2,3] should be non-zero" in record.getMessage():
            self.seen = True
            return False
        return True


def _load_nifti(p: Path):
    import nibabel as nib

    name = Path(p).name
    if name.lower().endswith((".nii", ".nii.gz")) and not name.endswith((".nii", ".nii.gz", ".NII", ".NII.GZ")):
        from nibabel.fileholders import FileHolder

        holders = {"image": FileHolder(filename=str(p)), "header": FileHolder(filename=str(p))}
        try:
            return nib.Nifti1Image.from_file_map(holders)
        except Exception:  # noqa: BLE001 - not NIfTI-1: NIfTI-2's header (or the reader's own message)
            return nib.Nifti2Image.from_file_map(holders)
    return nib.load(str(p))


def _scale(raw: np.ndarray, slope: float, inter: float) -> np.ndarray:
    """``raw * slope + inter`` in a compact type: integers stored with an integral scaling (a CT's int16 with
    ``scl_inter -1024``) stay integers (int16 when the values fit, else int32), others become float32. nibabel's
    scaled array is float64: 4x an int16 CT's memory in the layer, and the export wrote it as float64."""
    if np.issubdtype(raw.dtype, np.integer) and float(slope).is_integer() and float(inter).is_integer():
        out = raw.astype(np.int64 if raw.dtype.itemsize >= 4 else np.int32)
        out *= int(slope)
        out += int(inter)
        lo, hi = (int(out.min()), int(out.max())) if out.size else (0, 0)
        for kind in (np.int16, np.int32):
            if np.iinfo(kind).min <= lo and hi <= np.iinfo(kind).max:
                return out.astype(kind)
        return out
    out = raw.astype(np.float32)
    out *= np.float32(slope)
    out += np.float32(inter)
    return out


def _compact(scaled: np.ndarray, stored: np.dtype, slope: float, inter: float) -> np.ndarray:
    """nibabel's float64 scaled volume in :func:`_scale`'s type (for one volume of a 4D file)."""
    if np.issubdtype(stored, np.integer) and float(slope).is_integer() and float(inter).is_integer():
        return _scale(np.rint(scaled).astype(np.int64), 1.0, 0.0)
    return scaled.astype(np.float32)


def read_nifti(p: Path, volume: int | None = None):
    """A 2D or 3D NIfTI file, or volume ``volume`` of a 4D one (the MRI sequences of a patient stacked, as the
    Medical Segmentation Decathlon stores them; diffusion or functional series): only that volume is read, and
    it is written back as a 3D file on the same grid."""

    img = load_nifti(p)
    header = img.header
    # nibabel moves scl_slope/scl_inter from the loaded header onto the array proxy
    slope = float(getattr(img.dataobj, "slope", 1.0))
    inter = float(getattr(img.dataobj, "inter", 0.0))
    scaled = slope != 1.0 or inter != 0.0
    shape = _shape(img.shape)
    extra = (0,) * (len(img.shape) - len(shape))  # the singleton axes after the 4th (5D files of ITK-based tools)
    n = int(shape[3]) if len(shape) == 4 else 1
    if len(shape) == 4 and n > 1:
        if volume is None:
            raise InputError(f"{p} is a 4D NIfTI of {n} volumes (shape {tuple(img.shape)}), e.g. MRI sequences stacked: "
                             f"choose one with --channel K (K from 0 to {n - 1}); napari opens each volume as its own "
                             "layer.")
        if not 0 <= int(volume) < n:
            raise InputError(f"{p} has {n} volumes (4D NIfTI); --channel is 0 to {n - 1}, not {volume}.")
        # (a slice of the proxy: one volume read; without a scaling its stored dtype is kept)
        data = np.asanyarray(img.dataobj[(slice(None),) * 3 + (int(volume),) + extra])
        data = _compact(data, header.get_data_dtype(), slope, inter) if scaled else data
    elif volume not in (None, 0):
        raise InputError(f"{p} holds one volume (shape {tuple(img.shape)}); leave --channel out.")
    else:
        # Without a real scaling the stored dtype is kept (labels stay integers, CT stays int16).
        data = _scale(img.dataobj.get_unscaled(), slope, inter) if scaled else img.dataobj.get_unscaled()
        data = data.reshape(shape) if extra else data
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim not in (2, 3):
        raise InputError(f"{p}: expected a 2D, 3D or 4D NIfTI image, got shape {data.shape}.")
    zooms = tuple(float(z) for z in header.get_zooms()[: data.ndim])
    arr = np.ascontiguousarray(data.transpose(tuple(reversed(range(data.ndim)))))
    units = header.get_xyzt_units()
    meta: dict[str, Any] = {
        "source_path": str(p), "format": "nifti", "axis_order": "kji"[-data.ndim:],
        **({"volume": int(volume), "volumes": n} if n > 1 else {}),
        "nifti": {
            "stored_shape": list(data.shape), "stored_dtype": str(header.get_data_dtype()),
            "qform_code": int(header["qform_code"]), "sform_code": int(header["sform_code"]),
            "qform": np.asarray(img.get_qform(), float).tolist(), "xyz_units": units[0],
            "scl_slope": slope if scaled else None, "scl_inter": inter if scaled else None,
        },
    }
    ours = _ours(header)
    try:
        if ours.get("reviewed_slices") is not None:
            meta["reviewed_slices"] = sorted({int(z) for z in ours["reviewed_slices"]})
    except (ValueError, TypeError):
        pass
    if isinstance(ours.get("ignore_value"), int) and not isinstance(ours["ignore_value"], bool):
        meta["ignore_value"] = int(ours["ignore_value"])  # a reopened export's 'ignore' (unreviewed slices)
    names = ours.get("class_names")
    if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
        meta["class_names"] = list(names)
    if (model := model_info_of(ours.get("model"))) is not None:
        meta["model_info"] = model
    warnings = []
    sform_sizes = np.linalg.norm(np.asarray(img.affine, float)[:3, : data.ndim], axis=0)
    if getattr(img, "attnseg_zero_pixdim", False) and int(header["sform_code"]) > 0 and np.all(sform_sizes > 0):
        # the sform holds the voxel sizes the pixdim leaves out: the spacing agrees with the placement (was 1 mm)
        zooms = tuple(float(z) for z in sform_sizes)
        warnings.append(f"its header gives a voxel size of 0 (pixdim): the sizes were taken from its sform "
                        f"({' x '.join(f'{z:.3g}' for z in zooms)} mm); set them in the header (e.g. nibabel's "
                        "header.set_zooms) for other tools.")
    elif getattr(img, "attnseg_zero_pixdim", False):  # (nibabel set the zero voxel sizes to 1, saying so unnamed)
        placed = "" if int(header["qform_code"]) or int(header["sform_code"]) else " and no qform or sform to place it"
        warnings.append(f"its header gives a voxel size of 0 (pixdim){placed}: 1 mm was assumed along those "
                        "axes, so its outputs and any size in mm use 1 mm voxels; if you know the spacing, set it in "
                        "the header (e.g. nibabel's header.set_zooms) and run again.")
    if (gap := _qform_gap(img)) is not None:
        warnings.append(f"{p.name}: its qform and sform place it differently (up to {gap:.1f} mm apart; sform code "
                        f"{int(header['sform_code'])}). napari-attnseg, nibabel and napari use the sform; ITK-based "
                        "viewers (3D Slicer, ITK-SNAP) use the qform, so they show this file elsewhere. The outputs "
                        "keep both, so each tool overlays them on the scan as it shows the scan.")
    if warnings:
        meta["warning"] = " ".join(warnings)
    return Volume(arr, tuple(reversed(zooms)), np.asarray(img.affine, float), meta)


def _qform_gap(img) -> float | None:
    """mm between where the qform and the sform put the volume's corners, when ITK and nibabel would pick
    different ones (both codes set, the sform's aligned / Talairach / MNI: ITK takes the qform then), else None."""
    h = img.header
    if int(h["qform_code"]) <= 0 or int(h["sform_code"]) < 2:
        return None
    corners = np.array([[i, j, k, 1.0] for i in (0, img.shape[0] - 1) for j in (0, img.shape[1] - 1)
                        for k in ((0, img.shape[2] - 1) if len(img.shape) > 2 else (0,))]).T
    gap = float(np.abs(img.get_qform() @ corners - img.get_sform() @ corners).max())
    return gap if gap > 0.01 else None


def unsheared(aff: np.ndarray, shape) -> np.ndarray:
    """The qform to write for ``aff`` (a volume of ``shape``, (i, j, k)): ``aff`` itself, or, when it is sheared (a
    gantry-tilted CT), which a qform cannot hold, the closest it can: each slice's rows and columns as ``aff`` has
    them, the slices stacked along their normal, the middle one in place. Its first and last slices are off by half
    the shear (10 mm on a 10-degree tilt over 23 steps of 5 mm); nibabel's own approximation turned the slices too
    and was off by 12 mm there, 6 mm on the first slice. ITK-based viewers read the qform of a sheared file."""
    a = np.asarray(aff, float)
    if len(shape) < 3 or a.shape != (4, 4):
        return a
    c = a[:3, :3]
    norms = np.linalg.norm(c, axis=0)
    if (norms < 1e-12).any():
        return a
    u = c / norms
    if abs(u[:, 0] @ u[:, 1]) > 1e-6 or max(abs(u[:, 2] @ u[:, 0]), abs(u[:, 2] @ u[:, 1])) < 1e-6:
        return a  # (rows and columns not square to each other, or no shear: nibabel's as before)
    normal = np.cross(u[:, 0], u[:, 1])
    dz = float(c[:, 2] @ normal)  # (signed: the qform's qfac keeps a left-handed stack)
    out = a.copy()
    out[:3, 2] = normal * dz
    out[:3, 3] = a[:3, 3] + (shape[2] - 1) / 2 * (c[:, 2] - out[:3, 2])  # the middle slice where the sform has it
    return out


COMMENT = 6  # NIfTI extension code of a free comment


def _ours(header) -> dict:
    """What this package wrote into the header (reviewed slices, class names); {} when nothing."""
    for ext in header.extensions:
        if ext.get_code() != COMMENT:
            continue
        try:
            ours = json.loads(bytes(ext.get_content()).rstrip(b"\0").decode("utf-8")).get("napari_attnseg")
        except (ValueError, TypeError, AttributeError):  # another tool's comment
            continue
        if isinstance(ours, dict):
            return ours
    return {}


def _qform_on_grid(nifti: dict, aff: np.ndarray, source_affine) -> np.ndarray | None:
    """The source's qform moved onto this file's grid (the same voxel-index change that takes the source's
    affine to ``aff``: a coarser attention map's grid, say), or None when it has none to keep."""
    qform = np.asarray(nifti["qform"], float) if nifti.get("qform") is not None else None
    if qform is None or qform.shape != (4, 4):
        return None
    if source_affine is not None:
        src = np.asarray(source_affine, float)
        if src.shape == (4, 4) and abs(np.linalg.det(src[:3, :3])) > 1e-12:
            qform = qform @ (np.linalg.inv(src) @ aff)
    return qform


# Length units in mm (as :func:`~.tiff_meta.tiff_unit` names them), and the unit NIfTI names nearest each: NIfTI
# knows micron, mm and meter only, so nm are written as micron, cm and inch as mm, the spacing converted.
LENGTH_MM = {"pm": 1e-9, "Å": 1e-7, "angstrom": 1e-7, "nm": 1e-6, "micron": 1e-3, "mm": 1.0, "cm": 10.0, "dm": 100.0,
             "m": 1e3, "meter": 1e3, "inch": 25.4}
NIFTI_MM = {"micron": 1e-3, "mm": 1.0, "meter": 1e3}


def _nearest(name: str | None) -> str | None:
    if name not in LENGTH_MM:
        return None
    return "micron" if LENGTH_MM[name] < 0.5 else "mm" if LENGTH_MM[name] < 500 else "meter"


def _lengths(unit) -> list[str | None]:
    """The length unit of each axis (:func:`~.tiff_meta.tiff_unit`'s names, None for none) of one unit or one per axis."""
    from .tiff_meta import tiff_unit

    return [tiff_unit(u) for u in ([unit] if unit is None or isinstance(unit, str) else list(unit))]


def nifti_unit(unit) -> str | None:
    """The NIfTI xyz unit of a length unit (``"micron"``, ``"µm"``, napari's ``"micrometer"``; one, or one per axis:
    the x axis's, the last that is a length): ``micron``, ``mm`` or ``meter``, the nearest one NIfTI names for a unit
    it cannot (nm: micron; cm, inch: mm; :func:`in_nifti_unit` converts the spacing); None for none (``pixel``) or
    an unknown one."""
    names = [name for name in _lengths(unit) if name]
    return _nearest(names[-1]) if names else None


def in_nifti_unit(spacing, unit) -> tuple[tuple[float, ...] | None, str | None]:
    """``spacing`` (array axis order) in ``unit`` (one, or one per axis) as the NIfTI unit :func:`nifti_unit` names,
    and that unit: 65 nm pixels are 0.065 micron, 0.5 cm 5 mm (written in nm or cm a file said 65 or 0.5 mm). An axis
    without a length unit keeps its value; so does every axis when there is no unit NIfTI can take."""
    target = nifti_unit(unit)
    if spacing is None or target is None:
        return (None if spacing is None else tuple(float(s) for s in spacing)), target
    names = _lengths(unit)
    x = [n for n in names if n][-1]
    names = ([names[0]] * len(spacing) if len(names) == 1 else  # (one unit, or one per axis: the last ones)
             [x] * max(0, len(spacing) - len(names)) + names[-len(spacing):])
    return tuple(float(s) * float(f"{LENGTH_MM[n] / NIFTI_MM[target]:.12g}") if n in LENGTH_MM else float(s)
                 for s, n in zip(spacing, names)), target


def write_nifti(p: Path, data: np.ndarray, spacing, affine, like_meta: dict | None,
                reviewed_slices: list[int] | None = None, class_names: list[str] | None = None,
                source_affine=None, model_info: dict | None = None, ignore_value: int | None = None,
                unit: str | tuple[str, ...] | None = None) -> None:
    """``like_meta``: the source's meta (its header codes and qform, ``meta["nifti"]``); ``source_affine``: the
    affine that qform goes with, when this file is on another grid (a coarser map) than the source's;
    ``model_info``: the model that made the mask (:func:`model_info_of`), kept in the header note, as is
    ``ignore_value`` (the 'ignore' value of a reopened export's unreviewed slices, read back as ``meta[...]``).
    ``unit``: the length unit of ``spacing`` (a TIFF's ``"micron"``, a napari layer's ``units``), the file's xyz
    unit when there is no NIfTI / DICOM source (:func:`nifti_unit`; that source's own unit wins: mm for DICOM and
    a NIfTI's 'unknown'); else mm. A unit NIfTI cannot name is converted (:func:`in_nifti_unit`: nm to micron, cm
    and inch to mm), the spacing and a given affine's scale with it, so the voxel size in physical units is kept."""
    import nibabel as nib

    if data.dtype == np.bool_:
        data = data.astype(np.uint8)
    # back to (i, j, k): a view (Fortran order), which nibabel writes without the whole copy ascontiguousarray made
    arr = np.asarray(data).transpose(tuple(reversed(range(data.ndim))))
    nifti = (like_meta or {}).get("nifti") or {}
    units = nifti.get("xyz_units")  # a NIfTI / DICOM source's own unit wins, 'unknown' read as mm (as the readers do)
    scale = np.eye(4)  # a given affine in nm / cm...: into the unit the file names (the spacing: in_nifti_unit)
    if "xyz_units" not in nifti and (like_meta or {}).get("format") != "dicom":  # (2 um pixels were said 2 mm)
        spacing, units = in_nifti_unit(spacing, unit)  # (65 nm pixels were said 65 mm, 0.5 cm ones 0.5 mm)
        scale[:3, :3] *= (in_nifti_unit((1.0,), unit)[0] or (1.0,))[0] if affine is not None else 1.0  # (the x axis')
    if affine is None:
        aff = np.eye(4)
        for i, s in enumerate(reversed(spacing or (1.0,) * data.ndim)):
            aff[i, i] = float(s)
    else:
        aff = np.asarray(affine, float)
        if aff.shape != (4, 4):
            raise InputError(f"{p}: the affine must be 4x4; got shape {aff.shape}.")
    img = nib.Nifti1Image(arr, scale @ aff)
    header = img.header
    header.set_data_dtype(arr.dtype)
    # The source's codes (scanner vs aligned space) are kept, 0 included (e.g. MNI152: qform 0, sform 2);
    # a new file says "scanner" for both. The affine is written as both qform and sform, so a file with
    # only a qform reads back the same. Both codes 0 would drop the affine: then the file says "scanner".
    q_code = int(nifti["qform_code"]) if nifti.get("qform_code") is not None else 1
    s_code = int(nifti["sform_code"]) if nifti.get("sform_code") is not None else 1
    if q_code == 0 and s_code == 0 and affine is not None:
        q_code = s_code = 1
    # The source's own qform, on this file's grid, whatever the sform code: a tool that reads the qform (ITK
    # for sform codes 2-4, older ITK and ANTs always) places every output where it places the source.
    qform = _qform_on_grid(nifti, aff, source_affine) if affine is not None and q_code > 0 else None
    if qform is not None and not np.allclose(qform, aff, atol=1e-4):
        img.set_qform(scale @ qform, code=q_code)
    else:
        img.set_qform(unsheared(scale @ aff, arr.shape), code=q_code)
    img.set_sform(scale @ aff, code=s_code)
    header.set_xyzt_units(xyz=units if units not in (None, "unknown") else "mm")
    ours: dict[str, Any] = {}
    if reviewed_slices is not None:
        ours["reviewed_slices"] = sorted({int(z) for z in reviewed_slices})
    if class_names:
        ours["class_names"] = [str(n) for n in class_names]
    if ignore_value is not None:
        ours["ignore_value"] = int(ignore_value)
    if (model := model_info_of(model_info)) is not None:
        ours["model"] = model
    if ours:
        note = {"napari_attnseg": ours}
        header.extensions.append(nib.nifti1.Nifti1Extension(COMMENT, json.dumps(note).encode("utf-8")))
    atomic_write(p, lambda tmp: nib.save(img, tmp))
