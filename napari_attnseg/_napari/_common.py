"""Small helpers shared by the dock widgets: layer placement, notifications, adding result layers,
finding the other panels, and the workers' conventions."""

from __future__ import annotations

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
    return Placement(tuple(layer.scale), translate, None if np.allclose(affine, np.eye(ndim + 1)) else affine)


def grey_layer_of(viewer, layer):
    """The grey image layer to segment for an RGB layer, added next to it (or the one added before), or None
    (refused, the user told why). A grey picture saved as RGB, or one stain saved in its colour (DAPI in
    blue), holds one grey image (:func:`~napari_attnseg.cohort.inputs.grey_sample`): it becomes a layer
    '<name> (<colour>)' that the results, corrections, clicks and export then use, as after Split RGB."""
    from ..cohort.inputs import grey_sample

    found = grey_sample(np.asarray(layer.data))
    if found is None:
        show_error(f"Layer {layer.name!r} is RGB and its colours hold different images; the models take grayscale "
                   "images. Right-click the layer in the layer list > Split RGB, then pick the channel layer that "
                   "shows the objects.")
        return None
    k, note = found
    name = f"{layer.name} ({('red', 'green', 'blue')[k]})"
    if name in viewer.layers and viewer.layers[name].data.shape == layer.data.shape[:-1]:
        return viewer.layers[name]
    grey = viewer.add_image(np.asarray(layer.data)[..., k], name=name, scale=layer.scale, translate=layer.translate,
                            rotate=layer.rotate, shear=layer.shear, metadata=dict(layer.metadata))
    show_info(f"{layer.name}: {note} It was added as the layer {grey.name!r}, which the results, the corrections "
              "and the export use.")
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


def channel_stack_message(layer) -> str | None:
    """Why a layer opened by napari's own reader from a TIFF whose first axis holds channels (axes CYX, as an
    ImageJ hyperstack or OME-TIFF says) must not run as a volume, or None. napari's reader drops the axes:
    the channels would be segmented as slices (an audit got 49 'nuclei' in a cytoplasm channel, no word)."""
    path = getattr(getattr(layer, "source", None), "path", None)
    if not path or not str(path).lower().endswith((".tif", ".tiff")) or layer.ndim != 3:
        return None
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes, shape = str(series.axes), tuple(series.shape)
    except Exception:  # noqa: BLE001 - an unreadable header: nothing to say about it here
        return None
    if len(axes) != 3 or axes[0] != "C" or shape != tuple(layer.data.shape):
        return None
    return (f"Layer {layer.name!r} holds {shape[0]} channels (its file's axes are {axes}), not slices of a volume; "
            "the models take one channel. Right-click the layer in the layer list > Split Stack, then pick the "
            "layer of the channel that shows the objects.")


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


def find_docked(viewer, cls):
    """The first docked widget that is an instance of ``cls``, or None."""
    return next((w for w in docked_widgets(viewer) if isinstance(w, cls)), None)


def upsert_layer(viewer, data, kwargs: dict, layer_type: str):
    """Update the layer of that name in place (data and transform), or add it."""
    name = kwargs["name"]
    if name in viewer.layers:
        layer = viewer.layers[name]
        if isinstance(layer, LAYER_TYPES[layer_type]) and layer.ndim == np.ndim(data):
            for key in ("scale", "translate"):
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
