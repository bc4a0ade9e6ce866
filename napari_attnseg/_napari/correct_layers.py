"""The Correct panel's choice of mask and image among the viewer's layers: the lists follow layers added, removed
and renamed, a model's new mask is chosen, the image a mask was predicted on goes with it, and the chosen mask's edits
update the statistics. :class:`LayerChoice` is a mixin of :class:`~.correct_widget.CorrectWidget` (moved out of
``correct_widget.py`` unchanged)."""

from __future__ import annotations

from napari.layers import Image, Labels
from qtpy.QtCore import QTimer

from ._common import set_choices
from .round_state import carry_reviewed
from .sample_data import REFERENCE_KEY
from .tiff_masks import reopen_tiff_mask


class LayerChoice:
    """Needs the panel's ``viewer``, ``labels_combo``, ``image_combo``, ``stats_label``, ``_chosen``, ``_watched``,
    ``_update_info()``, ``_watch()``, ``_follow_values()``, ``_next_case()`` and ``_take_names()``."""

    @staticmethod
    def _listed(layer) -> bool:
        """A layer the panel lists: a Labels layer, or an image that is not a model's output (attention)."""
        return isinstance(layer, Labels) or (isinstance(layer, Image) and not layer.metadata.get("attnseg"))

    def _layer_inserted(self, event=None) -> None:
        """A mask or an image added: the lists follow (a Points layer or an attention map changes nothing here)."""
        layer = getattr(event, "value", None)
        if layer is not None and (not self._listed(layer) or reopen_tiff_mask(self.viewer, layer)):
            return  # (a TIFF mask napari's reader opened as an image: replaced by its Labels layer next)
        if layer is not None:
            layer.events.name.connect(self._layer_renamed)
        # a model's new mask (also "mask (2)" when the edited one was kept) is what people correct next
        # (not napari's Duplicate layer: the copy carries the run's metadata, and the panel went to it unasked)
        made = isinstance(layer, Labels) and layer.metadata.get("attnseg") and getattr(layer.source, "parent", None) is None
        newest = layer.name if made else None
        if newest:  # (once the run has set its metadata: the clinician's reviewed slices of the mask it kept)
            QTimer.singleShot(0, lambda: carry_reviewed(self.viewer, layer) and self._update_info())
        self.refresh(prefer=newest)

    def _layer_removed(self, event=None) -> None:
        layer = getattr(event, "value", None)
        if layer is None or self._listed(layer):
            self.refresh()
        if isinstance(layer, Labels) and (layer.metadata.get("reviewed_slices") or _edited(layer)) \
                and layer.metadata.get(KEPT_KEY) != kept_state(layer):  # (not since its last Save mask / Export)
            QTimer.singleShot(0, lambda: self._offer_restore(layer))  # (once the plugin's own replacing is done)

    def _offer_restore(self, layer) -> None:
        """A mask with corrections or reviewed marks was removed (the layer list's delete: nothing asks, and napari
        cannot undo it): said, with *Restore* to add it back as it was; not when a layer of its name came back (the
        plugin replacing it, e.g. a TIFF mask reopened as Labels) or the viewer is closing."""
        from napari.utils.notifications import Notification, notification_manager

        open_viewers = getattr(type(self.viewer), "_instances", None)  # (napari's Viewer.close leaves it after clearing)
        if layer.name in self.viewer.layers or (open_viewers is not None and self.viewer not in open_viewers):
            return
        what = "reviewed marks" if layer.metadata.get("reviewed_slices") else "corrections"

        def restore(notification=None) -> None:
            if layer.name not in self.viewer.layers and layer not in self.viewer.layers:
                self.viewer.layers.append(layer)

        self._restore = restore  # (the last one, for a test or a second press)
        notification_manager.dispatch(Notification(
            f"The mask {layer.name!r} with its {what} was removed; napari cannot undo that. Restore adds it back as "
            "it was (save or export a mask you keep: File > Save, or Export).", actions=[("Restore", restore)]))

    def refresh(self, event=None, prefer: str | None = None) -> None:
        labels = [ly.name for ly in self.viewer.layers if isinstance(ly, Labels)]
        images = [ly.name for ly in self.viewer.layers if isinstance(ly, Image) and not ly.metadata.get("attnseg")]
        masks = [n for n in labels if self.viewer.layers[n].metadata.get("attnseg") or n.endswith(" mask")]
        current = self.labels_combo.value
        if prefer is None and masks and current not in masks:
            prefer = masks[-1]  # a model's mask, once there is one, is what people correct
        elif prefer is None and current not in labels:  # (a sample's hidden reference is not the mask to correct)
            prefer = next((n for n in labels if not self.viewer.layers[n].metadata.get(REFERENCE_KEY)), None)
        set_choices(self.labels_combo, labels, prefer=prefer)
        source = self._source_image(self.labels_combo.value)
        set_choices(self.image_combo, images, prefer=source)
        self._mask_changed()
        self._remember_choice()

    def _remember_choice(self) -> None:
        layers = self.viewer.layers
        self._chosen = tuple(layers[c.value] if c.value in layers else None for c in (self.labels_combo, self.image_combo))

    def _layer_renamed(self, event=None) -> None:
        """A layer was renamed in the layer list: the lists follow, and the chosen mask and image stay chosen."""
        mask, image = self._chosen
        layers = list(self.viewer.layers)
        with self.image_combo.changed.blocked():
            set_choices(self.image_combo, [ly.name for ly in layers if isinstance(ly, Image) and not ly.metadata.get("attnseg")],
                        prefer=image.name if image in layers else None)
        self.refresh(prefer=mask.name if mask in layers else None)
        if image in layers and self.image_combo.value != image.name:
            with self.image_combo.changed.blocked():
                self.image_combo.value = image.name
        self._remember_choice()

    def _source_layer(self, mask):
        uid = mask.metadata.get("attnseg_source_uid")
        return next((ly for ly in self.viewer.layers if uid is not None and ly.unique_id == uid), None)

    def _source_image(self, mask_name) -> str | None:
        if mask_name not in self.viewer.layers:
            return None
        mask = self.viewer.layers[mask_name]
        if (source := self._source_layer(mask)) is not None:  # the very layer it was predicted on, renamed or not
            return source.name
        info = mask.metadata.get("attnseg") or {}
        return info.get("source_layer") or (mask_name[: -len(" mask")] if str(mask_name).endswith(" mask") else None)

    def _mask_changed(self, *_) -> None:
        """Follow the chosen mask: its edits update the statistics live; its classes name the export."""
        layer = self.viewer.layers[self.labels_combo.value] if self.labels_combo.value in self.viewer.layers else None
        if layer is not self._watched:
            if self._watched is not None:
                self._watch(self._watched, False)
                self._follow_values(self._watched, False)
            self._watched = layer
            self.stats_label.value = ""
            if layer is None:
                self._next_case(None)
            else:
                self._watch(layer, True)  # its edits update the statistics by what they change
                self._follow_values(layer, True)  # and the Class list by the values they write
                source = self._source_image(layer.name)
                if source in self.viewer.layers and self.image_combo.value != source:
                    with self.image_combo.changed.blocked():
                        self.image_combo.value = source
                self._next_case(layer)  # (names, case id and suggestion of another case go)
                self._take_names(layer)  # its class names (typed ones kept) and Class list
            self._update_info()  # (the same mask still chosen: nothing to show anew)


def _edited(layer) -> bool:
    """The mask was edited (napari's undo history of the layer holds a change) or differs from its prediction."""
    stats = layer.metadata.get("attnseg_edit_stats") or {}
    return bool(getattr(layer, "_undo_history", None)) or any(
        c.get("added") or c.get("removed") for c in (stats.get("per_class") or {}).values())


KEPT_KEY = "attnseg_kept"  # the mask's state when Save mask or Export last wrote it (removing it then loses nothing)


def kept_state(layer) -> list:
    """What a mask holds that a removal would lose, as far as the panel can tell without reading its voxels: its reviewed
    marks and its last edit (napari's undo history of the layer; recorded at Save mask / Export: removing it unchanged
    since offers no Restore; the edit counts against the prediction are counted on a worker, later: not a clock)."""
    history = getattr(layer, "_undo_history", None) or ()
    return [sorted(int(z) for z in layer.metadata.get("reviewed_slices") or []), len(history),
            id(history[-1]) if history else 0]
