"""Small helpers shared by the dock widgets: layer placement, notifications, adding result layers."""

from __future__ import annotations

import numpy as np
from napari.utils.notifications import show_error, show_info, show_warning

from ..layers import Placement


def placement_of(layer) -> Placement:
    ndim = layer.ndim
    affine = np.asarray(layer.affine.affine_matrix)
    return Placement(tuple(layer.scale), tuple(layer.translate),
                     None if np.allclose(affine, np.eye(ndim + 1)) else affine)


def notify_error(message: str) -> None:
    show_error(message)


def notify_info(message: str) -> None:
    show_info(message)


def notify_warning(message: str) -> None:
    show_warning(message)


def docked_widgets(viewer) -> list:
    """The inner widgets docked in the viewer's window (napari >= 0.6.2 public API, older private one)."""
    window = getattr(viewer, "window", None)
    if window is None:
        return []
    try:
        found = list(window.dock_widgets.values())
    except AttributeError:  # napari < 0.6.2
        found = [d.widget() for d in getattr(window, "_dock_widgets", {}).values() if hasattr(d, "widget")]
    return [getattr(w, "native", w) for w in found]


def find_docked(viewer, cls):
    """The first docked widget that is an instance of ``cls``, or None."""
    return next((w for w in docked_widgets(viewer) if isinstance(w, cls)), None)


def upsert_layer(viewer, data, kwargs: dict, layer_type: str):
    """Update the layer of that name in place (data and transform), or add it."""
    name = kwargs["name"]
    if name in viewer.layers:
        layer = viewer.layers[name]
        if layer._type_string == layer_type and layer.ndim == np.ndim(data):
            for key in ("scale", "translate", "affine"):
                if key in kwargs:
                    setattr(layer, key, kwargs[key])
            layer.data = data
            if "metadata" in kwargs:
                layer.metadata.update(kwargs["metadata"])
            if "features" in kwargs:
                layer.features = kwargs["features"]
            return layer
        viewer.layers.remove(layer)
    return getattr(viewer, f"add_{layer_type}")(data, **kwargs)
