"""The "Correct and export" panel: mask helpers, reviewed slices, live edit statistics, dataset export.

The form is made of magicgui widgets (built by :class:`~.correct_form.CorrectForm`); every computation
is a core function (``napari_attnseg.correct``, ``napari_attnseg.data.export``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from napari.utils import progress as napari_progress
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QDockWidget, QWidget

from .. import correct
from ..errors import AttnSegError
from ..settings import remember_export, settings_path
from ._common import (
    Undockable,
    add_grey_layer,
    error_message,
    grey_of_layer,
    is_deleted,
    layer_array,
    notify_error,
    notify_info,
    notify_warning,
    open_grey_of,
    stop_listening,
    tell_docked,
)
from .correct_export import CorrectExport, _fine_tuned_on, exported_text, folder_text, movie_id
from .correct_form import ClassList, CorrectForm
from .correct_helpers import LiveStats, MaskHelpers
from .correct_layers import KEPT_KEY, LayerChoice, kept_state  # (the mask and image chosen among the layers)
from .job_pool import thread_worker
from .round_state import offer_marks_back, replace_loses
from .save_mask import SaveMask
from .suggest_tool import SuggestTool
from .tiff_masks import reopen_tiff_mask
from .worklist import CaseFields, real_viewer

REVIEWED_KEY = "reviewed_slices"


class CorrectWidget(Undockable, QWidget, CorrectForm, ClassList, CorrectExport, LayerChoice, MaskHelpers, LiveStats,
                    SuggestTool, CaseFields, SaveMask):
    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = real_viewer(napari_viewer)  # (napari's plugin proxy: a new wrapper per look-up of a layer)
        self.last_export_dir: str | None = None
        self._watched = None  # the Labels layer whose edits update the statistics
        self._chosen: tuple = (None, None)  # the (mask, image) layers chosen, followed through renames
        self._auto_names = ""  # the class names last filled in from a mask (typed names are kept)
        self._stats_timer = QTimer(self)
        self._stats_timer.setSingleShot(True)
        self._stats_timer.setInterval(150)  # one update per burst of brush strokes
        self._stats_timer.timeout.connect(self._update_info)

        self._build_form()
        self.propose_last_export()  # the dataset folder of the last export (the day before too)
        self._auto_dataset = folder_text(self.dataset_edit)  # (an export elsewhere replaces it: follow_export)
        self.prompt.refresh_models()  # (a Container resets its combo boxes' choices when it is built)
        self.refresh()
        self.viewer.layers.events.inserted.connect(self._layer_inserted)
        reopen_tiff_mask(self.viewer, *self.viewer.layers)  # TIFF masks opened before the panel
        self.viewer.layers.events.removed.connect(self._layer_removed)
        self.labels_combo.changed.connect(self._mask_changed)
        self.image_combo.changed.connect(lambda *_: self._remember_choice())
        self.class_names_edit.changed.connect(self._names_typed)
        self.case_edit.changed.connect(self._case_fields_typed)
        self.replace_box.changed.connect(self._case_fields_typed)
        for layer in self.viewer.layers:
            if self._listed(layer):
                layer.events.name.connect(self._layer_renamed)
        for key, action in (("r", self.mark_current), ("Shift-R", lambda: self.mark_current(reviewed=False)),
                            ("k", self.keep_at_cursor), ("n", self.next_suggested)):
            self.viewer.bind_key(key, self._while_shown(action), overwrite=True)
        self._keys = ("r", "Shift-R", "k", "n")

    def _while_shown(self, action):
        """A key's handler: the action, unless the panel's dock is hidden (Window menu, or the hide button of its
        title bar: the panel stays docked, its keys stay bound), where R, K, N would edit masks unseen."""
        def handler(_viewer):
            if not self.dock_hidden():
                action()
        return handler

    def dock_hidden(self) -> bool:
        """Whether the dock holding this panel is hidden (its keys and clicks then do nothing)."""
        dock = self.parentWidget()
        while dock is not None and not isinstance(dock, QDockWidget):
            dock = dock.parentWidget()
        return dock is not None and dock.isHidden()

    # -- layers ---------------------------------------------------------------------------------
    def panel_undocked(self) -> None:
        """The dock closed: its keys and clicks stop acting on the viewer (they would edit masks unseen)."""
        self.prompt.enable_box.value = False
        for key in self._keys:
            self.viewer.bind_key(key, None)
        stop_listening(self.viewer, self, self.prompt)  # (a reopened dock is a new panel: this one must not react)

    def _names_typed(self, *_) -> None:
        """Typed class names go with the chosen mask at once, so File > Save writes them too (before, only an
        export did: a mask saved first reopened the next day with the model's names, and its export was refused)."""
        names = [n.strip() for n in self.class_names_edit.value.split(",")]
        layer = self.viewer.layers[self.labels_combo.value] if self.labels_combo.value in self.viewer.layers else None
        if layer is not None and all(names) and ", ".join(names) != self._auto_names:
            layer.metadata["class_names"] = names
            self._names_for = self._chosen_case()

    def _schedule_stats(self, *_) -> None:
        self._stats_timer.start()

    def labels_layer(self):
        name = self.labels_combo.value
        if name not in self.viewer.layers:
            notify_error("No Labels layer: run a model first, or add a Labels layer to correct.")
            return None
        return self.viewer.layers[name]

    # -- review ---------------------------------------------------------------------------------
    def _reviewed(self, layer) -> list[int]:
        return list(layer.metadata.get(REVIEWED_KEY, []))

    def mark_slices(self, slices, reviewed: bool = True) -> None:
        """Mark ``slices`` reviewed (``reviewed=False``: take the mark off them). A slice where the image's DICOM series
        misses an image is never marked (nothing to review there; an export leaves it 'ignore'): said, and refused
        when it is the only one."""
        from ..data.inserted import no_image_text

        layer = self.labels_layer()
        if layer is None:
            return
        marks, chosen = set(self._reviewed(layer)), {int(s) for s in slices}
        gone = sorted(chosen & set(self._inserted(layer))) if reviewed else []
        if gone and chosen <= set(gone):  # (R on the empty slice the reader inserted)
            notify_error(f"{layer.name}: {no_image_text(gone)}, so there is nothing to review there: it is not marked "
                         "reviewed (an export leaves it 'ignore'). Review the slices beside it.")
            return
        chosen -= set(gone)
        layer.metadata[REVIEWED_KEY] = sorted(marks | chosen if reviewed else marks - chosen)
        self._update_info()
        if gone:  # (Mark all, a range across the gap)
            notify_info(f"{layer.name}: {len(chosen)} slice{'s' if len(chosen) != 1 else ''} marked reviewed; "
                        f"{no_image_text(gone)} and {'was' if len(gone) == 1 else 'were'} left unmarked.")

    def mark_current(self, reviewed: bool = True):
        """R marks the axial slice on screen (Shift+R, ``reviewed=False``: unmarks it)."""
        layer = self.labels_layer()
        if layer is None:
            return
        if layer.ndim == 2:
            self.mark_slices([0], reviewed)
            return
        if not self._axial_view(layer):
            notify_error(f"R marks the axial slice on screen, and the view of {layer.name} shows no axial slice "
                         "(a 3D or rolled view): go back to the 2D view with the slices on the slider, or type the "
                         "slices in the range field.")
            return
        self.mark_slices([self._current_slice(layer)], reviewed)

    def mark_range(self):
        """Mark the slices typed in the range field ('a-b,c'; axial indices, the layer's first axis)."""
        layer = self.labels_layer()
        if layer is None:
            return
        text = self.range_edit.value
        try:
            slices = correct.parse_slice_ranges(text)
        except (AttnSegError, ValueError) as exc:
            notify_error(f"Slices {text!r}: {exc}")
            return
        n = layer.data.shape[0] if layer.ndim == 3 else 1
        outside = [s for s in slices if not 0 <= s < n]
        if outside:
            notify_error(f"{layer.name} has slices 0-{n - 1}; {correct.format_slice_ranges(outside)} are outside.")
            return
        self.mark_slices(slices)

    def mark_all(self):
        layer = self.labels_layer()
        if layer is not None:
            before = self._reviewed(layer)
            self.mark_slices(range(layer.data.shape[0] if layer.ndim == 3 else 1))
            if before and before != self._reviewed(layer):  # (pressed by mistake: which were checked is kept)
                offer_marks_back(self, layer, before)

    def clear_reviewed(self):
        layer = self.labels_layer()
        if layer is not None and (before := self._reviewed(layer)):
            layer.metadata[REVIEWED_KEY] = []
            self._update_info()
            offer_marks_back(self, layer, before)

    def _update_info(self, *_):
        name = self.labels_combo.value
        if name not in self.viewer.layers:
            self.reviewed_label.value = "Reviewed slices: none"
            self.stats_label.value = self.sizes_label.value = ""
            return
        layer = self.viewer.layers[name]
        rev = self._reviewed(layer)
        self.reviewed_label.value = "Reviewed slices: " + (correct.format_slice_ranges(rev) if rev else "none")
        unit = "voxels" if layer.ndim == 3 and not self._time_lapse(layer) else "pixels"  # (2D, a time-lapse's frames)
        self.size_unit.value = unit
        pred = layer.metadata.get("attnseg_prediction")
        if pred is not None and np.shape(pred) == layer.data.shape:
            stats = self._edit_stats(layer, pred)  # kept up to date edit by edit; counted anew in a worker
            if stats is None:
                self.stats_label.value = self.stats_label.value or "Edits vs prediction: counting..."
                self.sizes_label.value = ""
                return
            parts = [f"class {c}: +{s['added']} / -{s['removed']} {unit}, Dice {s['dice']:.3f}" for c, s in stats["per_class"].items()]
            self.stats_label.value = "Edits vs prediction: " + ("; ".join(parts) if parts else "none")
            self.sizes_label.value = self._mask_sizes(layer)
            layer.metadata["attnseg_edit_stats"] = stats
        else:
            self.stats_label.value = ""
            self.sizes_label.value = self._mask_sizes(layer)

    # -- export ---------------------------------------------------------------------------------
    def export(self):
        from ..checkpoint import model_identity
        from ..data.export import export_case
        from ..data.export_colour import colour_layer_export
        from ..data.hyperstack import own_channel_names
        from .tiff_masks import mask_axes  # (a time-lapse's frames stay frames in the TIFF layout)

        layer = self.labels_layer()
        if layer is None:
            return None
        img_name = self.image_combo.value
        if img_name not in self.viewer.layers:
            notify_error("No image layer to export with the mask.")
            return None
        image_layer = self.viewer.layers[img_name]
        if layer.metadata.get("attnseg_source_uid") not in (None, image_layer.unique_id):
            if (source := self._source_layer(layer)) is not None:
                notify_error(f"{layer.name} was predicted on the image {source.name!r}, not {img_name!r}: choose "
                             f"{source.name!r} as the Image, or the mask that belongs to {img_name!r}.")
                return None
            notify_warning(f"{layer.name} was predicted on an image that is no longer open; it is exported with "
                           f"{img_name!r}: make sure they belong together.")
        picture = self.colour_picture(image_layer, layer)  # an RGB layer's colours, for a mask a colour model made
        rgb_layer = image_layer if picture is None and image_layer.rgb else None  # (a slide reopened from a record:
        if rgb_layer is not None and (grey := open_grey_of(self.viewer, rgb_layer)) is not None:  # the grey image that
            image_layer, rgb_layer = grey, None  # was segmented, as attnseg export does; a new one on the worker)
        folder = folder_text(self.dataset_edit)
        if not folder:  # (emptied, or never exported: name the datasets of the earlier rounds)
            earlier = ", ".join(_fine_tuned_on())
            notify_error("Choose a dataset folder first (Export for fine-tuning > Dataset folder)." + (
                f" Your models were fine-tuned on {earlier}: choose it to add this round there." if earlier else ""))
            return None
        if not Path(folder).expanduser().is_absolute():  # (relative to napari's working folder: unknown to a user)
            notify_error(f"Dataset folder {folder!r} is not a full path; choose the folder with the button next to the "
                         "field.")
            return None
        try:
            names = self.class_names(layer)
        except ValueError as exc:
            notify_error(str(exc))
            return None
        if names:  # the names travel with the mask (File > Save writes them; attnseg export reads them)
            layer.metadata["class_names"] = list(names)
        rev, note = self._export_marks(layer)  # (a mark on a slice with no image: 'ignore', as attnseg export does)
        if layer.ndim == 3 and not rev:  # nothing reviewed: every slice would be the model's unchecked guess
            only = f" but slices with no image ({correct.format_slice_ranges(self._reviewed(layer))})" if note else ""
            notify_error(f"No slice of {layer.name} is marked reviewed{only}. Mark the slices you checked (R on a slice, "
                         "ranges such as 30-34, or Mark all if you checked the whole volume); only reviewed slices "
                         "are exported as labels, the others as ignore.")
            return None
        meta = image_layer.metadata
        if (typed := [abs(float(v)) for v in image_layer.scale]) and meta.get("spacing") and not np.allclose(typed, meta["spacing"], rtol=1e-4):
            notify_warning(f"{img_name} has the scale {' x '.join(f'{v:g}' for v in typed)} set in napari, but its file records "
                           f"{' x '.join(f'{float(v):g}' for v in meta['spacing'])}: the export keeps the file's voxel size and "
                           "position (as Save mask does). If the file's header is wrong, correct the file and open it again.")
        info, fmt = (layer.metadata.get("attnseg") or {}), self.format_combo.value
        kwargs = {
            "spacing": meta.get("spacing") or [abs(float(s)) for s in image_layer.scale],  # (flipped: scale < 0)
            "affine": np.asarray(meta["affine"]) if meta.get("affine") is not None else None,
            "reviewed_slices": rev if (rev and layer.ndim == 3) else None,
            "prediction": layer.metadata.get("attnseg_prediction"),
            "case_id": self.case_edit.value.strip() or None,
            "overwrite": bool(self.replace_box.value and self.case_edit.value.strip()),
            "label_names": names, "foreground": bool(self.foreground_box.value), "labels_name": layer.name,
            "source_name": Path(str(meta["source_path"])).name if meta.get("source_path") else img_name,
            "model_info": model_identity(info) if info else None,
            "modality": meta.get("modality"), "nifti": meta.get("nifti"),  # its qform/sform codes too
            # one per axis: a time-lapse's ('pixel', 'um', 'um') keeps its micron (any 'pixel' had dropped them all)
            "unit": units if set(units := [str(u) for u in getattr(image_layer, "units", ())]) - {"pixel"} else None,
            "axes": mask_axes({"axis_labels": layer.axis_labels, "metadata": layer.metadata}, layer.data.shape, self.viewer),
            "colour": picture is not None,  # (one RGB picture in the dataset, for the colour model to fine-tune on)
            # a new dataset names the channel as the file does (an OME channel: DAPI), as attnseg export does
            "default_channel_names": None if picture is not None else own_channel_names(dict(meta)),
        }
        time_lapse = fmt in ("nnunet", "monai") and layer.ndim == 3 and str(kwargs["axes"] or "").startswith("T")
        if (kwargs["overwrite"] or time_lapse and kwargs["case_id"]) and (lost := replace_loses(
                folder, kwargs["case_id"], kwargs["source_name"], layer.data.shape, rev, time_lapse, kwargs["overwrite"])):
            notify_error(f"{layer.name}: {lost}")
            return None
        source, labels, info_of = (layer_array(image_layer) if picture or rgb_layer else image_layer.data,
                                   np.array(layer.data), layer.metadata.get("attnseg"))

        @thread_worker(start_thread=False, ignore_errors=True)
        def work():  # (the picture's colours or grey here: 4-6 s of a 6000 x 6000 slide had paused napari)
            image, found = np.asarray(source), None
            if picture is not None:
                image = colour_layer_export(image, info_of, labels.ndim, img_name, picture)
            elif rgb_layer is not None:
                try:
                    found = grey_of_layer(image, img_name)
                except ValueError as exc:  # (no grey image in its colours: what to do, nothing written)
                    return None, str(exc)
                image = found[0]
            left_out.append(_left_out(labels, kwargs))  # (after a refusal nothing is recorded anyway)
            return export_case(image, labels, folder, fmt, **kwargs), found

        worker, kept, left_out = work(), kept_state(layer), []
        bar = napari_progress(total=0, desc=f"Exporting {layer.name}")  # export_case reports no steps: busy bar

        def done(result):
            rec, found = result
            if rec is None:
                notify_error(found)
                return
            if found is not None and rgb_layer in self.viewer.layers:  # (its grey layer, as the Segment tab adds it)
                add_grey_layer(self.viewer, rgb_layer, found)
            base = movie_id(rec)  # (a time-lapse's frames: 2D cases <base>_t000...; the base is what to type again)
            notify_info(f"{exported_text(rec, labels.shape[0])} to {folder}")
            if not any(left_out):  # (removing it unchanged now, closing the case, loses nothing)
                layer.metadata[KEPT_KEY] = kept
            if note:  # (the note attnseg export prints)
                notify_info(f"{img_name}: note: {note}")
            if not remember_export(folder, fmt, base, kwargs["source_name"]):  # proposed again tomorrow
                notify_warning(f"The dataset folder could not be saved in {settings_path()}; the next napari session "
                               "will not propose it (choose it again there).")
            for warning in getattr(rec, "warnings", []):  # e.g. the same image exported before
                notify_warning(f"{folder}: {warning}")
            previous = self.last_export_dir  # (a Python attribute: kept once Qt deleted the panel, its dock closed)
            if not is_deleted(self):
                self.last_export_dir = folder
                self._last_case_hint(base, rec.frames)
            # the Fine-tune panel's dataset follows the export unless the user typed another one, and so does another
            # Correct panel's (the dock closed while the export ran and opened again: its new panel); none once the
            # viewer was closed while the export ran (the files are written, nothing to show)
            tell_docked(self.viewer, self, "follow_export", folder, previous, info)

        def finish():
            bar.close()
            if is_deleted(self):
                return
            self.export_bar.visible = False
            self.export_button.enabled = True

        worker.returned.connect(done)
        worker.errored.connect(lambda exc: notify_error(f"Export of {layer.name} failed: {error_message(exc)}"))
        worker.finished.connect(finish)
        self.export_button.enabled = False
        self.export_bar.visible = True
        worker.start()
        return worker


def _left_out(labels: np.ndarray, kwargs: dict) -> bool:
    """The export leaves out something the user made, so a removal of the mask must still offer it back: a change
    (against the model's prediction, else any label) on a slice not marked reviewed (exported as 'ignore'), or class
    ids that Export foreground merges."""
    if kwargs["foreground"] and labels.max(initial=0) > 1:
        return True
    reviewed = kwargs["reviewed_slices"]
    rest = [] if reviewed is None else sorted(set(range(labels.shape[0])) - {int(z) for z in reviewed})
    if not rest:
        return False
    prediction = kwargs["prediction"]
    base = np.asarray(prediction)[rest] if prediction is not None and np.shape(prediction) == labels.shape else 0
    return bool(np.any(labels[rest] != base))
