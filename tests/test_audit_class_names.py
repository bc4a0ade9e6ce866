"""The Correct tab's class names and *Class* list (audit): a re-run with a model of other classes kept the last
model's names (and an export wrote them back into the mask), a reopened exported label file listed its 'ignore'
value as a class for the helpers and counted it in the live edit statistics, and the message of a re-run that
carried reviewed slices over read like a layer name ('vol mask (1-2,5)')."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.gui

THREE = ["background", "liver", "tumour"]


def _three_class_model(tmp_path: Path) -> Path:
    from napari_attnseg import create_model, save_model
    from napari_attnseg.checkpoint import ModelCard

    torch.manual_seed(1)
    model = create_model("attention_unet", spatial_dims=2, out_channels=3, features=(4, 8, 16, 32, 64))
    p = tmp_path / "three.safetensors"
    save_model(model, p, ModelCard(arch="", config={}, name="three-2d", description="t", tile=[32, 32],
                                   classes=list(THREE)))
    return p


def _listed(corr) -> list[str]:
    """The texts of the Class list."""
    box = corr.class_combo.native
    return [box.itemText(i) for i in range(box.count())]


def _rerun(qtbot, dock) -> None:
    with qtbot.waitSignal(dock.segment.run_done, timeout=60000):
        dock.segment.run_button.native.click()
    qtbot.wait(200)  # (the layers are shown one per turn of the event loop)


def test_a_rerun_with_other_classes_updates_the_class_names_and_the_export(volume_run, qtbot, tmp_path):
    """Round 2 with a 3-class model: "vol mask" is updated in place (nothing edited) with the model's classes in its
    metadata; the Correct tab kept "background, foreground", and an Export named the new labels with them and wrote
    them back into the mask's metadata."""
    viewer, dock = volume_run
    corr, seg = dock.correct, dock.segment
    mask = viewer.layers["vol mask"]
    assert corr.class_names_edit.value == "background, foreground"
    seg.add_model(_three_class_model(tmp_path))
    _rerun(qtbot, dock)
    assert viewer.layers["vol mask"] is mask and mask.metadata["class_names"] == THREE
    assert corr.class_names_edit.value == "background, liver, tumour"
    assert _listed(corr) == ["all classes", "1: liver", "2: tumour"]
    corr.mark_all()
    corr.dataset_edit.value = str(tmp_path / "DS")
    assert corr.export() is not None
    qtbot.waitUntil(lambda: corr.export_button.enabled, timeout=60000)
    assert json.loads((tmp_path / "DS" / "manifest.json").read_text())["label_names"] == THREE
    assert mask.metadata["class_names"] == THREE


def test_names_typed_for_the_mask_are_kept_through_a_rerun_and_the_other_classes_said(volume_run, qtbot, tmp_path,
                                                                                     notifications):
    """The clinician named the classes themself: a re-run with a model of other classes keeps their names (and
    writes them in the mask's metadata again, for File > Save), and says that the model's classes differ."""
    viewer, dock = volume_run
    corr, seg = dock.correct, dock.segment
    mask = viewer.layers["vol mask"]
    corr.class_names_edit.value = "background, lesion"
    assert mask.metadata["class_names"] == ["background", "lesion"]
    seg.add_model(_three_class_model(tmp_path))
    _rerun(qtbot, dock)
    assert corr.class_names_edit.value == "background, lesion"
    assert mask.metadata["class_names"] == ["background", "lesion"]
    said = " ".join(str(n.message) for n in notifications)
    assert "background, liver, tumour" in said and "background, lesion" in said and "vol mask" in said, said


