"""The Correct panel's mask helpers (fill holes, keep objects, remove small ones, open/close, interpolate
between slices): each is a core function of :mod:`napari_attnseg.correct` run on the mask, or on the slice on
screen, and painted as one undoable step. :class:`MaskHelpers` is a mixin of the Correct panel."""

from __future__ import annotations

import numpy as np

from .. import correct
from ..errors import AttnSegError
from ._common import error_message, notify_error, notify_info
from .correct_stats import BACKGROUND_VOXELS, LiveStats, mask_ignore  # noqa: F401 (the panel and Next take them from here)
from .job_pool import thread_worker


class MaskHelpers:
    """Needs the Correct panel's ``viewer``, ``labels_layer()``, ``_reviewed()``, ``_axial_view()``,
    ``_update_info()`` and its form (``class_combo``, ``slice_only``, ``size_spin``, ``radius_spin``,
    ``stats_label``)."""

    def _ignore(self) -> int | None:
        """The 'ignore' value of the mask's file when an export wrote it (the table's length: the classes lie below):
        the layer's ``metadata['ignore_value']`` (saved with it by File > Save), else its dataset's manifest."""
        name = self.labels_combo.value
        return mask_ignore(self.viewer.layers[name]) if name in self.viewer.layers else None

    def _classes(self):
        """The class chosen (None: every class), never the 'ignore' value of a label file an export wrote (a mask
        reopened from a dataset: interpolation filled 'ignore' into its reviewed slices as a class: audit)."""
        chosen = [self.class_combo.value] if self.class_combo.value else None
        if (ignore := self._ignore()) is None:
            return chosen
        return [c for c in chosen or [*range(1, ignore), *(c for c in self.class_combo.choices if c > ignore)]
                if c != ignore]

    def _current_slice(self, layer) -> int:
        z = int(round(layer.world_to_data(self.viewer.dims.point)[0]))
        return min(max(z, 0), layer.data.shape[0] - 1)

    def _apply(self, fn, *args, whole_volume: bool = False, unchanged: str = "", note: bool = False) -> None:
        """Run a core helper on the mask (or on the slice on screen) and paint the difference; ``unchanged``: why
        a helper may change nothing (said, with the layer's name, when it does); ``note``: ``fn.note(layer)`` is
        said once its change is painted."""
        self._unchanged, self._note = unchanged, (fn if note else None)
        layer = self.labels_layer()
        if layer is None:
            return
        data = np.asarray(layer.data)
        z = self._current_slice(layer) if (layer.ndim == 3 and self.slice_only.value and not whole_volume) else None
        if z is not None and not self._axial_view(layer):
            notify_error(f"'Current slice only' works on the axial slice shown, and the view of {layer.name} shows "
                         "none (a 3D or rolled view): go back to the 2D view with the slices on the slider, or untick it.")
            return
        if z is None and data.size > BACKGROUND_VOXELS:  # a whole large volume: off the event loop
            # one helper at a time per mask: a second one's change made the first one's result be dropped as
            # 'edited while the helper ran', which blamed the user (big-2D audit: two helpers pressed quickly)
            if layer in getattr(self, "_helper_running", ()):
                notify_info(f"{layer.name}: a helper is still working on it; press this one again when it is done.")
                return None
            return self._apply_in_background(layer, fn, args)
        try:
            new = fn(data if z is None else data[z], *args)
        except AttnSegError as exc:
            notify_error(f"{layer.name}: {exc}")
            return
        self._paint(layer, *_difference(data if z is None else data[z], new, z))

    def _paint(self, layer, changed: tuple, values: np.ndarray) -> None:
        """Write a helper's change (:func:`_difference`: the voxels it changed and their new values) as one step."""
        text = getattr(getattr(self, "_note", None), "note", lambda _: "")(layer)
        if changed[0].size:
            # paint through the layer's own history so napari's undo (Ctrl+Z) reverts the step; napari's Ctrl+Z acts
            layer.data_setitem(changed, values)  # on the selected layer: after a run that was the image (the key
            if layer in self.viewer.layers:  # did nothing, silently; README walkthrough audit)
                self.viewer.layers.selection.active = layer
        else:  # a helper that silently did nothing left the user guessing (audit: interpolation); its note, when it
            why = getattr(self, "_unchanged", "")  # has one, says why better than the general reason
            notify_info(f"{layer.name}: nothing changed.{' ' + why if why and not text else ''}")
        if text:
            notify_info(text)
        self._update_info()

    def _apply_in_background(self, layer, fn, args):
        """A helper on a whole large volume runs in a worker (a 48 x 512 x 512 fill took 1.5-2 s on the event
        loop), and so do the snapshot it works on and the comparison that finds what it changed (on a 300 x 512 x
        512 CT they held the event loop 0.1 s when pressed and 0.25 s when painted); its change is painted only if
        the mask was not edited meanwhile (a brush stroke during the snapshot's copy makes it differ: dropped too)."""
        data = layer.data
        said = self._note, self._unchanged  # (a helper on another mask meanwhile replaces the panel's)
        self.stats_label.value = f"{layer.name}: working on the whole volume..."  # (_update_info replaces it)

        @thread_worker(start_thread=False, ignore_errors=True)
        def work():
            before = np.array(data)  # the snapshot the helper works on (and the check for edits meanwhile)
            try:
                return before, _difference(before, fn(before, *args))
            except AttnSegError as exc:
                return exc

        def done(found):
            if isinstance(found, AttnSegError):
                notify_error(f"{layer.name}: {found}")
            elif not np.array_equal(np.asarray(layer.data), found[0]):
                notify_error(f"{layer.name} was edited while the helper ran; nothing was changed. Run it again.")
            else:
                self._note, self._unchanged = said
                self._paint(layer, *found[1])
            self._update_info()

        worker = work()
        running = self.__dict__.setdefault("_helper_running", [])
        running.append(layer)
        worker.returned.connect(done)
        worker.errored.connect(lambda exc: notify_error(f"{layer.name}: unexpected error ({error_message(exc)})."))
        worker.finished.connect(lambda: layer in running and running.remove(layer))
        worker.start()
        return worker

    def _whole(self, fn, what: str, *args) -> None:
        """Spare the reviewed slices off screen, and say which ('Largest component' erased a lesion on one: audit)."""
        layer = self.labels_layer()
        if layer is None:
            return
        if layer.ndim == 3 and not self.slice_only.value:
            fn = _PerFrame(fn) if self._time_lapse(layer) else fn  # (a time-lapse's objects do not connect in time)
            shown = self._current_slice(layer) if self._axial_view(layer) else None  # (a 3D view shows no slice)
            spare = [s for s in self._reviewed(layer) if s != shown and 0 <= s < layer.data.shape[0]]
            fn = _Spare(fn, spare, shown, what) if spare else fn
        self._apply(fn, *args, note=isinstance(fn, _Spare))

    def _time_lapse(self, layer) -> bool:
        """Whether the 3D mask ``layer`` is a time-lapse (t, y, x), as its TIFF export names its axes."""
        from .tiff_masks import mask_axes

        meta = {"axis_labels": layer.axis_labels, "metadata": layer.metadata}
        return str(mask_axes(meta, layer.data.shape, self.viewer) or "").startswith("T")

    def fill_holes(self):
        self._whole(correct.fill_holes, "'Fill holes'", self._classes())

    def keep_largest(self):
        self._whole(correct.keep_largest_component, "'Largest component'", self._classes())

    def keep_at_cursor(self, position=None):
        """Keep the object under the mouse (``position``: world coordinates, default the cursor's)."""
        layer = self.labels_layer()
        if layer is None:
            return
        world = self.viewer.cursor.position if position is None else position
        point = np.asarray(layer.world_to_data(world), float)[-layer.ndim:]
        idx = tuple(int(round(p)) for p in point)
        value = int(layer.data[idx]) if all(0 <= i < n for i, n in zip(idx, layer.data.shape)) else 0
        why = (f"K keeps the object under the cursor and removes the other objects of its label value ({value}), and "
               f"{layer.name} holds no other object of value {value}{' on this slice' if layer.ndim == 3 and self.slice_only.value else ''}"
               ". In an instance mask (a value per object, e.g. nuclei) every object has its own value: erase the "
               "others, or use 'Remove < N voxels'.")  # (K on a nucleus said 'nothing changed.' alone: audit)
        if value and value == self._ignore():  # (K kept the unreviewed slices' 'ignore' as an object: audit)
            return notify_error(f"{layer.name}: the cursor is on its 'ignore' value {value} (slices nobody reviewed, "
                                "from its export), not on an object: point at the object to keep.")
        if layer.ndim == 3 and self.slice_only.value:
            point = point[1:]  # _apply hands the helper the slice on screen
        elif layer.ndim == 3:  # the whole volume, but a reviewed slice is changed only while on screen
            spare = [s for s in self._reviewed(layer) if s != int(round(point[0])) and 0 <= s < layer.data.shape[0]]
            keep = _KeepSparing(correct.keep_component_at, spare, int(round(point[0])), "K")
            return self._apply(keep, point, note=True, unchanged=why)
        self._apply(correct.keep_component_at, point, unchanged=why)

    def remove_small(self):
        self._whole(correct.remove_small_objects, f"'Remove < {self.size_spin.value} {self.size_unit.value}'", self.size_spin.value,
                    self._classes())

    def open_(self):
        self._whole(_InMillimetres(correct.binary_open, self._scale()), "'Open'", self.radius_spin.value,
                    self._classes())

    def close_(self):
        self._whole(_InMillimetres(correct.binary_close, self._scale()), "'Close'", self.radius_spin.value,
                    self._classes())

    def _scale(self) -> tuple[float, ...] | None:
        layer = self.labels_layer()
        return None if layer is None else tuple(abs(float(v)) or 1.0 for v in layer.scale)

    def interpolate(self):
        layer = self.labels_layer()
        if layer is not None and layer.ndim != 3:
            notify_error(f"{layer.name} is 2D; interpolation between slices needs a volume.")
            return
        # the reviewed slices are annotations too (an empty one says "nothing here") and are never written
        reviewed = self._reviewed(layer) if layer is not None else []
        why = ("Interpolation fills only the background of slices lying between annotated ones, and every slice "
               "that holds the class counts as annotated (the model's prediction too): erase the object on the "
               "slices to fill, then interpolate.")
        if reviewed:  # a reviewed empty slice between two drawn ones stops the shape there ("nothing here")
            why += (f" The reviewed slices ({correct.format_slice_ranges(reviewed)}) count as annotated too, empty or "
                    "not, and are never written: the shape tapers off to nothing halfway towards an empty one. Draw "
                    "the object on a reviewed slice, or unmark it (Shift+R), to fill across it.")
        if layer is not None and not np.asarray(layer.data).any():
            why = (f"{layer.name} is empty: interpolation fills the slices between annotated ones. Draw the object "
                   "on two slices (or more) first, then interpolate.")
        shown = None  # 'Current slice only': the shapes come from the whole volume, only the slice on screen is filled
        if layer is not None and self.slice_only.value:  # (it filled every slice between, unasked: audit)
            if not self._axial_view(layer):
                notify_error(f"'Current slice only' fills the axial slice shown, and the view of {layer.name} shows "
                             "none (a 3D or rolled view): go back to the 2D view with the slices on the slider, or "
                             "untick it.")
                return
            shown = self._current_slice(layer)
            why += (f" 'Current slice only' is ticked: only slice {shown} (on screen) is filled; untick it to fill "
                    "every slice between the annotated ones.")
        self._apply(_Interpolation(reviewed, shown), self._classes(), whole_volume=True, unchanged=why, note=True)


