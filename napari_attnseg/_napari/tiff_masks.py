"""A mask saved as TIFF by this plugin (File > Save), opened again with napari's own TIFF reader.

napari's reader opens every TIFF as an image and drops what the file carries besides its pixels, so a 2D mask
saved on day 1 came back on day 2 as an Image layer: the Correct tab did not list it, and its reviewed slices and
the model that made it were lost (the README says they come back; a NIfTI mask goes through this plugin's reader
and did). The Correct tab replaces such a layer with the Labels layer it was, its marks in its metadata.
"""

from __future__ import annotations

import numpy as np


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
    if not np.issubdtype(np.dtype(layer.dtype), np.integer) or (marks := mask_marks(path)) is None:
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
    labels = Labels(np.asarray(layer.data), name=layer.name, scale=layer.scale, translate=layer.translate,
                    units=layer.units, axis_labels=layer.axis_labels, metadata=meta)
    index = viewer.layers.index(layer)
    viewer.layers.remove(layer)
    viewer.layers.insert(index, labels)
    kept = [w for w, k in (("its reviewed slices", "reviewed_slices"), ("the model that made it", "model_info"))
            if k in marks]
    notify_info(f"{labels.name}: a mask saved by this plugin, opened as a mask with {' and '.join(kept)}.")
