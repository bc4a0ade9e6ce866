"""The class names of a corrected mask travel with it, like its reviewed slices: the NIfTI the Correct
panel's mask is saved to holds them, reopening shows them in the panel, and `attnseg export` of the file
uses them (loop audit: after File > Save and reopening, the names typed in the panel were gone and the
export named the classes 'class 1', 'class 2')."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_attnseg.cli import main
from napari_attnseg.data.io import read_image, write_image


def _case(tmp_path):
    image = np.random.default_rng(0).random((6, 16, 16)).astype(np.float32)
    labels = np.zeros((6, 16, 16), np.uint8)
    labels[2:4, 4:9, 4:9] = 1
    write_image(tmp_path / "ct.nii.gz", image, affine=np.diag([0.8, 0.8, 2.5, 1.0]))
    return image, labels


def test_names_round_trip_and_feed_the_cli_export(tmp_path, capsys):
    _, labels = _case(tmp_path)
    write_image(tmp_path / "mask.nii.gz", labels, affine=np.diag([0.8, 0.8, 2.5, 1.0]), reviewed_slices=[1, 2, 3],
                class_names=["background", "tumour"])
    back = read_image(tmp_path / "mask.nii.gz")
    assert back.meta["class_names"] == ["background", "tumour"] and back.meta["reviewed_slices"] == [1, 2, 3]
    assert main(["export", "--image", str(tmp_path / "ct.nii.gz"), "--labels", str(tmp_path / "mask.nii.gz"),
                 "--dataset", str(tmp_path / "ds")]) == 0
    assert "using the class names saved with the mask: background, tumour" in capsys.readouterr().err
    assert json.loads((tmp_path / "ds" / "manifest.json").read_text())["label_names"] == ["background", "tumour"]
    write_image(tmp_path / "plain.nii.gz", labels, affine=np.diag([0.8, 0.8, 2.5, 1.0]))
    assert "class_names" not in read_image(tmp_path / "plain.nii.gz").meta


@pytest.mark.gui
def test_names_typed_in_the_panel_survive_save_and_reopen(make_napari_viewer, qtbot, tmp_path):
    from napari_attnseg._napari.correct_widget import CorrectWidget

    image, labels = _case(tmp_path)
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / "ct.nii.gz"), plugin="napari-attnseg")
    layer = viewer.add_labels(labels, name="ct mask", scale=viewer.layers["ct"].scale)
    corr = CorrectWidget(viewer)
    corr.mark_slices([1, 2, 3])
    corr.class_names_edit.value = "background, tumour"
    corr.dataset_edit.value = str(tmp_path / "ds")
    assert corr.export() is not None
    qtbot.waitUntil(lambda: (tmp_path / "ds" / "manifest.json").exists(), timeout=30000)
    layer.save(str(tmp_path / "saved_mask.nii.gz"), plugin="napari-attnseg")
    other = make_napari_viewer()
    other.open(str(tmp_path / "ct.nii.gz"), plugin="napari-attnseg")
    reopened = other.open(str(tmp_path / "saved_mask.nii.gz"), plugin="napari-attnseg")[0]
    assert reopened.metadata["class_names"] == ["background", "tumour"]
    again = CorrectWidget(other)
    again.labels_combo.value = reopened.name
    assert again.class_names_edit.value == "background, tumour"
