"""The "Attention segmentation" dock widget: pick an image and a model, run, see mask + attention."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from napari.layers import Image
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QFileDialog, QWidget

from ..data.orientation import metadata_codes
from ..display import CT_WINDOWS, is_hounsfield, window_limits
from ..errors import AttnSegError
from ..inference import CancelToken
from ._common import (
    Undockable,
    channel_stack_message,
    colour_source,
    dims_message,
    layer_array,
    layer_hint,
    model_channels_first,
    notify_error,
    notify_info,
    notify_warning,
    open_grey_of,
    preview_array,
    set_choices,
    stop_listening,
)
from .job_segment import SegmentJob, model_colours
from .model_choice import card_dict, card_summary, model_for_layer, user_model_entries, with_fit
from .pixel_tool import PixelTool
from .result_layers import ResultLayers
from .segment_form import MODES, SegmentForm, on_open
from .worklist import real_viewer

__all__ = ["MODES", "SegmentWidget"]


@functools.lru_cache(maxsize=64)
def _tiff_calibration(path: str, mtime_ns: int, size: int) -> tuple[tuple[float, ...], str | None, str] | None:
    """:func:`~napari_attnseg.data.tiff.tiff_calibration`, read once per version of the file (its path, time and
    size): the form asks on every choice of layer or model, and a TIFF's header read each time took the GUI
    thread a file read per click."""
    from ..data.tiff import tiff_calibration

    return tiff_calibration(path)


def calibration_hint(layer) -> str:
    """A TIFF opened by napari's own reader comes without the pixel spacing the file records (an ImageJ z-stack:
    2 um between planes, 0.5 um pixels): the results, heatmaps and an export were then in pixels, 1 apart,
    without a word. Says so, with the line that puts the layer on the file's grid."""
    path = str(getattr(getattr(layer, "source", None), "path", None) or "")
    if not isinstance(layer, Image) or not path.lower().endswith((".tif", ".tiff")) or layer.metadata.get("spacing") \
            or any(abs(s - 1.0) > 1e-9 for s in layer.scale):
        return ""
    try:
        stat = os.stat(path)
    except OSError:  # (moved or deleted since it was opened: nothing to say)
        return ""
    found = _tiff_calibration(path, stat.st_mtime_ns, stat.st_size)
    if found is None or len(found[0]) != layer.ndim:
        return ""
    spacing, unit, axes = found
    frames = len(axes) == layer.ndim and axes[0] == "T" and axes.endswith("YX")  # a time-lapse: its frames no length
    sizes = " x ".join(f"{s:g}" for s in spacing[int(frames):]) + (f" {unit}" if unit else "")
    scale = (1.0, *spacing[1:]) if frames else spacing  # (a T axis: frames, 1 apart)
    units = f"; viewer.layers[{layer.name!r}].units = {(unit,) * layer.ndim!r}" if unit and all(a in "ZYX" for a in axes) \
        else ""
    line = f"viewer.layers[{layer.name!r}].scale = {tuple(float(s) for s in scale)!r}{units}"
    if frames:  # the frames labelled 't' (napari's slider says so) and in pixels, the plane in the file's unit
        short = {"micron": "um", "µm": "um"}.get(unit, unit)
        line = (f"viewer.layers[{layer.name!r}].axis_labels = {tuple(a.lower() for a in axes)!r}; " + (
            f"viewer.layers[{layer.name!r}].units = {('pixel', *(short,) * (layer.ndim - 1))!r}; " if unit else "")
            + line)
    return (f"{Path(path).name} records a pixel spacing of {sizes}" + (" in each frame of its time-lapse" if frames else "")
            + f", which napari's TIFF reader did not apply ({layer.name!r} has scale 1): the results, heatmaps and an "
            + ("export would be in pixels (the frames stay frames, 1 apart)" if frames else
               "export would be in pixels, the planes 1 apart")
            + f". To use it, in napari's console (Window > Console): {line}, then choose the image again.")


def _version(path) -> tuple | None:
    """A checkpoint file's version (time and size), None when it is gone."""
    try:
        stat = os.stat(path)
    except (OSError, TypeError):
        return None
    return stat.st_mtime_ns, stat.st_size


