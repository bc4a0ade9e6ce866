"""The "Fine-tune" panel: fine-tune a model on an exported dataset, with a live loss/Dice plot."""

from __future__ import annotations

import tempfile
from pathlib import Path

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.qt.threading import thread_worker
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..errors import AttnSegError
from ..inference import CancelToken
from ._common import docked_widgets, find_docked, notify_error, notify_info


class FinetuneWidget(QWidget):
    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.dataset_edit = QLineEdit()
        self.model_combo = QComboBox()
        self.minutes_spin = QDoubleSpinBox()
        self.minutes_spin.setRange(0.1, 600)
        self.minutes_spin.setValue(5)
        self.freeze_box = QCheckBox("Freeze encoder")
        self.out_edit = QLineEdit()
        self.out_edit.setPlaceholderText("new folder (default: a temporary folder)")
        self.run_button = QPushButton("Fine-tune")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress_bar = QProgressBar()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.figure = Figure(figsize=(4, 2.5), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.ax = self.figure.add_subplot(111)
        self.history: list[dict] = []
        self.result = None
        self._token = None
        self.worker = None

        browse = QPushButton("...")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.dataset_edit)
        row.addWidget(browse)
        form = QFormLayout()
        form.addRow("Dataset", row)
        form.addRow("Start model", self.model_combo)
        form.addRow("Budget (minutes)", self.minutes_spin)
        form.addRow("", self.freeze_box)
        form.addRow("Output folder", self.out_edit)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.canvas)
        layout.addWidget(self.status)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self._fill_models()

    def _segment_widget(self):
        """The docked segment widget (docking one when there is none), or None without a window."""
        from .segment_widget import SegmentWidget

        found = find_docked(self.viewer, SegmentWidget)
        if found is not None:
            return found
        try:
            _, widget = self.viewer.window.add_plugin_dock_widget("napari-attnseg", "Attention segmentation")
            return widget
        except Exception:  # no window (headless use) or the plugin is not registered
            return None

    def _fill_models(self) -> None:
        from ..models.registry import bundled_models

        for name in bundled_models():
            self.model_combo.addItem(name, name)

    def _browse(self):
        folder = QFileDialog.getExistingDirectory(self, "Exported dataset")
        if folder:
            self.dataset_edit.setText(folder)

    def default_dataset(self) -> str:
        """The folder the Correct-and-export panel last exported to ('' when none)."""
        for widget in docked_widgets(self.viewer):
            last = getattr(widget, "last_export_dir", None)
            if last:
                return str(last)
        return ""

    def showEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().showEvent(event)
        if not self.dataset_edit.text().strip():
            self.dataset_edit.setText(self.default_dataset())

    def _plot(self) -> None:
        self.ax.clear()
        epochs = [h["epoch"] for h in self.history]
        self.ax.plot(epochs, [h["loss"] for h in self.history], label="training loss")
        self.ax.plot(epochs, [h["val_dice"] for h in self.history], label="validation Dice")
        self.ax.set_xlabel("epoch")
        self.ax.legend(loc="center right", fontsize=8)
        self.canvas.draw_idle()

    def run(self):
        from ..training import TrainConfig, train

        dataset = self.dataset_edit.text().strip() or self.default_dataset()
        if not dataset:
            notify_error("Choose an exported dataset folder (Correct and export > Export writes one).")
            return None
        self.dataset_edit.setText(dataset)
        start = self.model_combo.currentData() or self.model_combo.currentText()
        if not start:
            notify_error("No start model: load or train a model first.")
            return None
        out = self.out_edit.text().strip() or tempfile.mkdtemp(prefix="attnseg-finetune-")
        cfg = TrainConfig(dataset=dataset, out=out, start_model=start, minutes=self.minutes_spin.value(),
                          freeze_encoder=self.freeze_box.isChecked(), iters_per_epoch=10,
                          command=f"napari Fine-tune panel: dataset={dataset} model={start}")
        self._token = CancelToken()
        self.history = []

        @thread_worker(start_thread=False)
        def work():
            import queue

            updates: queue.Queue = queue.Queue()
            import threading

            result: dict = {}

            def target():
                try:
                    result["value"] = train(cfg, progress=updates.put, cancel=self._token)
                except BaseException as exc:  # re-raised in the worker below
                    result["error"] = exc
                updates.put(None)

            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            while True:
                item = updates.get()
                if item is None:
                    break
                yield item
            thread.join()
            if "error" in result:
                raise result["error"]
            return result["value"]

        worker = work()

        def on_progress(info):
            self.history.append(info)
            frac = info["elapsed"] / info["budget"] if info.get("budget") else info["epoch"] / max(info["epochs"] or 1, 1)
            self.progress_bar.setValue(int(100 * min(frac, 1.0)))
            self.status.setText(f"epoch {info['epoch']}: loss {info['loss']:.3f}, validation Dice {info['val_dice']:.3f}")
            self._plot()

        def on_done(res):
            self.result = res
            before = "n/a" if res.val_dice_before is None else f"{res.val_dice_before:.3f}"
            self.status.setText(f"Validation Dice {before} -> {res.val_dice_after:.3f}"
                                f"{' (cancelled, best kept)' if res.cancelled else ''}. Saved {res.checkpoint}")
            seg = self._segment_widget()
            if seg is not None:
                label = seg.add_model(res.checkpoint, select=True)
                if self.model_combo.findText(label) < 0:
                    self.model_combo.addItem(label, res.checkpoint)
            notify_info(f"Fine-tuned model saved to {Path(res.checkpoint).parent}")

        def on_error(exc):
            notify_error(f"Fine-tuning failed: {exc}" if isinstance(exc, AttnSegError) else
                         f"Fine-tuning failed ({type(exc).__name__}: {exc})")

        def finish():
            self.run_button.setEnabled(True)
            self.cancel_button.setEnabled(False)

        worker.yielded.connect(on_progress)
        worker.returned.connect(on_done)
        worker.errored.connect(on_error)
        worker.finished.connect(finish)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.worker = worker
        worker.start()
        return worker

    def cancel(self):
        if self._token is not None:
            self._token.cancel()
