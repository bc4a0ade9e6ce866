"""Three leftovers of earlier audits, in a real viewer: an image removed (or its run cancelled) while its result
layers are being added, one per event-loop turn; a 2D NIfTI / MetaImage / NRRD placed by its origin as a volume is;
and the Fine-tune tab's start model chosen by hand surviving a change of dataset."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

pytestmark = pytest.mark.gui

PLUGIN = "napari-attnseg"
LUNG = Path("/work/shared/data/radiomics/lung1_image.nii.gz")


def _messages(notifications) -> list[str]:
    return [str(getattr(n, "message", n)) for n in notifications]


# -- 1. the image removed while its results are being added -------------------------------------------------------
@pytest.mark.parametrize(("trigger", "action"), [
    ("cells mask", "remove"), ("cells attention level2", "remove"), ("cells mask", "cancel")])
def test_a_run_stops_adding_layers_when_its_image_goes_meanwhile(make_napari_viewer, qtbot, notifications,
                                                                 trigger, action):
    """The image removed a moment after its run finished (the mask shown, the probability and heatmaps still to
    come) got its probability and all three heatmaps anyway, and the run said it was done. Now the rest are not
    added, the mask stays (the run's result), the layers this run had just added beside it go, the status and a
    notification say so, and the run ends with run_done(False), Run available again. A cancel at that moment
    (closing the dock) stops it the same way, the image kept."""
    from qtpy.QtCore import QTimer

    from napari_attnseg._napari.segment_widget import SegmentWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).random((64, 64)).astype(np.float32), name="cells")
    w = SegmentWidget(viewer)
    w.model_combo.value = "nuclei-2d"
    w.attention_box.value = True

    def inserted(event):
        if event.value.name == trigger:
            QTimer.singleShot(0, (lambda: viewer.layers.remove("cells")) if action == "remove" else w.cancel)

    viewer.layers.events.inserted.connect(inserted)
    with qtbot.waitSignal(w.run_done, timeout=120000) as done:
        w.run()
    qtbot.wait(200)  # (no late layer either)
    assert done.args == [False]
    names = [ly.name for ly in viewer.layers]
    assert names == (["cells mask"] if action == "remove" else ["cells", "cells mask"]), names
    why = "was removed while its results were being added" if action == "remove" else "was cancelled while"
    assert why in w.status.value and "'cells mask' was kept" in w.status.value, w.status.value
    if trigger != "cells mask":
        assert "'cells probability', 'cells attention level2' were removed" in w.status.value, w.status.value
    assert any(why in m for m in _messages(notifications))
    assert w.run_button.enabled and not w._showing


# -- 2. a 2D file placed by its origin --------------------------------------------------------------------------
def _nifti(path: Path, yx: np.ndarray, affine: np.ndarray) -> Path:
    img = nib.Nifti1Image(np.ascontiguousarray(yx.T), affine)  # a NIfTI stores (i, j) = (x, y)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, str(path))
    return path


def test_a_2d_crop_lies_on_its_full_image_and_its_results_and_saved_mask_keep_the_origin(
        make_napari_viewer, qtbot, tmp_path):
    """2D NIfTI, MetaImage and NRRD layers got no translate (3D ones do): a crop of a 2D image saved with its own
    origin (x from 30, y from 40) opened over the full image at its corner. Now each lies at its place, the Segment
    tab's results take the crop's scale and translate, and its mask saved as NIfTI keeps the crop's affine."""
    from napari_attnseg._napari.segment_widget import SegmentWidget

    rng = np.random.default_rng(1)
    full = rng.random((120, 150)).astype(np.float32)
    affine = np.array([[0.5, 0, 0, 10.0], [0, 0.7, 0, -20.0], [0, 0, 1, 5.0], [0, 0, 0, 1]])
    crop_affine = affine.copy()
    crop_affine[:3, 3] = (affine @ [30, 40, 0, 1])[:3]
    crop = full[40:104, 30:94]
    _nifti(tmp_path / "full.nii.gz", full, affine)
    _nifti(tmp_path / "crop.nii.gz", crop, crop_affine)
    header = ("ObjectType = Image\nNDims = 2\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
              "TransformMatrix = -1 0 0 -1\n"  # LPS: RAS x and y mirrored
              f"Offset = {-crop_affine[0, 3]} {-crop_affine[1, 3]}\nElementSpacing = 0.5 0.7\nDimSize = 64 64\n"
              "ElementType = MET_FLOAT\nElementDataFile = LOCAL\n")
    (tmp_path / "crop_mha.mha").write_bytes(header.encode() + np.ascontiguousarray(crop, "<f4").tobytes())
    nrrd = ("NRRD0004\ntype: float\ndimension: 2\nspace: right-anterior-superior\nsizes: 64 64\n"
            "space directions: (0.5,0,0) (0,0.7,0)\n"
            f"space origin: ({crop_affine[0, 3]},{crop_affine[1, 3]},{crop_affine[2, 3]})\nencoding: raw\n"
            "endian: little\n\n")
    (tmp_path / "crop_nrrd.nrrd").write_bytes(nrrd.encode() + np.ascontiguousarray(crop, "<f4").tobytes())

    viewer = make_napari_viewer()
    whole = viewer.open(str(tmp_path / "full.nii.gz"), plugin=PLUGIN)[0]
    for name in ("crop.nii.gz", "crop_mha.mha", "crop_nrrd.nrrd"):
        part = viewer.open(str(tmp_path / name), plugin=PLUGIN)[0]
        np.testing.assert_allclose(part.data, crop)
        for index in [(0, 0), (10, 20)]:
            np.testing.assert_allclose(whole.world_to_data(part.data_to_world(index)),
                                       (index[0] + 40, index[1] + 30), atol=1e-3, err_msg=name)

    w = SegmentWidget(viewer)
    w.image_combo.value = "crop"
    w.model_combo.value = "nuclei-2d"
    w.attention_box.value = True
    with qtbot.waitSignal(w.run_done, timeout=120000) as done:
        w.run()
    assert done.args == [True], w.status.value
    image = viewer.layers["crop"]
    assert np.allclose(image.translate, (-20 + 40 * 0.7, 10 + 30 * 0.5))
    for suffix in ("mask", "probability"):
        layer = viewer.layers[f"crop {suffix}"]
        assert np.allclose(layer.scale, image.scale) and np.allclose(layer.translate, image.translate), suffix
    heatmap = viewer.layers["crop attention level2"]  # centred on its 2 x 2 pixel blocks of the crop
    np.testing.assert_allclose(heatmap.data_to_world((0, 0)), image.data_to_world((0.5, 0.5)), atol=1e-4)
    mask = viewer.layers["crop mask"]
    mask.save(str(tmp_path / "crop_mask.nii.gz"), plugin=PLUGIN)
    saved = nib.load(str(tmp_path / "crop_mask.nii.gz"))
    np.testing.assert_allclose(saved.affine, crop_affine, atol=1e-5)
    again = viewer.open(str(tmp_path / "crop_mask.nii.gz"), plugin=PLUGIN)[0]
    assert np.allclose(again.translate, image.translate) and np.allclose(again.scale, image.scale)


def test_a_2d_slice_saved_from_a_ct_lies_under_the_ct_in_plane(make_napari_viewer, tmp_path):
    """An axial slice of lung1 saved as a 2D NIfTI (its affine, the origin moved to slice 33) has the CT's in-plane
    translate, as a 3D reader places the CT."""
    if not LUNG.exists():
        pytest.skip("real data not available")
    src = nib.load(str(LUNG))
    affine = src.affine.copy()
    affine[:3, 3] = (src.affine @ [0, 0, 33, 1])[:3]
    nib.save(nib.Nifti1Image(np.asarray(src.dataobj)[:, :, 33], affine), str(tmp_path / "slice33.nii.gz"))
    viewer = make_napari_viewer()
    ct = viewer.open(str(LUNG), plugin=PLUGIN)[0]
    plane = viewer.open(str(tmp_path / "slice33.nii.gz"), plugin=PLUGIN)[0]
    assert plane.ndim == 2
    np.testing.assert_allclose(plane.translate, ct.translate[1:], atol=1e-4)
    np.testing.assert_allclose(plane.scale, ct.scale[1:], atol=1e-5)


# -- 3. the Fine-tune tab's start model chosen by hand ---------------------------------------------------------
def test_a_start_model_chosen_by_hand_survives_a_dataset_change_unless_it_cannot_train_on_it(dock, tmp_path):
    """brain-mri-3d chosen by hand, then another dataset (or a layer added): the tab re-picked nuclei-2d, the
    default by classes. Now the choice stays; a dataset of 2D images, which a 3D model cannot train on, gets the
    default and the line under the list says why. The default still follows the dataset while nothing was chosen."""
    from napari_attnseg.data.export import export_case

    rng = np.random.default_rng(0)
    image = rng.normal(100, 20, (6, 16, 20)).astype(np.float32)
    labels = (image > 110).astype(np.uint8)
    for name in ("a", "b"):
        export_case(image, labels, tmp_path / name, "nnunet", spacing=(2.0, 1.0, 1.0),
                    label_names=["background", "tumour"])
    export_case(image[0], labels[0], tmp_path / "flat", "nnunet", spacing=(1.0, 1.0),
                label_names=["background", "tumour"])
    viewer, d = dock
    ft = d.finetune
    ft.dataset_edit.value = str(tmp_path / "a")
    proposed = ft.model_combo.value
    assert proposed and proposed != "brain-mri-3d"
    ft.model_combo.value = "brain-mri-3d"
    ft.dataset_edit.value = str(tmp_path / "b")
    assert ft.model_combo.value == "brain-mri-3d"
    assert ft.name_edit.value == "brain-mri-3d-finetuned"
    viewer.add_image(np.zeros((8, 8), np.float32), name="another image")
    assert ft.model_combo.value == "brain-mri-3d"
    ft.dataset_edit.value = str(tmp_path / "flat")
    assert ft.model_combo.value == proposed
    assert "brain-mri-3d (your choice) is a 3D model" in ft.model_note.value and "flat" in ft.model_note.value
    assert ft.name_edit.value == f"{proposed}-finetuned"
    ft.dataset_edit.value = str(tmp_path / "a")  # the panel's own choice follows the dataset as before
    assert ft.model_combo.value == proposed and "your choice" not in ft.model_note.value


def test_a_predict_record_of_a_2d_nifti_reopens_where_the_file_opens(tmp_path):
    """`attnseg predict crop.nii.gz` then File > Open on its `_predict.json`: the image came back at translate
    (0, 0) while the file itself opens at its origin (8, 25 here), so the record's layers sat off the file's."""
    from napari_attnseg._napari.io_hooks import get_nifti_reader
    from napari_attnseg.cli import main
    from napari_attnseg.results import record_layers

    affine = np.array([[0.5, 0, 0, 25.0], [0, 0.8, 0, 8.0], [0, 0, 1, 0.0], [0, 0, 0, 1]])
    crop = np.random.default_rng(2).random((40, 48)).astype(np.float32)
    path = _nifti(tmp_path / "crop2d.nii.gz", crop, affine)
    assert main(["predict", str(path), "--model", "nuclei-2d", "--out", str(tmp_path / "rec"), "--device", "cpu"]) == 0
    opened = get_nifti_reader(str(path))(str(path))[0][1]
    layers = record_layers(tmp_path / "rec" / "crop2d_predict.json")
    assert np.allclose(opened["translate"], (8.0, 25.0))
    for _data, meta, _kind in layers:
        assert np.allclose(meta["translate"], opened["translate"]), meta["name"]


def test_a_coarse_map_three_voxels_deep_is_not_taken_for_rgb(make_napari_viewer):
    """A 3D model's coarsest attention map on a (256, 256, 24) volume is (32, 32, 3): napari guessed RGB from the
    last axis and showed a 2D colour picture (older napari hung on it)."""
    from napari_attnseg._napari._common import upsert_layer

    viewer = make_napari_viewer()
    layer = upsert_layer(viewer, np.random.default_rng(0).random((32, 32, 3)).astype(np.float32),
                         {"name": "vol attention level4"}, "image")
    assert not layer.rgb and layer.ndim == 3
