"""DICOM RTSTRUCT / SEG follow-ups (h_dicomseg2): where ROIs overlap the smaller one keeps the voxels (a real
NSCLC-Radiomics RTSTRUCT lists GTV-1 before Lung-Left/Lung-Right, and "the later wins" left the tumour class empty);
File > Open of an RS.dcm / SEG.dcm in napari opens it as a Labels layer on the CT it was drawn on (it reopened the CT
beside it, or said "no DICOM images found"). The DICOM files are built as in test_audit_dicom_labels (a 7-slice crop
of the radiomics lung CT around its tumour)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import test_audit_dicom_labels as base
from test_audit_dicom_labels import _contours, ct_series, rtstruct, seg, tumour_rois

from napari_attnseg.data import read_image
from napari_attnseg.errors import InputError

PLUGIN = "napari-attnseg"


@pytest.fixture(scope="module")
def lung():
    """test_audit_dicom_labels' crop: (CT crop, labels crop, RAS affine, LPS affine, spacing)."""
    return base.lung.__wrapped__()


def _lung_box(labels: np.ndarray) -> np.ndarray:
    """A 'lung' around the tumour on every slice: bigger than it, holding it whole."""
    box = np.zeros(labels.shape, bool)
    box[:, 20:110, 20:110] = True
    assert box[labels > 0].all()
    return box


def test_a_gtv_listed_before_the_lung_it_lies_in_keeps_its_voxels(tmp_path, lung):
    """Was: the later ROI won, so the lung (listed after GTV-1, as NSCLC-Radiomics does) took every tumour voxel and
    class 1 came out empty. Now the smaller ROI wins whatever the order; classes keep the file's (or --roi's) order."""
    from napari_attnseg.data.labels_in import read_labels

    _, labels, _, _, _ = lung
    cts = ct_series(lung, tmp_path / "CT")
    image = read_image(tmp_path / "CT")
    box, tumour = _lung_box(labels), labels == 1
    lung_rois = {k: _contours(box[k]) for k in range(labels.shape[0])}
    rs = rtstruct(lung, cts, tmp_path / "RS.dcm", {"GTV-1": tumour_rois(labels), "Lung-Left": lung_rois})
    ref = read_labels(rs, image)
    assert ref.meta["class_names"] == ["background", "GTV-1", "Lung-Left"]
    np.testing.assert_array_equal(ref.data == 1, tumour)  # (837 voxels; was 0)
    np.testing.assert_array_equal(ref.data == 2, box & ~tumour)
    n = int(tumour.sum())
    assert f"the smaller one kept the voxels: {n} voxel(s) of 'Lung-Left' went to 'GTV-1'" in ref.meta["warning"]
    # --roi numbers the classes in its order; the tumour still keeps its voxels
    ref = read_labels(rs, image, roi=["lung-left", "GTV-1"])
    assert ref.meta["class_names"] == ["background", "Lung-Left", "GTV-1"]
    np.testing.assert_array_equal(ref.data == 2, tumour)
    # the other order in the file: the same picture
    rs2 = rtstruct(lung, cts, tmp_path / "RS2.dcm", {"Lung-Left": lung_rois, "GTV-1": tumour_rois(labels)})
    np.testing.assert_array_equal(read_labels(rs2, image).data == 2, tumour)


def test_a_seg_with_the_tumour_first_and_the_lung_second_keeps_the_tumour(tmp_path, lung):
    """The same for a DICOM SEG (highdicom): segment 1 the tumour, segment 2 the lung holding it."""
    from napari_attnseg.data.labels_in import read_labels

    _, labels, _, _, _ = lung
    cts = ct_series(lung, tmp_path / "CT")
    box, tumour = _lung_box(labels), labels == 1
    sg = seg(cts, tmp_path / "SEG.dcm", {"GTV-1": labels, "Lung": box.astype(np.uint8)})
    ref = read_labels(sg, read_image(tmp_path / "CT"))
    assert ref.meta["class_names"] == ["background", "GTV-1", "Lung"]
    np.testing.assert_array_equal(ref.data == 1, tumour)
    np.testing.assert_array_equal(ref.data == 2, box & ~tumour)
    assert f"{int(tumour.sum())} voxel(s) of 'Lung' went to 'GTV-1'" in ref.meta["warning"]


# -- napari: File > Open of an RS.dcm / SEG.dcm ---------------------------------------------------------------------
def _notes(viewer_notes: list) -> str:
    return " | ".join(str(n.message) for n in viewer_notes)


@pytest.fixture()
def notes():
    """The napari notifications shown during the test."""
    from napari.utils.notifications import notification_manager

    seen: list = []
    notification_manager.notification_ready.connect(seen.append)
    yield seen
    notification_manager.notification_ready.disconnect(seen.append)


