"""The "Fine-tune" panel: fine-tune a model on an exported dataset, with a live loss/Dice plot.

The form is made of magicgui widgets; the plot is a matplotlib canvas (magicgui has none;
:mod:`.finetune_plot`). What the run does is :func:`napari_attnseg.training.train` with the same defaults
as ``attnseg finetune``. The *Start model* list and its default are in :mod:`.finetune_models`.

A run belongs to the panel: closing the viewer (the panel is deleted) cancels it and its late callbacks do
nothing. A run that saves no model (cancelled before anything was learned, or failed) removes the output
folder when the run created it and it holds only the run's own files.
"""

from __future__ import annotations

import time
from pathlib import Path

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    LineEdit,
)
from qtpy.QtWidgets import QVBoxLayout, QWidget

from ..errors import Cancelled
from ._common import (
    Undockable,
    error_message,
    find_docked,
    is_deleted,
    job_controls,
    notify_error,
    notify_info,
    notify_warning,
    stop_listening,
)
from .correct_form import StatusLine
from .correct_widget import folder_text
from .finetune_form import (
    AUTO,
    PLOT_MIN_HEIGHT,
    VAL_TIP,
    WINDOW_CHOICES,
    ValidationField,
    hold_form,
    more_labels_text,
    normalization_choice,
    polish,
)
from .finetune_models import StartModels
from .finetune_plot import LossDicePlot
from .finetune_run import (
    MIN_MINUTES,
    STEP_EVERY_S,
    Run,
    cancelling,
    dataset_problem,
    in_models_folder,
    listed_text,
    models_folder,
    no_model_result,
    output_problem,
    panel_closed,
    proposed_model,
    start_problem,
    validation_text,
)
from .job_pool import start_long, thread_worker
from .worklist import real_viewer