def _exported(tmp_path: Path) -> tuple[Path, Path]:
    """A 12-slice case exported with slices 3-5 and 9 reviewed (its 'ignore' is 2): (image file, label file)."""
    from napari_attnseg.data.export import export_case

    image = np.random.default_rng(0).normal(100, 20, (12, 24, 28)).astype(np.float32)
    labels = np.zeros(image.shape, np.uint8)
    labels[2:8, 8:16, 10:18] = 1
    rec = export_case(image, labels, tmp_path / "DS", "nnunet", spacing=(3.0, 0.8, 0.8), reviewed_slices=[3, 4, 5, 9])
    assert rec.ignore_label == 2
    return tmp_path / "DS" / rec.files["images"][0], tmp_path / "DS" / rec.files["label"]


def test_the_class_list_of_a_reopened_label_file_leaves_out_its_ignore_value(make_napari_viewer, qtbot, tmp_path):
    """DS/labelsTr/case_0000.nii.gz reopened: its unreviewed slices hold the dataset's 'ignore' (2), which the Class
    list offered as '2: class 2' for the helpers."""
    from napari_attnseg._napari.correct_widget import CorrectWidget

    image_file, label_file = _exported(tmp_path)
    viewer = make_napari_viewer()
    corr = CorrectWidget(viewer)
    viewer.open(str(image_file), plugin="napari-attnseg")
    (layer,) = viewer.open(str(label_file), plugin="napari-attnseg")
    corr.labels_combo.value = layer.name
    assert corr.class_names_edit.value == "background, foreground"
    assert _listed(corr) == ["all classes", "1: foreground"] and corr.class_combo.choices == (0, 1)
    layer.data_setitem((np.array([4]), np.array([1]), np.array([1])), np.array([1], np.uint8))  # a stroke: no relist
    layer.data = np.array(layer.data)  # (data replaced: listed anew)
    assert corr.class_combo.choices == (0, 1)
    before = np.array(layer.data)
    corr.fill_holes()  # all classes: 'ignore' is never one
    np.testing.assert_array_equal(np.asarray(layer.data) == 2, before == 2)


def test_the_live_edit_statistics_of_a_reopened_label_file_leave_out_its_ignore_value(make_napari_viewer, qtbot,
                                                                                     tmp_path):
    """The live statistics counted the 'ignore' of the unreviewed slices as 'class 2' (Dice 1.000)."""
    from napari_attnseg._napari.correct_widget import CorrectWidget

    image_file, label_file = _exported(tmp_path)
    viewer = make_napari_viewer()
    corr = CorrectWidget(viewer)
    viewer.open(str(image_file), plugin="napari-attnseg")
    (layer,) = viewer.open(str(label_file), plugin="napari-attnseg")
    layer.metadata["attnseg_prediction"] = np.array(layer.data)  # (what the statistics compare against)
    corr.labels_combo.value = layer.name
    layer.data_setitem((np.array([4, 4]), np.array([1, 2]), np.array([1, 1])), np.array([1, 1], np.uint8))
    corr._update_info()
    said = corr.stats_label.value
    assert said.startswith("Edits vs prediction: class 1: +2 / -0 voxels") and "class 2" not in said, said
    assert set(layer.metadata["attnseg_edit_stats"]["per_class"]) == {"1"}


def test_the_carried_reviewed_slices_message_names_the_kept_mask_and_its_slices(volume_run, qtbot, notifications):
    """'...the slices you reviewed in vol mask (1-2,5)...' read like the layer 'vol mask (2)'."""
    viewer, dock = volume_run
    corr, seg = dock.correct, dock.segment
    mask = viewer.layers["vol mask"]
    mask.data_setitem((np.array([1]), np.array([5]), np.array([5])), np.array([1], np.uint8))  # a correction
    corr.mark_slices([1, 2, 5])
    seg.confirm_overwrite = lambda name: False  # No: keep my edits
    _rerun(qtbot, dock)
    new = viewer.layers["vol mask (2)"]
    qtbot.waitUntil(lambda: new.metadata.get("reviewed_slices") == [1, 2, 5], timeout=5000)
    said = " ".join(str(n.message) for n in notifications)
    assert "reviewed in 'vol mask' (slices 1-2,5)" in said and "'vol mask' is kept as it was" in said, said
