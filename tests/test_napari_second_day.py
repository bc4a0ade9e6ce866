"""The loop over two napari sessions, as a clinician works over two days: a model fine-tuned in the panel is
listed by name after a restart (it is proposed into the user models folder) and is the next round's start,
day 2's run is proposed beside day 1's (never over it), class names typed before File > Save travel with the
saved mask, an export without a dataset folder names the earlier round's, and the Correct tab's keys do
nothing while its dock is hidden (Window menu, or the title bar's hide button)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_finetune_budget import _dataset

pytestmark = pytest.mark.gui


@pytest.fixture()
def models(tmp_path, monkeypatch):
    where = tmp_path / "user-models"
    monkeypatch.setenv("ATTNSEG_MODELS_DIR", str(where))
    return where


def _docked(make_napari_viewer, **kwargs):
    from napari_attnseg._napari.dock import AttnSegDock

    viewer = make_napari_viewer(**kwargs)
    dock = AttnSegDock(viewer)
    dock_widget = viewer.window.add_dock_widget(dock, name="Attention segmentation")
    return viewer, dock, dock_widget


def test_a_model_fine_tuned_in_the_panel_is_listed_after_a_restart(make_napari_viewer, qtbot, tmp_path, models):
    """Day 1's model went to '<dataset>-<name>' next to the dataset: a restarted napari listed it nowhere (the
    Segment tab lists the bundled models and the user models folder), and the panel said nothing about it."""
    ds, start = _dataset(tmp_path)
    viewer, dock, _ = _docked(make_napari_viewer)
    ft = dock.finetune
    ft.add_model("start", str(start))
    ft.dataset_edit.value = str(ds)
    ft.model_combo.value = "start"
    out = Path(str(ft.out_edit.value))
    assert out == models / "start-finetuned" and ft.name_edit.value == "start-finetuned"
    ft.minutes_spin.min = ft.minutes_spin.value = 0.05  # (below the panel's minimum: a short test)
    assert ft.run() is not None
    qtbot.waitUntil(lambda: ft.run_button.enabled, timeout=120000)
    assert ft.result is not None and Path(ft.result.checkpoint) == out / "best.safetensors", ft.status.value
    assert "in your models folder as 'start-finetuned'" in ft.status.value
    assert Path(str(ft.out_edit.value)) == models / "start-finetuned-2"  # the next run: beside it
    viewer.close()

    # day 2: a new viewer; the image's mask reopened from its file names no model
    viewer, dock, _ = _docked(make_napari_viewer)
    seg, ft = dock.segment, dock.finetune
    assert "start-finetuned" in seg.model_names() and "start-finetuned" in ft.model_combo.choices
    assert "start" not in ft.model_combo.choices  # (day 1's start file was loaded by hand: not listed)
    ft.dataset_edit.value = str(ds)
    # the model fine-tuned on this dataset starts round 2 (not a bundled model that has two classes too)
    assert ft.model_combo.value == "start-finetuned"
    assert ft.name_edit.value == "start-finetuned-2" and Path(str(ft.out_edit.value)) == models / "start-finetuned-2"
    ft.name_edit.value = "tumour round 2"  # a typed name: its folder follows
    assert Path(str(ft.out_edit.value)) == models / "tumour-round-2"
    ft.out_edit.value = str(out)  # day 1's folder: refused, nothing overwritten
    before = (out / "best.safetensors").read_bytes()
    assert ft.run() is None and "already holds a model" in ft.status.value
    assert (out / "best.safetensors").read_bytes() == before


def test_a_run_outside_the_models_folder_says_how_to_list_it(tmp_path, models):
    from napari_attnseg._napari.finetune_run import listed_text, proposed_model

    (models / "a-finetuned").mkdir(parents=True)
    (models / "a-finetuned-2.safetensors").write_text("")
    assert proposed_model("a", ["a"]) == ("a-finetuned-3", models / "a-finetuned-3")
    (models / "a-finetuned-3").mkdir()  # round 3 done: round 4 is a-finetuned-4, not a-finetuned-3-finetuned
    assert proposed_model("a-finetuned-3", []) == ("a-finetuned-4", models / "a-finetuned-4")
    # a typed name whose folder name a file of the folder or a bundled model has: a free folder (else never listed)
    (models / "p2.safetensors").write_text("")
    assert proposed_model("a", [], "p2") == ("p2", models / "p2-2")
    assert proposed_model("a", [], "nuclei-2d") == ("nuclei-2d", models / "nuclei-2d-2")
    said = listed_text(str(tmp_path / "my run" / "best.safetensors"))
    assert "not in your models folder" in said and "attnseg models --add" in said and "'" in said  # (quoted path)
    assert "Load checkpoint" in said


def test_class_names_typed_before_save_travel_with_the_mask(make_napari_viewer, tmp_path, models, notifications,
                                                           monkeypatch):
    """The typed names went into the mask only at Export: a mask saved first (File > Save) reopened the next day
    with the model's names, and its export into day 1's dataset was refused (other label names)."""
    from napari_attnseg._napari.correct_widget import CorrectWidget
    from napari_attnseg.checkpoint import ModelCard, save_model
    from napari_attnseg.data.export import export_case
    from napari_attnseg.models.registry import create_model

    monkeypatch.chdir(tmp_path)
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((4, 16, 16), np.float32), name="mr")
    data = np.zeros((4, 16, 16), np.uint8)
    data[1, 4:8, 4:8] = 1
    mask = viewer.add_labels(data, name="mr mask", metadata={"class_names": ["background", "grey matter",
                                                                              "white matter"]})
    corr = CorrectWidget(viewer)
    assert corr.labels_combo.value == "mr mask" and corr.class_names_edit.value.startswith("background, grey")
    corr.class_names_edit.value = "background, tumour"
    corr.mark_slices([1])
    viewer.layers.selection = {mask}
    saved = viewer.layers.save(str(tmp_path / "mr mask.nii.gz"), selected=True, plugin="napari-attnseg")
    viewer.layers.remove(mask)
    [back] = viewer.open(saved[0], plugin="napari-attnseg")
    assert back.metadata["class_names"] == ["background", "tumour"] and back.metadata["reviewed_slices"] == [1]
    # no dataset folder typed (a new session): the refusal names the dataset the user's models were tuned on
    ds = tmp_path / "ds"
    export_case(np.zeros((4, 16, 16), np.float32), data, ds, "nnunet", reviewed_slices=[1])
    save_model(create_model("unet", spatial_dims=2, features=[4, 8]), models / "mine.safetensors",
               ModelCard(arch="", config={}, name="mine", training={"dataset": str(ds)}))
    corr.dataset_edit.line_edit.value = ""  # (as a user empties it: FileEdit.value = "" would be the working folder)
    assert corr.export() is None
    assert any(f"fine-tuned on {ds}" in str(n.message) for n in notifications), [str(n.message) for n in notifications]
    corr.dataset_edit.line_edit.value = "ds2"  # typed, relative: refused, not written where napari happens to run
    assert corr.export() is None and not (tmp_path / "ds2").exists()
    assert "not a full path" in str(notifications[-1].message)


def test_the_correct_keys_do_nothing_while_the_dock_is_hidden(make_napari_viewer, qtbot):
    """Hiding the dock (Window menu, the title bar's hide button) keeps the panel docked: R, Shift+R, K and N
    still marked and edited the mask unseen (closing it unbinds them)."""
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    viewer, dock, dock_widget = _docked(make_napari_viewer, show=True)
    mask = viewer.add_labels(np.zeros((5, 32, 32), np.uint8), name="vol mask")
    viewer.add_image(np.zeros((5, 32, 32), np.float32), name="vol")
    canvas = viewer.window._qt_viewer.canvas.native
    qtbot.wait(300)  # (the window shown and the canvas ready for keys)

    def press(key, z):
        viewer.layers.selection.active = mask
        viewer.dims.set_point(0, z)
        canvas.setFocus()
        QTest.keyClick(canvas, key)
        qtbot.wait(100)

    press(Qt.Key_R, 1)
    assert mask.metadata.get("reviewed_slices") == [1]
    dock_widget.toggleViewAction().trigger()  # Window > Attention segmentation: hidden
    assert dock_widget.isHidden()
    press(Qt.Key_R, 2)
    assert mask.metadata.get("reviewed_slices") == [1]
    QTest.keyClick(canvas, Qt.Key_R, Qt.ShiftModifier)  # Shift+R: the mark on 1 stays too
    viewer.dims.set_point(0, 1)
    QTest.keyClick(canvas, Qt.Key_R, Qt.ShiftModifier)
    assert mask.metadata.get("reviewed_slices") == [1]
    dock_widget.toggleViewAction().trigger()  # shown again: the keys act
    press(Qt.Key_R, 3)
    assert mask.metadata.get("reviewed_slices") == [1, 3]
    dock_widget.titleBarWidget().hide_button.click()  # the dock's own hide button
    assert dock_widget.isHidden() and dock.correct.parent() is not None  # hidden, still docked
    press(Qt.Key_R, 4)
    assert mask.metadata.get("reviewed_slices") == [1, 3]
    # clicks of the click mode do nothing either (napari stops a drag callback that ends at once)
    from types import SimpleNamespace

    click = SimpleNamespace(modifiers=(), button=1, position=(1, 5, 5), pos=(5, 5), type="mouse_press")
    with pytest.raises(StopIteration):
        next(dock.correct.prompt._on_click(mask, click))
