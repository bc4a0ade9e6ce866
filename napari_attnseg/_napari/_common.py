"""Small helpers shared by the dock widgets: layer placement, notifications, adding result layers,
finding the other panels, and the workers' conventions."""

from __future__ import annotations

import weakref

import numpy as np
from napari.layers import Image, Labels, Points
from napari.utils.notifications import show_error, show_info, show_warning

from ..layers import Placement

LAYER_TYPES = {"image": Image, "labels": Labels, "points": Points}


def placement_of(layer) -> Placement:
    """The image layer's transform. A rotate or shear (napari applies them after the scale and before the
    translate) goes into the affine with the translate, so result layers, scaled in image pixels, turn
    with the image: world = affine @ [rotate shear | translate] @ (scale * pixel)."""
    from napari.utils.transforms import Affine

    ndim = layer.ndim
    affine = np.asarray(layer.affine.affine_matrix, float)
    translate = tuple(float(t) for t in layer.translate)
    turn = np.asarray(Affine(rotate=layer.rotate, shear=layer.shear, ndim=ndim).linear_matrix, float)
    if not np.allclose(turn, np.eye(ndim)):
        inner = np.eye(ndim + 1)
        inner[:ndim, :ndim], inner[:ndim, ndim] = turn, translate
        affine, translate = affine @ inner, (0.0,) * ndim
    return Placement(tuple(layer.scale), translate, None if np.allclose(affine, np.eye(ndim + 1)) else affine,
                     units=_axis_strings(layer, "units"), axis_labels=_axis_strings(layer, "axis_labels"))


def _axis_strings(layer, attr: str) -> tuple[str, ...] | None:
    """The layer's units or axis labels as strings (napari >= 0.6), so the results carry the image's: a mask in
    pixels beside an image in micrometres made napari drop the units ("Inconsistent units across layers")."""
    values = getattr(layer, attr, None)
    return None if values is None else tuple(str(v) for v in values)


def layer_array(layer):
    """The array to segment: the full-resolution level of a multiscale (pyramid) layer, else its data."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


PREVIEW_VOXELS = 4_000_000  # what the panel's hints read on the GUI thread, at most


def preview_array(layer) -> np.ndarray:
    """A small in-memory stand-in for the layer's data, for the hints the panel computes on the GUI thread (the
    model's fit, a display window): the finest pyramid level of at most ``PREVIEW_VOXELS``, or, for a lazy
    (dask, zarr) array bigger than that, its central block, so choosing a layer never reads a whole lazy image
    (the run reads it on its worker)."""
    if getattr(layer, "multiscale", False):
        levels = list(layer.data)
        data = next((lv for lv in levels if int(np.prod(lv.shape)) <= PREVIEW_VOXELS), levels[-1])
    else:
        data = layer.data
    if isinstance(data, np.ndarray) or int(np.prod(data.shape)) <= PREVIEW_VOXELS:
        return np.asarray(data)
    side = int(PREVIEW_VOXELS ** (1 / len(data.shape)))
    box = tuple(slice(max(0, (n - side) // 2), max(0, (n - side) // 2) + side) for n in data.shape)
    return np.asarray(data[box])


_GREY_SOURCES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # grey layer -> the RGB layer it was made of


def colour_source(viewer, layer, model):
    """The RGB picture a grey layer was made of (:func:`grey_layer_of`), when ``model`` reads colours and the picture
    is still open: what a colour model segments after a 1-channel model's run selected the grey layer; else ``layer``."""
    source = _GREY_SOURCES.get(layer) if layer is not None and not getattr(layer, "rgb", False) else None
    if source is not None and model is not None and model.in_channels > 1 and source in viewer.layers:
        return source
    return layer


