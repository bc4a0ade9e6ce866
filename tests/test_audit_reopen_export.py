"""Day 2 on an exported case: the label file an export wrote (``labelsTr/case_0000.nii.gz``, MONAI's
``labels/case_0000.nii.gz``, the TIFF layout's ``labels/case_0000.tif``) reopened in napari came back with no
reviewed marks and its unreviewed slices full of the dataset's 'ignore' value, listed as a class: the Correct tab
said 'Reviewed slices: none', Next proposed reviewed slices and a re-export was refused (or wrote 'ignore' as a
class). Its dataset's manifest.json names its review and its 'ignore' value: they come back from it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gui

REVIEWED = [3, 4, 5, 9]


def _exported(tmp_path: Path, fmt: str) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """A 12-slice case exported with slices 3-5 and 9 reviewed: (image file, label file, image, labels)."""
    from napari_attnseg.data.export import export_case

    rng = np.random.default_rng(0)
    image = rng.normal(100, 20, (12, 24, 28)).astype(np.float32)
    labels = np.zeros(image.shape, np.uint8)
    labels[2:8, 8:16, 10:18] = 1  # a tumour on slices 2-7 (2, 6 and 7 unchecked)
    rec = export_case(image, labels, tmp_path / "DS", fmt, spacing=(3.0, 0.8, 0.8), reviewed_slices=REVIEWED)
    assert rec.ignore_label == 2
    return tmp_path / "DS" / rec.files["images"][0], tmp_path / "DS" / rec.files["label"], image, labels


def _reopen(viewer, qtbot, path: Path):
    """File > Open: the plugin's reader for NIfTI, napari's own for a TIFF (the Correct tab makes it a mask)."""
    if path.suffix == ".tif":
        viewer.open(str(path), plugin="napari")
        qtbot.waitUntil(lambda: type(viewer.layers[path.name.split(".")[0]]).__name__ == "Labels", timeout=5000)
        return viewer.layers[path.name.split(".")[0]]
    (layer,) = viewer.open(str(path), plugin="napari-attnseg")
    return layer


@pytest.mark.parametrize("fmt", ["nnunet", "monai", "tiff"])
def test_an_exported_label_file_reopens_with_its_reviewed_slices_and_ignore_named(make_napari_viewer, qtbot,
                                                                                  tmp_path, notifications, fmt):
    from napari_attnseg._napari.correct_widget import CorrectWidget
    from napari_attnseg._napari.tiff_masks import IGNORE_NAME

    _, label_file, _, _ = _exported(tmp_path, fmt)
    viewer = make_napari_viewer()
    corr = CorrectWidget(viewer)
    layer = _reopen(viewer, qtbot, label_file)
    assert type(layer).__name__ == "Labels"
    assert layer.metadata["reviewed_slices"] == REVIEWED
    assert layer.metadata["class_names"] == ["background", "foreground"]  # the classes only: File > Save writes them
    assert list(layer.features["class"]) == ["background", "foreground", IGNORE_NAME]  # napari's status bar says so
    assert int(np.asarray(layer.data)[0].max()) == 2  # (the file's values are kept)
    corr.labels_combo.value = layer.name
    assert corr.reviewed_label.value == "Reviewed slices: 3-5,9"
    said = " ".join(str(n.message) for n in notifications)
    assert "3-5,9" in said and IGNORE_NAME in said and "value 2" in said, said


def _correct_tab_on_reopened(make_napari_viewer, qtbot, tmp_path):
    """The Correct tab on the image and the reopened label file of an nnU-Net export, exporting to DS2: (panel, the
    labels exported)."""
    from napari_attnseg._napari.correct_widget import CorrectWidget

    image_file, label_file, _, labels = _exported(tmp_path, "nnunet")
    viewer = make_napari_viewer()
    corr = CorrectWidget(viewer)
    (img,) = viewer.open(str(image_file), plugin="napari-attnseg")
    layer = _reopen(viewer, qtbot, label_file)
    corr.labels_combo.value, corr.image_combo.value = layer.name, img.name
    corr.dataset_edit.value = str(tmp_path / "DS2")
    return corr, labels


def test_a_reopened_label_file_exports_again_with_its_review_and_no_ignore_class(make_napari_viewer, qtbot, tmp_path):
    """Correct tab Export of the reopened case into a new dataset: the same reviewed slices, 'ignore' on the others
    (the new dataset's value), a label table of the real classes only."""
    corr, labels = _correct_tab_on_reopened(make_napari_viewer, qtbot, tmp_path)
    assert corr.export() is not None
    qtbot.waitUntil(lambda: corr.export_button.enabled, timeout=60000)
    manifest = json.loads((tmp_path / "DS2" / "manifest.json").read_text())
    assert manifest["label_names"] == ["background", "foreground"]
    (case,) = manifest["cases"]
    assert case["reviewed_slices"] == REVIEWED and case["ignore_label"] == 2
    from napari_attnseg.data import read_image

    out = np.asarray(read_image(tmp_path / "DS2" / case["files"]["label"]).data)
    np.testing.assert_array_equal(out[REVIEWED], labels[REVIEWED])
    assert (out[[z for z in range(12) if z not in REVIEWED]] == 2).all()


def test_a_reviewed_slice_still_holding_ignore_is_refused_by_name(make_napari_viewer, qtbot, tmp_path, notifications):
    """Slice 6 was not reviewed (it holds 'ignore'); marking it reviewed and exporting was refused as 'label value 2
    ... only 2 class names', which did not say that 2 is the 'ignore' of the unreviewed slices."""
    from napari_attnseg._napari.tiff_masks import IGNORE_NAME

    corr, _ = _correct_tab_on_reopened(make_napari_viewer, qtbot, tmp_path)
    corr.mark_slices([6])
    assert corr.export() is None and not (tmp_path / "DS2").exists()
    said = str(notifications[-1].message)
    assert "reviewed slices 6 still hold" in said and IGNORE_NAME in said and "Shift+R" in said, said
    corr.viewer.layers[corr.labels_combo.value].data[6] = 0  # painted: exported
    assert corr.export() is not None
    qtbot.waitUntil(lambda: corr.export_button.enabled, timeout=60000)
    (case,) = json.loads((tmp_path / "DS2" / "manifest.json").read_text())["cases"]
    assert case["reviewed_slices"] == [3, 4, 5, 6, 9]


def test_a_file_that_is_no_case_of_its_dataset_gets_nothing_from_the_manifest(tmp_path):
    from napari_attnseg._napari.tiff_masks import exported_marks
    from napari_attnseg.data.manifest import exported_case_of

    _, label_file, _, _ = _exported(tmp_path, "nnunet")
    other = label_file.with_name("case_0001.nii.gz")
    other.write_bytes(label_file.read_bytes())
    assert exported_case_of(other) is None and exported_marks(str(other)) is None
    assert exported_case_of(label_file)[1]["case_id"] == "case_0000"


def test_the_save_dialog_says_which_labels_types_keep_the_reviewed_slices():
    """File > Save preselects napari's own labels TIFF type (it drops the marks silently); this plugin's writer cannot
    be preselected (npe2 lists writers of the same layer types in registration order, napari's first), so its types
    say in the dialog's list that they keep them."""
    from napari.layers import Labels
    from napari.plugins._npe2 import file_extensions_string_for_layers

    types, writers = file_extensions_string_for_layers([Labels(np.zeros((2, 4, 4), np.uint8))])
    ours = [t for t, w in zip(types.split(";;"), writers) if w.command.startswith("napari-attnseg.")]
    assert len(ours) == 2 and all("keeps reviewed slices" in t for t in ours), ours
    assert not writers[0].command.startswith("napari-attnseg.")  # (napari's first: if this changes, use it)


@pytest.mark.parametrize("fmt", ["nnunet", "tiff"])
def test_attnseg_export_of_an_exported_label_file_keeps_its_review(tmp_path, fmt, capsys):
    """`attnseg export --labels DS/labelsTr/case_0000.nii.gz` (no --reviewed-slices) wrote the dataset's 'ignore'
    value as a class ('class 2') and every slice as reviewed; a slice nobody reviewed, given as reviewed, was
    refused as an unnamed label value. The review and the class names come from the dataset's manifest."""
    from napari_attnseg.cli import main

    image_file, label_file, _, labels = _exported(tmp_path, fmt)
    assert main(["export", "--image", str(image_file), "--labels", str(label_file), "--dataset",
                 str(tmp_path / "DS2"), "--format", "nnunet"]) == 0
    assert "taken from the dataset's manifest.json" in capsys.readouterr().err
    manifest = json.loads((tmp_path / "DS2" / "manifest.json").read_text())
    case = manifest["cases"][0]
    assert manifest["label_names"] == ["background", "foreground"] and case["reviewed_slices"] == REVIEWED
    assert main(["export", "--image", str(image_file), "--labels", str(label_file), "--dataset",
                 str(tmp_path / "DS3"), "--format", "nnunet", "--reviewed-slices", "3-7"]) == 1
    err = capsys.readouterr().err
    assert "slice(s) 6-7 hold the dataset's 'ignore' value 2" in err and not (tmp_path / "DS3").exists(), err
