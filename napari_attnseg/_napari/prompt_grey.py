"""Click to fix on a big colour picture: its grey layer made on a worker (a mixin of :class:`.prompt_mode.PromptMode`).

The clicks go on an RGB picture's grey layer (:func:`.prompt_view.grey_for_clicks`). Ticking the mode on a 6000 x 6000
H&E slide computed that grey (colour deconvolution) on the GUI thread: napari froze for 4.2 s (median of 3, audit
machine). A picture of more than ``PREVIEW_VOXELS`` pixels now has it made on a worker, as the Segment tab's run does
(:mod:`.job_segment`); the grey layer is added and the clicks attached to it when the worker is done, and clicks made
meanwhile wait and then run on the grey layer, at the place they were made. A smaller picture is done as before.
"""

from __future__ import annotations

import numpy as np

from ._common import (
    PREVIEW_VOXELS,
    add_grey_layer,
    error_message,
    grey_of_layer,
    is_deleted,
    layer_array,
    notify_error,
    open_grey_of,
)
from .job_pool import thread_worker
from .prompt_layers import PromptLayers
from .prompt_view import PROMPTS_KEY, no_grey_message


class PromptGrey(PromptLayers):
    """The prompt mode's layers (:class:`.prompt_layers.PromptLayers`), with an RGB picture's grey made on a worker."""

    _grey_job = None  # (the RGB layer, its worker) while the worker makes that picture's grey
    _grey_clicks: list = []  # [(point in the RGB layer's data coordinates, positive)] waiting for that grey

    def _attach(self) -> bool:
        """As :meth:`.PromptLayers._attach`; for a big RGB picture whose grey is not open, its grey is started on a
        worker and the mode attaches when it is done (False: not attached yet, the status says so)."""
        if self._grey_later(self._image_layer()):
            return False
        return super()._attach()

    def _toggle(self, on: bool) -> None:
        if not on:  # (the clicks that waited for a grey belong to the mode left)
            self._grey_clicks = []
        super()._toggle(on)

    def ready_status(self, lead: str = "", fit: bool = False) -> None:
        if self._grey_preparing(self._image_layer()):  # (another mask chosen meanwhile: still no click runs yet)
            self.status.value = self._grey_status()
            return
        super().ready_status(lead, fit)

    def grey_pending(self, data_point, positive: bool) -> bool:
        """Whether a click at ``data_point`` (the chosen image's data coordinates) waits for the grey of the chosen RGB
        picture (True: queued, said in the status; it runs on the grey layer when the grey is ready)."""
        image = self._image_layer()
        if not self.enable_box.value or not self._grey_later(image):
            return False
        point = tuple(float(c) for c in np.asarray(data_point)[-image.ndim:])
        self._grey_clicks = [*self._grey_clicks, (point, bool(positive))]
        self.status.value = self._grey_status()
        return True

    def _undo_button(self) -> None:
        """Undo last click while clicks wait for a big slide's grey: the newest waiting click is taken off the queue
        (it said "No click to undo." and the click ran once the grey was made)."""
        if self._grey_job is None or not (waiting := [k for k, c in enumerate(self._grey_clicks) if c is not None]):
            return self.undo_last_click()
        self._grey_clicks = self._grey_clicks[:waiting[-1]] + self._grey_clicks[waiting[-1] + 1:]
        self.status.value = "Click undone before it ran. " + self._grey_status()

    def _new_button(self) -> None:
        """New object while clicks wait for a big slide's grey: the clicks made after it start a new object when they
        run (they were written into the object of the clicks before it)."""
        if self._grey_job is None or not self._grey_clicks:
            return self._new_object_button()
        if self._grey_clicks[-1] is not None:
            self._grey_clicks = [*self._grey_clicks, None]
        self.status.value = "New object: the next click starts it. " + self._grey_status()

    def _grey_preparing(self, image) -> bool:
        job = self._grey_job
        return job is not None and image is not None and job[0] is image

    def _grey_status(self) -> str:
        name = self._grey_job[0].name if self._grey_job is not None else ""
        waiting = sum(c is not None for c in self._grey_clicks)
        said = (f" {waiting} click(s) wait and run once it is ready." if waiting
                else " Clicks made meanwhile wait and run once it is ready.")
        return (f"Making the grey image of '{name}' that the clicks go on (its one colour, or a bright-field slide's "
                f"hematoxylin): seconds for a picture this big; napari stays usable.{said}")

    def _grey_later(self, image) -> bool:
        """Whether ``image`` is an RGB picture of more than ``PREVIEW_VOXELS`` pixels whose grey layer is not open:
        its grey is then made on a worker (started here unless it runs already) and True is returned."""
        if image is None or not getattr(image, "rgb", False):
            return False
        if not self._grey_preparing(image):
            if int(np.prod(np.shape(layer_array(image))[:-1])) <= PREVIEW_VOXELS \
                    or open_grey_of(self.viewer, image) is not None:
                return False
            self._grey_clicks = []  # (clicks waiting for another picture's grey: that picture is no longer chosen)
            self._start_grey(image)
        if self._on_image_click not in self.viewer.mouse_drag_callbacks:  # clicks on the picture are taken meanwhile
            self.viewer.mouse_drag_callbacks.append(self._on_image_click)
        self.status.value = self._grey_status()
        return True

    def _start_grey(self, image) -> None:
        data, name = layer_array(image), image.name

        @thread_worker(start_thread=False, ignore_errors=True)
        def work():
            try:
                return grey_of_layer(np.asarray(data), name)  # (the words of grey_layer_of: no model named)
            except ValueError as exc:  # no one grey image: said on the GUI thread, not as an event-loop error
                return exc

        worker = work()
        self._grey_job = (image, worker)
        worker.returned.connect(lambda found: self._grey_made(image, worker, found))
        worker.errored.connect(lambda exc: self._grey_made(image, worker, exc))
        worker.start()

    def _grey_made(self, image, worker, found) -> None:
        """The worker's grey of ``image``: its layer added, made the Correct tab's image and the clicks attached to it,
        then the clicks that waited run on it; nothing is added when the mode was left, another image chosen or the
        picture closed meanwhile."""
        if self._grey_job is None or self._grey_job[1] is not worker or is_deleted(self.status.native):
            return
        self._grey_job, clicks, self._grey_clicks = None, self._grey_clicks, []
        if image not in self.viewer.layers or not self.enable_box.value or self._image_layer() is not image:
            return
        if isinstance(found, BaseException):  # (no one grey image: refused as on a small picture)
            if isinstance(found, ValueError):
                notify_error(str(found))
                why = no_grey_message(image.name)
            else:
                why = f"Click to fix: the grey image of '{image.name}' could not be made: {error_message(found)}"
                notify_error(why)
            self.enable_box.value = False
            self.status.value = why
            return
        grey = add_grey_layer(self.viewer, image, found)
        self.corr.refresh()
        self.corr.image_combo.value = grey.name  # (the mode, on, attaches to it: PromptLayers._image_chosen)
        layer = self.points_layer
        if self._image_layer() is grey and (layer is None or layer not in self.viewer.layers
                                            or (layer.metadata.get(PROMPTS_KEY) or {}).get("image") != grey.unique_id):
            self._attach()  # (the name chosen was already the chosen one's: no change event)
        for item in clicks:  # the place each was made, on the grey layer (placed as the picture); None: New object
            if item is None:
                self._new_object_button()
            else:
                self.click(grey.world_to_data(image.data_to_world(item[0])), positive=item[1])
