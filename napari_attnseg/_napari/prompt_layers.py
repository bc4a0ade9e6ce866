"""Click to fix: the layers the prompt mode works on, kept out of :mod:`.prompt_mode` (a mixin of its class).

Ticking the mode attaches it to the Correct tab's image (its '<image> prompts' Points layer takes the clicks, an
empty '<image> mask' is added and chosen when the image has none); choosing another image while the mode is on
attaches it to that one; a deleted image, mask or prompts layer is said in the status, never a click that silently
does nothing. Audit (lung1 and brain1 in one viewer): the mask the mode added was not chosen, so the first click
was refused for the other image's mask; after choosing brain1 in the Image field the clicks were drawn on lung1's
grid, 720 mm away from where they were made; with the image deleted, clicks did nothing and said nothing.
"""

from __future__ import annotations

import numpy as np

from .prompt_view import (
    PLACEMENT_EVENTS,
    PROMPTS_KEY,
    grey_for_clicks,
    holds_value,
    mask_for_clicks,
    new_object_value,
    place_like,
    prompts_layer,
    value_note,
)


class PromptLayers:
    """Needs the prompt mode's ``corr``, ``viewer``, ``enable_box``, ``status``, ``points_layer``, ``target``,
    ``_on_click``, ``_model_dims()``, ``_fit_note()``, ``refresh_models()``, ``new_object()`` and ``undo_last_click()``."""

    _attaching = False
    _pair: tuple = (None, None)  # the (mask, image) layers the status last spoke of
    _selected_of = None  # the mask whose selected label the value line follows
    _over: set = set()  # (mask unique_id, value) of objects written over a region (PromptMode.__init__ makes its own)

    def _image_layer(self):
        name = self.corr.image_combo.value
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def _toggle(self, on: bool) -> None:
        if on:
            self.refresh_models()  # the model that fits the image's dimensionality
        if on and not self._attach():
            return
        if not on:
            self._detach(self.points_layer)
        if not on and self._on_image_click in self.viewer.mouse_drag_callbacks:
            self.viewer.mouse_drag_callbacks.remove(self._on_image_click)
        if not on and "was removed" not in self.status.value:  # (that message says why the mode went off)
            self.status.value = "Click to fix is off."
        self.new_object()
        self.show_value()

    def _attach(self) -> bool:
        """The mode on the Correct tab's image: its prompts layer takes the clicks (False: refused, and said)."""
        image = self._image_layer()
        if isinstance(image := grey_for_clicks(self.corr, image), str):  # (a slide: its grey layer; str: why not)
            self.enable_box.value = False
            self.status.value = image  # (told; kept in the status: "Click to fix is off." said nothing)
            return False
        self._attaching = True
        try:
            if (made := mask_for_clicks(self.viewer, image)) is not None:  # the image had no mask: the new one is chosen
                self.corr.refresh(prefer=made.name)
                self.corr.labels_combo.value = made.name
            old, self.points_layer = self.points_layer, prompts_layer(self.viewer, image, self.points_layer)
        finally:
            self._attaching = False
        if old is not None and old is not self.points_layer:  # (the previous image's layer: emptied, no clicks)
            self._detach(old)
            if old in self.viewer.layers:
                old.data = np.empty((0, old.ndim))
        image.events.name.connect(self._image_renamed)  # (napari connects a callback once)
        for name in PLACEMENT_EVENTS:  # the dots follow the image's scale, translate, rotate... set later
            if hasattr(image.events, name):
                getattr(image.events, name).connect(self._image_moved)
        self.points_layer.mode = "pan_zoom"  # the clicks are ours: napari must not add points itself
        if self._on_click not in self.points_layer.mouse_drag_callbacks:
            self.points_layer.mouse_drag_callbacks.append(self._on_click)
        if self._on_image_click not in self.viewer.mouse_drag_callbacks:  # an image layer got selected
            self.viewer.mouse_drag_callbacks.append(self._on_image_click)
        # the prompts layer is the selected one while clicking: Ctrl+Z there undoes the last click
        self.points_layer.bind_key("Control-Z", lambda layer: self.undo_last_click(), overwrite=True)
        self.viewer.layers.selection.active = self.points_layer
        self.ready_status(fit=True)
        return True

    def _chosen_pair(self) -> tuple:
        layers = self.viewer.layers
        return tuple(layers[c.value] if c.value in layers else None for c in (self.corr.labels_combo, self.corr.image_combo))

    def ready_status(self, lead: str = "", fit: bool = False) -> None:
        """The status for the next click, after ``lead``: where the clicks go (the mask and image chosen now, the
        prompts layer), a 2D model's slice-by-slice note and (``fit``) the fit warning; and the value line. It kept saying
        what an earlier click, image or refusal had said ("... differ in shape; pick the mask that belongs to the
        image" after that mask was picked, a click's voxel count after a new object or another mask)."""
        mask, image = self._pair = self._chosen_pair()
        into = f" into '{mask.name}'" if mask is not None else ""
        layer = f" (the '{self.points_layer.name}' layer takes the clicks while it is selected)" \
            if self.points_layer is not None and self.points_layer in self.viewer.layers else ""
        self.status.value = (f"{lead}Click an object to segment it{into}; Shift+click or right click where it should not "
                             f"be{layer}.")
        if image is not None and image.ndim == 3 and self._model_dims() == 2:
            self.status.value += (" This is a 2D model: each click segments the slice it is on; click every "
                                  "slice of a 3D object (no 3D click model is bundled).")
        if image is not None and fit:  # (on ticking; the warning is shown once, and each click's status points to it)
            self._fit_note(image, status=True)
        self.show_value()

    def show_value(self, *_) -> None:
        """The line under the buttons: the label value the next click writes (napari's selected label of the chosen
        mask for a new object, followed as it changes), empty while the mode is off."""
        mask = self.target[0] if self.target is not None else self._chosen_pair()[0]
        if mask is not self._selected_of:  # (follow the selected label of the mask the clicks go to)
            if self._selected_of is not None:
                self._selected_of.events.selected_label.disconnect(self.show_value)
            self._selected_of = mask
            if mask is not None:
                mask.events.selected_label.connect(self.show_value)
        over = mask is not None and self.writes_over(mask, new_object_value(mask))
        self.value_line.value = value_note(mask, self.object_value, over) if self.enable_box.value else ""

    def writes_over(self, mask, value: int) -> bool:
        """Whether a new object of ``value`` clicked on a labelled region is written over it (a tumour inside the brain
        model's grey matter): ``value`` is new to ``mask`` (napari's M), or one such a click started there before
        (the same tumour on its next slice); else the click corrects the object under it (an instance mask)."""
        return holds_value(mask, value) is False or (mask.unique_id, value) in self._over

    def _image_renamed(self, event=None) -> None:
        """The image renamed while its prompts layer takes the clicks: the layer's name the mode gave it follows (a
        name the user typed stays), and so does the status. It kept '<old name> prompts' (and the status said so)
        until the mode was ticked again, beside '<new name> prompt attention' renamed at the next click."""
        image, layer = getattr(event, "source", None), self.points_layer
        if image is None or layer is None or layer not in self.viewer.layers \
                or (layer.metadata.get(PROMPTS_KEY) or {}).get("image") != image.unique_id:
            return
        name, given = f"{image.name} prompts", layer.metadata[PROMPTS_KEY].get("name")
        if layer.name == given and name not in self.viewer.layers:
            layer.name = name
            layer.metadata[PROMPTS_KEY]["name"] = name
        if self.enable_box.value and not self.clicks and image is self._image_layer():
            self.ready_status()

    def _image_moved(self, event=None) -> None:
        """The image placed anew in napari (its scale, translate, rotate, shear, affine or units set after the mode was
        ticked): its prompts layer follows, so the dots stay on the clicks. They kept the placement the image had when
        the mode was ticked (its scale typed later: the dots drawn at twice the distance, the clicks landing right)."""
        image, layer = getattr(event, "source", None), self.points_layer
        if image is not None and layer is not None and layer in self.viewer.layers \
                and (layer.metadata.get(PROMPTS_KEY) or {}).get("image") == image.unique_id:
            place_like(layer, image)

    def _detach(self, layer) -> None:
        if layer is not None and self._on_click in layer.mouse_drag_callbacks:
            layer.mouse_drag_callbacks.remove(self._on_click)

    def _image_chosen(self) -> None:
        """Another image in the Correct tab while the mode is on: the clicks go on it (its own prompts layer, placed
        on its grid), or the status says there is none."""
        self._target_changed()
        if not self.enable_box.value or self._attaching:
            return
        if self._image_layer() is None:
            self.new_object()
            self.status.value = "No image to click on: choose one in the Image field above."
            return
        self._attach()
        self.new_object()

    def _on_image_click(self, viewer, event):
        """Clicks while an image layer is selected in pan/zoom (a result layer napari selected when it was added,
        the image itself) are clicks too; with the prompts layer selected its own callback takes them, and
        a Labels or Points layer being edited keeps its tools."""
        active = viewer.layers.selection.active
        if self.enable_box.value and active is not self.points_layer and type(active).__name__ == "Image" \
                and active.mode == "pan_zoom":
            yield from self._on_click(active, event)

    def _layer_added(self, event) -> None:
        if self.corr._listed(event.value):  # a new image or mask (not the prompts or attention layer)
            self.refresh_models()

    def _layer_removed(self, event=None) -> None:
        """The prompts layer deleted while clicking: nothing takes the clicks any more, so the mode goes off
        (and says so); ticking it again brings the layer back. The chosen image deleted: said."""
        removed = getattr(event, "value", None)
        if self.points_layer is not None and removed is self.points_layer and self.enable_box.value:
            self.enable_box.value = False
            self.status.value = (f"The '{self.points_layer.name}' layer was removed, which takes the clicks: Click to fix "
                                 "is off; tick it again to go on.")
        elif self.enable_box.value and type(removed).__name__ == "Image" and self._image_layer() is None \
                and removed.name == self.corr.image_combo.value:
            self.status.value = (f"The image '{removed.name}' was removed: choose an image in the Image field above "
                                 "(or open it again), then click.")
        self._forget(removed)

    def _forget(self, removed) -> None:
        """A closed layer is held no more (a day's worklist in one session kept every case's image and mask in memory,
        their data too: the prompts layer, the pair the status spoke of, the mask whose selected label the value line
        followed, the size and fit caches, the last run's result); the mode's own state for it goes with it."""
        if removed is None:
            return
        uid = getattr(removed, "unique_id", None)

        def same(layer) -> bool:
            return layer is not None and getattr(layer, "unique_id", None) == uid

        self.checks.forget(removed)
        if same(self.points_layer):
            self._detach(self.points_layer)
            self.points_layer = None
        if same(self._selected_of):
            self._selected_of.events.selected_label.disconnect(self.show_value)
            self._selected_of = None
        if any(same(ly) for ly in self._pair):
            self._pair = tuple(None if same(ly) else ly for ly in self._pair)
            self.last_result = None  # (its mask and attention belong to the closed case)
            self._warned.clear()  # (the next case is warned again: "see the warning" pointed to the last case's)
        self._over = {key for key in self._over if key[0] != uid}

    def _target_changed(self) -> None:
        """Another mask or image chosen (or either deleted): a new object, and the status says where clicks go now."""
        moved = self._chosen_pair() != self._pair
        if self.target is None:
            if moved and self.enable_box.value and not self._attaching and None not in self._chosen_pair():
                self.ready_status()
            return
        mask, image = self.target
        chosen = (self.corr.labels_combo.value, self.corr.image_combo.value)
        if mask not in self.viewer.layers or image not in self.viewer.layers or chosen != (mask.name, image.name):
            self.new_object()
            if mask not in self.viewer.layers:  # (a run still going for it is dropped: nothing to write into)
                self.status.value = f"The mask '{mask.name}' was deleted, and its clicks with it: choose a mask, then click."
                self.show_value()
            elif self.enable_box.value and not self._attaching:
                self.ready_status("New object: the mask or image changed (the earlier clicks stay in their mask). ")
            else:
                self.status.value = "New object: the mask or image changed (the earlier clicks stay in their mask)."
