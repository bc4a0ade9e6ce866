"""A clinician's session in napari (h_trial_napari): the Fine-tune tab's Cancel said nothing for tens of seconds, and a
micron image or mask written as NIfTI claimed millimetres."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

SAMPLES = Path(__file__).resolve().parents[1] / "napari_attnseg" / "resources" / "samples"
LUNG = Path("/work/shared/data/radiomics/lung1_image.nii.gz")


# D1: the Fine-tune tab's Cancel ----------------------------------------------------------------------------------------
@pytest.mark.gui
def test_cancel_in_the_finetune_tab_says_it_is_stopping(make_napari_viewer, qtbot, tmp_path, tiny_checkpoint,
                                                        monkeypatch):
    """Cancel pressed during a fine-tune step: the status kept 'epoch 1: step 1 of 25, loss ...' and Cancel stayed
    enabled until the step ended (27.6 s on brain1 with brain-mri-3d, 2 shared cores), and the next step's line
    replaced any message; the Segment tab says 'Cancelling: ...' at once. The real trainer's second step ends only
    after the press, as a 3D model's step does."""
    import napari_attnseg.training as training
    from napari_attnseg._napari.finetune_widget import FinetuneWidget
    from napari_attnseg.data.export import export_case

    rng = np.random.default_rng(0)
    image = rng.normal(100, 20, (64, 64)).astype(np.float32)
    labels = np.zeros(image.shape, np.uint8)
    labels[20:40, 20:40] = 1
    image[labels == 1] += 80
    export_case(image, labels, tmp_path / "ds", "nnunet", spacing=(1.0, 1.0), label_names=["background", "cell"])
    real, pressed = training.train, threading.Event()

    def slow_train(cfg, on_step=None, **kw):
        def step(info):  # step 2 is the one going when Cancel is pressed: it ends after the press (a 3D step: 45 s)
            if info["step"] >= 2:
                pressed.wait(30)
                time.sleep(0.3)  # (the panel hears of a step every 0.25 s at most)
            if on_step:
                on_step(info)
            if info["step"] >= 2:
                time.sleep(1.0)  # (what the panel says after that step can be seen before the run stops)
        return real(cfg, on_step=step, **kw)

    monkeypatch.setattr(training, "train", slow_train)
    w = FinetuneWidget(make_napari_viewer())
    w.add_model("start", str(tiny_checkpoint(2)))
    w.dataset_edit.value, w.model_combo.value, w.minutes_spin.value = str(tmp_path / "ds"), "start", 1
    w.out_edit.value = str(tmp_path / "out")
    assert w.run() is not None
    qtbot.waitUntil(lambda: "step" in w.status.value, timeout=60000)
    w.cancel_button.native.click()
    qtbot.wait(100)
    assert w.status.value.startswith("Cancelling"), w.status.value
    assert not w.cancel_button.enabled and not w.run_button.enabled
    pressed.set()
    said: list[str] = []  # the status until the run has stopped (the step that was going reports after the press)
    qtbot.waitUntil(lambda: said.append(w.status.value) or w.run_button.enabled, timeout=60000)
    assert "ancelled" in w.status.value, w.status.value
    assert not any(s.startswith("epoch") for s in said), set(said)  # (a step's line did not replace it)


# D2: micron images and masks written as NIfTI ------------------------------------------------------------------------
def _xyz(path) -> str:
    import nibabel as nib

    return nib.load(str(path)).header.get_xyzt_units()[0]


@pytest.mark.parametrize("fmt", ["nnunet", "monai"])
def test_a_micron_image_exported_to_nifti_keeps_its_micron(tmp_path, fmt):
    """A microscopy image of 2 um pixels (its napari units 'micron', as calibration_hint tells the user to set, or a
    TIFF's ImageJ unit) exported as nnU-Net/MONAI: the NIfTI said 2 mm pixels (the unit reached the TIFF writer only),
    1000 times the size; napari reopened the case at 2 mm."""
    from napari_attnseg._napari.io_hooks import scan_unit
    from napari_attnseg.data import read_image
    from napari_attnseg.data.export import export_case

    image = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    labels = (image > 0.5).astype(np.uint8)
    export_case(image, labels, tmp_path / "ds", fmt, spacing=(2.0, 2.0), unit=("micrometer", "micrometer"),
                label_names=["background", "nucleus"])
    files = sorted((tmp_path / "ds").rglob("*.nii.gz"))
    assert len(files) == 2, files
    for f in files:
        assert _xyz(f) == "micron", f
        vol = read_image(f)
        assert scan_unit(vol.meta) == "um" and tuple(vol.spacing) == (2.0, 2.0), (f, vol.spacing)


