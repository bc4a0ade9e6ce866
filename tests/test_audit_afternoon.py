"""A radiologist's afternoon in napari on a brain MRI with a tumour (audit): Segment, correct three slices, mark them
reviewed, helpers, Next suggested slice, export, fine-tune, Segment again keeping the edited mask (*No*: the
prediction goes to '<image> mask (2)' with the reviewed slices carried over), correct two more slices, export round
2, *Save mask...* and reopen. What the panels did wrong on the way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gui

NAMES = "background, tumour"


def _rerun_keeping(qtbot, dock) -> None:
    """Segment again, answering No to 'Overwrite edited mask?' (the edited mask is kept)."""
    dock.segment.confirm_overwrite = lambda name: False
    with qtbot.waitSignal(dock.segment.run_done, timeout=60000):
        dock.segment.run_button.native.click()
    qtbot.wait(200)  # (the layers are shown one per turn of the event loop; the carry-over follows them)


def _click_save(panel, monkeypatch, answer=None) -> list:
    """*Save mask...* with the dialog answering ``answer`` (None: what it proposed); returns the dialog's arguments."""
    from napari_attnseg._napari import save_mask

    asked = []

    def dialog(*args, **kwargs):
        asked.append(args)
        return str(answer or args[2]), args[4]

    monkeypatch.setattr(save_mask.QFileDialog, "getSaveFileName", dialog)
    panel.save_mask()
    return asked


def test_a_mask_saved_without_marks_is_saved_back_to_its_own_file(make_napari_viewer, monkeypatch, tmp_path):
    """A mask an older version (or another tool) saved without reviewed slices, class names or model, opened, marked
    and saved: Save mask proposed that very file and refused it ("not a mask this plugin saved"): the clinician could
    not save their mask where it was. It is saved back now, its earlier content kept beside it."""
    import nibabel as nib

    from napari_attnseg._napari.correct_widget import CorrectWidget
    from napari_attnseg.data import read_image

    old = np.zeros((20, 12, 6), np.uint8)  # (i, j, k): 6 slices
    old[5:12, 4:9, 2:5] = 1
    path = tmp_path / "brain mask.nii.gz"
    nib.save(nib.Nifti1Image(old, np.diag([0.8, 0.8, 6.5, 1.0])), str(path))
    before = path.read_bytes()
    viewer = make_napari_viewer()
    layer = viewer.open(str(path), plugin="napari-attnseg")[0]
    assert layer._type_string == "labels" and not layer.metadata.get("reviewed_slices")
    panel = CorrectWidget(viewer)
    panel.labels_combo.value = layer.name
    panel.mark_slices([2, 3])
    asked = _click_save(panel, monkeypatch)
    assert Path(asked[0][2]) == path  # the file it was opened from
    assert "Not saved" not in panel.save_label.value, panel.save_label.value
    assert read_image(path).meta["reviewed_slices"] == [2, 3]
    backup = tmp_path / "brain mask.before-save.nii.gz"
    assert backup.read_bytes() == before and backup.name in panel.save_label.value  # nothing lost, and said
    # a run's mask (its source_path is its image's file): proposed beside the image, never over it; another tool's
    # file of the mask's name there: a free name instead of one Save mask would refuse
    image = tmp_path / "brain.nii.gz"
    nib.save(nib.Nifti1Image(old.astype(np.float32), np.diag([0.8, 0.8, 6.5, 1.0])), str(image))
    img = viewer.open(str(image), plugin="napari-attnseg")[0]
    run = viewer.add_labels(np.zeros(img.data.shape, np.uint8), name="brain run mask",
                            metadata={"source_path": str(image), "attnseg": {"model": "m"},
                                      "attnseg_prediction": np.zeros(img.data.shape, np.uint8)})
    (tmp_path / "brain run mask.nii.gz").write_bytes(before)
    panel.labels_combo.value, panel.image_combo.value = run.name, img.name
    asked = _click_save(panel, monkeypatch)
    assert Path(asked[0][2]) == tmp_path / "brain run mask-2.nii.gz"
    assert (tmp_path / "brain run mask.nii.gz").read_bytes() == before