@pytest.mark.gui
def test_napari_opens_an_rtstruct_and_a_seg_as_labels_on_their_ct(make_napari_viewer, tmp_path, lung, notes,
                                                                 monkeypatch):
    """Was: RS.dcm beside the CT reopened the CT as a second image; RS.dcm in a folder of its own (TCIA) said "no
    DICOM images found"; SEG.dcm said "a DICOM SEG, not an image". Now each opens as a Labels layer '<image> <stem>'
    on the CT's grid and placement, with the ROI names as the mask's class names (the Correct tab's)."""
    from napari_attnseg.data.labels_in import read_labels

    _, labels, _, _, _ = lung
    folder = tmp_path / "CT"
    cts = ct_series(lung, folder)
    box = _lung_box(labels)
    (tmp_path / "RS").mkdir()
    rs = rtstruct(lung, cts, tmp_path / "RS" / "RS.dcm", {"GTV-1": tumour_rois(labels),
                                                          "Lung": {k: _contours(box[k]) for k in range(7)}})
    sg = seg(cts, folder / "SEG.dcm", {"GTV-1": labels})
    viewer = make_napari_viewer()
    from napari.settings import get_settings

    from napari_attnseg._napari import io_hooks

    # a new user's reader preferences (other tests in this process set their own), then what the plugin's first use
    # does: its reader preferences, so File > Open asks no question
    monkeypatch.setattr(get_settings().plugins, "extension2reader", {})
    io_hooks.activate()
    viewer.open(str(folder), plugin=PLUGIN)
    image = viewer.layers["CT"]
    viewer._open_or_raise_error([str(rs)])  # (File > Open, drag and drop: napari's choice of reader, no question)
    layer = viewer.layers["CT RS"]
    assert layer._type_string == "labels" and len(viewer.layers) == 2
    np.testing.assert_array_equal(np.asarray(layer.data), read_labels(rs, read_image(folder)).data)
    np.testing.assert_array_equal(np.asarray(layer.data) == 1, labels == 1)  # (the tumour kept inside the lung)
    assert layer.metadata["class_names"] == ["background", "GTV-1", "Lung"]
    np.testing.assert_allclose(layer.scale, image.scale)
    np.testing.assert_allclose(layer.translate, image.translate)
    np.testing.assert_allclose(layer.metadata["affine"], image.metadata["affine"])
    assert "CT RS: classes 1 GTV-1, 2 Lung from RS.dcm, drawn on CT" in _notes(notes)
    viewer._open_or_raise_error([str(sg)])
    np.testing.assert_array_equal(np.asarray(viewer.layers["CT SEG"].data), labels)
    viewer.open(str(tmp_path / "RS"), plugin=PLUGIN)  # (the folder holding only the RTSTRUCT, as TCIA stores it)
    assert viewer.layers[-1].name.startswith("CT RS") and viewer.layers[-1]._type_string == "labels"  # ('CT RS [1]')
    assert [ly._type_string for ly in viewer.layers].count("image") == 1


@pytest.mark.gui
def test_napari_rtstruct_without_its_ct_says_to_open_the_series_first(make_napari_viewer, tmp_path, lung, notes):
    """No image open: the message names the file and says to open its series first. Another scan's DICOM open: refused
    naming the frames of reference. Only a NIfTI of the same place open: drawn onto it, with a note saying so."""
    crop, labels, affine, _, _ = lung
    cts = ct_series(lung, tmp_path / "CT")
    rs = rtstruct(lung, cts, tmp_path / "RS.dcm", {"GTV-1": tumour_rois(labels)})  # (in no CT folder)
    viewer = make_napari_viewer()
    with pytest.raises(Exception, match=r"RS.dcm \(a DICOM RTSTRUCT\) holds contours.*open the CT/MR series it was "
                                        r"drawn on first"):
        viewer.open(str(rs), plugin=PLUGIN)
    assert len(viewer.layers) == 0
    ct_series(lung, tmp_path / "other", frame_of_reference="1.2.826.0.1.3680043.8.498.99")
    viewer.open(str(tmp_path / "other"), plugin=PLUGIN)
    with pytest.raises(Exception, match=r"none of the open images is the scan it was drawn on.*other \("
                                        r"FrameOfReferenceUID 1.2.826.0.1.3680043.8.498.99\)"):
        viewer.open(str(rs), plugin=PLUGIN)
    viewer.layers.clear()
    nib.save(nib.Nifti1Image(np.ascontiguousarray(crop.transpose(2, 1, 0)), affine), tmp_path / "ct.nii.gz")
    viewer.open(str(tmp_path / "ct.nii.gz"), plugin=PLUGIN)
    viewer.open(str(rs), plugin=PLUGIN)
    layer = viewer.layers["ct RS"]
    np.testing.assert_array_equal(np.asarray(layer.data) == 1, labels == 1)
    assert "drawn onto ct, the only 3D image open: check that this is the scan it was drawn on" in _notes(notes)
    assert layer.metadata["nifti"] == viewer.layers["ct"].metadata["nifti"]  # (Save as NIfTI: the image's codes)


def test_the_reader_claims_label_files_and_leaves_ct_folders_alone(tmp_path, lung):
    """get_dicom_reader: an RS.dcm and a folder holding only it go to the labels reader; the CT folder holding an
    RS.dcm beside its images is still the CT series."""
    from napari_attnseg._napari.dicom_labels_reader import read_dicom_labels
    from napari_attnseg._napari.io_hooks import get_dicom_reader

    _, labels, _, _, _ = lung
    cts = ct_series(lung, tmp_path / "CT")
    rs = rtstruct(lung, cts, tmp_path / "CT" / "RS.dcm", {"GTV-1": tumour_rois(labels)})
    assert get_dicom_reader(str(rs)) is read_dicom_labels
    assert get_dicom_reader(str(tmp_path / "CT")) is not read_dicom_labels
    (tmp_path / "RS").mkdir()
    Path(rs).rename(tmp_path / "RS" / "RS.dcm")
    assert get_dicom_reader(str(tmp_path / "RS")) is read_dicom_labels
    with pytest.raises(InputError, match="open the CT/MR series it was drawn on first"):  # (no viewer at all)
        read_dicom_labels(str(tmp_path / "RS" / "RS.dcm"))
