"""A label file an export wrote, reopened in napari (its 'ignore' value known from its dataset's manifest), then
saved with this plugin's writer to a new path (File > Save, 'keeps reviewed slices'): reopened, its marks came back
but not which value is 'ignore' (no manifest beside the new file), so the Correct tab listed it as a class, the
helpers and edit stats worked on it, and `attnseg export` of the saved file wrote it as a class. The value now
travels with the marks (``metadata['ignore_value']``, in the file)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_audit_reopen_export import REVIEWED, _exported, _reopen

pytestmark = pytest.mark.gui


def _save(layer, path: Path) -> Path:
    """File > Save with this plugin's type: napari calls the writer with the layer's data and its state."""
    from napari_attnseg._napari import io_hooks

    meta = layer._get_state()
    writer = io_hooks.write_labels_tif if path.suffix == ".tif" else io_hooks.write_labels_nifti
    (out,) = writer(str(path), layer.data, meta)
    return Path(out)


@pytest.mark.parametrize(("fmt", "name"), [("nnunet", "mine.nii.gz"), ("tiff", "mine.tif")])
def test_a_saved_reopened_label_file_keeps_its_ignore_value(make_napari_viewer, qtbot, tmp_path, fmt, name):
    from napari_attnseg._napari.correct_stats import mask_ignore
    from napari_attnseg._napari.correct_widget import CorrectWidget
    from napari_attnseg._napari.tiff_masks import IGNORE_NAME
    from napari_attnseg.cli import main
    from napari_attnseg.data.manifest import ignore_value_of

    image_file, label_file, _, labels = _exported(tmp_path, fmt)
    viewer = make_napari_viewer()
    corr = CorrectWidget(viewer)
    layer = _reopen(viewer, qtbot, label_file)
    assert layer.metadata["ignore_value"] == 2 and mask_ignore(layer) == 2
    mine = _save(layer, tmp_path / name)
    assert ignore_value_of(mine) is None  # (no manifest beside it: the file says it)
    viewer.layers.remove(layer)

    again = _reopen(viewer, qtbot, mine)
    assert again.metadata["reviewed_slices"] == REVIEWED and again.metadata["ignore_value"] == 2
    assert mask_ignore(again) == 2
    assert list(again.features["class"])[2] == IGNORE_NAME
    corr.labels_combo.value = again.name
    assert corr._ignore() == 2
    assert [c for c in corr.class_combo.choices if c] == [1], corr.class_combo.choices  # 'ignore' is no class
    assert corr._classes() == [1]

    assert main(["export", "--image", str(image_file), "--labels", str(mine), "--dataset", str(tmp_path / "DS2"),
                 "--format", "nnunet"]) == 0
    manifest = json.loads((tmp_path / "DS2" / "manifest.json").read_text())
    (case,) = manifest["cases"]
    assert manifest["label_names"] == ["background", "foreground"], manifest["label_names"]
    assert case["reviewed_slices"] == REVIEWED and case["ignore_label"] == 2
    from napari_attnseg.data import read_image

    out = np.asarray(read_image(tmp_path / "DS2" / case["files"]["label"]).data)
    np.testing.assert_array_equal(out[REVIEWED], labels[REVIEWED])


def test_attnseg_export_refuses_a_reviewed_slice_holding_the_saved_ignore_value(make_napari_viewer, qtbot, tmp_path,
                                                                               capsys):
    from napari_attnseg.cli import main

    image_file, label_file, _, _ = _exported(tmp_path, "nnunet")
    viewer = make_napari_viewer()
    mine = _save(_reopen(viewer, qtbot, label_file), tmp_path / "mine.nii.gz")
    assert main(["export", "--image", str(image_file), "--labels", str(mine), "--dataset", str(tmp_path / "DS3"),
                 "--format", "nnunet", "--reviewed-slices", "3-7"]) == 1
    err = capsys.readouterr().err
    assert "slice(s) 6-7 hold" in err and "'ignore' value 2" in err and not (tmp_path / "DS3").exists(), err


def test_a_mask_without_an_ignore_value_saves_none(tmp_path):
    from napari_attnseg._napari import io_hooks
    from napari_attnseg.data import read_image
    from napari_attnseg.data.tiff import mask_marks

    data = np.zeros((4, 6, 6), np.uint8)
    data[1, 2:4, 2:4] = 2
    meta = {"scale": (1.0, 1.0, 1.0), "metadata": {"reviewed_slices": [1]}}
    for out in (io_hooks.write_labels_nifti(str(tmp_path / "m.nii.gz"), data, meta)[0],
                io_hooks.write_labels_tif(str(tmp_path / "m.tif"), data, meta)[0]):
        back = read_image(out)
        assert back.meta["reviewed_slices"] == [1] and "ignore_value" not in back.meta
    assert "ignore_value" not in mask_marks(tmp_path / "m.tif")


def test_the_correct_tab_and_evaluate_know_the_saved_ignore_value(make_napari_viewer, qtbot, tmp_path, notifications,
                                                                 capsys):
    """The saved file reopened: Export with slice 6 (still 'ignore') marked reviewed was refused only as 'label value
    2 ... add a name', and `attnseg evaluate` with the file as reference scored the unreviewed slices as class 2
    (both looked the value up in a manifest only)."""
    from napari_attnseg._napari.correct_widget import CorrectWidget
    from napari_attnseg.cli import main

    image_file, label_file, _, _ = _exported(tmp_path, "nnunet")
    viewer = make_napari_viewer()
    corr = CorrectWidget(viewer)
    mine = _save(_reopen(viewer, qtbot, label_file), tmp_path / "mine.nii.gz")
    viewer.layers.clear()
    (img,) = viewer.open(str(image_file), plugin="napari-attnseg")
    again = _reopen(viewer, qtbot, mine)
    corr.labels_combo.value, corr.image_combo.value = again.name, img.name
    corr.mark_slices([6])
    corr.dataset_edit.value = str(tmp_path / "DS4")
    assert corr.export() is None and not (tmp_path / "DS4").exists()
    assert "reviewed slices 6 still hold" in str(notifications[-1].message), notifications[-1].message
    capsys.readouterr()
    assert main(["evaluate", "--model", "nuclei-2d", "--image", str(image_file), "--labels", str(mine), "--json"]) == 0
    out = capsys.readouterr()
    assert "'ignore' value 2" in out.out + out.err, out
