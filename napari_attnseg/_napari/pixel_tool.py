"""The Segment tab's "Where does this pixel look?" tool: a click on the image shows the position
attention of that pixel as a layer. A mixin of :class:`~.segment_widget.SegmentWidget` (it uses the
widget's ``viewer``, ``current_layer`` and ``_current_model``)."""

from __future__ import annotations

import numpy as np

from ..errors import AttnSegError
from ._common import notify_error, placement_of, upsert_layer


class PixelTool:
    """Click callback on the chosen image layer and the pixel-attention layer it makes."""

    def _toggle_pixel_tool(self, on: bool) -> None:
        """Attach the click callback to the chosen image layer (and only to it)."""
        previous = getattr(self, "_pixel_layer", None)
        if previous is not None and self._on_click in previous.mouse_drag_callbacks:
            previous.mouse_drag_callbacks.remove(self._on_click)
        self._pixel_layer = None
        layer = self.current_layer()
        if on and layer is not None:
            layer.mouse_drag_callbacks.append(self._on_click)
            self._pixel_layer = layer

    def _on_click(self, layer, event):
        self.show_pixel_attention(layer, layer.world_to_data(event.position))

    def show_pixel_attention(self, layer, data_point):
        from ..inference.pixel import pixel_attention_map
        from ..layers import attention_layer

        model = self._current_model()
        if model is None:
            return None
        image = np.asarray(layer.data)
        point = list(data_point)
        prefix = ()
        if image.ndim == 3:  # the current slice
            z = int(round(point[0]))
            if not 0 <= z < image.shape[0]:  # the viewer's slider beyond this layer (a longer volume is open)
                notify_error(f"Slice {z} is outside {layer.name} (slices 0-{image.shape[0] - 1}); move to one of its "
                             "slices and click again.")
                return None
            image, point, prefix = image[z], point[1:], (z,)
        try:
            amap = pixel_attention_map(model, image, point)
        except AttnSegError as exc:
            notify_error(str(exc))
            return None
        if prefix:
            amap.data = amap.data[None]
            amap.scale = (1.0, *amap.scale)
            amap.translate = (float(prefix[0]), *amap.translate)
        data, kwargs, kind = attention_layer(amap, layer.name, placement_of(layer), {"point": [float(p) for p in data_point]}, True)
        kwargs["name"] = f"{layer.name} pixel attention"
        kwargs["opacity"] = 0.7
        # a softmax row scaled to its maximum: on a fixed 0-1 scale a near-uniform row (0.97-1) was one bright
        # sheet over the image; its own range shows where the pixel looks most
        lo, hi = float(np.min(data)), float(np.max(data))
        kwargs["contrast_limits"] = (lo, hi) if hi > lo else (0.0, 1.0)
        note = (f"pixel attention of the pixel at {', '.join(f'{p:.0f}' for p in data_point)}: where it looks, one value "
                f"per 4 x 4 pixels, scaled to this click's range {lo:.3g}-{hi:.3g} (brightest = where it looks most).")
        shown = upsert_layer(self.viewer, data, kwargs, kind)
        shown.contrast_limits = kwargs["contrast_limits"]  # (an earlier click's layer is updated in place)
        shown.help = note
        if self.viewer.layers.selection.active is shown:  # (napari refreshes its status text on a change of layer only)
            self.viewer.help = note
        return shown