def _difference(old: np.ndarray, new: np.ndarray, z: int | None = None) -> tuple[tuple, np.ndarray]:
    """The voxels a helper changed (``z``: it worked on that slice of the volume) and their new values."""
    changed = np.nonzero(new != old)
    values = new[changed]
    if z is not None:
        changed = (np.full_like(changed[0], z), *changed)
    return changed, values


class _Interpolation:
    """Interpolation between the annotated slices of the whole volume (the reviewed slices never written); with
    ``shown``, only that slice's change is kept. :meth:`note` names the slice pairs between which nothing was filled
    because their shapes do not overlap (shape interpolation blends them in place: it does not move them)."""

    def __init__(self, reviewed: list[int], shown: int | None = None):
        self.reviewed, self.shown, self.apart = reviewed, shown, []

    def __call__(self, data: np.ndarray, classes) -> np.ndarray:
        out = correct.interpolate_slices(data, None, classes, reviewed=self.reviewed)
        if self.shown is not None:  # (only the slice on screen changes)
            out = np.concatenate([data[:self.shown], out[self.shown:self.shown + 1], data[self.shown + 1:]])
        self.apart = [(c, a, b) for c, a, b in correct.interpolation_gaps(data, out, classes, reviewed=self.reviewed)
                      if self.shown is None or a < self.shown < b]
        return out

    def note(self, layer) -> str:
        if not self.apart:
            return ""
        pairs = ", ".join(f"{a} and {b}" + (f" (class {c})" if c != 1 else "") for c, a, b in self.apart)
        return (f"{layer.name}: nothing was filled between slices {pairs}: the object's shapes there do not overlap, and "
                "interpolation blends the shapes where they are (it does not move them). Draw the object on a slice "
                "in between, then interpolate again.")