def grey_layer_of(viewer, layer, model_name: str | None = None):
    """The grey image layer to segment for an RGB layer, added next to it (or the one added before), or None
    (refused, the user told why). A grey picture saved as RGB, or one stain saved in its colour (DAPI in
    blue), holds one grey image; a bright-field H&E / IHC picture gives its hematoxylin (nuclear stain), by
    colour deconvolution (:func:`~napari_attnseg.cohort.inputs.grey_of_colour`): it becomes a layer
    '<name> (<colour or stain>)' that the results, corrections, clicks and export then use, as after Split RGB. One
    made before and still open is taken as it is (computing it again took the GUI thread 4 s on a 6000 x 6000 slide)."""
    if (made := open_grey_of(viewer, layer)) is not None:
        return made
    try:
        found = grey_of_layer(np.asarray(layer_array(layer)), layer.name, model_name)
    except ValueError as exc:
        show_error(str(exc))
        return None
    return add_grey_layer(viewer, layer, found)


def open_grey_of(viewer, layer):
    """The grey layer made of the RGB ``layer`` (:func:`grey_layer_of`) that is still open with its shape, or None."""
    shape = tuple(layer_array(layer).shape[:-1])
    return next((grey for grey, source in list(_GREY_SOURCES.items())
                 if source is layer and grey in viewer.layers and tuple(grey.data.shape) == shape), None)


def grey_of_layer(rgb: np.ndarray, name: str, model_name: str | None = None) -> tuple:
    """The grey of an RGB layer's data, ``(image, channel, note)`` (:func:`~napari_attnseg.cohort.inputs.grey_of_colour`,
    the heavy part of :func:`grey_layer_of`: a worker runs it); ``ValueError`` saying what to do when there is none."""
    from ..cohort.inputs import grey_of_colour

    found = grey_of_colour(rgb)
    if found is None:
        reads = (f"the model {model_name!r} reads one grey channel: choose a model that reads colours, or r" if model_name
                 else "the models take grayscale images. R")
        raise ValueError(f"Layer {name!r} is RGB and its colours hold different images (not one grey image, not a "
                         f"bright-field stain); {reads}ight-click the layer in the layer list > Split RGB, then pick "
                         "the channel layer that shows the objects.")
    return found


def grey_name(name: str, k: int | str) -> str:
    return f"{name} ({k if isinstance(k, str) else ('red', 'green', 'blue')[k]})"


def add_grey_layer(viewer, layer, found: tuple):
    """The grey layer of the RGB ``layer`` whose grey ``found`` is (:func:`grey_of_layer`), added next to it, or the
    open layer of its name and shape; on the GUI thread."""
    data, k, note = found
    if (name := grey_name(layer.name, k)) in viewer.layers and viewer.layers[name].data.shape == np.shape(data) and (
            _GREY_SOURCES.get(viewer.layers[name]) is layer or np.array_equal(viewer.layers[name].data, data)):
        _GREY_SOURCES[viewer.layers[name]] = layer  # (another picture's grey of that name is not this one's)
        return viewer.layers[name]
    grey = viewer.add_image(data, name=name, scale=layer.scale, translate=layer.translate, rotate=layer.rotate,
                            shear=layer.shear, metadata=dict(layer.metadata), units=layer.units,  # (units clash
                            axis_labels=layer.axis_labels)  # across layers: napari stops rendering in them)
    _GREY_SOURCES[grey] = layer
    show_info(f"{layer.name}: {note} It was added as the layer {grey.name!r}, which the results, the corrections "
              "and the export use." + (" To segment one colour instead: right-click the picture > Split RGB."
                                        if isinstance(k, str) else ""))
    return grey


class Undockable:
    """Mixin of a panel (a QWidget): closing its dock (napari's ✕ unparents the widget; nothing is deleted, so
    ``destroyed`` never comes) calls ``panel_undocked``, which stops what would go on unseen: a fine-tuning run
    (a reopened panel could not cancel it), clicks and keys still bound to the viewer."""

    def event(self, e):
        from qtpy.QtCore import QEvent

        if e.type() == QEvent.ParentChange:
            if self.parent() is not None:
                self._docked = True
            elif getattr(self, "_docked", False):
                self._docked = False
                self.panel_undocked()
        return super().event(e)

    def panel_undocked(self) -> None:
        for panel in getattr(self, "panels", lambda: [])():
            panel.panel_undocked()


