"""npe2 readers (NIfTI, DICOM series) and writers (Labels to TIFF / NIfTI) over the core's data I/O.

Readers return None for anything they cannot read and never raise on a foreign file.

The preferences that make napari open NIfTI, DICOM and OME-TIFF with the plugin without asking (``on_activate``):
:mod:`.reader_prefs`; a ``<stem>_predict.json`` record's reader: :mod:`.record_reader`.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from ..data import Volume, read_image
from ..data.dicom import is_dicom_path
from ..data.io import stem
from ..data.metaio import META_SUFFIXES, NRRD_SUFFIXES
from ..data.nifti import nifti_volumes, read_nifti
from ..data.orientation import onto_grid, volume_translate
from ..data.volume import model_info_of
from ..display import DEFAULT_CT_WINDOW, default_window, outlier_limits
from ..errors import AttnSegError, InputError
from .dicom_labels_reader import get_labels_reader
from .reader_prefs import PLUGIN, PREFERRED_PATTERNS, activate, prefer_plugin_readers  # noqa: F401 (npe2's on_activate)
from .tiff_masks import exported_marks, ignore_features, mask_axes

OME_SUFFIXES = (".ome.tif", ".ome.tiff")  # napari's own reader opens them at scale 1, without their pixel size


# a file name with one of these words (e.g. brain1_labels.nii.gz, liver_seg.nii) holding few integers is a mask
_LABEL_NAME = re.compile(r"(^|[^a-z])(labels?|seg|segmentation|mask|masks|roi|annotations?)([^a-z]|$)")
MAX_LABEL_VALUES = 256
SLICER_SEGMENTATION = (".seg.nrrd", ".seg.nhdr")  # 3D Slicer's segmentation files: label maps, whatever their name


def _notify(message: str, info: bool = False) -> None:
    """A napari warning (``info``: information) notification (a plain warning where napari's are unavailable)."""
    try:
        from napari.utils.notifications import show_info, show_warning
    except ImportError:  # pragma: no cover - napari is a dependency of the plugin
        warnings.warn(message, stacklevel=2)
        return
    (show_info if info else show_warning)(message)


def _viewer():
    try:
        import napari

        return napari.current_viewer()
    except Exception:  # no Qt / no viewer: nothing to compare with
        return None


def _candidate_layers(viewer, kinds=("image",)) -> list:
    """Open layers, the selected ones first, then the most recent first."""
    if viewer is None:
        return []
    layers = list(viewer.layers)
    selected = [lay for lay in reversed(layers) if lay in viewer.layers.selection]
    ordered = selected + [lay for lay in reversed(layers) if lay not in selected]
    return [lay for lay in ordered if lay._type_string in kinds]


def _is_labels_file(volume: Volume, path: str) -> bool:
    """An integer NIfTI named like a mask (label, seg, mask, roi, annotation), or in a dataset's label folder
    (nnU-Net's ``labelsTr``/``labelsTs``, an exported dataset's ``labels``: ``case_0000.nii.gz`` opened as an image),
    or saved by this plugin's writer with a mask's marks (any name: ``mine.nii.gz``), with <= 256 values >= 0."""
    if volume.meta.get("format") != "nifti" or not np.issubdtype(volume.data.dtype, np.integer):
        return False
    p = Path(path.rstrip("/"))
    stem = p.name.lower()
    in_labels = p.parent.name in ("labelsTr", "labelsTs") or (
        p.parent.name == "labels" and (p.parent.parent / "manifest.json").is_file())
    marked = any(k in volume.meta for k in ("reviewed_slices", "class_names", "ignore_value"))  # File > Save's marks
    if not _LABEL_NAME.search(stem.split(".")[0]) and not stem.endswith(SLICER_SEGMENTATION) and not (in_labels or marked):
        return False
    data = np.asarray(volume.data)
    if data.size == 0 or data.min() < 0:
        return False
    return np.unique(data).size <= MAX_LABEL_VALUES


def _codes(affine: np.ndarray) -> str:
    import nibabel as nib

    return "".join(str(c) for c in nib.aff2axcodes(affine))


def _match_orientation(volume: Volume, path: str, viewer) -> Volume:
    """A NIfTI stored in another orientation than an open image of the same grid is reoriented to it
    (``data.orientation.onto_grid``: the same voxels, axes moved), so that the two overlay voxel by voxel.
    Otherwise a warning says the two do not overlay."""
    if volume.affine is None or volume.data.ndim != 3 or volume.meta.get("format") != "nifti":
        return volume
    name = Path(path).name
    affine = np.asarray(volume.affine, float)
    for layer in _candidate_layers(viewer, ("image", "labels")):
        other = layer.metadata.get("affine")
        shape = tuple(np.shape(layer.data))
        if other is None or len(shape) != 3 or sorted(shape) != sorted(volume.data.shape):
            continue
        other = np.asarray(other, float)
        if other.shape != (4, 4) or _codes(other) == _codes(affine):
            continue
        moved = onto_grid(volume, other, shape)
        if moved is not None:
            _notify(f"{name} is stored in {_codes(affine)} orientation, {layer.name} in {_codes(other)}: "
                    f"{name} was reoriented to {_codes(other)} so that the two overlay voxel by voxel "
                    "(a mask saved from it is written in that orientation, with the matching affine).")
            return moved
        _notify(f"{name} is stored in {_codes(affine)} orientation and {layer.name} in {_codes(other)}: "
                "they do not overlay voxel by voxel (one is mirrored or transposed against the other).")
        return volume
    return volume


def scan_unit(meta: dict) -> str | None:
    """The length unit of a scan's spacing (NIfTI, DICOM, MetaImage, NRRD: mm, or the NIfTI's own xyz unit), for
    the layer's napari ``units``; None for other files (a TIFF's pixel size is napari's reader's business)."""
    if meta.get("format") == "dicom":
        return "mm"
    if meta.get("format") != "nifti":
        return None
    return {"micron": "um", "meter": "m"}.get(str((meta.get("nifti") or {}).get("xyz_units")), "mm")


def _in_open_image_unit(kwargs: dict, shape) -> None:
    """napari does not convert units between layers: a mask saved as NIfTI from a layer in nm (written in micron, the
    nearest unit NIfTI names) reopened 1000 times smaller than its image. Its scale is put in the unit of an open image
    of its shape when that puts it on the image's grid (the file and the layer's ``spacing`` metadata keep the file's);
    a file whose numbers are the image's already (no unit in its header, read as mm) is left as it is."""
    from ..data.nifti import LENGTH_MM
    from ..data.tiff_meta import tiff_unit

    viewer, units = _viewer(), kwargs.get("units")
    here = tiff_unit(units[-1]) if units else None
    if viewer is None or here not in LENGTH_MM:
        return
    for layer in viewer.layers:
        if layer._type_string != "image" or tuple(np.shape(layer.data)[-len(shape):]) != tuple(shape) \
                or not getattr(layer, "units", None):
            continue
        theirs = tiff_unit(str(layer.units[-1]))
        if theirs == here:  # (the mask's unit is this image's: it lies on it as it is)
            return
        if theirs not in LENGTH_MM:
            continue
        factor = LENGTH_MM[here] / LENGTH_MM[theirs]
        if not np.allclose(np.abs(np.asarray(kwargs["scale"], float)) * factor,
                           np.abs(np.asarray(layer.scale, float)[-len(shape):]), rtol=1e-3):
            continue  # (converted, it would not lie on this image: another image's mask, or its unit not the file's)
        kwargs["scale"] = tuple(float(v) * factor for v in kwargs["scale"])
        if kwargs.get("translate") is not None:
            kwargs["translate"] = tuple(float(v) * factor for v in kwargs["translate"])
        kwargs["units"] = (str(layer.units[-1]),) * len(kwargs["scale"])
        return


def _layer(volume: Volume, path: str) -> list[tuple]:
    if volume.meta.get("format") == "nifti":
        volume = _match_orientation(volume, path, _viewer())
    meta = {"source_path": path, "spacing": list(volume.spacing), "format": volume.meta.get("format")}
    if volume.affine is not None:
        meta["affine"] = np.asarray(volume.affine).tolist()
    for key in ("nifti", "modality", "warning", "reoriented_from", "series_uid", "inserted_slices"):  # header codes travel to the writer
        if volume.meta.get(key):
            meta[key] = volume.meta[key]
    # the name without its image suffix only: sub-01.ses-2.T1w.nii.gz -> 'sub-01.ses-2.T1w' (as its _predict.json
    # reopens), a DICOM folder named by its UID keeps it, brain1.seg.nrrd beside brain1.nrrd -> 'brain1.seg'
    name = stem(path.rstrip("/"))
    kwargs = {"name": name, "scale": volume.spacing, "metadata": meta}
    if (unit := scan_unit(volume.meta)) is not None:  # napari's scale bar and measurements in mm, not "px"
        kwargs["units"] = (unit,) * len(volume.spacing)
    translate = volume_translate(volume)
    if translate is not None:  # files of one patient with other fields of view lie over each other (mm)
        kwargs["translate"] = translate
    if meta.get("warning"):  # e.g. uneven DICOM slice spacing: the user sees it, the layer keeps it
        _notify(f"{name}: {meta['warning']}")
    if _is_labels_file(volume, path):
        _in_open_image_unit(kwargs, volume.data.shape)
        reviewed = volume.meta.get("reviewed_slices")
        if volume.meta.get("reviewed_slices_dropped"):
            _notify(f"{name}: its reviewed-slice marks were not kept: the file was reoriented to the open image, "
                    "so its slice numbers changed; mark the reviewed slices again.")
        elif reviewed is not None:
            meta["reviewed_slices"] = list(reviewed)  # the review saved with the mask (Correct panel)
        if volume.meta.get("class_names"):  # the names the mask was saved with (the Correct panel shows them)
            meta["class_names"] = list(volume.meta["class_names"])
            kwargs["features"] = {"class": list(volume.meta["class_names"])}
        if (ignore := volume.meta.get("ignore_value")) is not None:  # a reopened export saved (File > Save): its own
            meta["ignore_value"], kwargs["features"] = ignore, ignore_features(meta.get("class_names") or [], ignore)
        # a case's label file an export wrote: its dataset's manifest has its review and names its 'ignore' value
        if (marks := exported_marks(path)) is not None and not volume.meta.get("reviewed_slices_dropped"):
            _notify(f"{name}: {marks['note']}", info=True)
            if reviewed is None and marks["reviewed_slices"] is not None:
                meta["reviewed_slices"] = marks["reviewed_slices"]
            meta["class_names"] = meta.get("class_names") or marks["class_names"]
            if marks["ignore_value"] is not None:
                meta["ignore_value"] = marks["ignore_value"]
            kwargs["features"] = marks["features"] or kwargs.get("features")
        if model := volume.meta.get("model_info"):  # the model that made the mask: the panels' provenance
            meta["attnseg"] = {"model": model.get("model"), "checkpoint": model.get("checkpoint"),
                               "checkpoint_sha256": model.get("weights_sha256")}
        return [(volume.data, kwargs, "labels")]
    window = default_window(volume.data)
    if window is not None:  # a CT in Hounsfield units opens in the soft-tissue window, not -1024..3071
        kwargs["contrast_limits"], meta["attnseg_window"] = window, DEFAULT_CT_WINDOW
    elif (limits := outlier_limits(volume.data)) is not None:  # an MRI with one hot voxel opened black
        kwargs["contrast_limits"] = limits[:2]
        _notify(f"{name}: {limits[2]}")
    return [(volume.data, kwargs, "image")]


def _volume_layer(path, k: int) -> tuple:
    """Volume ``k`` of a 4D NIfTI as the layer '<name> [k]' (read alone; saved back as a 3D file on the same grid)."""
    data, kwargs, kind = _layer(read_nifti(Path(path), volume=k), str(path))[0]
    kwargs["name"] = f"{kwargs['name']} [{k}]"
    return data, kwargs, kind


def _reader(path):
    """The layers of a file this plugin claimed (by name or DICOM content). A file it cannot read raises
    an error naming the file and what to do, which napari shows; returning nothing would make napari
    say only that the reader "returned no data"."""
    try:
        if str(path).lower().endswith((".nii", ".nii.gz")) and (n := nifti_volumes(Path(path))) > 1:
            return [_volume_layer(path, k) for k in range(n)]  # a 4D NIfTI: one layer per volume, ready to segment
        return _layer(read_image(path), str(path))
    except AttnSegError:
        raise
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} cannot be read as an image ({exc}); check that the file is complete and "
                         "is NIfTI, MetaImage, NRRD or DICOM.") from None