def test_slices_carried_into_the_new_mask_are_not_counted_as_this_rounds_edits(volume_run, qtbot):
    """After a re-run kept the edited mask, 'vol mask (2)' holds round 1's reviewed slices; the edit statistics
    counted them as edits of the new prediction ('class 1: +40 / -...') before the clinician changed anything."""
    viewer, dock = volume_run
    corr = dock.correct
    mask = viewer.layers["vol mask"]
    data = np.array(mask.data)
    data[2:4] = 0
    data[2:4, 10:20, 10:20] = 1  # round 1's corrections
    mask.data = data
    corr.mark_slices([2, 3])
    _rerun_keeping(qtbot, dock)
    new = viewer.layers["vol mask (2)"]
    qtbot.waitUntil(lambda: new.metadata.get("reviewed_slices") == [2, 3], timeout=5000)
    np.testing.assert_array_equal(new.data[2:4], data[2:4])
    assert not np.array_equal(new.metadata["attnseg_prediction"][2:4], data[2:4])  # (they differ from the run's)
    qtbot.waitUntil(lambda: corr.stats_label.value.startswith("Edits vs prediction"), timeout=5000)
    assert corr.stats_label.value == "Edits vs prediction: class 1: +0 / -0 voxels, Dice 1.000"
    # an edit of this round counts, on a carried slice too
    pred = new.metadata["attnseg_prediction"]
    new.data_setitem((np.array([2, 5]), np.array([0, 0]), np.array([0, 0])), 1)
    added = 1 + int(pred[5, 0, 0] != 1)
    qtbot.waitUntil(lambda: f"class 1: +{added} / -0 voxels" in corr.stats_label.value, timeout=5000)


@pytest.mark.parametrize("reviewed", [False, True])
def test_class_names_typed_go_with_the_new_mask_when_the_edited_one_is_kept(volume_run, qtbot, notifications,
                                                                            reviewed):
    """Names typed in the Correct panel, then Segment again answered No: 'vol mask (2)' showed the model's names
    (background, foreground) in Class names, the typed ones were left on the hidden mask, and nothing said so (the
    next export named the clinician's tumour 'foreground')."""
    viewer, dock = volume_run
    corr = dock.correct
    mask = viewer.layers["vol mask"]
    assert corr.class_names_edit.value == "background, foreground"  # (the model's)
    corr.class_names_edit.value = NAMES
    data = np.array(mask.data)
    data[2, 5:9, 5:9] = 1
    mask.data = data
    if reviewed:
        corr.mark_slices([2])
    _rerun_keeping(qtbot, dock)
    new = viewer.layers["vol mask (2)"]
    assert corr.labels_combo.value == new.name
    qtbot.waitUntil(lambda: new.metadata.get("class_names") == ["background", "tumour"], timeout=5000)
    qtbot.wait(50)
    assert corr.class_names_edit.value == NAMES
    said = [str(n.message) for n in notifications if "keeps the class names" in str(n.message)]
    assert said and "background, tumour" in said[0] and "background, foreground" in said[0]
    assert mask.metadata["class_names"] == ["background", "tumour"]  # (the kept mask keeps them too)


def test_class_names_stay_when_the_next_run_replaces_the_carried_mask(volume_run, qtbot, notifications):
    """Round 3: 'vol mask (2)' (which took the typed names) edited and Segment run again, Yes: its names went back to
    the model's (background, foreground) in its metadata and in Class names, without a word."""
    viewer, dock = volume_run
    corr = dock.correct
    corr.class_names_edit.value = NAMES
    viewer.layers["vol mask"].data_setitem((np.array([2]), np.array([5]), np.array([5])), 1)
    corr.mark_slices([2])
    _rerun_keeping(qtbot, dock)
    new = viewer.layers["vol mask (2)"]
    qtbot.waitUntil(lambda: corr.class_names_edit.value == NAMES, timeout=5000)
    new.data_setitem((np.array([3]), np.array([5]), np.array([5])), 1)
    notifications.clear()
    dock.segment.confirm_overwrite = lambda name: True  # Yes: replace it
    with qtbot.waitSignal(dock.segment.run_done, timeout=60000):
        dock.segment.run_button.native.click()
    qtbot.wait(200)
    assert "vol mask (3)" not in viewer.layers and corr.labels_combo.value == new.name
    assert new.metadata["class_names"] == ["background", "tumour"]
    assert corr.class_names_edit.value == NAMES
    assert any("keeps the class names you gave it (background, tumour)" in str(n.message) for n in notifications)