def test_attnseg_export_of_a_micron_tiff_keeps_its_micron(tmp_path):
    """attnseg export of an ImageJ TIFF calibrated at 0.5 um a pixel: its NIfTI files said 0.5 mm a pixel."""
    import nibabel as nib
    import tifffile

    from napari_attnseg.cli import main

    img = tifffile.imread(SAMPLES / "nuclei2d_image.tif")[:64, :64].astype(np.uint16) * 256
    lab = (tifffile.imread(SAMPLES / "nuclei2d_labels.tif")[:64, :64] > 0).astype(np.uint8)
    for name, a in (("img.tif", img), ("lab.tif", lab)):
        tifffile.imwrite(tmp_path / name, a, imagej=True, resolution=(2.0, 2.0), metadata={"unit": "um", "axes": "YX"})
    assert main(["export", "--image", str(tmp_path / "img.tif"), "--labels", str(tmp_path / "lab.tif"),
                 "--dataset", str(tmp_path / "ds"), "--label-names", "background,nucleus"]) == 0
    files = sorted((tmp_path / "ds").glob("*Tr/*.nii.gz"))
    assert len(files) == 2, files
    for f in files:
        assert nib.load(f).header.get_zooms()[:2] == (0.5, 0.5) and _xyz(f) == "micron", f


def test_a_mask_written_like_a_micron_tiff_keeps_its_micron(tmp_path):
    """write_image(.nii.gz, like=<a micron TIFF>) without a unit (attnseg predict --out mask.nii.gz of a TIFF): the
    TIFF's own unit, not mm."""
    import tifffile

    from napari_attnseg.data import read_image, write_image

    img = tifffile.imread(SAMPLES / "nuclei2d_image.tif")[:48, :48]
    tifffile.imwrite(tmp_path / "img.tif", img, imagej=True, resolution=(2.0, 2.0), metadata={"unit": "um"})
    vol = read_image(tmp_path / "img.tif")
    out = write_image(tmp_path / "mask.nii.gz", (vol.data > vol.data.mean()).astype(np.uint8), like=vol)
    assert _xyz(out) == "micron"


@pytest.mark.gui
def test_save_mask_of_a_micron_layer_keeps_its_micron(make_napari_viewer, tmp_path):
    """Save mask / File > Save of a Labels layer in micron as .nii.gz (small and big masks: the big one is written in a
    worker with the geometry taken by pressed_meta) said mm; the TIFF kept its micron already."""
    import tifffile
    from napari.layers import Labels

    from napari_attnseg._napari.io_hooks import write_labels_nifti, write_labels_tif
    from napari_attnseg._napari.save_mask import pressed_meta

    viewer = make_napari_viewer()
    labels = np.zeros((40, 40), np.uint8)
    labels[5:15, 5:15] = 1
    layer = Labels(labels, scale=(2.0, 2.0), units=("micron", "micron"), name="cells mask")
    viewer.add_layer(layer)
    data, meta, _ = layer.as_layer_data_tuple()
    [small] = write_labels_nifti(str(tmp_path / "mask.nii.gz"), data, meta)
    assert _xyz(small) == "micron"
    big_path = tmp_path / "big.nii.gz"  # (the worker's meta: an affine of the voxel size is filled in)
    [big] = write_labels_nifti(str(big_path), data, pressed_meta(big_path, data, meta, viewer))
    assert _xyz(big) == "micron"
    [tif] = write_labels_tif(str(tmp_path / "mask.tif"), data, meta)
    with tifffile.TiffFile(tif) as f:
        assert f.imagej_metadata["unit"] == "micron"


def test_a_nifti_or_dicom_source_keeps_its_own_unit(tmp_path):
    """The source's unit wins over one given: a micron NIfTI exported (export passes 'mm' with an affine) stays micron,
    a mm CT given 'micron' stays mm, and a DICOM series is mm."""
    import nibabel as nib
    from test_dicom import ct_series

    from napari_attnseg.data import Volume, read_image, write_image

    made = nib.Nifti1Image(np.zeros((4, 8, 8), np.uint8), np.diag([2.0, 2.0, 1.0, 1.0]))
    made.header.set_xyzt_units(xyz="micron")
    nib.save(made, tmp_path / "src.nii.gz")
    src = read_image(tmp_path / "src.nii.gz")
    assert _xyz(write_image(tmp_path / "a.nii.gz", src.data, like=src, unit="mm")) == "micron"
    if LUNG.exists():
        ct = read_image(LUNG)
        crop = Volume(ct.data[30:33], ct.spacing, ct.affine, ct.meta)
        assert _xyz(write_image(tmp_path / "b.nii.gz", crop.data, like=crop, unit=("micron",) * 3)) == "mm"
    ct_series(tmp_path / "dcm")
    dcm = read_image(tmp_path / "dcm")
    assert _xyz(write_image(tmp_path / "c.nii.gz", dcm.data, like=dcm, unit="micron")) == "mm"