class FinetuneWidget(Undockable, QWidget, StartModels, ValidationField):
    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = real_viewer(napari_viewer)  # (napari's plugin proxy: a new wrapper per look-up of a layer)
        self.history: list[dict] = []
        self.result = None
        self._token = None
        self.worker = None
        self._run: list = [None]  # the running job (a finetune_run.Run), shared with the handler of the panel's deletion
        current = self._run
        self.destroyed.connect(lambda *_: panel_closed(current))
        self._paths: dict[str, str] = {}  # model label -> checkpoint path or bundled name
        self._pending: dict = {}  # what waits for the running job's end (StartModels._after_run)
        self._auto_dataset = ""  # the dataset proposed from the settings (an export elsewhere replaces it)
        self._auto_out = ""  # the output folder we proposed (replaced when the dataset changes)
        self._auto_name = ""
        self._auto_description = ""

        self.dataset_edit = FileEdit(label="Dataset", mode="d", value="")
        self.model_combo = ComboBox(label="Start model", choices=[])
        self.model_note = StatusLine()  # (takes no room while empty)
        self.minutes_spin = FloatSpinBox(label="Budget (minutes)", min=MIN_MINUTES, max=600, step=0.5, value=5,
                                         tooltip="The whole run, its setup included (loading the data, validating "
                                                 "the start model: a few seconds, more on large volumes)")
        self.freeze_box = CheckBox(text="Freeze encoder", value=False)
        self.window_combo = ComboBox(label="Intensity", choices=list(WINDOW_CHOICES), value=AUTO,
                                     tooltip="How the images are normalised for training: 'auto' picks a CT window "
                                             "for Hounsfield units and the start model's normalisation otherwise")
        self.val_edit = LineEdit(label="Validation slices", value="", tooltip=VAL_TIP[3])
        self.val_edit.native.setPlaceholderText("auto")
        self.out_edit = FileEdit(label="Output folder", mode="d", value="")
        self.out_edit.line_edit.native.setPlaceholderText("in your models folder")
        self.name_edit = LineEdit(label="New model name", value="")
        self.description_edit = LineEdit(label="Description", value="")
        self.run_button, self.cancel_button, self.progress_bar, self.status = job_controls("Fine-tune", 100)
        self.form = Container(widgets=[
            self.dataset_edit, self.model_combo, self.model_note, self.minutes_spin, self.freeze_box, self.window_combo,
            self.val_edit, self.out_edit, self.name_edit, self.description_edit,
            Container(widgets=[self.run_button, self.cancel_button], layout="horizontal", labels=False),
            self.progress_bar,
        ])
        self.plot = LossDicePlot(PLOT_MIN_HEIGHT)
        self.figure, self.canvas, self.ax, self.ax_dice = self.plot.figure, self.plot.canvas, self.plot.ax, self.plot.ax_dice
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.form.native)
        layout.addWidget(self.canvas, 1)
        layout.addWidget(self.status.native)
        self.run_button.changed.connect(lambda *_: self.run())
        self.cancel_button.changed.connect(lambda *_: self.cancel())
        self.dataset_edit.changed.connect(self._dataset_changed)
        self.name_edit.changed.connect(self._name_changed)
        self.model_combo.changed.connect(self._model_changed)
        self.viewer.layers.events.inserted.connect(self.refresh_models)  # (a method: panel_undocked disconnects it)
        self.refresh_models()
        polish(self)  # tooltips and Browse... buttons, docked alone or in the plugin's dock
        self.out_edit.tooltip = ("A new folder for the model; default: one named after it in your models folder "
                                 f"({models_folder()}), so the Segment tab lists it by name after a restart too")

    # -- choices --------------------------------------------------------------------------------
    def _dataset_changed(self, *_) -> None:
        if self.running():  # (the field is held; set from a script meanwhile: proposed for it at the run's end)
            self._pending["dataset"] = True
            return
        self.propose_start()  # (a start model chosen by hand stays while it can train on the dataset)
        self._model_changed()
        self._validation_field()

    def _model_changed(self, *_) -> None:
        """Say when the head will be re-initialised, and propose the output folder and the model's name."""
        label = self.model_combo.value or ""
        self.model_note.value = self._start_note(label)
        dataset = folder_text(self.dataset_edit)
        if not dataset or not label:
            return
        ds = Path(dataset)
        # a free name, and its folder in the user models folder: listed by that name after a restart, never
        # over an earlier model (day 1's run proposes day 2's as <name>-2)
        if self.name_edit.value.strip() in ("", self._auto_name):  # (a name of spaces is no name: proposed)
            with self.name_edit.changed.blocked():
                self.name_edit.value = self._auto_name = proposed_model(label, self._paths)[0]
        if self.description_edit.value in ("", self._auto_description):
            self.description_edit.value = self._auto_description = f"{label} fine-tuned on {ds.name}"
        self._name_changed()

    def _name_changed(self, *_) -> None:
        """The proposed output folder follows the new model's name (a typed one too), unless a folder was chosen."""
        name = self.name_edit.value.strip()
        if folder_text(self.out_edit) in ("", self._auto_out) and name and self.model_combo.value:
            typed = "" if name == self._auto_name else name
            self.out_edit.value = self._auto_out = str(proposed_model(self.model_combo.value, self._paths, typed)[1])

    def default_dataset(self) -> str:
        """The folder the Correct-and-export panel last exported to, in this session or an earlier one while it is
        still a dataset (the settings file); '' when none."""
        from ..settings import last_export
        from .correct_widget import CorrectWidget

        corr = find_docked(self.viewer, CorrectWidget)
        if corr is not None and corr.last_export_dir:
            return str(corr.last_export_dir)
        found = last_export()
        return found["dataset"] if found else ""

    def showEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().showEvent(event)
        self.segment_models_changed()  # a Segment panel docked after this one: its models, followed from now on
        if not folder_text(self.dataset_edit):
            found = self.default_dataset()
            if found:
                self.dataset_edit.value = self._auto_dataset = found

    # -- running --------------------------------------------------------------------------------
    def _plot(self) -> None:
        self.plot.show(self.history)

    def config(self):
        """The TrainConfig of the form (raises ValueError with a message for the user)."""
        from ..training import TrainConfig

        dataset = folder_text(self.dataset_edit) or self.default_dataset()
        if not dataset:
            raise ValueError("Choose a dataset folder: one Correct and export > Export wrote, or one made elsewhere "
                             "(an nnU-Net or Decathlon folder, a MONAI datalist, images/ with labels/ or masks/).")
        dataset = str(Path(dataset).expanduser())  # (typed ~/...: the trainer would take '~' for a folder here)
        problem = dataset_problem(dataset)
        if problem:
            raise ValueError(problem)
        self.dataset_edit.value = dataset
        label = self.model_combo.value
        if not label:
            raise ValueError("No start model: load or train a model first.")
        self._model_changed()
        out = folder_text(self.out_edit)
        out = str(Path(out).expanduser()) if out else out
        start = self._paths.get(label, label)
        problem = output_problem(out, dataset) or start_problem(label, start)
        if problem:
            raise ValueError(problem)
        val_slices = self._val_slices()
        return TrainConfig(dataset=dataset, out=out, start_model=start, minutes=self.minutes_spin.value,
                           freeze_encoder=self.freeze_box.value, val_slices=val_slices,
                           **normalization_choice(self.window_combo.value),
                           name=self.name_edit.value.strip(), description=self.description_edit.value.strip(),
                           command=f"napari Fine-tune panel: dataset={dataset} model={start}")

    def _gone(self, run: Run) -> bool:
        """The panel was deleted (its viewer closed): the run's late callbacks must do nothing."""
        if run.alive and is_deleted(self):
            run.alive = False
            run.token.cancel()
        return not run.alive

    def run(self):
        from ..training import train

        if self.running():  # (a second Run while one goes: both would write the same output folder)
            return None
        self.status.value = ""
        self.progress_bar.value = 0
        try:
            cfg = self.config()
        except ValueError as exc:
            self.status.value = str(exc)
            notify_error(str(exc))
            return None
        run = self._run[0] = Run(Path(cfg.out))
        start_label = self.model_combo.value  # (the form may change while it runs: its messages name this one)
        self._token = run.token
        self.history = []
        self.result = None
        self.plot.clear()
        # the budget counts from here: loading and the start model's validation come before the first epoch
        self.status.value = "Preparing: loading the dataset, validating the start model..."

        @thread_worker(start_thread=False, ignore_errors=True)
        def work():
            import queue
            import threading

            updates: queue.Queue = queue.Queue()
            result: dict = {}

            def on_step(info):  # every optimizer step; the panel hears of one every STEP_EVERY_S at most
                run.last_step = info
                if info.get("warning"):  # the first epoch will not fit in the budget: said two steps in
                    updates.put(("warning", {"text": info["warning"]}))
                now = time.perf_counter()
                if now - run.sent >= STEP_EVERY_S:
                    run.sent = now
                    updates.put(("step", info))

            def target():
                try:
                    result["value"] = train(cfg, progress=lambda info: updates.put(("epoch", info)),
                                            cancel=run.token, on_step=on_step,  # a weak validation, said before the run
                                            on_split=lambda split: [updates.put(("warning", {"text": w}))
                                                                    for w in split.warnings])
                except BaseException as exc:  # re-raised in the worker below
                    result["error"] = exc
                if "error" in result or not result["value"].checkpoint:
                    run.cleanup()  # (here, not in a callback: it happens after the viewer closed too)
                updates.put(None)

            from ..training.class_checks import class_warnings

            for warning in class_warnings(cfg.start_model, cfg.dataset):  # (reads the labels: here, not on the GUI)
                yield ("warning", {"text": warning.removeprefix("warning: ")})
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

        def on_progress(item):
            if self._gone(run):
                return
            kind, info = item
            if kind == "warning" or (kind == "step" and run.token.cancelled):  # ("Cancelling: ..." stays until it stops)
                return notify_warning(info["text"]) if kind == "warning" else None
            if info.get("budget"):
                frac = info["elapsed"] / info["budget"]
            else:
                done = info["epoch"] - 1 + info["step"] / info["steps"] if kind == "step" else info["epoch"]
                frac = done / max(info["epochs"] or 1, 1)
            self.progress_bar.value = int(100 * min(frac, 1.0))
            planned = f" of {info['epochs']}" if info.get("epochs") else ""
            if kind == "step":
                self.status.value = (f"epoch {info['epoch']}{planned}: step {info['step']} of {info['steps']}, "
                                     f"loss {info['loss']:.3f}")
                return
            self.history.append(info)
            self.status.value = (f"epoch {info['epoch']}{planned}: loss {info['loss']:.3f}, on all reviewed slices"
                                 if info.get("refit") else
                                 f"epoch {info['epoch']}{planned}: loss {info['loss']:.3f}, validation Dice "
                                 f"{info['val_dice']:.4f}")
            self._plot()

        def on_done(res):
            if self._gone(run):
                return
            self.result = res = no_model_result(res)  # (no model saved: checkpoint None, kept_start False)
            before = "n/a" if res.val_dice_before is None else f"{res.val_dice_before:.4f}"
            notes = run.notes_text(res, cfg)  # (with why the refit did not run, as attnseg finetune says)
            if not res.checkpoint:  # cancelled before any epoch beat the start, or a new head none bettered
                self.status.value = run.nothing_learned_text(res, more_labels_text(self._summary())) + notes
                notify_info(f"Fine-tuning {'cancelled' if res.cancelled else 'ended'}: nothing was learned, no model "
                            "was added.")
                return
            if not res.cancelled:  # a cancelled run keeps its bar where it stopped
                self.progress_bar.value = 100
            chosen = ("the start model was kept: no epoch beat it" if getattr(res, "kept_start", False) else
                      "chosen by the training loss (no usable validation)" if getattr(res, "criterion", "") == "train_loss"
                      else "best epoch kept")
            short = run.short_text(res, cfg.minutes)
            self.status.value = (f"{short + ' ' if short else ''}Validation Dice {before} -> {res.val_dice_after:.4f} "
                                 f"({chosen}){' (cancelled)' if res.cancelled else ''}. "
                                 f"Validation: {validation_text(res)}. "
                                 f"Saved {res.checkpoint}. {listed_text(res.checkpoint)}{notes}")
            folder = Path(res.checkpoint).parent
            seg = self._segment_widget()
            kept = getattr(res, "kept_start", False)  # (the start's own weights: the Segment tab keeps its model)
            learnt = not short and not kept  # chosen (here, the next round's start too) only when it learnt an epoch
            if seg is not None:  # listed; chosen for the next run only when it learnt at least one epoch
                label = seg.add_model(res.checkpoint, select=learnt)
                self.add_model(label, res.checkpoint, select=learnt)
                use = "; it is in the Segment tab's list, not chosen there" if short or kept else ""
            else:  # the Fine-tune panel docked alone: no Segment panel is docked for it
                self.add_model(self._checkpoint_label(res.checkpoint), res.checkpoint, select=learnt)
                use = (f"; the Segment panel lists it as {folder.name!r} (your models folder)"
                       if in_models_folder(res.checkpoint) else
                       f"; to segment with it, open the Segment panel and load {Path(res.checkpoint).name} from there "
                       "with Load checkpoint...")
            if kept:  # the start weights, with this dataset's card: say it plainly
                notify_info(f"No epoch beat {start_label} on the validation: its weights were kept and saved "
                            f"to {folder} (give it more time or {more_labels_text(self._summary())}){use}.")
            elif short:
                notify_info(f"{short} It was saved to {folder}{use}.")  # (the status's words: a new class is noise)
            else:
                notify_info(f"{'Fine-tuning cancelled; the best model so far' if res.cancelled else 'Fine-tuned model'} "
                            f"saved to {folder}{use}")

        def on_error(exc):
            if self._gone(run):
                return
            if isinstance(exc, Cancelled):  # before the first epoch or validation: nothing to keep
                self.status.value = ("Cancelled before training started: nothing was learned; no model was saved or "
                                     f"added to the Segment tab.{run.removed_text()}")
                notify_info("Fine-tuning cancelled: nothing was learned, no model was added.")
                return
            message = f"Fine-tuning failed: {error_message(exc)}"
            self.status.value = message
            notify_error(message)

        def finish():
            if self._gone(run):
                return
            if self.worker is worker:  # ended (done, error or cancel): a script can wait for None, as in Segment
                self.worker = None
            hold_form(self, False)
            self._after_run()  # what came meanwhile (an export, a new mask), and a free output folder again

        worker.yielded.connect(on_progress)
        worker.returned.connect(on_done)
        worker.errored.connect(on_error)
        worker.finished.connect(finish)
        hold_form(self, True)  # (the fields the run read: a dataset chosen meanwhile re-proposed its model and folder)
        self.worker = worker
        start_long(worker)
        return worker

    def cancel(self):
        cancelling(self, self._token)  # (said at once: a 3D model's step takes tens of seconds on a CPU)

    def panel_undocked(self) -> None:  # the dock closed: a reopened panel could not cancel this run
        if self._token is not None and self.cancel_button.enabled:
            self.cancel()
            notify_info("The Fine-tune panel was closed: its run was cancelled (the best model so far is kept).")
        stop_listening(self.viewer, self)