class _InMillimetres:
    """Open / close with a ball round in the layer's units (its scale), ``radius`` pixels of the finest axis: on a
    CT of 5 mm slices and 0.57 mm pixels a ball of voxels reached 2 slices up and down and *open* erased a tumour
    drawn on 3 slices (API audit); it is now a disk in the slice there."""

    def __init__(self, fn, scale: tuple[float, ...] | None):
        self.fn, self.scale = fn, scale

    def __call__(self, data: np.ndarray, radius: int, classes) -> np.ndarray:
        spacing = None if self.scale is None else self.scale[-data.ndim:]  # (the slice on screen: its own axes)
        return self.fn(data, radius, classes, spacing=spacing)


class _PerFrame:
    """``fn`` on each frame of a time-lapse (t, y, x) alone: as one volume, a nucleus of 34 px on 6 frames was an
    object of 204 voxels ('Remove < 100' kept it in every frame), a hole was a tube open at both ends (not filled),
    and 'Largest component' kept one nucleus's track."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, data: np.ndarray, *args) -> np.ndarray:
        return np.stack([self.fn(frame, *args) for frame in data]) if len(data) else self.fn(data, *args)


class _Spare:
    """``fn`` on the whole volume, the reviewed slices ``spare`` (not on screen) left as they were: a reviewed slice is
    exported as truth, and changes only while on screen. :meth:`note` names those it would have changed."""

    again = "run the helper"

    def __init__(self, fn, spare: list[int], shown: int | None = None, what: str = "The helper"):
        self.fn, self.spare, self.shown, self.what, self.spared = fn, sorted(spare), shown, what, {}

    def __call__(self, data: np.ndarray, *args) -> np.ndarray:
        out = self.fn(data, *args)
        self.spared = correct.restore_slices(out, data, self.spare)
        return out

    def note(self, layer) -> str:
        return "" if not self.spared else (
            f"{layer.name}: {self.what} left the reviewed slices {correct.format_slice_ranges(self.spared)} as they "
            f"were ({sum(self.spared.values())} voxels it would have changed there): a reviewed slice changes only "
            f"while it is on screen. Go to it and {self.again} there to change it too.")


class _KeepSparing(_Spare):
    """K on a volume, the reviewed slices off screen spared: objects connect through slices nobody reviewed (the
    model's unchecked guess), and K removed an object a person had checked on another slice, unseen."""

    again, elsewhere = "press K", {}  # (elsewhere: set by each call)

    def __call__(self, data: np.ndarray, point) -> np.ndarray:
        out = super().__call__(data, point)
        removed = (out != data).reshape(len(data), -1).sum(1)  # the slices changed off screen, unseen
        self.elsewhere = {z: int(n) for z, n in enumerate(removed) if n and z != self.shown}
        return out

    def note(self, layer) -> str:
        text = ""
        if self.elsewhere:  # (a z-stack of nuclei: K on one plane emptied the 19 others, unseen)
            text = (f"{layer.name}: K followed the object through the volume and also removed "
                    f"{sum(self.elsewhere.values())} voxels of other objects on the slices "
                    f"{correct.format_slice_ranges(self.elsewhere)} (not on screen). Ctrl+Z undoes it; tick 'Current "
                    "slice only' to keep K to the slice on screen.")
        return " ".join(t for t in (text, super().note(layer)) if t)