CHANNEL_LABELS = ("c", "ch", "channel", "channels")


def model_channels_first(layer, model) -> bool:
    """``layer`` is one image of the channels ``model`` takes: a 2D model of C > 1 input channels and a 3D layer
    whose first axis holds C (a 2-stain TIFF for a 2-channel model), run as one 2D image, not as slices."""
    channels = int(getattr(model, "in_channels", 1) or 1)
    return (model is not None and channels > 1 and getattr(model, "spatial_dims", 2) == 2 and layer.ndim == 3
            and not getattr(layer, "rgb", False) and int(layer_array(layer).shape[0]) == channels)


def channel_stack_message(layer, mode: str = "auto", model=None) -> str | None:
    """Why a 3D layer whose first or last axis holds channels must not run as a volume, or None: its axis labels
    say so (``c``, ``channel``), its shape is (y, x, C) with C <= 4 (segmented as slices, each a row of the
    image; unless the user chose the ``mode``), or napari's own reader opened it from a TIFF whose first axis
    holds channels (axes CYX, as an ImageJ hyperstack or OME-TIFF says; the reader drops the axes: an audit got
    49 'nuclei' in a cytoplasm channel, no word)."""
    if layer.ndim != 3 or getattr(layer, "rgb", False) or model_channels_first(layer, model):
        return None
    labels = [str(a).lower() for a in (getattr(layer, "axis_labels", None) or ())]
    shape = tuple(layer_array(layer).shape)
    if labels and labels[0] in CHANNEL_LABELS:
        return (f"Layer {layer.name!r} holds {shape[0]} channels along its first axis (axis label {labels[0]!r}), "
                "not slices of a volume; the models take one channel. Right-click the layer in the layer list > Split "
                "Stack, then pick the layer of the channel that shows the objects.")
    from ..inference.checks import _channel_last

    if (labels and labels[-1] in CHANNEL_LABELS) or (mode == "auto" and _channel_last(shape)):
        return (f"Layer {layer.name!r} looks like an image with {shape[-1]} channels last (shape {shape}), not a volume "
                f"of {shape[0]} slices: a 2D model would segment each of its rows. Split its channels (in napari's "
                f"console: viewer.add_image(viewer.layers[{layer.name!r}].data, channel_axis=-1)), then pick the layer "
                "of the channel that shows the objects. If it really is a volume, choose Mode: slices.")
    axes = tiff_axes(layer)
    if axes is None or len(axes) != 3 or axes[0] != "C":
        return None
    return (f"Layer {layer.name!r} holds {shape[0]} channels (its file's axes are {axes}), not slices of a volume; "
            "the models take one channel. Right-click the layer in the layer list > Split Stack, then pick the "
            "layer of the channel that shows the objects.")


TIME_LABELS = ("t", "time", "frame", "frames")


def tiff_axes(layer) -> str | None:
    """The axes of the TIFF napari's own reader opened ``layer`` from ("CYX", "ZCYX", ...; the reader drops them),
    when the file's first series has the layer's shape; else None."""
    path = getattr(getattr(layer, "source", None), "path", None)
    if not path or not str(path).lower().endswith((".tif", ".tiff")):
        return None
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes, shape = str(series.axes), tuple(series.shape)
    except Exception:  # noqa: BLE001 - an unreadable header: nothing to say about it here
        return None
    return axes if shape == tuple(layer_array(layer).shape) else None


def axes_text(layer) -> str:
    """The layer's axis labels as " (t, z, y, x)", or "" when they are napari's defaults ("-3", "-2", ...)."""
    labels = [str(a) for a in (getattr(layer, "axis_labels", None) or ())]
    return "" if not labels or all(a.lstrip("-").isdigit() for a in labels) else f" ({', '.join(labels)})"


