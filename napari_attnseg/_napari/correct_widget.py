"""The "Correct and export" panel: mask helpers, reviewed slices, edit statistics, dataset export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from napari.layers import Image, Labels
from napari.qt.threading import thread_worker
from napari.utils import progress as napari_progress
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from .. import correct
from ..errors import AttnSegError
from ._common import docked_widgets, notify_error, notify_info

REVIEWED_KEY = "reviewed_slices"


class CorrectWidget(QWidget):
    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.last_export_dir: str | None = None
        self.labels_combo = QComboBox()
        self.image_combo = QComboBox()
        self.class_spin = QSpinBox()
        self.class_spin.setRange(0, 255)
        self.class_spin.setSpecialValueText("all classes")
        # napari's theme (a style sheet, which overrides setMinimumWidth) draws the step buttons on both
        # sides in a larger font: widen the box in its own style sheet so "all classes" is not clipped
        self.class_spin.setStyleSheet("QSpinBox { min-width: 9em; }")
        self.class_spin.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.size_spin = QSpinBox()
        self.size_spin.setRange(1, 10**7)
        self.size_spin.setValue(20)
        self.radius_spin = QSpinBox()
        self.radius_spin.setRange(1, 20)
        self.slice_only = QCheckBox("Current slice only")
        self.slice_only.setToolTip("On a volume, apply the helpers to the slice on screen and leave the others as they are")
        self.reviewed_label = QLabel("Reviewed slices: none")
        self.reviewed_label.setWordWrap(True)
        self.stats_label = QLabel("")
        self.stats_label.setWordWrap(True)
        self.dataset_edit = QLineEdit()
        self.format_combo = QComboBox()
        self.format_combo.addItems(["nnunet", "monai", "tiff"])
        self.case_edit = QLineEdit()
        self.case_edit.setPlaceholderText("next free case id")
        self.range_edit = QLineEdit()
        self.range_edit.setPlaceholderText("e.g. 10-20,25")
        self.export_bar = QProgressBar()
        self.export_bar.setVisible(False)

        helpers = QGroupBox("Helpers (Ctrl+Z undoes)")
        hl = QFormLayout(helpers)
        hl.addRow("Class", self.class_spin)
        hl.addRow(self.slice_only)
        row = QHBoxLayout()
        for text, slot in (("Fill holes", self.fill_holes), ("Largest component", self.keep_largest)):
            b = QPushButton(text)
            b.clicked.connect(slot)
            row.addWidget(b)
        hl.addRow(row)
        keep_at = QPushButton("Keep the object under the cursor (K)")
        keep_at.setToolTip("Remove every other object of that class: for when the largest object is not "
                           "the one that matters. Point at it in the viewer and press K.")
        keep_at.clicked.connect(self.keep_at_cursor)
        hl.addRow(keep_at)
        small = QPushButton("Remove objects smaller than")
        small.clicked.connect(self.remove_small)
        hl.addRow(small, self.size_spin)
        morph = QHBoxLayout()
        for text, slot in (("Open", self.open_), ("Close", self.close_)):
            b = QPushButton(text)
            b.clicked.connect(slot)
            morph.addWidget(b)
        morph.addWidget(QLabel("radius"))
        morph.addWidget(self.radius_spin)
        hl.addRow(morph)
        interp = QPushButton("Interpolate between annotated slices")
        interp.clicked.connect(self.interpolate)
        hl.addRow(interp)

        review = QGroupBox("Review (key R marks the current slice)")
        rl = QVBoxLayout(review)
        rrow = QHBoxLayout()
        for text, slot in (("Mark slice", self.mark_current), ("Mark all", self.mark_all), ("Clear", self.clear_reviewed)):
            b = QPushButton(text)
            b.clicked.connect(slot)
            rrow.addWidget(b)
        rl.addLayout(rrow)
        range_row = QHBoxLayout()
        mark_range = QPushButton("Mark slices")
        mark_range.clicked.connect(self.mark_range)
        self.range_edit.returnPressed.connect(self.mark_range)
        range_row.addWidget(mark_range)
        range_row.addWidget(self.range_edit)
        rl.addLayout(range_row)
        rl.addWidget(self.reviewed_label)
        rl.addWidget(self.stats_label)

        export = QGroupBox("Export for fine-tuning")
        el = QFormLayout(export)
        browse = QPushButton("...")
        browse.clicked.connect(self._browse)
        drow = QHBoxLayout()
        drow.addWidget(self.dataset_edit)
        drow.addWidget(browse)
        el.addRow("Dataset folder", drow)
        el.addRow("Format", self.format_combo)
        el.addRow("Case id", self.case_edit)
        self.export_button = QPushButton("Export")
        self.export_button.clicked.connect(self.export)
        el.addRow(self.export_button)
        el.addRow(self.export_bar)

        form = QFormLayout()
        form.addRow("Mask", self.labels_combo)
        form.addRow("Image", self.image_combo)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(helpers)
        layout.addWidget(review)
        layout.addWidget(export)
        layout.addStretch()
        self.refresh()
        self.viewer.layers.events.inserted.connect(self.refresh)
        self.viewer.layers.events.removed.connect(self.refresh)
        self.labels_combo.currentIndexChanged.connect(self._update_info)
        self.viewer.bind_key("r", lambda v: self.mark_current(), overwrite=True)
        self.viewer.bind_key("k", lambda v: self.keep_at_cursor(), overwrite=True)

    # -- layers ---------------------------------------------------------------------------------
    def refresh(self, event=None) -> None:
        for combo, kind in ((self.labels_combo, Labels), (self.image_combo, Image)):
            cur = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            names = [ly.name for ly in self.viewer.layers if isinstance(ly, kind) and not (kind is Image and ly.metadata.get("attnseg"))]
            combo.addItems(names)
            masks = [n for n in names if n.endswith(" mask")]
            if kind is Labels and masks and not cur.endswith(" mask"):
                preferred = masks[-1]  # a model's mask, once there is one, is what people correct
            else:
                preferred = cur if cur in names else (masks[-1] if masks else (names[0] if names else ""))
            combo.setCurrentText(preferred)
            combo.blockSignals(False)
        if self.labels_combo.currentText().endswith(" mask"):
            src = self.labels_combo.currentText()[: -len(" mask")]
            if self.image_combo.findText(src) >= 0:
                self.image_combo.setCurrentText(src)
        self._update_info()

    def labels_layer(self):
        name = self.labels_combo.currentText()
        if name not in self.viewer.layers:
            notify_error("No Labels layer: run a model first, or add a Labels layer to correct.")
            return None
        return self.viewer.layers[name]

    def _classes(self):
        return None if self.class_spin.value() == 0 else [self.class_spin.value()]

    def _current_slice(self, layer) -> int:
        z = int(round(layer.world_to_data(self.viewer.dims.point)[0]))
        return min(max(z, 0), layer.data.shape[0] - 1)

    def _apply(self, fn, *args, whole_volume: bool = False) -> None:
        """Run a core helper on the mask (or on the slice on screen) and paint the difference."""
        layer = self.labels_layer()
        if layer is None:
            return
        data = np.asarray(layer.data)
        z = self._current_slice(layer) if (layer.ndim == 3 and self.slice_only.isChecked() and not whole_volume) else None
        try:
            new = fn(data if z is None else data[z], *args)
        except AttnSegError as exc:
            notify_error(f"{layer.name}: {exc}")
            return
        changed = np.nonzero(new != (data if z is None else data[z]))
        values = new[changed]
        if z is not None:
            changed = (np.full_like(changed[0], z), *changed)
        if changed[0].size:
            # paint through the layer's own history so napari's undo (Ctrl+Z) reverts the step
            layer.data_setitem(changed, values)
        self._update_info()

    def fill_holes(self):
        self._apply(correct.fill_holes, self._classes())

    def keep_largest(self):
        self._apply(correct.keep_largest_component, self._classes())

    def keep_at_cursor(self, position=None):
        """Keep the object under the mouse (``position``: world coordinates, default the cursor's)."""
        layer = self.labels_layer()
        if layer is None:
            return
        world = self.viewer.cursor.position if position is None else position
        point = np.asarray(layer.world_to_data(world), float)[-layer.ndim:]
        if layer.ndim == 3 and self.slice_only.isChecked():
            point = point[1:]  # _apply hands the helper the slice on screen
        self._apply(correct.keep_component_at, point)

    def remove_small(self):
        self._apply(correct.remove_small_objects, self.size_spin.value(), self._classes())

    def open_(self):
        self._apply(correct.binary_open, self.radius_spin.value(), self._classes())

    def close_(self):
        self._apply(correct.binary_close, self.radius_spin.value(), self._classes())

    def interpolate(self):
        layer = self.labels_layer()
        if layer is not None and layer.ndim != 3:
            notify_error(f"{layer.name} is 2D; interpolation between slices needs a volume.")
            return
        self._apply(correct.interpolate_slices, None, self._classes(), whole_volume=True)

    # -- review ---------------------------------------------------------------------------------
    def _reviewed(self, layer) -> list[int]:
        return list(layer.metadata.get(REVIEWED_KEY, []))

    def mark_slices(self, slices) -> None:
        layer = self.labels_layer()
        if layer is None:
            return
        layer.metadata[REVIEWED_KEY] = sorted(set(self._reviewed(layer)) | {int(s) for s in slices})
        self._update_info()

    def mark_current(self):
        layer = self.labels_layer()
        if layer is None:
            return
        if layer.ndim == 2:
            self.mark_slices([0])
            return
        self.mark_slices([self._current_slice(layer)])

    def mark_range(self):
        """Mark the slices typed in the range field ('a-b,c'; axial indices, the layer's first axis)."""
        layer = self.labels_layer()
        if layer is None:
            return
        try:
            slices = correct.parse_slice_ranges(self.range_edit.text())
        except (AttnSegError, ValueError) as exc:
            notify_error(f"Slices {self.range_edit.text()!r}: {exc}")
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
            self.mark_slices(range(layer.data.shape[0] if layer.ndim == 3 else 1))

    def clear_reviewed(self):
        layer = self.labels_layer()
        if layer is not None:
            layer.metadata[REVIEWED_KEY] = []
            self._update_info()

    def _update_info(self, *_):
        name = self.labels_combo.currentText()
        if name not in self.viewer.layers:
            self.reviewed_label.setText("Reviewed slices: none")
            self.stats_label.setText("")
            return
        layer = self.viewer.layers[name]
        rev = self._reviewed(layer)
        self.reviewed_label.setText("Reviewed slices: " + (correct.format_slice_ranges(rev) if rev else "none"))
        pred = layer.metadata.get("attnseg_prediction")
        if pred is not None and np.shape(pred) == layer.data.shape:
            stats = correct.edit_stats(pred, np.asarray(layer.data))
            parts = [f"class {c}: +{s['added']} / -{s['removed']} voxels, Dice {s['dice']:.3f}" for c, s in stats["per_class"].items()]
            self.stats_label.setText("Edits vs prediction: " + ("; ".join(parts) if parts else "none"))
            layer.metadata["attnseg_edit_stats"] = stats

    # -- export ---------------------------------------------------------------------------------
    def _browse(self):
        folder = QFileDialog.getExistingDirectory(self, "Dataset folder")
        if folder:
            self.dataset_edit.setText(folder)

    def export(self):
        from ..data.export import export_case

        layer = self.labels_layer()
        if layer is None:
            return None
        img_name = self.image_combo.currentText()
        if img_name not in self.viewer.layers:
            notify_error("No image layer to export with the mask.")
            return None
        image_layer = self.viewer.layers[img_name]
        folder = self.dataset_edit.text().strip()
        if not folder:
            notify_error("Choose a dataset folder first.")
            return None
        rev = self._reviewed(layer)
        meta = image_layer.metadata
        info = (layer.metadata.get("attnseg") or {})
        classes = list(layer.features["class"]) if "class" in getattr(layer, "features", {}) else None
        kwargs = {
            "spacing": meta.get("spacing") or list(image_layer.scale),
            "affine": np.asarray(meta["affine"]) if meta.get("affine") is not None else None,
            "reviewed_slices": rev if (rev and layer.ndim == 3) else None,
            "prediction": layer.metadata.get("attnseg_prediction"),
            "case_id": self.case_edit.text().strip() or None,
            "label_names": classes,
            "source_name": Path(str(meta.get("source_path", img_name))).name,
            "model_info": {"model": info.get("model"), "checkpoint_sha256": info.get("checkpoint_sha256")},
        }
        image, labels, fmt = np.asarray(image_layer.data), np.array(layer.data), self.format_combo.currentText()

        @thread_worker(start_thread=False)
        def work():
            return export_case(image, labels, folder, fmt, **kwargs)

        worker = work()
        bar = napari_progress(total=0, desc=f"Exporting {layer.name}")  # export_case reports no steps: busy bar

        def done(rec):
            previous, self.last_export_dir = self.last_export_dir, folder
            notify_info(f"Exported {rec.case_id} to {folder}")
            # the Fine-tune panel's dataset follows the export unless the user typed another one
            for widget in docked_widgets(self.viewer):
                edit = getattr(widget, "dataset_edit", None)
                if edit is not None and widget is not self and edit.text().strip() in ("", previous or ""):
                    edit.setText(folder)

        def finish():
            bar.close()
            self.export_bar.setVisible(False)
            self.export_button.setEnabled(True)

        worker.returned.connect(done)
        worker.errored.connect(lambda exc: notify_error(f"Export failed: {exc}"))
        worker.finished.connect(finish)
        self.export_button.setEnabled(False)
        self.export_bar.setRange(0, 0)
        self.export_bar.setVisible(True)
        worker.start()
        return worker
