"""Click to fix: point prompts in the Correct tab.

A Points layer ``<image> prompts`` shows the clicks (green positive, red negative). A click on the
image adds a positive point (Shift+click, a right click or the *Negative* toggle: a negative one); each
click re-runs the promptable model on a crop around the object in a worker thread and writes only
that object's voxels into the mask as an undoable edit. *Undo last click* (or Ctrl+Z while the prompts
layer is selected) removes the point and reverts that click's own change (a brush stroke made since
stays); *New object* starts a fresh set of clicks, as does choosing another mask or image. The modulated
attention of the finest level is shown as ``<image> prompt attention``. Objects of another size than the
model's: the Segment run's object diameter is used, else the size estimated once per image
(:mod:`.prompt_checks`), which also says when the image is unlike the click model's training data (a scan for
a microscopy model). Everything computed here is :func:`napari_attnseg.prompts.segment_with_prompts`.
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, Label, PushButton

from ..errors import AttnSegError
from ..prompts.session import PromptSession, revert
from ._common import error_message, layer_array, notify_error, notify_info, notify_warning, set_choices
from .job_pool import thread_worker
from .prompt_checks import PromptChecks, click_status, promptable_models
from .prompt_grey import PromptGrey
from .prompt_view import NEGATIVE, POSITIVE, PROMPTS_KEY, click_refusal, mask_for_clicks, pair_refusal
from .prompt_write import NewLabelSession, show_prompt_attention, take_back, write_step


class PromptMode(PromptGrey):
    """The click-to-fix controls and their state; ``corr`` is the Correct panel it belongs to."""

    def __init__(self, corr):
        self.corr = corr
        self.viewer = corr.viewer
        self._entries: dict[str, object] = {}
        self._dims: dict[str, int] = {}  # spatial dims from the cards: known without loading a model
        self._loaded: dict[str, object] = {}
        self.points_layer = None
        self.session = PromptSession()  # this object's clicks (image index coordinates) and masks after each run
        self.object_value: int | None = None
        self.target = None  # (mask layer, image layer) the clicks of this object write to / read
        self._warned: set[str] = set()  # warnings already shown (once each, not at every click)
        self.checks = PromptChecks()  # per image: the click model's fit, the objects' size
        self.busy = self.pending = False
        self._running = None  # (session, label value, (mask, image)) of the run in the worker
        self.last_result = self.worker = None
        self._over: set[tuple[str, int]] = set()  # (mask, label) of objects clicked over a region (writes_over)
        self._steps: dict[int, tuple] = {}  # id(run's state) -> (state, the mask's history entry it wrote)

        self.model_combo = ComboBox(label="Prompt model", choices=[])
        self.enable_box = CheckBox(text="Click to fix (prompt mode)", value=False)
        self.negative_box = CheckBox(text="Negative clicks (or Shift+click / right click)", value=False)
        self.undo_button = PushButton(text="Undo last click")
        self.new_button = PushButton(text="New object")
        self.status = Label(value="")
        self.status.native.setWordWrap(True)
        from .correct_form import StatusLine  # (no room taken while empty: the mode off)

        self.value_line = StatusLine()  # the label value the clicks write (PromptLayers.show_value)
        self.container = Container(widgets=[
            Label(value="<b>Click to fix</b>"), Container(widgets=[self.model_combo]), self.enable_box, self.negative_box,
            Container(widgets=[self.undo_button, self.new_button], layout="horizontal", labels=False), self.value_line,
            self.status], labels=False)
        self.enable_box.changed.connect(self._toggle)
        self.corr.viewer.layers.events.inserted.connect(self._layer_added)
        self.undo_button.changed.connect(lambda *_: self._undo_button())
        self.new_button.changed.connect(lambda *_: self._new_button())
        self.model_combo.changed.connect(lambda *_: self.new_object())
        # another mask or image, or either layer gone: the clicks belong to the old one, start afresh
        self.corr.labels_combo.changed.connect(lambda *_: self._target_changed())
        self.corr.image_combo.changed.connect(lambda *_: self._image_chosen())  # (with the mode on: clicks go there)
        self.corr.viewer.layers.events.removed.connect(self._target_changed)
        self.corr.viewer.layers.events.removed.connect(self._layer_removed)

    # -- models ---------------------------------------------------------------------------------
    def refresh_models(self) -> None:
        """List the promptable models; keep the chosen one unless its dimensionality differs from the
        image's and another one's matches (a 3D model for a volume, a 2D one for a plane)."""
        try:
            found = promptable_models(self.viewer)
        except Exception:  # the prompts package could not be imported: say so, stay disabled
            found = {}
        self._entries = {name: entry for name, (entry, _) in found.items()}
        self._dims = {name: dims for name, (_, dims) in found.items()}
        image = self._image_layer()
        current = self.model_combo.value
        prefer = None
        if image is not None and (found[current][1] if current in found else None) != image.ndim:
            prefer = next((name for name, (_, dims) in found.items() if dims == image.ndim), None)
        set_choices(self.model_combo, list(self._entries), prefer=prefer)
        ok = bool(self._entries)
        self.enable_box.enabled = ok
        if not ok:
            self.enable_box.value = False
            self.status.value = ("No promptable model: ship one (nuclei-2d-prompt) or fine-tune one with "
                                 "`attnseg finetune DATASET --model M --prompts`.")

    def model(self, name: str | None = None):
        from ..checkpoint import load_model
        from ..prompts import is_promptable

        name = self.model_combo.value if name is None else name
        entry = self._entries.get(name)
        if entry is None:
            return None
        if isinstance(entry, str):
            entry = self._loaded.get(name) or load_model(entry, device="cpu")
            self._loaded[name] = entry
        if not is_promptable(entry):
            raise AttnSegError(f"The model {name!r} is not promptable.")
        return entry

    def _model_dims(self) -> int | None:
        """The chosen model's spatial dims, from its card (loading a model on the GUI thread stalled it)."""
        return self._dims.get(self.model_combo.value)

    def _on_click(self, layer, event):
        """A click is a press and a release without a drag: a drag pans or zooms the view (a generator:
        napari sends the moves and the release to it). None while the dock is hidden (clicks would edit unseen)."""
        if self.corr.dock_hidden():
            return
        negative = self.negative_box.value or "Shift" in event.modifiers or event.button == 2
        position, start = event.position, np.asarray(getattr(event, "pos", (0.0, 0.0)), float)
        yield
        while event.type == "mouse_move":
            if np.abs(np.asarray(getattr(event, "pos", start), float) - start).max() > 3:  # screen pixels
                return
            yield
        image = self._image_layer()
        if image is None:  # (the image deleted while the mode was on: said, not a click that does nothing)
            self._refuse("No image to click on: choose one in the Image field above (or open it again).")
            return
        if why := click_refusal(self.viewer, image, self._model_dims()):  # (3D view; a 2D model on a rolled view)
            self._refuse(why)
            return
        self.click(image.world_to_data(position), positive=not negative)

    # -- clicks ---------------------------------------------------------------------------------
    @property
    def clicks(self) -> list[tuple[tuple[float, ...], int]]:
        """This object's clicks: (image index coordinates, 1 | 0), newest last."""
        return self.session.clicks

    def new_object(self) -> None:
        self.session, self.object_value, self.target = PromptSession(), None, None
        self._steps.clear()  # (the undo steps of the object's clicks: Undo last click reaches this object's only)
        self.pending = False  # (the previous object's clicks still queued run all the same: _finished)
        if self.points_layer is not None and self.points_layer in self.viewer.layers:
            self.points_layer.data = np.empty((0, self.points_layer.ndim))
        for layer in self.viewer.layers:  # the last object's modulated attention no longer applies: hidden
            if "prompt_attention" in (layer.metadata.get("attnseg") or {}):  # (a removal stalls napari)
                layer.visible = False
        if self.enable_box.value:
            self.show_value()

    def _new_object_button(self) -> None:
        self.new_object()
        if self.enable_box.value:
            self.ready_status("New object. ")
        else:
            self.status.value = ""

    def _refuse(self, message: str) -> None:
        self.status.value = message
        notify_error(message)

    def click(self, data_point, positive: bool = True):
        """A click at ``data_point`` (the image layer's data coordinates); returns the worker or None."""
        if self.grey_pending(data_point, positive):  # (a big slide's grey still being made: the click waits for it)
            return None
        image = self._image_layer()
        if image is not None and (self.points_layer is None or (self.points_layer.metadata.get(PROMPTS_KEY) or {})
                                  .get("image") != image.unique_id) and self.enable_box.value:
            self._attach()  # (another image chosen while the lists were refreshed: its own prompts layer, on its grid)
        if image is not None and self.corr.labels_combo.value not in self.viewer.layers \
                and (made := mask_for_clicks(self.viewer, image)) is not None:  # (the mask deleted: a new empty one)
            self.corr.refresh(prefer=made.name)
            notify_info(f"Click to fix: no mask for {image.name}; the clicks go to a new empty '{made.name}'.")
            if self.points_layer in self.viewer.layers:  # (napari selected the new mask: the next click is ours too)
                self.viewer.layers.selection.active = self.points_layer
        mask = self.corr.labels_layer()
        if mask is None or image is None:
            return None
        point = tuple(float(c) for c in np.asarray(data_point)[-image.ndim:])
        if why := pair_refusal(mask, image):  # (another shape, or placed elsewhere: the image's scale typed later)
            self._refuse(why)
            return None
        if any(not -0.5 <= c <= n - 0.5 for c, n in zip(point, np.shape(image.data))):
            self._refuse(f"The click at {tuple(round(c, 1) for c in point)} is outside {image.name}; click on the image.")
            return None
        if self.target is not None and (self.target[0] is not mask or self.target[1] is not image):
            self.new_object()
        self._drop_reverted(mask)
        if not self.clicks and not positive:
            self._refuse("Start an object with a positive click; negative clicks refine it.")
            return None
        if not positive and image.ndim == 3 and self._model_dims() == 2 \
                and not any(lab and round(p[0]) == round(point[0]) for p, lab in self.clicks):
            self._refuse(f"Slice {round(point[0])} has no positive click yet: the 2D model segments the slice "
                         "of the newest click, so start there with a positive click.")
            return None
        if not self.clicks:  # a new object: the existing one under the click, or a new one of napari's selected label
            from ..prompts.session import component_at
            from .prompt_view import new_object_value

            labels = np.asarray(mask.data)
            under, chosen = int(labels[tuple(int(round(c)) for c in point)]), new_object_value(mask)
            if under and chosen != under and self.writes_over(mask, chosen):  # a label new to the mask (M): the
                self.session, self.object_value = NewLabelSession(under=under), chosen  # goes over the region (a tumour)
                self._over.add((mask.unique_id, chosen))
            else:
                existing = component_at(labels, point) if under else None  # (object_at, labelled around it only)
                self.object_value = under if existing is not None else chosen
                self.session = PromptSession(initial=existing)
            self.target = (mask, image)
            self.show_value()
        self.session.add(point, positive)
        self._show_points()
        if self.busy:
            self.pending = True  # run again with every click once the current run is done
            return self.worker
        return self._run()

    def _fit_note(self, image, status: bool = False) -> str:
        """The click model's card against ``image`` (a microscopy model on a scan...): a warning shown once and
        a line in the status."""
        name = self.model_combo.value
        text = self.checks.fit(name, self._entries.get(name), image) if name in self._entries else None
        if text and status:
            self.status.value += f" Warning: {text}"
        if text and text not in self._warned:
            self._warned.add(text)
            notify_warning(f"Click to fix: {text}")
        return text or ""

    def _show_points(self) -> None:
        if self.points_layer is None or self.points_layer not in self.viewer.layers:
            return
        self.points_layer.data = np.array([p for p, _ in self.clicks]) if self.clicks else np.empty((0, self.points_layer.ndim))
        if self.clicks:
            self.points_layer.face_color = [POSITIVE if lab else NEGATIVE for _, lab in self.clicks]

    def _run(self, queued=None):
        """Run the model on the object's clicks not run yet (``queued``: ``(session, value, (mask, image))`` of an
        earlier object whose clicks waited behind a run when *New object* was pressed)."""
        from ..prompts import segment_with_prompts

        name = self.model_combo.value
        entry = self._entries.get(name)
        if entry is None:
            notify_error("Choose a prompt model first.")
            return None
        try:  # a checkpoint not loaded yet is loaded by the worker (seconds on the GUI thread for a big one)
            cheap = not isinstance(entry, str) or name in self._loaded or name not in self._dims
            model = self.model(name) if cheap else None
        except AttnSegError as exc:
            notify_error(str(exc))
            return None
        dims = int(model.spatial_dims) if model is not None else self._dims[name]
        session, value, target = queued or (self.session, self.object_value, self.target)
        mask, image = target if target is not None else (self.corr.labels_layer(), self._image_layer())
        data = layer_array(image)  # (a zarr / dask image is read in the worker: 0.8 s a click for 8000^2 px here)
        pts, labs = session.points, session.labels
        used = len(pts)
        z = None
        if dims == 2 and data.ndim == 3:  # a 2D model on a volume: one slice per run
            z, used = session.next_slice_run()
            keep = np.round(pts[:used, 0]) == z
            pts, labs, data = pts[:used][keep][:, 1:], labs[:used][keep], data[z]
        previous = session.current if z is None else session.current_plane(z)
        fresh = max(1, min(used - session.done, len(pts)))  # the clicks this run is the first to use
        spacing = tuple(abs(float(s)) for s in image.scale)[-data.ndim:]  # (flipped, scale < 0: the same voxels)
        unlike = bool(self._fit_note(image))  # (cached) a scan for a microscopy model: no size estimate
        self.busy, self._running = True, (session, value, (mask, image))
        if session is self.session:
            self.pending = used < len(session.clicks)
        self.status.value = f"Segmenting from {used} click(s)..." if session is self.session else \
            "Segmenting the previous object's last click(s)..."
        clicks = list(session.clicks[:used])

        @thread_worker(start_thread=False, ignore_errors=True)
        def work():
            run, plane = (model if model is not None else self.model(name)), np.asarray(data)
            size = (None, None, "") if unlike else self.checks.diameter(run.card, image, mask, plane, z)
            res = segment_with_prompts(run, plane, pts, labs, previous=previous, spacing=spacing, new_clicks=fresh,
                                       diameter=size[0])
            return res, size, getattr(run.card, "object_diameter", None)

        worker = work()
        worker.returned.connect(lambda out: self._apply(out, mask, image, z, used, session, value, clicks))
        worker.errored.connect(lambda exc: self._failed(exc))
        worker.finished.connect(self._finished)
        self.worker = worker
        worker.start()
        return worker

    def _failed(self, exc) -> None:
        self.pending, self._running = False, None  # (its clicks queued behind it would fail the same way, endlessly)
        self.status.value = f"Click failed: {error_message(exc)}"
        notify_error(f"Click to fix: {error_message(exc)}")

    def _finished(self) -> None:
        """The next run: an earlier object's clicks queued behind this run (*New object* pressed, or another mask
        chosen, while it ran: they were lost, and the status said that object was written), then this object's."""
        self.busy = False
        self.worker = None  # (its closures hold the image's data and the layers: a closed case stayed in memory)
        running, self._running = self._running, None
        if running is not None and running[0] is not self.session and running[0].done < len(running[0].clicks) \
                and all(layer in self.viewer.layers for layer in running[2]):
            self._run(running)
        elif self.pending and self.clicks:
            self._run()

    def _apply(self, out, mask, image, z, used: int, session, value: int, clicks: list) -> None:
        """Write a run's result for the object (``session``) whose clicks it used, even if a new object was
        started meanwhile; a run whose clicks were undone or replaced while it ran is dropped (the next
        run, already queued, replaces it). The edit is computed over the run's crop and written through
        ``data_setitem`` (one history entry of its own holding the changed voxels only); the mask's paint event
        schedules the panel's statistics."""
        from ..prompts.size import write_report
        from .prompt_write import click_edit

        result, (_, typical, source), trained = out
        if session.clicks[:used] != clicks or mask not in self.viewer.layers:
            return
        self.last_result = result
        labels = np.asarray(mask.data)
        # the change since the object's mask after the last run: Ctrl+Z / Undo last click restore exactly that
        where, values, after = click_edit(labels, result, value, session, z)
        # one state per run (Undo last click reverts exactly that run's change; an empty change is recorded
        # too, so the session knows which clicks are done)
        # (a 2D model's first run on a slice of a volume is a first run there: the object under the click is kept)
        first = session.initial is not None and not session.ran_on(z) and (z is not None or used == len(session.clicks))
        initial = None if session.initial is None else (session.initial if z is None else session.initial[z])
        report = write_report(result.mask, initial if first else None, tuple(result.box),
                              int(np.count_nonzero(values)), int(values.size - np.count_nonzero(values)),
                              not session.ran_on(z))
        session.record(after, used, (where, values), labels, z=z)
        if where[0].size:  # its own undo step, also while a brush stroke is painted (Undo last click takes it back)
            self._steps[id(session.states[-1])] = (session.states[-1], write_step(mask, where, values))
        if session is not self.session:  # a new object was started (or the mode left) while this one ran
            said = "" if self.status.value.startswith("Segmenting") else f" {self.status.value}"  # (why it ended stays)
            self.status.value = f"The previous object was written ({report['added'] + report['removed']} voxels changed).{said}"
            return
        self.status.value = click_status(result, report, len(result.points), z, typical, trained, source, mask)
        if getattr(session, "refused", False):
            self.status.value = (f"Nothing written: the click fell on label {session.under}, an object of about the "
                                 f"model's size, not a region to write label {value} over. Select label "
                                 f"{session.under} in the mask's layer controls to correct that object, or press "
                                 "New object and click where no label is.")
        if self._fit_note(image):
            self.status.value += " (see the warning: this image is unlike the click model's training data)"
        show_prompt_attention(self.viewer, result, image, z, keep_selected=self.points_layer, below=mask)
        for warning in getattr(result, "warnings", []):
            if warning not in self._warned:
                self._warned.add(warning)
                notify_warning(f"Click to fix: {warning}")

    def _drop_reverted(self, mask) -> int:
        """Remove the newest clicks whose change napari's Ctrl+Z on ``mask`` undid (said in the status); how many."""
        from .prompt_write import reverted_runs

        if not self.clicks or self.busy or mask is None or mask not in self.viewer.layers \
                or not (runs := reverted_runs(self.session, mask.data)):
            return 0
        states, dropped = self.session.states, len(self.clicks)
        for state in states[-runs:]:
            self._steps.pop(id(state), None)
        del states[-runs:]
        del self.session.clicks[states[-1].clicks if states else 0:]
        dropped -= len(self.clicks)
        self.status.value = f"Ctrl+Z on the mask undid the last {dropped} click(s): they were removed."
        self._show_points()
        if not self.clicks:
            self.new_object()
        return dropped

    def undo_last_click(self) -> None:
        """Remove the newest click and restore the mask as it was before it (clicks Ctrl+Z on the mask undid: removed only)."""
        if not self.clicks:
            self.status.value = "No click to undo."
            return
        mask = self.target[0] if self.target is not None else None
        if self._drop_reverted(mask):
            return
        for state in self.session.undo():  # the click's own change: a brush stroke made since stays
            kept, step = self._steps.pop(id(state), (None, None))
            if mask is not None and mask in self.viewer.layers:
                take_back(mask, step if kept is state else None, *revert(np.asarray(mask.data), state))
        self._show_points()  # (the reverted voxels' paint event schedules the panel's statistics)
        if not self.clicks:
            self.new_object()
            self.ready_status("Every click of the object undone. ")
            return
        self.status.value = f"{len(self.clicks)} click(s) left."
        if self.clicks and self.session.done < len(self.clicks) and not self.busy:  # a run had taken several clicks
            self._run()