class SegmentWidget(Undockable, QWidget, SegmentForm, ResultLayers, PixelTool, SegmentJob):
    """Dock widget; ``confirm_overwrite(layer_name) -> bool`` can be replaced (tests, scripting).
    ``run_done(ok)`` is emitted once a run is over: its layers all shown (True), or it failed or was
    cancelled (False). The form is made of magicgui widgets (``self.form``, built by :class:`SegmentForm`);
    each field is an attribute."""

    run_done = Signal(bool)
    models_changed = Signal()  # a model was added to the list (the Fine-tune panel follows)

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = real_viewer(napari_viewer)  # (napari's plugin proxy: a new wrapper per look-up of a layer)
        self._models: dict[str, object] = {}  # model name -> loaded model or checkpoint path
        self._user: dict[str, tuple | None] = {}  # the user models folder's models listed -> their file's version
        self._descriptions: dict[str, str] = {}
        self._token: CancelToken | None = None
        tokens = self._tokens = [None]  # the running job's token, for the handler of the panel's deletion
        self.destroyed.connect(lambda *_: tokens[0] and tokens[0].cancel())  # the viewer closed: stop the run
        self.worker = None
        self.last_prediction = None
        self.last_source: str | None = None  # the image layer of the last run
        self._showing, self._pixel_layer = False, None
        self._chosen: dict = {}  # image layer id -> the model last shown for it (model_choice.model_for_layer)
        self._preset_for: tuple | None = None  # the (image layer, model) the mode was last preset for
        self.confirm_overwrite = self._ask_overwrite

        self._build_form()

        self.refresh_models()
        self.refresh_layers()
        for layer in self.viewer.layers:
            layer.events.name.connect(self._layer_renamed)
        self.viewer.layers.events.inserted.connect(self._layer_inserted)
        self.viewer.layers.events.removed.connect(self._layer_removed)
        self.advanced_box.changed.connect(lambda on: setattr(self.advanced, "visible", bool(on)))
        self.model_combo.changed.connect(self._model_changed)
        self.image_combo.changed.connect(self._image_changed)
        self.window_combo.changed.connect(self._apply_window)
        self.load_button.changed.connect(lambda *_: self._load_checkpoint_dialog())
        self.run_button.changed.connect(lambda *_: self.run())
        self.estimate_button.changed.connect(lambda *_: self.estimate_and_run())
        self.cancel_button.changed.connect(lambda *_: self.cancel())
        self.pixel_box.changed.connect(self._toggle_pixel_tool)
        on_open(self.model_combo, self.refresh_models)  # (a model added or deleted with napari open)
        self._model_changed()

    # -- choices --------------------------------------------------------------------------------
    def refresh_layers(self, event=None, prefer: str | None = None) -> None:
        names = [ly.name for ly in self.viewer.layers if isinstance(ly, Image) and not ly.metadata.get("attnseg")]
        set_choices(self.image_combo, names, prefer=prefer)
        self._image_changed()

    def _layer_inserted(self, event) -> None:
        event.value.events.name.connect(self._layer_renamed)
        self.refresh_layers()

    def _layer_removed(self, event) -> None:
        event.value.events.name.disconnect(self._layer_renamed)
        self.refresh_layers()
        self._forget_run()

    def _forget_run(self) -> None:
        """The last run's image and every layer made from it closed (the case is done): its prediction (the class
        probabilities, the attention maps: hundreds of MB for a CT) is let go, and its status line, which named
        that case, is cleared. They stayed until the next run, the next case's Segment tab saying the last one's."""
        uid = getattr(self, "_last_uid", None)
        if self.last_prediction is None or any(uid in (ly.unique_id, ly.metadata.get("attnseg_source_uid"))
                                               for ly in self.viewer.layers):
            return
        self.last_prediction = self.last_source = None
        if not self.running():
            self.status.value = ""

    def _layer_renamed(self, event) -> None:
        # the chosen image's old name is gone from the viewer when it is the layer renamed: follow it
        renamed = self.image_combo.value not in self.viewer.layers
        self.refresh_layers(prefer=event.source.name if renamed else None)

    def refresh_models(self) -> None:
        """The bundled models and the user models folder's (``attnseg models --add``), listed again (the folder's
        listing and cards; no model is loaded): when the panel opens, its tab is shown and the model list is
        opened. A model added since is listed, a deleted one leaves the list, one replaced by another file of its
        name is read again when chosen; the choice stays (a deleted one's is said, and the image gets another)."""
        from ..models.registry import bundled_models, user_models, user_models_dir

        for name, card in bundled_models().items():
            self._models.setdefault(name, name)
            self._descriptions.setdefault(name, card.get("description", ""))
        listed, before = user_models()[0], self.model_combo.value
        for name, version in list(self._user.items()):  # deleted, renamed or replaced since it was listed
            if _version(listed.get(name)) != version:
                del self._user[name]
                self._descriptions.pop(name, None)
                if name in listed:
                    self._models[name] = name  # (another file of that name: loaded again when chosen)
                else:
                    self._models.pop(name, None)
        added = False
        for name in user_model_entries(self._models.values()):  # the user models folder (attnseg models --add)
            if name in self._models and name not in self._user:  # (a checkpoint loaded under that label)
                continue
            added |= name not in self._models
            self._models.setdefault(name, name)
            self._user[name] = _version(listed[name])
            card = card_dict(name) or {}
            self._descriptions.setdefault(name, with_fit(card.get("description") or card_summary(card), card))
        set_choices(self.model_combo, list(self._models))
        if before is not None and before not in self._models:
            notify_info(f"Your model {before!r} is no longer in your models folder {user_models_dir()}: it was taken "
                        "off the model list.")
            self._image_changed()  # (a model that suits the image)
            self._model_changed()
        if added:  # (the Fine-tune tab offers them too)
            self.models_changed.emit()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        self.refresh_models()  # (the tab shown: models added or deleted meanwhile)

    def add_model(self, path: str | Path, select: bool = True) -> str:
        """Add a checkpoint file to the model list (the Fine-tune panel calls this)."""
        from ..checkpoint import read_card

        card = read_card(path)
        label = card.name or Path(path).stem
        if label in self._models and self._models[label] != str(path) \
                and str(getattr(self._models[label], "checkpoint_path", "")) != str(path):
            label = f"{label} ({Path(path).parent.name})"
        self._models[label] = str(path)
        self._descriptions[label] = with_fit(card.description, card)
        set_choices(self.model_combo, list(self._models), prefer=label if select else None)
        self._model_changed()
        self.models_changed.emit()
        return label

    def model_names(self) -> list[str]:
        return list(self._models)

    def model_entry(self, label: str):
        """What the list holds for ``label``: a loaded model or a checkpoint path / bundled name."""
        return self._models.get(label)

    def _load_checkpoint_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load checkpoint", "", "Checkpoints (*.safetensors)")
        if path:
            try:
                self.add_model(path)
            except AttnSegError as exc:
                notify_error(str(exc))

    def _model_changed(self, *_) -> None:
        if (layer := self.current_layer()) is not None and self.model_combo.value:
            self._chosen[layer.unique_id] = self.model_combo.value
        model = self._current_model(quiet=True)
        self._describe_fit(model)
        sized = model is not None and getattr(model.card, "object_diameter", None) is not None
        self.diameter_edit.visible = self.estimate_button.visible = sized
        if sized:
            self.diameter_edit.native.setPlaceholderText(f"px, or auto (model: {model.card.object_diameter:g} px)")
        has_pixel = model is not None and hasattr(model, "pixel_attention")
        self.pixel_box.enabled = has_pixel
        if not has_pixel:
            self.pixel_box.value = False
        self._preset_mode()

    def _describe_fit(self, model) -> None:
        """The model's description, and before any run whether the image looks like its training data
        (a CT given to a model not trained on CT, an inverted microscopy image: the checks the run makes)."""
        text = self._descriptions.get(self.model_combo.value or "", "")
        if unlike := layer_hint(self.current_layer(), model):
            text = f"{text}<br><b>Before you run:</b> {unlike}" if text else unlike
        if dropped := calibration_hint(self.current_layer()):
            text = f"{text}<br><b>Before you run:</b> {dropped}" if text else dropped
        self.model_info.value = text

    def _image_changed(self, *_) -> None:
        if fit := model_for_layer(self._models, self.model_combo.value, layer := self.current_layer(), self._chosen):
            self.model_combo.value = fit
        self._preset_mode()
        self._describe_fit(self._current_model(quiet=True))
        with self.window_combo.changed.blocked():
            self.window_combo.value = layer.metadata.get("attnseg_window", "(as opened)") if layer is not None else "(as opened)"
        self._toggle_pixel_tool(self.pixel_box.value)

    def _apply_window(self, *_) -> None:
        """Set the image layer's contrast limits to the chosen window (CT presets in HU)."""
        layer = self.current_layer()
        preset = self.window_combo.value
        if layer is None or preset == "(as opened)":
            return
        data = preview_array(layer)  # (a lazy or pyramid image is not read whole on the GUI thread)
        if preset in CT_WINDOWS and not is_hounsfield(data):
            notify_warning(f"{layer.name} does not look like a CT in Hounsfield units; the {preset} window may show "
                           "nothing useful.")
        lo, hi = window_limits(data, preset)
        layer.contrast_limits_range = (min(lo, layer.contrast_limits_range[0]), max(hi, layer.contrast_limits_range[1]))
        layer.contrast_limits = (lo, hi)
        layer.metadata["attnseg_window"] = preset

    def _preset_mode(self, *_) -> None:
        """Preset the mode from the image and the model when either changes; a mode the user picked
        stays while they do (other layers coming and going, renames, a run's results)."""
        layer = self.current_layer()
        model = self._current_model(quiet=True)
        if layer is None or model is None or self._preset_for == (layer.unique_id, model):
            return
        self._preset_for = (layer.unique_id, model)
        spatial = layer.ndim
        mode = "3d" if (spatial == 3 and model.spatial_dims == 3) else ("slices" if spatial == 3 else "2d")
        if model_channels_first(layer, model):  # (C, y, x) for a model of C channels: one 2D image
            mode = "2d"
        from ..inference.checks import _channel_last

        # (y, x, C): "auto", so Run says to split the channels; slices would segment each row of the image
        self.mode_combo.value = "auto" if spatial == 3 and _channel_last(layer_array(layer).shape) else mode

    def current_layer(self):
        name = self.image_combo.value
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def _current_model(self, quiet: bool = False):
        from ..checkpoint import load_model

        label = self.model_combo.value
        entry = self._models.get(label)
        if entry is None:
            return None
        if isinstance(entry, str):
            try:
                entry = load_model(entry, device="cpu")
            except AttnSegError as exc:
                if not quiet:
                    notify_error(f"Could not load model {label!r}: {exc}")
                return None
            self._models[label] = entry
        return entry

    # -- running --------------------------------------------------------------------------------
    def _check(self):
        layer = self.current_layer()
        if layer is None:
            notify_error("No image layer: open an image (File > Open, or File > Open Sample > Attention Segmentation).")
            return None
        model, colours = self._current_model(), None
        layer = colour_source(self.viewer, layer, model)  # (the picture, not the grey layer a 1-channel run made)
        if layer.rgb and model is not None and model.in_channels > 1:  # its colours, as attnseg predict gives them
            if (colours := model_colours(layer, model)) is None:
                return None
        elif layer.rgb and (grey := open_grey_of(self.viewer, layer)) is not None:  # (a new one: on the run's worker)
            layer = grey
            self.refresh_layers(prefer=layer.name)
        if layer is None:
            return None
        if (refused := dims_message(layer) or channel_stack_message(layer, self.mode_combo.value, model)) is not None:
            notify_error(refused)
            return None
        if model is None:
            if not self._models:
                notify_error("No model: load a checkpoint (.safetensors) with 'Load checkpoint...'.")
            return None
        if model.spatial_dims == 3 and layer.ndim == 2:
            notify_error(f"Model {self.model_combo.value!r} is 3D but layer {layer.name!r} is 2D; pick a 2D model.")
            return None
        return layer, model, colours

    def run(self):
        if not self.run_button.enabled:  # a run is going (Estimate the size and run stayed clickable: two runs)
            stopping = self._token is not None and self._token.cancelled
            notify_info("The cancelled run is still stopping; press Run again in a moment." if stopping else
                        "A segmentation is already running; wait for it or press Cancel first.")
            return None
        if (checked := self._check()) is None:
            self.run_done.emit(False)  # a refusal ends the run too: a script waiting on run_done goes on
            return None
        layer, model, colours = checked
        diameter = None
        if getattr(model.card, "object_diameter", None) is not None and self.diameter_edit.value.strip():
            from ..inference.diameter import check_diameter

            try:
                diameter = check_diameter(self.diameter_edit.value)
            except AttnSegError as exc:
                notify_error(f"Object diameter: {exc}")
                self.run_done.emit(False)
                return None
        mode = self.mode_combo.value
        kwargs = {
            "mode": None if mode == "auto" else mode,
            "tile": self.tile_spin.value or None,
            "overlap": self.overlap_spin.value,
            "attention": self.attention_box.value,
            "tta": self.tta_box.value, "device": self.device_combo.value,
            # (a layer flipped with a negative scale has the same voxel size: the spacing was refused as negative)
            "spacing": tuple(abs(float(s)) for s in layer.scale) if getattr(model.card, "spacing", None) else None,
            "diameter": diameter,
            "precision": self.precision_combo.value,
            "brain_extraction": {"auto": None, "on": True, "off": False}[self.brain_combo.value],
            "orientation": metadata_codes(layer.metadata, layer.ndim),
        }
        return self._start_job(layer, model, kwargs, colours)

    def panel_undocked(self) -> None:  # (the dock closed: a run's results would land unasked; here, as Undockable
        self.cancel()  # comes first among the bases)
        stop_listening(self.viewer, self)  # (a reopened dock is a new panel; this one's last run is let go)
        self.last_prediction = None
