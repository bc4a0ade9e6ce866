"""The "Attention segmentation" dock widget: pick an image and a model, run, see mask + attention."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from napari.layers import Image
from napari.qt.threading import thread_worker
from napari.utils import progress as napari_progress
from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..devices import available_devices
from ..errors import AttnSegError, Cancelled
from ..inference import CancelToken, iter_predict
from ..layers import data_hash, prediction_layers
from ._common import notify_error, notify_info, notify_warning, placement_of, upsert_layer

MODES = ("auto", "2d", "3d", "slices")


class _Failed:
    """An expected failure carried back from the worker as a value."""

    def __init__(self, error: Exception):
        self.error = error


class SegmentWidget(QWidget):
    """Dock widget; ``confirm_overwrite(layer_name) -> bool`` can be replaced (tests, scripting).

    ``run_done(ok)`` is emitted once a run is over: its layers all shown (True), or it failed or was
    cancelled (False).
    """

    run_done = Signal(bool)

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self._models: dict[str, object] = {}  # combo text -> loaded model or checkpoint path
        self._token: CancelToken | None = None
        self.worker = None
        self.last_prediction = None
        self._showing = False
        self._pixel_layer = None
        self.confirm_overwrite = self._ask_overwrite

        self.image_combo = QComboBox()
        self.model_combo = QComboBox()
        self.model_info = QLabel()
        self.model_info.setWordWrap(True)
        # two lines always fit, also when other panels squeeze the dock
        self.model_info.setMinimumHeight(2 * self.model_info.fontMetrics().lineSpacing() + 6)
        self.load_button = QPushButton("Load checkpoint...")
        self.device_combo = QComboBox()
        have = available_devices()
        for d in ("auto", "cpu", "cuda", "mps"):
            self.device_combo.addItem(d if d in have or d == "auto" else f"{d} (not available)", d)
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(MODES)
        self.attention_box = QCheckBox("Show attention")
        self.attention_box.setChecked(True)
        self.pixel_box = QCheckBox("Where does this pixel look? (click the image)")
        self.pixel_box.setEnabled(False)
        self.tile_spin = QSpinBox()
        self.tile_spin.setRange(0, 1024)
        self.tile_spin.setSpecialValueText("from model card")
        self.overlap_spin = QDoubleSpinBox()
        self.overlap_spin.setRange(0.0, 0.9)
        self.overlap_spin.setSingleStep(0.05)
        self.overlap_spin.setValue(0.25)
        self.tta_box = QCheckBox("Average over flips (2^dims times slower)")
        self.tta_box.setToolTip("Test-time augmentation: predict on every flipped copy and average; "
                                "smoother boundaries (nuclei-2d: test Dice 0.942 -> 0.946).")
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress_bar = QProgressBar()
        self.status = QLabel("")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Image", self.image_combo)
        form.addRow("Model", self.model_combo)
        form.addRow("", self.model_info)
        form.addRow("", self.load_button)
        form.addRow("Device", self.device_combo)
        form.addRow("Mode", self.mode_combo)
        advanced = QGroupBox("Advanced")
        advanced.setCheckable(True)
        advanced.setChecked(False)
        adv_form = QFormLayout(advanced)
        adv_form.addRow("Tile size", self.tile_spin)
        adv_form.addRow("Overlap", self.overlap_spin)
        adv_form.addRow("", self.tta_box)
        fold = (self.tile_spin, self.overlap_spin, self.tta_box)
        advanced.toggled.connect(lambda on: [w.setVisible(on) for w in fold])
        for w in fold:
            w.setVisible(False)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(advanced)
        layout.addWidget(self.attention_box)
        layout.addWidget(self.pixel_box)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status)
        layout.addStretch()

        self.refresh_models()
        self.refresh_layers()
        self.viewer.layers.events.inserted.connect(self.refresh_layers)
        self.viewer.layers.events.removed.connect(self.refresh_layers)
        self.model_combo.currentIndexChanged.connect(self._model_changed)
        self.image_combo.currentIndexChanged.connect(self._preset_mode)
        self.load_button.clicked.connect(self._load_checkpoint_dialog)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.pixel_box.toggled.connect(self._toggle_pixel_tool)
        self.image_combo.currentIndexChanged.connect(lambda *_: self._toggle_pixel_tool(self.pixel_box.isChecked()))
        self._model_changed()

    # -- choices --------------------------------------------------------------------------------
    def refresh_layers(self, event=None) -> None:
        current = self.image_combo.currentText()
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        for layer in self.viewer.layers:
            if isinstance(layer, Image) and not layer.metadata.get("attnseg"):
                self.image_combo.addItem(layer.name)
        idx = self.image_combo.findText(current)
        self.image_combo.setCurrentIndex(idx if idx >= 0 else 0)
        self.image_combo.blockSignals(False)
        self._preset_mode()

    def refresh_models(self) -> None:
        from ..models.registry import bundled_models

        for name, card in bundled_models().items():
            if self.model_combo.findText(name) < 0:
                self.model_combo.addItem(name, card.get("description", ""))
                self._models.setdefault(name, name)

    def add_model(self, path: str | Path, select: bool = True) -> str:
        """Add a checkpoint file to the model list (the Fine-tune panel calls this)."""
        from ..checkpoint import read_card

        card = read_card(path)
        label = card.name or Path(path).stem
        if label in self._models and self._models[label] != str(path):
            label = f"{label} ({Path(path).parent.name})"
        self._models[label] = str(path)
        if self.model_combo.findText(label) < 0:
            self.model_combo.addItem(label, card.description)
        if select:
            self.model_combo.setCurrentIndex(self.model_combo.findText(label))
        return label

    def _load_checkpoint_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load checkpoint", "", "Checkpoints (*.safetensors)")
        if path:
            try:
                self.add_model(path)
            except AttnSegError as exc:
                notify_error(str(exc))

    def _model_changed(self, *_) -> None:
        self.model_info.setText(self.model_combo.currentData() or "")
        model = self._current_model(quiet=True)
        has_pixel = model is not None and hasattr(model, "pixel_attention")
        self.pixel_box.setEnabled(has_pixel)
        if not has_pixel:
            self.pixel_box.setChecked(False)
        self._preset_mode()

    def _preset_mode(self, *_) -> None:
        layer = self.current_layer()
        model = self._current_model(quiet=True)
        if layer is None or model is None:
            return
        spatial = layer.ndim
        mode = "3d" if (spatial == 3 and model.spatial_dims == 3) else ("slices" if spatial == 3 else "2d")
        self.mode_combo.setCurrentText(mode)

    def current_layer(self):
        name = self.image_combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def _current_model(self, quiet: bool = False):
        from ..checkpoint import load_model

        label = self.model_combo.currentText()
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
        if layer.rgb:
            notify_error(f"Layer {layer.name!r} is RGB; the models take grayscale images. Convert it to grayscale first.")
            return None
        if layer.ndim not in (2, 3):
            notify_error(f"Layer {layer.name!r} has {layer.ndim} dimensions; the models take 2D images or 3D volumes.")
            return None
        model = self._current_model()
        if model is None:
            if not self._models:
                notify_error("No model: load a checkpoint (.safetensors) with 'Load checkpoint...'.")
            return None
        if model.spatial_dims == 3 and layer.ndim == 2:
            notify_error(f"Model {self.model_combo.currentText()!r} is 3D but layer {layer.name!r} is 2D; pick a 2D model.")
            return None
        return layer, model

    def run(self):
        checked = self._check()
        if checked is None:
            return None
        layer, model = checked
        mode = self.mode_combo.currentText()
        kwargs = {
            "mode": None if mode == "auto" else mode,
            "tile": self.tile_spin.value() or None,
            "overlap": self.overlap_spin.value(),
            "attention": self.attention_box.isChecked(),
            "tta": self.tta_box.isChecked(),
            "device": self.device_combo.currentData(),
            "spacing": tuple(layer.scale) if getattr(model.card, "spacing", None) is not None else None,
        }
        self._token = CancelToken()
        image = layer.data
        name = layer.name
        where = placement_of(layer)
        # the source's file geometry travels with the results, so the writers can restore it
        geometry = {k: layer.metadata[k] for k in ("affine", "spacing", "source_path") if k in layer.metadata}
        bar = napari_progress(total=1, desc=f"Segmenting {name}")

        @thread_worker(start_thread=False)
        def work():
            # expected failures (bad input, Cancel) come back as values, not as event-loop exceptions
            gen = iter_predict(model, image, cancel=self._token, **kwargs)
            while True:
                try:
                    done, total = next(gen)
                except StopIteration as stop:
                    return stop.value
                except AttnSegError as exc:
                    return _Failed(exc)  # (superqt re-raises an exception returned as is)
                yield done, total

        worker = work()

        def on_progress(value):
            done, total = value
            bar.total = total
            bar.n = done
            bar.refresh()
            self.progress_bar.setMaximum(total)
            self.progress_bar.setValue(done)

        def finish():
            bar.close()
            self.cancel_button.setEnabled(False)
            if not self._showing:  # failed or cancelled; otherwise the last layer shown re-enables Run
                self.run_button.setEnabled(True)
                self.run_done.emit(False)

        def on_done(pred):
            if isinstance(pred, _Failed):
                on_error(pred.error)
                return
            self.last_prediction = pred
            self._show(model, pred, name, where, geometry, then=lambda: (self.run_button.setEnabled(True),
                                                                        self.run_done.emit(True)))
            msg = f"{name}: {pred.params['tiles']} tiles on {pred.device} ({pred.precision}) in {pred.timings['total_s']:.1f} s"
            self.status.setText(msg)
            for w in pred.warnings:
                notify_warning(f"{name}: {w}")

        def on_error(exc):
            if isinstance(exc, Cancelled):
                self.status.setText("Cancelled; the layers were left as they were.")
                notify_info("Segmentation cancelled.")
            elif isinstance(exc, AttnSegError):
                notify_error(f"{name}: {exc}")
            else:
                notify_error(f"{name}: unexpected error ({type(exc).__name__}: {exc}).")

        worker.yielded.connect(on_progress)
        worker.returned.connect(on_done)
        worker.errored.connect(on_error)
        worker.finished.connect(finish)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText(f"Running {self.model_combo.currentText()} on {name}...")
        self.worker = worker
        worker.start()
        return worker

    def cancel(self) -> None:
        if self._token is not None:
            self._token.cancel()

    def _ask_overwrite(self, layer_name: str) -> bool:
        answer = QMessageBox.question(
            self, "Overwrite edited mask?",
            f"The mask {layer_name!r} was edited since the last run. Replace it with the new prediction?\n"
            "No keeps your edits and puts the prediction in a new layer.",
        )
        return answer == QMessageBox.Yes

    def _show(self, model, pred, name: str, where, geometry: dict | None = None, then=None) -> None:
        """Add or update the result layers, one per turn of the event loop.

        Creating a napari layer costs the GUI thread a few hundred ms on a slow machine (its vispy
        visual); adding them one at a time keeps each stall to one layer instead of all of them.
        """
        pending = list(prediction_layers(model, pred, name, where))
        self._showing = True

        def step():
            if not pending:
                self._showing = False
                self.viewer.layers.selection.active = self.viewer.layers[name] if name in self.viewer.layers else None
                if then is not None:
                    then()
                return
            self._show_one(*pending.pop(0), geometry)
            QTimer.singleShot(15, step)  # let the paint and input events queued meanwhile run first

        step()

    def _show_one(self, data, kwargs, kind, geometry) -> None:
        if kind == "labels" and kwargs["name"] in self.viewer.layers:
            old = self.viewer.layers[kwargs["name"]]
            if old.metadata.get("attnseg_hash") != data_hash(old.data) and not self.confirm_overwrite(old.name):
                n = 2
                while f"{kwargs['name']} ({n})" in self.viewer.layers:
                    n += 1
                kwargs["name"] = f"{kwargs['name']} ({n})"
        layer = upsert_layer(self.viewer, data, kwargs, kind)
        if kind == "labels":
            layer.metadata["attnseg_prediction"] = np.array(data, copy=True)
            layer.metadata.update(geometry or {})

    # -- 'Where does this pixel look?' ----------------------------------------------------------
    def _toggle_pixel_tool(self, on: bool) -> None:
        """Attach the click callback to the chosen image layer (and only to it)."""
        previous = getattr(self, "_pixel_layer", None)
        if previous is not None and self._on_click in previous.mouse_drag_callbacks:
            previous.mouse_drag_callbacks.remove(self._on_click)
        self._pixel_layer = None
        layer = self.current_layer()
        if on and layer is not None:
            layer.mouse_drag_callbacks.append(self._on_click)
            self._pixel_layer = layer

    def _on_click(self, layer, event):
        self.show_pixel_attention(layer, layer.world_to_data(event.position))

    def show_pixel_attention(self, layer, data_point):
        from ..inference.pixel import pixel_attention_map
        from ..layers import attention_layer

        model = self._current_model()
        if model is None:
            return None
        image = np.asarray(layer.data)
        point = list(data_point)
        prefix = ()
        if image.ndim == 3:  # the current slice
            z = int(round(point[0]))
            image, point, prefix = image[z], point[1:], (z,)
        try:
            amap = pixel_attention_map(model, image, point)
        except AttnSegError as exc:
            notify_error(str(exc))
            return None
        if prefix:
            amap.data = amap.data[None]
            amap.scale = (1.0, *amap.scale)
            amap.translate = (float(prefix[0]), *amap.translate)
        data, kwargs, kind = attention_layer(amap, layer.name, placement_of(layer), {"point": [float(p) for p in data_point]}, True)
        kwargs["name"] = f"{layer.name} pixel attention"
        kwargs["opacity"] = 0.7
        return upsert_layer(self.viewer, data, kwargs, kind)