def get_nifti_reader(path):
    """NIfTI, and the volumes read like it: MetaImage (.mha/.mhd) and NRRD (.nrrd/.nhdr)."""
    if isinstance(path, list) or not str(path).lower().endswith((".nii", ".nii.gz", *META_SUFFIXES, *NRRD_SUFFIXES)):
        return None
    return lambda p: _reader(p) or []


def get_ome_tiff_reader(path):
    """OME-TIFF on its pixel size (:func:`~napari_attnseg.data.tiff.tiff_layers`): napari's own TIFF reader drops it
    (the layer came at scale 1, so the results, heatmaps and an export were in pixels)."""
    if isinstance(path, list) or not str(path).lower().endswith(OME_SUFFIXES):
        return None
    return lambda p: _tiff_layers(str(p))


def _tiff_layers(path: str) -> list[tuple]:
    from ..data.tiff import tiff_layers

    try:
        return tiff_layers(Path(path), stem(path))
    except (OSError, ValueError) as exc:  # (tifffile's errors are ValueErrors)
        raise InputError(f"{path} cannot be read as an OME-TIFF ({exc}); check that the file is complete.") from None


def get_dicom_reader(path):
    """DICOM files and folders of a series (an RTSTRUCT/SEG: :mod:`.dicom_labels_reader`); any other folder goes to
    napari's own reader (the plugin is the preferred reader of folders once it has been used, see the module
    docstring)."""
    if isinstance(path, list):
        return None
    if (labels := get_labels_reader(path)) is not None:  # an RTSTRUCT/SEG: a Labels layer on its open image
        return labels
    try:
        ok = is_dicom_path(Path(path))
    except OSError:
        ok = False
    if not ok:
        return _napari_folder_reader(path) if Path(path).is_dir() else None
    return lambda p: _reader(p) or []


