"""What the Segment tab says about a finished 3D run, and how often its form reads a TIFF's header."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest
import tifffile

PLUGIN = "napari-attnseg"


@pytest.fixture()
def oriented_checkpoint(tmp_path):
    """A small, untrained 3D attention U-Net whose card says its training volumes were axial, RAS (as brain-mri-3d)."""
    import torch

    from napari_attnseg import create_model, save_model
    from napari_attnseg.checkpoint import ModelCard

    torch.manual_seed(0)
    model = create_model("attention_unet", spatial_dims=3, features=(4, 8, 16, 32, 64))
    path = tmp_path / "axial-3d.safetensors"
    save_model(model, path, ModelCard(arch="", config={}, name="axial-3d", description="test model",
                                      tile=[16, 32, 32], orientation=["S", "A", "R"]))
    return path


def _nifti(path, affine, codes=(1, 1), shape=(32, 32, 16)) -> str:
    """A NIfTI of noise stored (x, y, z), with its qform and sform codes."""
    data = np.random.default_rng(0).normal(100, 20, shape).astype(np.float32)
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=codes[0])
    img.set_sform(affine, code=codes[1])
    nib.save(img, str(path))
    return str(path)


def _segment(viewer, w, qtbot, path, label):
    """Open ``path`` with the plugin's reader and segment it in the Segment tab (no heatmaps); its layer."""
    layer = viewer.open(path, plugin=PLUGIN)[0]
    w.refresh_layers(prefer=layer.name)
    w.model_combo.value = label
    w.attention_box.value = False
    with qtbot.waitSignal(w.run_done, timeout=120000) as done:
        assert w.run() is not None
    assert done.args == [True], w.messages
    return layer


def test_segment_tab_says_when_it_turned_the_volume_for_the_model(segment_panel, qtbot, tmp_path, oriented_checkpoint):
    """A NIfTI stored LAS (brain1 is) given to a model trained on RAS volumes: the engine turns it for the model
    and back. The CLI says "(turned LAS -> RAS for the model)"; the Segment tab's status said nothing. A volume
    already in the model's orientation gets no such note."""
    viewer, w = segment_panel
    label = w.add_model(oriented_checkpoint)
    for name, affine, said in (("las", np.diag([-1.0, 1.0, 2.0, 1.0]), " (turned LAS -> RAS for the model)"),
                               ("ras", np.diag([1.0, 1.0, 2.0, 1.0]), None)):
        _segment(viewer, w, qtbot, _nifti(tmp_path / f"{name}.nii.gz", affine), label)
        assert w.status.value.startswith(f"{name}: {label}, ")
        if said:
            assert said in w.status.value
            assert viewer.layers[f"{name} mask"].metadata["attnseg"]["params"]["reoriented"] == "LAS -> RAS"
        else:
            assert "turned" not in w.status.value


def test_calibration_hint_reads_the_tiff_header_once_per_version_of_the_file(segment_panel, tmp_path, monkeypatch):
    """The form's hint that napari's TIFF reader dropped the file's spacing read the TIFF's header on every refresh
    (each layer or model choice). It is read once per file version now, and follows the file when it changes."""
    from napari_attnseg.data import tiff

    viewer, w = segment_panel
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.zeros((4, 32, 32), np.uint16), imagej=True, resolution=(2.0, 2.0),
                     metadata={"spacing": 2.0, "unit": "um", "axes": "ZYX"})
    reads = []
    real = tiff.tiff_calibration
    monkeypatch.setattr(tiff, "tiff_calibration", lambda p: reads.append(p) or real(p))
    layer = viewer.open(str(path), plugin="napari")[0]  # (the panel follows the new layer: a first read)
    for _ in range(3):
        w.refresh_layers(prefer=layer.name)
        w._describe_fit(w._current_model(quiet=True))
        assert "stack.tif records a pixel spacing of 2 x 0.5 x 0.5 micron" in w.model_info.value
    assert len(reads) == 1
    stamp = os.stat(path).st_mtime_ns
    tifffile.imwrite(path, np.zeros((4, 32, 32), np.uint16), imagej=True, resolution=(2.0, 2.0),
                     metadata={"spacing": 3.0, "unit": "um", "axes": "ZYX"})  # another z spacing, the same size
    os.utime(path, ns=(stamp + 10**9, stamp + 10**9))
    w._describe_fit(w._current_model(quiet=True))
    assert "stack.tif records a pixel spacing of 3 x 0.5 x 0.5 micron" in w.model_info.value
    assert len(reads) == 2


def test_a_mask_saved_after_its_image_was_closed_keeps_the_images_nifti_header_codes(segment_panel, qtbot, tmp_path,
                                                                                     oriented_checkpoint):
    """An MNI-registered T1 (qform code 0, sform code 2, as mni152/t1.nii.gz) segmented, the image closed, the mask
    saved with the plugin: the mask was written with qform/sform code 1 (scanner), not the image's codes, because
    the mask's metadata carried the affine but not the header codes (the writer found them only on an open image)."""
    viewer, w = segment_panel
    label = w.add_model(oriented_checkpoint)
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    layer = _segment(viewer, w, qtbot, _nifti(tmp_path / "t1.nii.gz", affine, codes=(0, 2)), label)
    mask = viewer.layers["t1 mask"]
    viewer.layers.remove(layer)
    mask.save(str(tmp_path / "t1_mask.nii.gz"), plugin=PLUGIN)
    saved = nib.load(str(tmp_path / "t1_mask.nii.gz"))
    assert (int(saved.header["qform_code"]), int(saved.header["sform_code"])) == (0, 2)
    np.testing.assert_allclose(saved.affine, affine)


def test_an_empty_mask_for_clicks_carries_the_images_nifti_header_codes(make_napari_viewer, tmp_path):
    """Click to fix on an image with no mask adds an empty '<image> mask': its metadata must carry the image's NIfTI
    header codes too (as a Segment run's mask does), so a save after the image was closed keeps them."""
    from napari_attnseg._napari.prompt_view import mask_for_clicks

    viewer = make_napari_viewer()
    path = _nifti(tmp_path / "t1.nii.gz", np.diag([1.0, 1.0, 2.0, 1.0]), codes=(0, 2), shape=(16, 16, 6))
    layer = viewer.open(path, plugin=PLUGIN)[0]
    assert "nifti" in layer.metadata
    mask = mask_for_clicks(viewer, layer)
    assert mask is not None and mask.metadata["nifti"] == layer.metadata["nifti"]
