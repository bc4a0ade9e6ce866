"""'Next suggested slice' in the Correct panel: the unreviewed slice where the last run was least sure
(:mod:`napari_attnseg.suggest` computes it). :class:`SuggestTool` is a mixin of the Correct panel."""

from __future__ import annotations

import numpy as np

from ._common import find_docked, notify_error, notify_info, placement_of, upsert_layer


class SuggestTool:
    """Needs the Correct panel's ``viewer``, ``labels_layer()``, ``_reviewed()``, ``_source_image()``,
    ``image_combo`` and ``suggest_label``; the segment panel records ``last_source``."""

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
        from ..suggest import rank_slices, slice_scores, uncertainty_map

        layer = self.labels_layer()
        if layer is None:
            return None
        if layer.ndim != 3:
            notify_info(f"{layer.name} is 2D: there is one slice, nothing to suggest.")
            return None
        if set(range(layer.data.shape[0])) <= set(self._reviewed(layer)):  # (said before asking for a run)
            self.suggest_label.value = f"Every slice of {layer.name} is reviewed: nothing left to suggest."
            notify_info(self.suggest_label.value)
            return None
        probs = self._probabilities(layer)
        if probs is None:
            notify_error(f"No probabilities for {layer.name}: run the model on its image in the Segment tab first "
                         "(or `attnseg suggest IMAGE --model M` on the command line).")
            return None
        cached = getattr(self, "_suggest_cache", None)
        fresh = cached is None or cached[0] is not probs or f"{layer.name} uncertainty" not in self.viewer.layers
        if fresh:  # one map per run: the next N only ranks again (a 48 x 512 x 512 map took ~1 s each time)
            unc = uncertainty_map(np.asarray(probs, np.float32))
            self._suggest_cache = (probs, unc, slice_scores(unc))
        _, unc, scores = self._suggest_cache
        image = self.viewer.layers[self.image_combo.value] if self.image_combo.value in self.viewer.layers else layer
        placed = image.metadata.get("format") in ("nifti", "dicom")  # its scale is in mm: "near" is 10 mm
        ranked = rank_slices(scores, self._reviewed(layer), n=1, slice_mm=float(image.scale[-3]) if placed else None)
        if not ranked:
            self.suggest_label.value = f"Every slice of {layer.name} is reviewed: nothing left to suggest."
            notify_info(self.suggest_label.value)
            return None
        z, score = ranked[0]
        active = self.viewer.layers.selection.active
        if fresh:
            upsert_layer(self.viewer, unc, {"name": f"{layer.name} uncertainty", "colormap": "viridis", "visible": False,
                                            "contrast_limits": (0.0, 1.0), "metadata": {"attnseg": {"uncertainty": True}},
                                            **placement_of(image).compose((1,) * 3, (0,) * 3)}, "image")
        if active is not None and active in self.viewer.layers:
            self.viewer.layers.selection.active = active  # the brush keeps painting the mask, not the hidden map
        axis = self.viewer.dims.ndim - layer.ndim
        if not self._axial_view(layer):  # show the slice: a 2D view with the axial slices on the slider
            self.viewer.dims.ndisplay = 2
            self.viewer.dims.order = tuple(range(self.viewer.dims.ndim))
            notify_info(f"Switched to the axial 2D view to show slice {z}.")
        self.viewer.dims.set_point(axis, float(layer.data_to_world([z, 0, 0])[0]))
        self.suggest_label.value = f"Suggested slice {z} (uncertainty {score:.3f})"
        return z