def _napari_folder_reader(path):
    """napari's builtin reader for a folder that holds no DICOM series (None if it cannot read it either)."""
    try:
        from napari_builtins.io import napari_get_reader
    except ImportError:  # napari without its builtins: nothing to hand the folder to
        return None
    return napari_get_reader(str(path))


def _geometry(meta: dict, layer_scale):
    spacing = meta.get("spacing") or list(layer_scale)
    affine = np.asarray(meta["affine"]) if meta.get("affine") is not None else None
    return tuple(float(s) for s in spacing), affine


def _not_over_an_image(path: str) -> None:
    """Refuse to write a mask over the file an open image was read from (npe2 adds the writer's suffix to a name typed
    without one, after the save dialog asked only about that bare name: 'cells' replaced the image cells.tif)."""
    import threading

    from .save_mask import _same_file, _source_path

    if threading.current_thread() is not threading.main_thread():  # (Save mask's worker: it refused that already)
        return
    viewer = _viewer()
    for layer in list(viewer.layers) if viewer is not None else []:
        src = _source_path(layer)
        if layer._type_string == "image" and src and _same_file(src, path):
            raise OSError(f"{path} is the file the image {layer.name!r} was opened from: the mask was not written over "
                          f"it; save it under another name (e.g. {layer.name} mask{''.join(Path(path).suffixes)}).")