def is_time_axis(layer, axis: int = 0) -> bool:
    labels = getattr(layer, "axis_labels", None) or ()
    return len(labels) > axis and str(labels[axis]).lower() in TIME_LABELS


def dims_message(layer) -> str | None:
    """Why a layer of other than 2 or 3 dimensions (a 3D time-lapse, t-z-y-x) cannot run, and what to do."""
    if layer.ndim in (2, 3):  # (napari's ndim leaves out an RGB layer's colour axis)
        return None
    labels = [str(a).lower() for a in (getattr(layer, "axis_labels", None) or ())]
    channel, shown = next((k for k, a in enumerate(labels) if a in CHANNEL_LABELS), None), axes_text(layer)
    if channel is None and (axes := tiff_axes(layer)) is not None and "C" in axes[1:]:
        channel, shown = axes.index("C"), f" (its file's axes: {axes})"  # an ImageJ hyperstack z-c-y-x: Split Stack
        # would split the slices, each layer still holding both channels, and those ran as volumes of 2 slices
    if channel is not None and layer.ndim == 4:
        return (f"Layer {layer.name!r} has {layer.ndim} dimensions with its channels along axis {channel}{shown}; the "
                f"models take one channel of a 2D image or 3D volume. Split its channels (in napari's console: viewer.add_image(viewer.layers[{layer.name!r}].data, "
                f"channel_axis={channel})), then pick the layer of the channel that shows the objects.")
    what = "time point" if is_time_axis(layer) else "position of its first axis"
    return (f"Layer {layer.name!r} has {layer.ndim} dimensions{axes_text(layer)}; the models take a 2D image or a 3D "
            f"volume. Right-click the layer in the layer list > Split Stack for one layer per {what}, then pick the "
            "one to segment.")


def layer_hint(layer, model) -> str | None:
    """Before a run, the first reason the layer will not run or does not suit ``model`` (the Segment tab's "Before you
    run"): its dimensions, channels, a nuclei model given another stain's channel, a time axis given to a 3D model, or
    an image unlike the model's training data (on :func:`preview_array`: a lazy or pyramid image is not read whole)."""
    if layer is None or layer.rgb:
        return None
    from .model_choice import channel_hint  # (a nuclei model given a file's actin channel, not its DAPI one)
    if (refused := dims_message(layer) or channel_stack_message(layer, model=model) or channel_hint(layer, model)) \
            is not None or model is None:
        return refused
    from ..data.orientation import metadata_codes
    from ..inference.checks import fit_warning
    if model.spatial_dims == 3 and is_time_axis(layer):
        return (f"{layer.name!r} is a time-lapse{axes_text(layer)}: a 3D model takes its frames as the slices of one "
                "volume; a 2D model (Mode: slices) segments each frame on its own.")
    try:
        return fit_warning(getattr(model, "card", None), preview_array(layer), False, metadata_codes(layer.metadata, 3))
    except Exception:  # noqa: BLE001 - a hint only; the run reports problems itself
        return None


def job_controls(run_text: str, maximum: int):
    """A long job's controls: (Run button, Cancel button (disabled), progress bar 0..``maximum``, a status line
    that wraps and takes the panel's whole width)."""
    from magicgui.widgets import Label, ProgressBar, PushButton
    from qtpy.QtWidgets import QSizePolicy

    status = Label(value="")
    status.native.setWordWrap(True)
    status.native.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)
    return (PushButton(text=run_text), PushButton(text="Cancel", enabled=False),
            ProgressBar(min=0, max=maximum, value=0), status)


def is_deleted(widget) -> bool:
    """True once Qt has deleted the widget (its window closed): a worker's late callbacks must not touch it."""
    try:
        from qtpy import sip

        return sip.isdeleted(widget)
    except ImportError:  # PySide
        from qtpy import shiboken

        return not shiboken.isValid(widget)


def notify_error(message: str) -> None:
    show_error(message)


