"""A mask saved as TIFF by this plugin (File > Save), opened again with napari's own TIFF reader.

napari's reader opens every TIFF as an image and drops what the file carries besides its pixels, so a 2D mask
saved on day 1 came back on day 2 as an Image layer: the Correct tab did not list it, and its reviewed slices and
the model that made it were lost (the README says they come back; a NIfTI mask goes through this plugin's reader
and did). The Correct tab replaces such a layer with the Labels layer it was, its marks in its metadata.

A label file an export wrote (``<dataset>/labelsTr/case_0000.nii.gz``, ``<dataset>/labels/case_0000.tif``) carries
no marks itself: its dataset's ``manifest.json`` has them (:func:`exported_marks`). It came back with no reviewed
slices and its unreviewed slices full of the 'ignore' value, listed as a class (audit).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

IGNORE_NAME = "ignore (not reviewed)"  # the 'ignore' value's name in a reopened label file's features
# napari axis labels -> TIFF axes (the plugin's readers label t, z, y, x; napari's own reader labels none: -3, -2, -1)
AXIS_LETTERS = {"t": "T", "time": "T", "frame": "T", "frames": "T", "z": "Z", "depth": "Z", "plane": "Z", "y": "Y",
                "x": "X"}


def _labelled_axes(labels, ndim: int) -> str | None:
    axes = "".join(AXIS_LETTERS.get(str(a).strip().lower(), "?") for a in list(labels or ())[-ndim:])
    return axes if len(axes) == ndim and "?" not in axes and len(set(axes)) == ndim and axes.endswith("YX") else None


def mask_axes(meta: dict, shape: tuple, viewer=None) -> str | None:
    """The axes a mask layer is saved with as TIFF (napari's layer ``meta``: its axis labels, metadata): its own axis
    labels (t, y, x), else those of the image it was predicted on (else an open image of its shape), else the axes of
    the TIFF that image was read from. A time-lapse (TYX) opened with napari's own reader was saved as ZYX: its frames
    came back as z-slices (Fiji: a z-stack, not frames). None: unknown (the writer's ZYX / YX)."""
    from ..data.tiff import tiff_axes

    shape = tuple(shape)
    ndim = len(shape)
    if (axes := _labelled_axes(meta.get("axis_labels"), ndim)) is not None:
        return axes
    md, layers = meta.get("metadata") or {}, list(viewer.layers) if viewer is not None else []
    uid = md.get("attnseg_source_uid")
    images = [lay for lay in layers if lay._type_string == "image" and not lay.rgb and tuple(np.shape(lay.data)) == shape]
    images = [lay for lay in images if uid is not None and lay.unique_id == uid] + images[::-1]
    for image in images[:1]:
        if (axes := _labelled_axes(image.axis_labels, ndim)) is not None:
            return axes
        md = {**md, "source_path": md.get("source_path") or image.metadata.get("source_path")
              or getattr(image.source, "path", None), "series": image.metadata.get("series", 0)}
    path = str(md.get("source_path") or "")
    axes = tiff_axes(path, int(md.get("series") or 0)) if path.lower().endswith((".tif", ".tiff")) else None
    return axes if axes is not None and len(axes) == ndim else None


def reopen_tiff_mask(viewer, *layers) -> bool:
    """Each of ``layers`` (just added, or open before the panel) that is an integer Image read from a TIFF mask of
    this plugin gets a Labels layer in its place with the mask's reviewed slices and model, once napari has finished
    adding it (the other panels see the image added, then the mask); True when one will."""
    return any([_reopen(viewer, layer) for layer in layers])  # (a list: every layer, not up to the first)


def _reopen(viewer, layer) -> bool:
    from napari.layers import Image
    from qtpy.QtCore import QTimer

    from ..data.tiff import mask_marks

    path = str(getattr(getattr(layer, "source", None), "path", None) or "")
    if not isinstance(layer, Image) or layer.rgb or layer.multiscale or not path.lower().endswith((".tif", ".tiff")):
        return False
    if not np.issubdtype(np.dtype(layer.dtype), np.integer):
        return False
    if (marks := mask_marks(path) or exported_marks(path)) is None:  # (an exported TIFF label file: its manifest's)
        return False
    QTimer.singleShot(0, lambda: _replace(viewer, layer, path, marks))
    return True


def _replace(viewer, layer, path: str, marks: dict) -> None:
    from napari.layers import Labels

    from ._common import notify_info

    if layer not in viewer.layers:  # (closed meanwhile)
        return
    meta = {**layer.metadata, "source_path": path, "format": "tiff"}
    if marks.get("reviewed_slices") is not None:
        meta["reviewed_slices"] = list(marks["reviewed_slices"])
    if model := marks.get("model_info"):  # the panels' provenance, as for a NIfTI mask
        meta["attnseg"] = {"model": model.get("model"), "checkpoint": model.get("checkpoint"),
                           "checkpoint_sha256": model.get("weights_sha256")}
    if marks.get("class_names"):  # an exported label file: its dataset's classes; a saved mask: its own
        meta["class_names"] = list(marks["class_names"])
    features = marks.get("features")
    if (ignore := marks.get("ignore_value")) is not None:  # its 'ignore' value (the manifest's, or saved with it)
        meta["ignore_value"] = int(ignore)
        features = features or ignore_features(meta.get("class_names") or [], int(ignore))
    features = features or ({"class": meta["class_names"]} if meta.get("class_names") else None)
    scale, units, calibrated, beside = _calibration(viewer, layer, path)  # (napari's reader opened it at scale 1)
    if calibrated:
        meta["spacing"] = list(scale)
    labels = Labels(np.asarray(layer.data), name=layer.name, scale=scale, translate=layer.translate,
                    units=units, axis_labels=layer.axis_labels, metadata=meta, features=features)
    index = viewer.layers.index(layer)
    viewer.layers.remove(layer)
    viewer.layers.insert(index, labels)
    if marks.get("note"):  # an exported label file
        notify_info(f"{labels.name}: {marks['note']}")
        return
    kept = [w for w, k in (("its reviewed slices", "reviewed_slices"), ("the model that made it", "model_info"),
                           (f"its {IGNORE_NAME!r} value {marks.get('ignore_value')}", "ignore_value"),
                           ("its class names", "class_names")) if k in marks]
    kept += [f"its pixel size {' x '.join(f'{s:g}' for s in scale)}"] if calibrated else []
    said = f"{', '.join(kept[:-1])} and {kept[-1]}" if len(kept) > 1 else "".join(kept)
    notify_info(f"{labels.name}: a mask saved by this plugin, opened as a mask with {said}." + (beside or ""))


def _calibration(viewer, layer, path: str) -> tuple[tuple, tuple, bool, str | None]:
    """The scale and units for a mask napari's TIFF reader opened at scale 1: the pixel size its file records (a mask
    saved from an OME-TIFF or calibrated image came back 1 px apart, beside an image in µm); else the layer's own, and
    so where an open image of its shape is at scale 1 (napari's reader opened it too, without its pixel size: the mask
    of ``attnseg predict`` landed 2 x 0.5 x 0.5 beside its image at 1 x 1 x 1), with a note saying so (4th value)."""
    from ..data.tiff import tiff_calibration

    found = tiff_calibration(path) if all(abs(s - 1.0) < 1e-9 for s in layer.scale) else None
    if found is None or len(found[0]) != layer.ndim:
        return tuple(layer.scale), tuple(layer.units), False, None
    spacing, unit, axes = found
    shape = tuple(np.shape(layer.data))
    for image in [lay for lay in reversed(list(viewer.layers)) if lay is not layer and lay._type_string == "image"
                  and tuple(np.shape(lay.data)) == shape and all(abs(s - 1.0) < 1e-9 for s in lay.scale)][:1]:
        sizes = " x ".join(f"{s:g}" for s in spacing) + (f" {unit}" if unit else "")
        return tuple(layer.scale), tuple(layer.units), False, (
            f" It stays at scale 1 to overlay {image.name!r}, which napari's TIFF reader opened without its pixel size; "
            f"its file records {sizes}: to use it, set the scale of both (the Segment tab gives the console line).")
    unit = {"micron": "um"}.get(str(unit), unit)
    # (a time axis has no length unit)
    units = tuple(unit if a in "ZYX" else "pixel" for a in axes) if unit and len(axes) == layer.ndim else layer.units
    return tuple(spacing), tuple(units), True, None


def exported_marks(path: str) -> dict | None:
    """What the manifest of the dataset says of ``path`` when an export wrote it as a case's label file: its
    ``reviewed_slices``, the dataset's ``class_names`` (the classes only: File > Save and a re-export take them),
    its ``ignore_value`` (File > Save writes it: the new file has no manifest), ``features`` naming each value,
    'ignore' as :data:`IGNORE_NAME` (napari's status bar shows it under the cursor) and a ``note`` for the user;
    None for any other file."""
    from ..correct import format_slice_ranges
    from ..data.manifest import exported_case_of

    if (found := exported_case_of(path)) is None:
        return None
    manifest, case = found
    names = [str(n) for n in case.get("label_names") or manifest.get("label_names") or []]
    ignore, reviewed = case.get("ignore_label"), case.get("reviewed_slices")
    named = ignore_features(names, int(ignore))["class"] if ignore is not None else names
    where = f"the label file of case {case.get('case_id')} in the dataset {Path(path).resolve().parents[1]}"
    note = (f"{where}; its reviewed slices {format_slice_ranges(reviewed)} are marked again (from the dataset's "
            f"manifest.json). The other slices hold {IGNORE_NAME!r} (value {ignore}), never exported or worked on "
            "as a class: paint such a slice (0 or a class) before you mark it reviewed."
            if ignore is not None and reviewed else f"{where}, opened as a mask (exported whole: no 'ignore' slices).")
    return {"reviewed_slices": [int(z) for z in reviewed] if reviewed is not None else None, "class_names": names,
            "ignore_value": int(ignore) if ignore is not None else None, "features": {"class": named} if named else None,
            "note": note}


def ignore_features(names: list[str], ignore: int) -> dict:
    """A Labels layer's ``features`` naming each value up to ``ignore``: the class ``names``, 'class i' for a value
    they leave out, and :data:`IGNORE_NAME` for ``ignore``."""
    names = [str(n) for n in names][:ignore]
    return {"class": names + [f"class {i}" for i in range(len(names), ignore)] + [IGNORE_NAME]}
