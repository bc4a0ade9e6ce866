"""npe2 readers (NIfTI, DICOM series) and writers (Labels to TIFF / NIfTI) over the core's data I/O.

Readers return None for anything they cannot read and never raise on a foreign file.

napari's builtin reader also claims ``*.nii``, ``*.nii.gz``, ``*.dcm`` and ``*.dicom`` (without the
geometry, the Hounsfield scaling or the series sorting), so napari would ask which reader to use for
each of them. On first use the plugin records itself as the preferred reader of those patterns in
napari's settings, where the user has not chosen one (:func:`prefer_plugin_readers`).

Folders: npe2 offers a folder to every reader that accepts directories (it does not match folder
names), so with this plugin installed napari would ask which reader to use for any folder. On first
use the plugin records itself for folders (``*/``) and napari for Zarr stores (``*.zarr/``), again only
where the user has not chosen; its folder reader opens DICOM series itself and hands every other folder
to napari's own reader (:func:`get_dicom_reader`), so a folder of TIFFs opens exactly as without the
plugin, with no question. Before the plugin's first use napari still asks once for a folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data import Volume, read_image, write_image
from ..data.dicom import is_dicom_path
from ..display import DEFAULT_CT_WINDOW, default_window
from ..errors import AttnSegError

PLUGIN = "napari-attnseg"
# patterns napari's builtins claim too, which only this plugin reads with their geometry
PREFERRED_PATTERNS = ("*.nii", "*.nii.gz", "*.dcm", "*.DCM", "*.dicom", "*.ima", "*.IMA")


# every folder comes to this plugin's folder reader (DICOM series; any other folder is handed to napari's
# own reader), so napari does not ask for each folder; a Zarr store (a folder named *.zarr) stays napari's
FOLDER_PATTERN = "*/"
NAPARI_PATTERNS = ("*.zarr/",)


def prefer_plugin_readers(settings=None) -> list[str]:
    """Make this plugin napari's reader for NIfTI and DICOM files (and napari's own for Zarr folders),
    never overriding a user's choice.

    Returns the patterns added to ``settings.plugins.extension2reader``.
    """
    if settings is None:
        from napari.settings import get_settings

        settings = get_settings()
    current = dict(settings.plugins.extension2reader)
    wanted = {**dict.fromkeys((*PREFERRED_PATTERNS, FOLDER_PATTERN), PLUGIN),
              **dict.fromkeys(NAPARI_PATTERNS, "napari")}
    added = {p: r for p, r in wanted.items() if p not in current}
    if added:
        settings.plugins.extension2reader = {**current, **added}
    return list(added)


def activate(context=None) -> None:
    """npe2 ``on_activate``: runs once per session, when the plugin is first used."""
    try:
        prefer_plugin_readers()
    except Exception:  # settings unavailable (e.g. read-only): napari keeps asking, nothing breaks
        pass


def _layer(volume: Volume, path: str) -> list[tuple]:
    meta = {"source_path": path, "spacing": list(volume.spacing), "format": volume.meta.get("format")}
    if volume.affine is not None:
        meta["affine"] = np.asarray(volume.affine).tolist()
    kwargs = {"name": Path(path.rstrip("/")).name.split(".")[0], "scale": volume.spacing, "metadata": meta}
    window = default_window(volume.data)
    if window is not None:  # a CT in Hounsfield units opens in the soft-tissue window, not -1024..3071
        kwargs["contrast_limits"] = window
        meta["attnseg_window"] = DEFAULT_CT_WINDOW
    return [(volume.data, kwargs, "image")]


def _reader(path):
    try:
        return _layer(read_image(path), str(path))
    except (AttnSegError, OSError, ValueError):
        return None


def get_nifti_reader(path):
    if isinstance(path, list) or not str(path).lower().endswith((".nii", ".nii.gz")):
        return None
    return lambda p: _reader(p) or []


def get_dicom_reader(path):
    """DICOM files and folders of a series; any other folder goes to napari's own reader (the plugin is
    the preferred reader of folders once it has been used, see the module docstring)."""
    if isinstance(path, list):
        return None
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


def get_prediction_reader(path):
    """``<stem>_predict.json`` from ``attnseg predict``: image, mask, probability and attention layers."""
    from ..results import is_record, record_layers

    if isinstance(path, list) or not is_record(path):
        return None
    return record_layers  # errors name the record and the missing file; napari shows them


def _geometry(meta: dict, layer_scale):
    spacing = meta.get("spacing") or list(layer_scale)
    affine = np.asarray(meta["affine"]) if meta.get("affine") is not None else None
    return tuple(float(s) for s in spacing), affine


def write_labels_tif(path: str, data, meta: dict) -> list[str]:
    spacing, _ = _geometry(meta.get("metadata", {}), meta.get("scale", (1.0,) * np.ndim(data)))
    return [str(write_image(path, np.asarray(data), spacing=spacing[-np.ndim(data):]))]


def write_labels_nifti(path: str, data, meta: dict) -> list[str]:
    spacing, affine = _geometry(meta.get("metadata", {}), meta.get("scale", (1.0,) * np.ndim(data)))
    if not str(path).endswith((".nii", ".nii.gz")):
        path = f"{path}.nii.gz"
    return [str(write_image(path, np.asarray(data), spacing=spacing[-np.ndim(data):], affine=affine))]