def notify_info(message: str) -> None:
    show_info(message)


def notify_warning(message: str) -> None:
    show_warning(message)


def error_message(exc: BaseException) -> str:
    """One line for the user: the message of an expected error, the type and message of any other."""
    from ..errors import AttnSegError

    if isinstance(exc, AttnSegError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def stop_listening(viewer, *owners) -> None:
    """Disconnect the methods of ``owners`` (a panel, its parts) from the layer list's and every layer's events. A
    dock closed with its ✕ is unparented, not deleted, and stayed connected: once Qt had deleted its widgets, a
    reopened dock's Segment run that kept an edited mask raised "wrapped C/C++ object ... has been deleted"."""
    for group in (viewer.layers.events, *(layer.events for layer in viewer.layers)):
        for name in list(group):
            for owner in owners:
                group[name].disconnect(owner)


def docked_widgets(viewer) -> list:
    """The panels docked in the viewer's window, the tabs of the combined dock included."""
    window = getattr(viewer, "window", None)
    if window is None:
        return []
    try:
        found = list(window.dock_widgets.values())
    except AttributeError:  # napari < 0.6.2
        found = [d.widget() for d in getattr(window, "_dock_widgets", {}).values() if hasattr(d, "widget")]
    out = []
    for w in found:
        w = getattr(w, "native", w)
        out.append(w)
        out.extend(getattr(w, "panels", lambda: [])())
    return out


def tell_docked(viewer, sender, method: str, *args) -> None:
    """``method(*args)`` of each panel docked in ``viewer`` that has it, but ``sender`` (and panels Qt deleted); none
    once the viewer's window is closed."""
    try:
        widgets = docked_widgets(viewer)
    except RuntimeError:  # (the window's Qt objects deleted: the viewer was closed)
        return
    for widget in widgets:
        if widget is not sender and not is_deleted(widget) and (call := getattr(widget, method, None)) is not None:
            call(*args)


def find_docked(viewer, cls):
    """The first docked widget that is an instance of ``cls``, or None."""
    return next((w for w in docked_widgets(viewer) if isinstance(w, cls)), None)


def upsert_layer(viewer, data, kwargs: dict, layer_type: str):
    """Update the layer of that name in place (data and transform), or add it."""
    name = kwargs["name"]
    if name in viewer.layers:
        layer = viewer.layers[name]
        # (a Points layer's data is (N, ndim): its dimensions are the columns, not the array's)
        ndim = np.shape(data)[1] if layer_type == "points" and np.ndim(data) == 2 else np.ndim(data)
        if isinstance(layer, LAYER_TYPES[layer_type]) and layer.ndim == ndim:
            for key in ("scale", "translate", "units", "axis_labels"):
                if key in kwargs:
                    setattr(layer, key, kwargs[key])
            # no affine given: the new placement has none, so an earlier image's rotation must not stay
            layer.affine = kwargs.get("affine", np.eye(layer.ndim + 1))
            layer.data = data
            if "metadata" in kwargs:
                layer.metadata.update(kwargs["metadata"])
            if "features" in kwargs:
                layer.features = kwargs["features"]
            return layer
        viewer.layers.remove(layer)
    if layer_type == "image":  # (results are grey: napari takes a last axis of 3-4, a coarse map 3 voxels deep, for RGB)
        kwargs = {"rgb": False, **kwargs}
    return getattr(viewer, f"add_{layer_type}")(data, **kwargs)


def set_choices(combo, names: list, prefer=None) -> None:
    """Replace a magicgui ComboBox's choices without emitting a change, keeping the value when it
    is still there (else ``prefer``, else the first)."""
    current = combo.value
    with combo.changed.blocked():
        combo.choices = names
        values = [c[1] if isinstance(c, tuple) else c for c in names]
        for candidate in (prefer, current):
            if candidate is not None and candidate in values:
                combo.value = candidate
                break
        else:
            if values:
                combo.value = values[0]
