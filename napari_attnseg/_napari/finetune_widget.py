"""The "Fine-tune" panel: fine-tune a model on an exported dataset, with a live loss/Dice plot.

The form is made of magicgui widgets; the plot is a matplotlib canvas (magicgui has none). What the
run does is :func:`napari_attnseg.training.train` with the same defaults as ``attnseg finetune``. The
*Start model* list and its default are in :mod:`.finetune_models`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
)
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.qt.threading import thread_worker
from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

from ..display import CT_WINDOWS
from ..errors import Cancelled
from ..inference import CancelToken
from ._common import error_message, find_docked, job_controls, notify_error, notify_info, set_choices
from .correct_widget import folder_text
from .finetune_models import StartModels

AUTO = "auto (from the data)"
CARD = "as the start model"
WINDOW_CHOICES = (AUTO, CARD, *(f"CT {name}" for name in CT_WINDOWS))
PLOT_MIN_HEIGHT = 170


def normalization_choice(choice: str) -> dict:
    """TrainConfig fields for an *Intensity* choice: ``auto`` leaves the trainer's defaults (a CT window
    for Hounsfield units when the start model does at least as well with it); "as the start model" never
    switches; a CT preset is that window."""
    if choice.startswith("CT "):
        lo, hi = CT_WINDOWS[choice[3:]]
        return {"normalization": {"scheme": "ct", "window": [lo, hi]}}
    if choice == CARD:
        return {"ct_window": None}
    return {}


class FinetuneWidget(QWidget, StartModels):
    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.history: list[dict] = []
        self.result = None
        self._token = None
        self.worker = None
        self._paths: dict[str, str] = {}  # model label -> checkpoint path or bundled name
        self._auto_out = ""  # the output folder we proposed (replaced when the dataset changes)
        self._auto_name = ""
        self._auto_description = ""

        self.dataset_edit = FileEdit(label="Dataset", mode="d", value="")
        self.model_combo = ComboBox(label="Start model", choices=[])
        self.model_note = Label(value="")
        self.model_note.native.setWordWrap(True)
        self.minutes_spin = FloatSpinBox(label="Budget (minutes)", min=0.1, max=600, step=0.5, value=5)
        self.freeze_box = CheckBox(text="Freeze encoder", value=False)
        self.window_combo = ComboBox(label="Intensity", choices=list(WINDOW_CHOICES), value=AUTO,
                                     tooltip="How the images are normalised for training: 'auto' picks a CT window "
                                             "for Hounsfield units and the start model's normalisation otherwise")
        self.val_edit = LineEdit(label="Validation slices", value="",
                                 tooltip="Axial slices held out for validation, e.g. 20,33 (a reviewed slice with "
                                         "the object and one without); empty: chosen automatically among the "
                                         "reviewed slices, foreground included")
        self.val_edit.native.setPlaceholderText("auto")
        self.out_edit = FileEdit(label="Output folder", mode="d", value="")
        self.out_edit.line_edit.native.setPlaceholderText("next to the dataset")
        self.name_edit = LineEdit(label="New model name", value="")
        self.description_edit = LineEdit(label="Description", value="")
        self.run_button, self.cancel_button, self.progress_bar, self.status = job_controls("Fine-tune", 100)
        self.form = Container(widgets=[
            self.dataset_edit, self.model_combo, self.model_note, self.minutes_spin, self.freeze_box, self.window_combo,
            self.val_edit, self.out_edit, self.name_edit, self.description_edit,
            Container(widgets=[self.run_button, self.cancel_button], layout="horizontal", labels=False),
            self.progress_bar,
        ])
        self.figure = Figure(figsize=(4, 2.2), layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(PLOT_MIN_HEIGHT)
        self.canvas.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.ax = self.figure.add_subplot(111)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.form.native)
        layout.addWidget(self.canvas, 1)
        layout.addWidget(self.status.native)
        self.run_button.changed.connect(lambda *_: self.run())
        self.cancel_button.changed.connect(lambda *_: self.cancel())
        self.dataset_edit.changed.connect(self._dataset_changed)
        self.model_combo.changed.connect(self._model_changed)
        self.viewer.layers.events.inserted.connect(lambda *_: self.refresh_models())
        self.refresh_models()

    # -- choices --------------------------------------------------------------------------------
    def _dataset_changed(self, *_) -> None:
        set_choices(self.model_combo, list(self._paths), prefer=self.default_model())
        self._model_changed()

    def _model_changed(self, *_) -> None:
        """Say when the head will be re-initialised, and propose the output folder and the model's name."""
        label = self.model_combo.value or ""
        n_data, n_model = self._dataset_classes(), self._model_classes(label)
        if n_data is not None and n_model is not None and n_data != n_model:
            self.model_note.value = (f"{label} predicts {n_model} classes, the dataset has {n_data}: its encoder and "
                                     "decoder are kept and its output layer is trained anew.")
        else:
            self.model_note.value = ""
        dataset = folder_text(self.dataset_edit)
        if not dataset or not label:
            return
        ds = Path(dataset)
        name = f"{label}-finetuned"
        if self.name_edit.value in ("", self._auto_name):
            self.name_edit.value = self._auto_name = name
        if self.description_edit.value in ("", self._auto_description):
            self.description_edit.value = self._auto_description = f"{label} fine-tuned on {ds.name}"
        if folder_text(self.out_edit) in ("", self._auto_out):
            self._auto_out = str(_free_folder(ds.parent / f"{ds.name}-{name}"))
            self.out_edit.value = self._auto_out

    def follow_export(self, folder: str, previous: str | None, model: dict | str | None) -> None:
        """The Correct panel exported ``folder``: train on it unless the user typed another dataset; start from
        the model that made the mask (``model``: its provenance, or a list label)."""
        if folder_text(self.dataset_edit) in ("", previous or ""):
            self.dataset_edit.value = folder
        label = self._label_for(model) if isinstance(model, dict) else model
        if label in self._paths:
            self.model_combo.value = label

    def default_dataset(self) -> str:
        """The folder the Correct-and-export panel last exported to ('' when none)."""
        from .correct_widget import CorrectWidget

        corr = find_docked(self.viewer, CorrectWidget)
        return str(corr.last_export_dir) if corr is not None and corr.last_export_dir else ""

    def showEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().showEvent(event)
        if not folder_text(self.dataset_edit):
            found = self.default_dataset()
            if found:
                self.dataset_edit.value = found

    # -- running --------------------------------------------------------------------------------
    def _plot(self) -> None:
        self.ax.clear()
        epochs = [h["epoch"] for h in self.history]
        self.ax.plot(epochs, [h["loss"] for h in self.history], label="training loss")
        self.ax.plot(epochs, [h["val_dice"] for h in self.history], label="validation Dice")
        self.ax.set_xlabel("epoch")
        self.ax.legend(loc="center right", fontsize=8)
        with warnings.catch_warnings():  # a canvas squeezed by the user must not pop up layout warnings
            warnings.simplefilter("ignore", UserWarning)
            self.canvas.draw_idle()

    def config(self):
        """The TrainConfig of the form (raises ValueError with a message for the user)."""
        from ..training import TrainConfig

        dataset = folder_text(self.dataset_edit) or self.default_dataset()
        if not dataset:
            raise ValueError("Choose an exported dataset folder (Correct and export > Export writes one).")
        if not Path(dataset).is_dir():
            raise ValueError(f"Dataset folder {dataset} does not exist; export a dataset there first.")
        self.dataset_edit.value = dataset
        label = self.model_combo.value
        if not label:
            raise ValueError("No start model: load or train a model first.")
        self._model_changed()
        out = folder_text(self.out_edit) or str(_free_folder(Path(dataset).parent / f"{Path(dataset).name}-finetuned"))
        if (Path(out) / "best.safetensors").exists():
            raise ValueError(f"{out} already holds a model; choose a new output folder so it is not overwritten.")
        val = self.val_edit.value.strip()
        val_slices = None
        if val:
            from .. import correct

            try:
                val_slices = correct.parse_slice_ranges(val)
            except Exception as exc:
                raise ValueError(f"Validation slices {val!r}: {exc}") from None
        start = self._paths.get(label, label)
        return TrainConfig(dataset=dataset, out=out, start_model=start, minutes=self.minutes_spin.value,
                           freeze_encoder=self.freeze_box.value, val_slices=val_slices,
                           **normalization_choice(self.window_combo.value),
                           name=self.name_edit.value.strip(), description=self.description_edit.value.strip(),
                           command=f"napari Fine-tune panel: dataset={dataset} model={start}")

    def run(self):
        from ..training import train

        self.status.value = ""
        self.progress_bar.value = 0
        try:
            cfg = self.config()
        except ValueError as exc:
            self.status.value = str(exc)
            notify_error(str(exc))
            return None
        self._token = CancelToken()
        self.history = []
        self.result = None
        # the budget counts from here: loading and the start model's validation come before the first epoch
        self.status.value = "Preparing: loading the dataset, validating the start model..."

        @thread_worker(start_thread=False, ignore_errors=True)
        def work():
            import queue
            import threading

            updates: queue.Queue = queue.Queue()
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
            self.progress_bar.value = int(100 * min(frac, 1.0))
            self.status.value = (f"epoch {info['epoch']}: loss {info['loss']:.3f}, on all reviewed slices"
                                 if info.get("refit") else
                                 f"epoch {info['epoch']}: loss {info['loss']:.3f}, validation Dice {info['val_dice']:.3f}")
            self._plot()

        def on_done(res):
            self.result = res
            before = "n/a" if res.val_dice_before is None else f"{res.val_dice_before:.3f}"
            notes = "".join(f"\n- {n}" for n in res.notes)
            if res.cancelled and not res.checkpoint:  # cancelled before any epoch beat the start model
                self.status.value = (f"Cancelled: nothing was learned. No epoch beat the start model (validation Dice "
                                     f"{before}); no model was saved and the Segment tab is unchanged.{notes}")
                notify_info("Fine-tuning cancelled: nothing was learned, no model was added.")
                return
            if not res.cancelled:  # a cancelled run keeps its bar where it stopped
                self.progress_bar.value = 100
            chosen = ("the start model was kept: no epoch beat it" if getattr(res, "kept_start", False) else
                      "chosen by the training loss (no usable validation)" if getattr(res, "criterion", "") == "train_loss"
                      else "best epoch kept")
            self.status.value = (f"Validation Dice {before} -> {res.val_dice_after:.3f} ({chosen})"
                                 f"{' (cancelled)' if res.cancelled else ''}. "
                                 f"Validation: {getattr(res, 'validation', '') or res.split}. "
                                 f"Saved {res.checkpoint}{notes}")
            seg = self._segment_widget()
            if seg is not None:
                label = seg.add_model(res.checkpoint, select=True)
                self.add_model(label, res.checkpoint, select=False)
            if getattr(res, "kept_start", False):  # the start weights, with this dataset's card: say it plainly
                notify_info(f"No epoch beat {self.model_combo.value} on the validation: its weights were kept and saved "
                            f"to {Path(res.checkpoint).parent} (give it more time or review more slices).")
            else:
                notify_info(f"{'Fine-tuning cancelled; the best model so far' if res.cancelled else 'Fine-tuned model'} "
                            f"saved to {Path(res.checkpoint).parent}")

        def on_error(exc):
            if isinstance(exc, Cancelled):  # before the first epoch or validation: nothing to keep
                self.status.value = "Cancelled: nothing was learned; no model was saved or added to the Segment tab."
                notify_info("Fine-tuning cancelled: nothing was learned, no model was added.")
                return
            message = f"Fine-tuning failed: {error_message(exc)}"
            self.status.value = message
            notify_error(message)

        def finish():
            self.run_button.enabled = True
            self.cancel_button.enabled = False
            self._model_changed()  # the proposed output folder is a free one again (this run's is taken now)

        worker.yielded.connect(on_progress)
        worker.returned.connect(on_done)
        worker.errored.connect(on_error)
        worker.finished.connect(finish)
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        self.worker = worker
        worker.start()
        return worker

    def cancel(self):
        if self._token is not None:
            self._token.cancel()


def _free_folder(path: Path) -> Path:
    """``path``, or ``path-2``, ``path-3``... : a folder name nothing is written in yet."""
    candidate, n = path, 2
    while candidate.exists():
        candidate = path.with_name(f"{path.name}-{n}")
        n += 1
    return candidate
