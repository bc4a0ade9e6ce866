"""The Fine-tune panel's run in a real viewer: closing the viewer cancels it, the bar follows the steps,
the plot shows one epoch, a cancelled run leaves no folder, the output folder is checked before a run,
the start-model list follows the Segment panel, and a panel docked alone docks nothing at the end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_finetune_budget import _dataset as _volume_dataset
from test_finetune_budget import _slow_steps

from napari_attnseg.data.export import export_case


def _panel(viewer, ds, start, dock=True):
    from napari_attnseg._napari.finetune_widget import FinetuneWidget

    w = FinetuneWidget(viewer)
    if dock:
        viewer.window.add_dock_widget(w, name="Fine-tune")
    w.add_model("start", str(start))
    w.dataset_edit.value = str(ds)
    w.model_combo.value = "start"
    return w


# -- no training ------------------------------------------------------------------------------------
def test_output_folder_checks(tmp_path):
    from napari_attnseg._napari.finetune_run import output_problem

    ds = tmp_path / "ds"
    (ds / "imagesTr").mkdir(parents=True)
    assert "Choose an output folder" in output_problem("", str(ds))
    assert "not a full path" in output_problem("relative/out", str(ds))
    (tmp_path / "afile.txt").write_text("x")
    assert "is a file" in output_problem(str(tmp_path / "afile.txt"), str(ds))
    assert "inside the dataset" in output_problem(str(ds), str(ds))
    assert "inside the dataset" in output_problem(str(ds / "imagesTr"), str(ds))
    other = tmp_path / "my_models"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    assert "already holds other files (notes.txt)" in output_problem(str(other), str(ds))
    assert "already holds other files" in output_problem(str(tmp_path), str(ds))  # the dataset's parent
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "best.safetensors").write_text("")
    assert "already holds a model" in output_problem(str(tmp_path / "m"), str(ds))
    # accepted: a new folder, an empty one, an earlier run's leftovers without a model
    assert output_problem(str(tmp_path / "new" / "deeper"), str(ds)) is None
    (tmp_path / "empty").mkdir()
    assert output_problem(str(tmp_path / "empty"), str(ds)) is None
    (tmp_path / "left").mkdir()
    (tmp_path / "left" / "training_log.csv").write_text("epoch\n")
    assert output_problem(str(tmp_path / "left"), str(ds)) is None


def test_a_run_without_a_model_removes_only_the_folders_it_created(tmp_path):
    from napari_attnseg._napari.finetune_run import Run

    run = Run(tmp_path / "a" / "b" / "out")  # a, b and out are created by the run
    (tmp_path / "a" / "b" / "out").mkdir(parents=True)
    for name in ("training_log.csv", "state.json", "state.safetensors"):
        (tmp_path / "a" / "b" / "out" / name).write_text("")
    run.cleanup()
    assert run.removed and not (tmp_path / "a").exists()
    existing = tmp_path / "mine"
    existing.mkdir()
    run = Run(existing)  # the user's folder: left alone, files and all
    (existing / "training_log.csv").write_text("")
    run.cleanup()
    assert not run.removed and (existing / "training_log.csv").exists()
    run = Run(tmp_path / "kept")
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "best.safetensors").write_text("")
    run.cleanup()
    assert (tmp_path / "kept" / "best.safetensors").exists()


def test_split_messages_name_no_command_line_flags_and_list_the_reviewed_slices():
    from napari_attnseg.errors import DatasetError
    from napari_attnseg.training.split import make_split

    one = np.full((6, 8, 8), 2)
    one[3] = 1
    with pytest.raises(DatasetError) as err:
        make_split([one], ["c"], ignore=2, slices=True)
    assert "mark another slice reviewed (R) and export again" in str(err.value) and "--" not in str(err.value)
    sparse = np.full((20, 8, 8), 2)
    sparse[[3, 4, 7]] = 0
    with pytest.raises(DatasetError, match="validation part has no labelled voxels") as err:
        make_split([sparse], ["c"], ignore=2, val_slices=[10, 11])
    assert "positions along the first axis are: c 3-4,7" in str(err.value)


@pytest.mark.gui
def test_the_plot_shows_one_epoch_with_dice_on_its_own_axis(make_napari_viewer):
    from napari_attnseg._napari.finetune_widget import FinetuneWidget

    w = FinetuneWidget(make_napari_viewer())
    w.history = [{"epoch": 1, "loss": 3.2, "val_dice": 0.006}]
    w._plot()
    line = w.plot.loss_line
    assert line.get_marker() not in (None, "None", "") and list(line.get_xdata()) == [1]
    assert w.ax_dice is not w.ax and w.plot.dice_line.axes is w.ax_dice and w.ax_dice.get_ylim() == (0, 1.02)
    w.history += [{"epoch": 2, "loss": 2.1, "val_dice": 0.05}, {"epoch": 3, "loss": 1.9, "val_dice": float("nan"),
                                                                "refit": True}]
    w._plot()
    w.canvas.draw()
    assert all(float(t).is_integer() for t in w.ax.get_xticks())
    assert w.ax.get_ylim()[1] > 3.2 and w.ax_dice.get_ylim() == (0, 1.02)  # the Dice is not flattened by the loss
    # the lines are updated, not re-made; no layout engine runs at every draw (it stalled the viewer)
    assert list(w.ax.lines) == [line] and w.figure.get_layout_engine() is None


@pytest.mark.gui
def test_validation_field_on_2d_and_multi_case_datasets(make_napari_viewer, tmp_path):
    from napari_attnseg._napari.finetune_widget import FinetuneWidget

    rng = np.random.default_rng(0)
    img = rng.random((40, 40)).astype(np.float32)
    export_case(img, (img > 0.6).astype(np.uint8), tmp_path / "one2d", "tiff")
    for image in (img, img[::-1].copy()):
        export_case(image, (image > 0.6).astype(np.uint8), tmp_path / "two2d", "tiff")
    for _ in range(2):  # one image exported twice (a second round): one case, as the trainer takes it
        export_case(img, (img > 0.6).astype(np.uint8), tmp_path / "again2d", "tiff")
    ds3, _ = _volume_dataset(tmp_path)
    w = FinetuneWidget(make_napari_viewer())
    w.dataset_edit.value = str(tmp_path / "one2d")
    assert w.val_edit.label == "Validation rows" and "rows" in w.val_edit.tooltip and w.val_edit.enabled
    w.dataset_edit.value = str(tmp_path / "two2d")
    assert not w.val_edit.enabled and "whole images" in w.val_edit.tooltip
    w.dataset_edit.value = str(tmp_path / "again2d")
    assert w.val_edit.enabled and w.val_edit.label == "Validation rows"
    w.dataset_edit.value = str(ds3)
    assert w.val_edit.label == "Validation slices" and w.val_edit.enabled


@pytest.mark.gui
def test_refusals_before_a_run(make_napari_viewer, tmp_path):
    ds, start = _volume_dataset(tmp_path)
    w = _panel(make_napari_viewer(), ds, start, dock=False)
    w.val_edit.value = "2,3"  # not reviewed: exported as ignore
    assert w.run() is None
    assert "not reviewed" in w.status.value and "reviewed slices 1,4,6,8,12" in w.status.value
    w.val_edit.value = ""
    (tmp_path / "afile.txt").write_text("x")
    w.out_edit.value = str(tmp_path / "afile.txt")
    assert w.run() is None and "is a file" in w.status.value
    w.out_edit.value = str(ds)
    assert w.run() is None and "inside the dataset" in w.status.value
    assert w.run_button.enabled and not w.cancel_button.enabled


@pytest.mark.gui
def test_a_checkpoint_loaded_in_segment_is_a_start_model(dock, make_napari_viewer, tiny_checkpoint):
    from napari_attnseg._napari.finetune_widget import FinetuneWidget
    from napari_attnseg._napari.segment_widget import SegmentWidget

    _, d = dock
    label = d.segment.add_model(tiny_checkpoint(2))  # what "Load checkpoint..." does
    assert label in d.finetune.model_combo.choices
    # panels docked alone, the Fine-tune one first: it follows the Segment panel once shown
    viewer = make_napari_viewer()
    ft = FinetuneWidget(viewer)
    viewer.window.add_dock_widget(ft, name="Fine-tune")
    seg = SegmentWidget(viewer)
    viewer.window.add_dock_widget(seg, name="Segment")
    ft.segment_models_changed()  # (what showing the panel does)
    chosen = ft.model_combo.value
    other = seg.add_model(tiny_checkpoint(2, name="other"))
    assert other in ft.model_combo.choices and ft.model_combo.value == chosen  # offered; the choice stays


# -- with training (tiny, slowed steps) -------------------------------------------------------------
@pytest.mark.gui
def test_bar_follows_steps_and_a_cancel_in_epoch_1_leaves_no_folder(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    ds, start = _volume_dataset(tmp_path)
    _slow_steps(monkeypatch, 0.25)  # an epoch of 25 steps: >= 6 s
    w = _panel(make_napari_viewer(), ds, start)
    out = Path(str(w.out_edit.value))
    w.minutes_spin.value = MIN = w.minutes_spin.min  # 0.5 min, more than the setup
    assert MIN >= 0.5
    assert w.run() is not None
    # the setup is over once the status says which epoch; the bar moves with the steps, before any epoch ends
    qtbot.waitUntil(lambda: w.status.value.startswith("epoch 1") and w.progress_bar.value > 0, timeout=60000)
    assert not w.history and "step" in w.status.value
    w.cancel_button.native.click()
    qtbot.waitUntil(lambda: w.run_button.enabled, timeout=60000)
    assert w.result is not None and w.result.epochs == 0 and w.result.checkpoint is None
    assert "during epoch 1, before any epoch finished" in w.status.value
    assert "No epoch beat" not in w.status.value and "removed" in w.status.value
    assert not out.exists() and Path(str(w.out_edit.value)) == out  # no folder left; the same name again


@pytest.mark.gui
def test_closing_the_viewer_cancels_the_run(make_napari_viewer, qtbot, tmp_path, monkeypatch, notifications):
    from qtpy.QtCore import QEvent
    from qtpy.QtWidgets import QApplication

    from napari_attnseg._napari._common import is_deleted
    from napari_attnseg._napari.dock import AttnSegDock

    ds, start = _volume_dataset(tmp_path)
    _slow_steps(monkeypatch, 0.25)
    viewer = make_napari_viewer()
    d = AttnSegDock(viewer)
    viewer.window.add_dock_widget(d, name="Attention segmentation")
    w = d.finetune
    w.add_model("start", str(start))
    w.dataset_edit.value = str(ds)
    w.model_combo.value = "start"
    out = Path(str(w.out_edit.value))
    worker = w.run()
    ended = []
    worker.finished.connect(lambda: ended.append(True))
    token = w._token
    qtbot.waitUntil(lambda: w.status.value.startswith("epoch 1"), timeout=60000)
    viewer.close()
    QApplication.sendPostedEvents(None, QEvent.DeferredDelete)  # what the event loop does after the close
    assert is_deleted(w) and token.cancelled  # closing the viewer cancelled the run
    qtbot.waitUntil(lambda: bool(ended), timeout=60000)  # the late callbacks ran against the deleted panel
    qtbot.waitUntil(lambda: not out.exists(), timeout=30000)  # nothing learned: the folder the run made is gone
    assert not any("saved" in str(n.message) for n in notifications)
    assert not any(getattr(n, "exception", None) for n in notifications)


@pytest.mark.gui
@pytest.mark.parametrize("alone", [False, True])
def test_closing_the_dock_stops_what_would_go_on_unseen(make_napari_viewer, qtbot, tmp_path, monkeypatch, alone):
    """napari's dock ✕ unparents the panel and deletes nothing: a fine-tuning run went on unseen (a reopened panel
    could not cancel it, and it competed with the next run), clicks and R/K/N still acted on the viewer."""
    from napari_attnseg._napari.dock import AttnSegDock

    ds, start = _volume_dataset(tmp_path)
    _slow_steps(monkeypatch, 0.25)
    viewer = make_napari_viewer()
    if alone:
        w = _panel(viewer, ds, start)
        dock, correct = w, None
    else:
        dock = AttnSegDock(viewer)
        viewer.window.add_dock_widget(dock, name="Attention segmentation")
        w, correct = dock.finetune, dock.correct
        w.add_model("start", str(start))
        w.dataset_edit.value = str(ds)
        w.model_combo.value = "start"
        viewer.add_image(np.zeros((32, 32), np.float32), name="img")
        viewer.add_labels(np.zeros((32, 32), np.uint8), name="img mask")
        correct.prompt.enable_box.value = True
        assert correct.prompt._on_image_click in viewer.mouse_drag_callbacks
    worker = w.run()
    ended = []
    worker.finished.connect(lambda: ended.append(True))
    qtbot.waitUntil(lambda: w.status.value.startswith("epoch 1"), timeout=60000)
    viewer.window.remove_dock_widget(dock)
    assert w._token.cancelled
    qtbot.waitUntil(lambda: bool(ended), timeout=60000)
    if correct is not None:
        assert correct.prompt._on_image_click not in viewer.mouse_drag_callbacks
        assert not correct.prompt.enable_box.value
        from napari.utils.key_bindings import KeyBinding

        assert KeyBinding.from_str("r") not in viewer.keymap


@pytest.mark.gui
def test_a_short_run_alone_docks_nothing_and_says_less_than_one_epoch(make_napari_viewer, qtbot, tmp_path,
                                                                      monkeypatch, notifications):
    from napari_attnseg._napari._common import docked_widgets
    from napari_attnseg._napari.finetune_widget import FinetuneWidget

    ds, start = _volume_dataset(tmp_path)
    _slow_steps(monkeypatch, 0.3)  # an epoch >= 7.5 s; the budget is 3 s
    viewer = make_napari_viewer()
    w = _panel(viewer, ds, start)
    w.minutes_spin.min = 0.05  # (below the panel's minimum, to keep the test short)
    w.minutes_spin.value = 0.05
    w.out_edit.value = str(tmp_path / "short")
    assert w.run() is not None
    qtbot.waitUntil(lambda: w.run_button.enabled, timeout=120000)
    assert w.result is not None and w.result.checkpoint, w.status.value
    status = w.status.value
    assert status.startswith("Less than one epoch ran (") and "give a longer budget" in status
    assert "setup took" in status
    before, after = status.split("Validation Dice ")[1].split(" (")[0].split(" -> ")
    assert len(before.split(".")[1]) == 4 and len(after.split(".")[1]) == 4
    # no Segment panel docked: none is docked now (not the three-tab dock with a second Fine-tune tab)
    assert sum(isinstance(x, FinetuneWidget) for x in docked_widgets(viewer)) == 1
    assert list(viewer.window.dock_widgets) == ["Fine-tune"]
    said = [str(n.message) for n in notifications]
    assert any(str(tmp_path / "short") in m and "Load checkpoint" in m for m in said), said
    assert w.result.checkpoint in w._paths.values()


def test_a_run_that_kept_the_start_weights_leaves_the_segment_tabs_model_chosen(dock, qtbot, tmp_path, monkeypatch,
                                                                               notifications):
    """No epoch beat the start model: its weights are saved under the new name (with this dataset's card) and
    listed, but the Segment tab keeps the model it had (it had chosen the copy, a 'new' model that learnt nothing;
    z-stack audit), and the notification says so."""
    from napari_attnseg.training import trainer as trainer_module

    monkeypatch.setattr(trainer_module.Trainer, "_step", lambda self, x, y: 1.0)  # no step learns: the start is kept
    viewer, panels = dock
    ds, start = _volume_dataset(tmp_path)
    seg_label = panels.segment.add_model(str(start))
    before = panels.segment.model_combo.value
    assert before == seg_label
    w = panels.finetune
    w.dataset_edit.value = str(ds)
    w.model_combo.value = next(c for c in w.model_combo.choices if "start" in str(c))
    w.minutes_spin.min = 0.05
    w.minutes_spin.value = 0.1
    w.out_edit.value = str(tmp_path / "kept")
    assert w.run() is not None
    qtbot.waitUntil(lambda: w.run_button.enabled, timeout=120000)
    assert w.result is not None and w.result.kept_start and w.result.checkpoint, w.status.value
    assert panels.segment.model_combo.value == before
    said = [str(n.message) for n in notifications]
    assert any("No epoch beat" in m and "not chosen there" in m for m in said), said
