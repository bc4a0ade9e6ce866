"""'Next suggested slice' in the Correct panel: the unreviewed slice where the last run was least sure
(:mod:`napari_attnseg.suggest` computes it). :class:`SuggestTool` is a mixin of the Correct panel."""

from __future__ import annotations

import re

import numpy as np

from ._common import find_docked, notify_error, notify_info, placement_of, upsert_layer
from .correct_helpers import BACKGROUND_VOXELS


def drop_stale_uncertainty(viewer, image_name: str) -> None:
    """A new run on ``image_name`` is being shown: the uncertainty maps N made of an earlier run's probabilities
    (``<image> mask uncertainty``, ``<image> mask (n) uncertainty``) are removed, and the Correct panel's suggestion
    of them forgotten. They stayed, hidden, the last run's map under the name of a mask that now holds the new
    prediction, with "Suggested slice z" of the last run and its probabilities and map held in memory (0.5 GB on a
    300 x 512 x 512 CT). N makes the new run's map."""
    from .correct_widget import CorrectWidget

    own = re.compile(rf"^{re.escape(image_name)} mask( \(\d+\))? uncertainty$")
    stale = [ly for ly in viewer.layers if own.match(ly.name) and (ly.metadata.get("attnseg") or {}).get("uncertainty")]
    for layer in stale:
        viewer.layers.remove(layer)
    if any(ly.visible for ly in stale):  # (one hidden goes unsaid: N shows where the new run is unsure)
        notify_info(f"{', '.join(repr(ly.name) for ly in stale)}: the last run's uncertainty was removed; Next "
                    "suggested slice (N) shows this run's.")
    panel = find_docked(viewer, CorrectWidget)
    if panel is None:
        return
    panel._suggest_cache = None  # (the last run's probabilities and map: the next N maps this run's)
    mask = re.compile(rf"^{re.escape(image_name)} mask( \(\d+\))?$")
    if mask.match(str(panel.labels_combo.value)) and panel.suggest_label.value.startswith("Suggested slice"):
        panel.suggest_label.value = ""


def _add_unselected(viewer, data, kwargs: dict):
    """The hidden uncertainty layer added (or updated) without napari selecting it: napari made a new layer the
    selected one, then N made the mask selected again, each switch rebuilding the layer controls and list (about a
    quarter of the first N's pause on a 48 x 512 x 512 run, see the h_napari report); the mask stays selected."""
    layers = viewer.layers
    activate = getattr(layers, "_activate_on_insert", None)  # (napari's SelectableEventedList: select on insert)
    if activate is not None:
        layers._activate_on_insert = False
    try:
        return upsert_layer(viewer, data, kwargs, "image")
    finally:
        if activate is not None:
            layers._activate_on_insert = activate


