"""The Correct panel's mask helpers (fill holes, keep objects, remove small ones, open/close, interpolate
between slices): each is a core function of :mod:`napari_attnseg.correct` run on the mask, or on the slice on
screen, and painted as one undoable step. :class:`MaskHelpers` is a mixin of the Correct panel."""

from __future__ import annotations

import numpy as np
from napari.qt.threading import thread_worker

from .. import correct
from ..errors import AttnSegError
from ._common import error_message, notify_error

BACKGROUND_VOXELS = 4_000_000  # helpers on larger whole volumes run in a worker


class MaskHelpers:
    """Needs the Correct panel's ``viewer``, ``labels_layer()``, ``_reviewed()``, ``_axial_view()``,
    ``_update_info()`` and its form (``class_combo``, ``slice_only``, ``size_spin``, ``radius_spin``,
    ``stats_label``)."""

    def _classes(self):
        return None if not self.class_combo.value else [self.class_combo.value]

    def _current_slice(self, layer) -> int:
        z = int(round(layer.world_to_data(self.viewer.dims.point)[0]))
        return min(max(z, 0), layer.data.shape[0] - 1)

    def _apply(self, fn, *args, whole_volume: bool = False) -> None:
        """Run a core helper on the mask (or on the slice on screen) and paint the difference."""
        layer = self.labels_layer()
        if layer is None:
            return
        data = np.asarray(layer.data)
        z = self._current_slice(layer) if (layer.ndim == 3 and self.slice_only.value and not whole_volume) else None
        if z is not None and not self._axial_view(layer):
            notify_error(f"'Slice on screen only' works on the axial slice shown, and the view of {layer.name} shows "
                         "none (a 3D or rolled view): go back to the 2D view with the slices on the slider, or untick it.")
            return
        if z is None and data.size > BACKGROUND_VOXELS:  # a whole large volume: off the event loop
            return self._apply_in_background(layer, fn, args)
        try:
            new = fn(data if z is None else data[z], *args)
        except AttnSegError as exc:
            notify_error(f"{layer.name}: {exc}")
            return
        self._paint(layer, data if z is None else data[z], new, z)

    def _paint(self, layer, old: np.ndarray, new: np.ndarray, z: int | None) -> None:
        changed = np.nonzero(new != old)
        values = new[changed]
        if z is not None:
            changed = (np.full_like(changed[0], z), *changed)
        if changed[0].size:
            # paint through the layer's own history so napari's undo (Ctrl+Z) reverts the step
            layer.data_setitem(changed, values)
        self._update_info()

    def _apply_in_background(self, layer, fn, args):
        """A helper on a whole large volume runs in a worker (a 48 x 512 x 512 fill took 1.5-2 s on the event
        loop); its change is painted only if the mask was not edited meanwhile."""
        before = np.array(layer.data)  # the snapshot the helper works on (and the check for edits meanwhile)
        self.stats_label.value = f"{layer.name}: working on the whole volume..."  # (_update_info replaces it)

        @thread_worker(start_thread=False, ignore_errors=True)
        def work():
            try:
                return fn(before, *args)
            except AttnSegError as exc:
                return exc

        def done(new):
            if isinstance(new, AttnSegError):
                notify_error(f"{layer.name}: {new}")
            elif not np.array_equal(np.asarray(layer.data), before):
                notify_error(f"{layer.name} was edited while the helper ran; nothing was changed. Run it again.")
            else:
                self._paint(layer, before, new, None)
            self._update_info()

        worker = work()
        worker.returned.connect(done)
        worker.errored.connect(lambda exc: notify_error(f"{layer.name}: unexpected error ({error_message(exc)})."))
        worker.start()
        return worker

    def fill_holes(self):
        self._apply(correct.fill_holes, self._classes())

    def keep_largest(self):
        self._apply(correct.keep_largest_component, self._classes())

    def keep_at_cursor(self, position=None):
        """Keep the object under the mouse (``position``: world coordinates, default the cursor's)."""
        layer = self.labels_layer()
        if layer is None:
            return
        world = self.viewer.cursor.position if position is None else position
        point = np.asarray(layer.world_to_data(world), float)[-layer.ndim:]
        if layer.ndim == 3 and self.slice_only.value:
            point = point[1:]  # _apply hands the helper the slice on screen
        self._apply(correct.keep_component_at, point)

    def remove_small(self):
        self._apply(correct.remove_small_objects, self.size_spin.value, self._classes())

    def open_(self):
        self._apply(correct.binary_open, self.radius_spin.value, self._classes())

    def close_(self):
        self._apply(correct.binary_close, self.radius_spin.value, self._classes())

    def interpolate(self):
        layer = self.labels_layer()
        if layer is not None and layer.ndim != 3:
            notify_error(f"{layer.name} is 2D; interpolation between slices needs a volume.")
            return
        # the reviewed slices are annotations too (an empty one says "nothing here") and are never written
        reviewed = self._reviewed(layer) if layer is not None else []
        self._apply(lambda data, classes: correct.interpolate_slices(data, None, classes, reviewed=reviewed),
                    self._classes(), whole_volume=True)