def write_labels_tif(path: str, data, meta: dict) -> list[str]:
    """A mask as TIFF with its pixel size and unit (an ImageJ calibration Fiji reads): the layer's napari ``units``
    when set, mm for a layer placed by a NIfTI/DICOM affine, else no unit; its axes (TYX...), marks and class names."""
    from ..data.tiff import tiff_unit, write_tiff

    _not_over_an_image(path)
    md = meta.get("metadata", {}) or {}
    spacing, affine = _geometry(md, meta.get("scale", (1.0,) * np.ndim(data)))
    units = tuple(str(u) for u in meta.get("units") or ())
    unit = units[-np.ndim(data):] if any(tiff_unit(u) for u in units) else ("mm" if affine is not None else None)
    write_tiff(Path(path), np.asarray(data), spacing[-np.ndim(data):], md.get("reviewed_slices") or None, unit=unit,
               like_meta={"axes": mask_axes(meta, np.shape(data), _viewer())},  # (a time-lapse's TYX stays TYX)
               model_info=model_info_of(md.get("attnseg")), ignore_value=md.get("ignore_value"),  # (and its model)
               class_names=md.get("class_names") or None)  # (the Correct tab's names: NIfTI kept them, TIFF did not)
    return [str(path)]


def _reference_geometry(shape, scale, affine, viewer):
    """Geometry for a layer to be saved, from the open image it belongs to.

    Without an affine: the selected (else most recent) image layer of the same shape and scale with an
    affine. With one: the layer with that affine, for the qform/sform codes it was read with.
    Returns that layer's metadata, or None.
    """
    for layer in _candidate_layers(viewer, ("image", "labels")):
        md = layer.metadata
        if md.get("affine") is None:
            continue
        if affine is None:
            if (tuple(np.shape(layer.data)) == tuple(shape) and len(layer.scale) == len(scale)
                    and np.allclose(layer.scale, scale, rtol=1e-4)):
                return md
        elif md.get("nifti") and np.allclose(np.asarray(md["affine"], float), affine, atol=1e-5):
            return md
    return None