class SuggestTool:
    """Needs the Correct panel's ``viewer``, ``labels_layer()``, ``_reviewed()``, ``_series_meta()``, ``_inserted()``,
    ``_source_image()``, ``image_combo`` and ``suggest_label``; the segment panel records ``last_source``."""

    def _probabilities(self, layer):
        """Class probabilities (K, *spatial) of the run that made ``layer``: the segment panel's last
        prediction when it is of this mask's image, else None."""
        from .segment_widget import SegmentWidget

        seg = find_docked(self.viewer, SegmentWidget)
        pred = getattr(seg, "last_prediction", None)
        info = layer.metadata.get("attnseg") or {}
        if pred is None or pred.probabilities is None or np.shape(pred.labels) != layer.data.shape:
            return None
        if info.get("source_layer") and getattr(seg, "last_source", None) != info.get("source_layer"):
            return None  # the last run was on another image
        if not info.get("source_layer") and getattr(seg, "last_source", None) != self.image_combo.value:
            return None  # a mask no run made: only the run on the image chosen for it here ranks its slices
        return pred.probabilities  # (the same object for every N after one run: the map is cached on it)

    def _axial_view(self, layer) -> bool:
        """The canvas shows one slice of ``layer``'s first axis (2D view, that axis on a slider)."""
        dims = self.viewer.dims
        return dims.ndisplay == 2 and (dims.ndim - layer.ndim) not in dims.displayed

    def next_suggested(self):
        """Go to the unreviewed slice where the model is least sure (issue 17's suggester)."""
        from ..suggest import left_to_review, slice_scores, uncertainty_map

        layer = self.labels_layer()
        if layer is None:
            return None
        if layer.ndim != 3:
            notify_info(f"{layer.name} is 2D: there is one slice, nothing to suggest.")
            return None
        if not left_to_review(layer.data.shape[0], self._reviewed(layer), self._series_meta(layer)):  # (said before
            return self._nothing_left(layer)  # asking for a run; a slice with no image is never suggested)
        probs = self._probabilities(layer)
        if probs is None:
            notify_error(f"No probabilities for {layer.name}: run the model on its image in the Segment tab first "
                         "(or `attnseg suggest IMAGE --model M` on the command line).")
            return None
        cached = getattr(self, "_suggest_cache", None)
        fresh = cached is None or cached[0] is not probs
        if fresh and int(np.prod(np.shape(probs))) > BACKGROUND_VOXELS:  # a big volume: the map in a worker
            return self._map_in_background(layer, probs)
        if fresh:  # one map per run: the next N only ranks again (a 48 x 512 x 512 map took ~1 s each time)
            unc = uncertainty_map(probs)
            self._suggest_cache = (probs, unc, slice_scores(unc))
        return self._go_to_suggestion(layer)

    def _nothing_left(self, layer) -> None:
        """Say that every slice of ``layer`` with an image is reviewed (the slices with none: nothing to review)."""
        from ..data.inserted import no_image_text

        gone = self._inserted(layer)
        self.suggest_label.value = (f"Every slice of {layer.name} is reviewed{f', and {no_image_text(gone)}' if gone else ''}"
                                    ": nothing left to suggest.")
        notify_info(self.suggest_label.value)
        return None

    def _map_in_background(self, layer, probs):
        """The uncertainty map of a big volume in a worker, then the jump (a 300 x 512 x 512 CT held the GUI
        thread 6.1 s and 2 GB more memory on the first N of a run)."""
        from ..suggest import slice_scores, uncertainty_map
        from .job_pool import thread_worker

        if getattr(self, "_suggest_running", False):
            notify_info("Still finding where the model is least sure; the view jumps there when it is done.")
            return None
        self._suggest_running = True
        self.suggest_label.value = "Finding where the model is least sure (in the background)..."

        @thread_worker(start_thread=False, ignore_errors=True)
        def work():
            unc = uncertainty_map(probs)
            return unc, slice_scores(unc)

        def done(found):
            if self._probabilities(layer) is not probs:  # a new run meanwhile: its map is made at the next N
                self.suggest_label.value = ""
                return
            self._suggest_cache = (probs, *found)
            if layer in self.viewer.layers:  # (the mask closed meanwhile: nothing to show)
                self._go_to_suggestion(layer)

        worker = work()
        worker.returned.connect(done)
        worker.errored.connect(lambda exc: notify_error(f"Next suggested slice: {exc}"))
        worker.finished.connect(lambda: setattr(self, "_suggest_running", False))
        worker.start()
        return None

    def _go_to_suggestion(self, layer):
        from ..suggest import rank_slices

        _, unc, scores = self._suggest_cache
        fresh = f"{layer.name} uncertainty" not in self.viewer.layers or \
            self.viewer.layers[f"{layer.name} uncertainty"].data is not unc
        image = self.viewer.layers[self.image_combo.value] if self.image_combo.value in self.viewer.layers else layer
        placed = image.metadata.get("format") in ("nifti", "dicom")  # its scale is in mm: "near" is 10 mm
        ranked = rank_slices(scores, self._reviewed(layer), n=1, slice_mm=abs(float(image.scale[-3])) if placed else None,
                             meta=self._series_meta(layer))  # (never a slice the reader inserted: no image there)
        if not ranked:
            return self._nothing_left(layer)
        z, score = ranked[0]
        active = self.viewer.layers.selection.active
        if fresh:
            _add_unselected(self.viewer, unc, {"name": f"{layer.name} uncertainty", "colormap": "viridis",
                                               "visible": False, "contrast_limits": (0.0, 1.0),
                                               "metadata": {"attnseg": {"uncertainty": True}},
                                               **placement_of(image).compose((1,) * 3, (0,) * 3)})
        if active is not None and active in self.viewer.layers and self.viewer.layers.selection.active is not active:
            self.viewer.layers.selection.active = active  # the brush keeps painting the mask, not the hidden map
        axis = self.viewer.dims.ndim - layer.ndim
        if not self._axial_view(layer):  # show the slice: a 2D view with the axial slices on the slider
            self.viewer.dims.ndisplay = 2
            self.viewer.dims.order = tuple(range(self.viewer.dims.ndim))
            notify_info(f"Switched to the axial 2D view to show slice {z}.")
        self.viewer.dims.set_point(axis, float(layer.data_to_world([z, 0, 0])[0]))
        self.suggest_label.value = f"Suggested slice {z} (uncertainty {score:.3f})"
        return z
