"""napari's reader of a ``<stem>_predict.json`` record (``attnseg predict``): the image, mask, probability and
heatmaps (:func:`napari_attnseg.results_layers.record_layers`), placed as the Segment panel places a run's layers,
and, like those, following a placement set on the image later (:func:`.prompt_view.follow`) with their notes saying
the heatmaps' new world sizes (:func:`.result_layers.keep_help`). They had kept the image's placement at opening:
the image's pixel size typed afterwards left the mask and maps at the old size."""

from __future__ import annotations

import uuid
import weakref

import numpy as np

READ_KEY = "attnseg_record_read"  # in a read's layer tuples until napari adds them: which read (and the image of it)
_IMAGES: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # read token -> the image layer it added


def get_prediction_reader(path):
    """``<stem>_predict.json`` from ``attnseg predict``: image, mask, probability and attention layers."""
    from ..results import is_record, record_layers

    if isinstance(path, list) or not is_record(path):
        return None

    def read(p):
        from .io_hooks import _viewer

        layers = record_layers(p)  # errors name the record and the missing file; napari shows them
        # napari adds them in this order, each on top: the mask last, above its heatmaps, as the Segment panel
        # shows a run's (a heatmap at opacity 0.8 over the mask tinted it where the model looked: on the object)
        layers = [t for t in layers if t[2] != "labels"] + [t for t in layers if t[2] == "labels"]
        if not any("level" in ((kw.get("metadata") or {}).get("attnseg") or {}) for _, kw, _ in layers):
            from ._common import notify_info  # (heatmaps are what this plugin shows: say why there are none)

            notify_info(f"{p}: this run saved no attention heatmaps (attnseg predict saves them with --attention, for "
                        "a model with attention gates); to see where the model looked, run it again with --attention, "
                        "or open the image and Run it in the Segment panel.")
        if saved := _saved_since(p, layers):
            from ._common import notify_info

            notify_info(saved)
        token = uuid.uuid4().hex
        for _data, kwargs, _kind in layers:  # (napari adds them in this order: the image first)
            kwargs["metadata"] = {**(kwargs.get("metadata") or {}), READ_KEY: token}
        _hook(_viewer())
        return layers

    return read


def _saved_since(record, layers: list) -> str:
    """A note naming the masks Save mask wrote from this record's mask since the run (its proposal: '<mask name>.nii.gz'
    or '-2', '-3'... beside the image's file, a mask this plugin wrote, newer than the record): the record reopens the
    prediction as `attnseg predict` wrote it, and day 2 met the uncorrected mask with 'Reviewed slices: none' and no
    word of day 1's corrected file. '' when there is none."""
    import glob
    from pathlib import Path

    from .save_mask import NIFTI_SUFFIXES, TIFF_SUFFIXES, plugin_mask

    image = next((kw for _, kw, kind in layers if kind == "image" and "attnseg" not in (kw.get("metadata") or {})), None)
    mask = next((kw for _, kw, kind in layers if kind == "labels"), None)
    source = ((image or {}).get("metadata") or {}).get("source_path")
    if mask is None or not source:
        return ""
    since = Path(record).stat().st_mtime
    found = [f for f in sorted(Path(source).parent.glob(glob.escape(mask["name"]) + "*"))
             if f.name.lower().endswith(NIFTI_SUFFIXES + TIFF_SUFFIXES) and f.stat().st_mtime > since and plugin_mask(f)]
    if not found:
        return ""
    names = ", ".join(f.name for f in found)
    return (f"{Path(record).name} shows the mask as `attnseg predict` wrote it; {names} in {Path(source).parent} was saved "
            f"from it since (Save mask): to go on with those corrections and reviewed slices, open "
            f"{'it' if len(found) == 1 else 'the newest'} with File > Open instead of this mask.")


def follow_when_added(viewer, kwargs: dict, image) -> None:
    """The layer napari adds from a reader's layer ``kwargs`` (once the reader has returned) follows ``image``'s
    placement as a record's results follow theirs (the DICOM RTSTRUCT/SEG reader's Labels layer on its image)."""
    token = uuid.uuid4().hex
    _IMAGES[token] = image
    kwargs["metadata"] = {**(kwargs.get("metadata") or {}), READ_KEY: token}
    _hook(viewer)


def _hook(viewer) -> None:
    if viewer is not None and viewer not in _HOOKED:
        _HOOKED.add(viewer)
        viewer.layers.events.inserted.connect(lambda event: _added(viewer, event.value))


_HOOKED: weakref.WeakSet = weakref.WeakSet()  # the viewers whose added layers are looked at


def _added(viewer, layer) -> None:
    """A layer of a record's read added: the image is remembered; a result (or a layer given to
    :func:`follow_when_added`) follows it and a heatmap gets its status-bar note (a reader's layer data cannot set
    ``layer.help``: reopened maps said only "use <2> for transform")."""
    from .prompt_view import follow
    from .result_layers import keep_help

    metadata = getattr(layer, "metadata", None)
    token = metadata.pop(READ_KEY, None) if isinstance(metadata, dict) else None
    if token is None:
        return
    image = _IMAGES.get(token)
    if image is None and "attnseg" not in metadata:  # the record's image (its results carry their provenance)
        _IMAGES[token] = layer
        return
    if image is not None and image in viewer.layers and image.ndim == layer.ndim:
        scale = np.asarray(layer.scale, float) / np.asarray(image.scale, float)
        translate = (np.asarray(layer.translate, float) - np.asarray(image.translate, float)) / np.asarray(image.scale, float)
        follow(layer, image, scale, translate)
    if (metadata.get("attnseg") or {}).get("help") and hasattr(layer, "contrast_limits"):
        keep_help(viewer, layer)