def write_labels_nifti(path: str, data, meta: dict) -> list[str]:
    from ..data.nifti import write_nifti

    data = np.asarray(data)
    md = meta.get("metadata", {}) or {}
    scale = tuple(meta.get("scale", (1.0,) * data.ndim))
    spacing, affine = _geometry(md, scale)
    nifti = md.get("nifti")
    if affine is None or not nifti:
        ref = _reference_geometry(data.shape, scale, affine, _viewer())
        if ref is not None:
            if affine is None:
                affine = np.asarray(ref["affine"], float)
                spacing = tuple(float(s) for s in ref.get("spacing") or spacing)
            nifti = nifti or ref.get("nifti")
    if not str(path).lower().endswith((".nii", ".nii.gz")):  # mask.NII.GZ stays that name
        path = f"{path}.nii.gz"
    _not_over_an_image(path)
    if affine is None:
        _notify(f"{Path(path).name} was written without a patient position: no open image of the same shape and "
                "scale has a NIfTI/DICOM affine, so the file's affine holds only the voxel size (origin 0, no "
                "orientation) and other tools may show it shifted or flipped against the image.")
    write_nifti(Path(path), data, spacing[-data.ndim:], affine, {"nifti": nifti} if nifti else None,
                md.get("reviewed_slices") or None, md.get("class_names") or None,  # the review and names travel with it
                model_info=model_info_of(md.get("attnseg")),  # and the model that made it (attnseg export records it)
                ignore_value=md.get("ignore_value"),  # a reopened export's 'ignore' value (no manifest at the new path)
                unit=tuple(str(u) for u in meta.get("units") or ()) or None)  # (micron; a NIfTI source's own unit wins)
    return [str(path)]
