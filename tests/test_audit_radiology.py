"""A radiologist's first session with scans the bundled models never saw (a CT cropped and stored sagittal-first or
flipped with an int16 rescale, a thick-slice uint16 MRI, a DICOM series), driven in a real viewer: open through the
plugin's reader, Segment, Correct (brush, helpers, R, ranges, N), Export, Fine-tune, Segment again."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def _sagittal_nifti(path, shape=(6, 32, 32)) -> None:
    """A small volume stored sagittal-first: the file's i axis runs superior (5 mm), j anterior, k right."""
    import nibabel as nib

    rng = np.random.default_rng(0)
    data = rng.normal(100, 10, shape).astype(np.float32)
    data[:, 8:20, 10:22] += 80
    affine = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [5, 0, 0, 0], [0, 0, 0, 1]], float)
    nib.save(nib.Nifti1Image(data, affine), str(path))


def _oriented_2d_model(tmp_path):
    """A tiny 2D model whose card says it learnt axial slices (S, A, R), as a model fine-tuned on a CT's does."""
    import torch

    from napari_attnseg import create_model, save_model
    from napari_attnseg.checkpoint import ModelCard

    torch.manual_seed(0)
    path = tmp_path / "axial-2d.safetensors"
    save_model(create_model("attention_unet", spatial_dims=2, features=(4, 8, 16, 32, 64)), path,
               ModelCard(arch="", config={}, name="axial-2d", tile=[32, 32], orientation=["S", "A", "R"]))
    return path


def test_a_sagittal_volume_turned_for_a_2d_model_says_how_many_slices_it_ran(dock, qtbot, tmp_path):
    """A CT stored sagittal-first, segmented slice by slice with a model fine-tuned on axial slices: the volume is
    turned to the model's axial slices (6 here) and back, but the status said 'its 32 slices one by one', the count
    of the stored sagittal slices on the slider, which the model never ran on."""
    from napari_attnseg._napari.io_hooks import get_nifti_reader

    viewer, d = dock
    seg = d.segment
    path = tmp_path / "sag.nii.gz"
    _sagittal_nifti(path)
    for data, kwargs, kind in get_nifti_reader(str(path))(str(path)):
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    layer = viewer.layers["sag"]
    assert layer.data.shape == (32, 32, 6)  # (k, j, i): the slider walks the stored sagittal slices
    label = seg.add_model(_oriented_2d_model(tmp_path))
    seg.image_combo.value, seg.model_combo.value = "sag", label
    assert seg.mode_combo.value == "slices"
    with qtbot.waitSignal(seg.run_done, timeout=120000) as done:
        seg.run_button.native.click()
    assert done.args == [True], seg.status.value
    assert "turned" in seg.status.value and "RAS" in seg.status.value, seg.status.value
    assert "its 6 slices in the model's orientation one by one" in seg.status.value, seg.status.value
    assert viewer.layers["sag mask"].data.shape == layer.data.shape


def test_interpolation_that_changes_nothing_because_of_a_reviewed_empty_slice_says_so(make_napari_viewer, notifications):
    """The tumour drawn on slices 0 and 4, slice 2 marked reviewed (empty): interpolation rightly tapers off towards
    it and writes nothing, but the message blamed only 'every slice that holds the class' and said to erase the
    object on the slices to fill (they were empty already); it now names the reviewed slices and the way out."""
    from napari_attnseg._napari.correct_widget import CorrectWidget

    viewer = make_napari_viewer()
    image = np.zeros((5, 64, 64), np.float32)
    viewer.add_image(image, name="mri", scale=(13.0, 0.78, 0.78))
    yy, xx = np.mgrid[:64, :64]
    disc = (yy - 32) ** 2 + (xx - 32) ** 2 <= 100
    data = np.zeros(image.shape, np.uint8)
    data[0][disc] = data[4][disc] = 1
    mask = viewer.add_labels(data.copy(), name="mri mask", scale=(13.0, 0.78, 0.78))
    corr = CorrectWidget(viewer)
    corr.labels_combo.value = "mri mask"
    corr.mark_slices([2])
    corr.interpolate()
    assert np.array_equal(np.asarray(mask.data), data)  # (the reviewed empty slice stops the shape: by design)
    said = " ".join(str(n.message) for n in notifications)
    assert "nothing changed" in said and "reviewed slices (2)" in said and "Shift+R" in said, said
    corr.mark_slices([2], reviewed=False)  # the way out the message gives
    corr.interpolate()
    assert np.asarray(mask.data)[1:4].any()


def test_a_ct_given_to_the_microscopy_model_gets_no_object_size_advice():
    """nuclei-2d (the Segment tab's preset for a CT) on a CT in Hounsfield units: besides 'not trained on CT', the run
    warned 'The 9 objects found are typically 362 px wide ... Give their size: --diameter auto' (lung1), advice that
    would shrink the body 14 times for a microscopy model. The size check skips an image another warning already
    calls unlike the training data; the CT warning is one."""
    from napari_attnseg import load_model, predict
    from napari_attnseg.inference.object_size import SIZE_WARNING
    from napari_attnseg.models.registry import bundled_models

    if "nuclei-2d" not in bundled_models():
        pytest.skip("no bundled nuclei model")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:384, :384]
    ct = np.full((384, 384), -1000.0)  # air, nine soft-tissue discs 60 px wide, a bone
    for cy in (64, 192, 320):
        for cx in (64, 192, 320):
            ct[(yy - cy) ** 2 + (xx - cx) ** 2 <= 30 ** 2] = 40
    ct[(yy - 64) ** 2 + (xx - 64) ** 2 <= 8 ** 2] = 700
    ct = (ct + rng.normal(0, 10, ct.shape)).astype(np.float32)
    pred = predict(load_model("nuclei-2d", device="cpu"), ct, device="cpu", return_probabilities=False)
    assert pred.params.get("object_diameter_found", 0) > 40  # (objects of another size were found)
    assert any("not trained on CT" in w for w in pred.warnings), pred.warnings
    assert not [w for w in pred.warnings if SIZE_WARNING in w], pred.warnings
