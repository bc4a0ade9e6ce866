"""The Correct tab's *Save mask...* button (audit): File > Save Selected Layers preselects napari's own labels TIFF
writer, which drops a mask's reviewed slices and class names, and a plugin cannot be made napari's default. The
button writes the chosen mask through this plugin's writers (NIfTI or TIFF), proposes '<mask>.nii.gz' beside the
image's file, never writes over a file that is not a mask this plugin saved (the image itself), and says in the
panel where it saved and how many reviewed slices it kept."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gui

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BRAIN, BRAIN_LABELS = DATA / "radiomics" / "brain1_image.nii.gz", DATA / "radiomics" / "brain1_labels.nii.gz"
NUCLEI, NUCLEI_LABELS = DATA / "nuclei2d" / "image.tif", DATA / "nuclei2d" / "labels.tif"
NAMES = ["background", "tumour"]


def _click_save(panel, monkeypatch, answer: Path, kind: str = "NIfTI (*.nii.gz)") -> list:
    """Click *Save mask...* with the dialog answering ``answer``; returns the dialog's arguments."""
    from qtpy.QtWidgets import QPushButton

    from napari_attnseg._napari import save_mask

    asked = []

    def dialog(*args, **kwargs):
        asked.append(args)
        return str(answer), kind

    monkeypatch.setattr(save_mask.QFileDialog, "getSaveFileName", dialog)
    button = next((b for b in panel.findChildren(QPushButton) if b.text() == "Save mask..."), None)
    assert button is not None, "the Correct tab has no 'Save mask...' button"
    button.click()
    return asked


def _brain_panel(make_napari_viewer, image: Path):
    import nibabel as nib

    from napari_attnseg._napari.correct_widget import CorrectWidget

    viewer = make_napari_viewer()
    viewer.open(str(image), plugin="napari-attnseg")
    ref = np.asarray(nib.load(str(BRAIN_LABELS)).dataobj).transpose(2, 1, 0)  # (z, y, x), as the reader gives
    img = viewer.layers[0]
    mask = viewer.add_labels((ref > 0).astype(np.uint8), name=f"{img.name} mask", scale=img.scale,
                             translate=img.translate, metadata={"affine": img.metadata["affine"],
                                                                "nifti": img.metadata.get("nifti")})
    panel = CorrectWidget(viewer)
    panel.labels_combo.value, panel.image_combo.value = mask.name, img.name
    panel.class_names_edit.value = ", ".join(NAMES)
    panel.range_edit.value = "11-17"
    panel.mark_range()
    return viewer, panel, img, mask


@pytest.mark.skipif(not BRAIN.exists(), reason="shared brain MRI not available")
def test_save_mask_keeps_reviewed_slices_class_names_and_affine(make_napari_viewer, monkeypatch, tmp_path):
    viewer, panel, img, mask = _brain_panel(make_napari_viewer, BRAIN)
    out = tmp_path / "saved mask.nii.gz"
    asked = _click_save(panel, monkeypatch, out)
    proposed = Path(asked[0][2])
    assert proposed == BRAIN.parent / f"{mask.name}.nii.gz"  # beside the image's file, named after the mask
    assert out.is_file()
    assert str(out) in panel.save_label.value and "7 reviewed slices (11-17)" in panel.save_label.value
    # reopened with the plugin's reader: the pixels, the review, the names and the patient position come back
    reopened = viewer.open(str(out), plugin="napari-attnseg")[0]
    np.testing.assert_array_equal(np.asarray(reopened.data), np.asarray(mask.data))
    assert reopened.metadata["reviewed_slices"] == list(range(11, 18))
    assert reopened.metadata["class_names"] == NAMES
    np.testing.assert_allclose(reopened.metadata["affine"], img.metadata["affine"], atol=1e-5)
    np.testing.assert_allclose(reopened.scale, img.scale, rtol=1e-5)
    # saved again over its own file (the dialog asked): allowed, with the new marks
    panel.labels_combo.value = mask.name
    panel.mark_slices([20])
    _click_save(panel, monkeypatch, out)
    from napari_attnseg.data import read_image

    assert read_image(out).meta["reviewed_slices"] == [*range(11, 18), 20]


@pytest.mark.skipif(not BRAIN.exists(), reason="shared brain MRI not available")
def test_save_mask_refuses_to_write_over_the_image_or_a_foreign_file(make_napari_viewer, monkeypatch, tmp_path,
                                                                     notifications):
    image = tmp_path / "brain1_image.nii.gz"
    shutil.copy(BRAIN, image)
    viewer, panel, img, mask = _brain_panel(make_napari_viewer, image)
    before = image.read_bytes()
    _click_save(panel, monkeypatch, image)
    assert image.read_bytes() == before  # the image is left as it was
    assert "Not saved" in panel.save_label.value and str(image) in panel.save_label.value
    assert any(str(image) in str(n.message) and "image" in str(n.message) for n in notifications)
    # a reference segmentation (no mark of this plugin) is not written over either
    ref = tmp_path / "reference_labels.nii.gz"
    shutil.copy(BRAIN_LABELS, ref)
    before = ref.read_bytes()
    _click_save(panel, monkeypatch, ref)
    assert ref.read_bytes() == before and "not a mask this plugin saved" in panel.save_label.value
    # a name typed without its suffix gets the chosen type's, and an existing file of that name is not replaced
    # unasked
    (tmp_path / "typed.tif").write_bytes(b"x")
    _click_save(panel, monkeypatch, tmp_path / "typed", "TIFF (*.tif)")
    assert (tmp_path / "typed.tif").read_bytes() == b"x"
    _click_save(panel, monkeypatch, tmp_path / "fresh", "TIFF (*.tif)")
    assert (tmp_path / "fresh.tif").is_file()


@pytest.mark.skipif(not NUCLEI.exists(), reason="shared nuclei image not available")
def test_save_a_2d_nuclei_mask_as_tiff(make_napari_viewer, monkeypatch, tmp_path, qtbot):
    import tifffile

    from napari_attnseg._napari.correct_widget import CorrectWidget

    viewer = make_napari_viewer()
    viewer.open(str(NUCLEI))
    img = viewer.layers[0]
    mask = viewer.add_labels(tifffile.imread(str(NUCLEI_LABELS)), name=f"{img.name} mask")
    panel = CorrectWidget(viewer)
    panel.labels_combo.value, panel.image_combo.value = mask.name, img.name
    panel.mark_current()
    out = tmp_path / "nuclei mask.tif"
    asked = _click_save(panel, monkeypatch, out, "TIFF (*.tif)")
    assert Path(asked[0][2]) == NUCLEI.parent / f"{mask.name}.tif" and asked[0][4] == "TIFF (*.tif)"
    assert out.is_file() and "1 reviewed slice (0)" in panel.save_label.value
    # a foreign TIFF (the image itself) is refused
    _click_save(panel, monkeypatch, NUCLEI)
    assert "Not saved" in panel.save_label.value
    # reopened (napari's TIFF reader; the Correct tab makes it the mask it was): the pixels and the review
    viewer.open(str(out))
    qtbot.waitUntil(lambda: out.stem in viewer.layers and viewer.layers[out.stem]._type_string == "labels",
                    timeout=5000)
    reopened = viewer.layers[out.stem]
    np.testing.assert_array_equal(np.asarray(reopened.data), np.asarray(mask.data))
    assert reopened.metadata["reviewed_slices"] == [0]
