"""A clinician's corrected mask back to the PACS: the Correct tab's *Save mask...* writes a DICOM SEG on the DICOM
series the mask's image was read from. A 7-slice, 128 x 128 crop of the radiomics lung CT is written as a CT series
(head first, and feet first with shuffled file names: the series then reads from the feet, its rows stored
left-right flipped), opened through the plugin's reader as a user does, segmented by ``attnseg predict`` (the bundled
brain-mri-3d model: a real model's mask with its provenance), the mask opened on it, corrected (painted, slices marked
reviewed, classes renamed) and saved as a SEG; read back with highdicom and with our reader: the layer's voxels as
napari shows them, SEMIAUTOMATIC with the model's name, the typed class names, the reviewed slices in its series
description. A mask drawn by hand: MANUAL, no algorithm. Not a DICOM image: no SEG type offered, a typed .dcm name
refused naming the layer; an empty mask refused; a CT file of the series never written over."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import test_audit_dicom_labels as base
from test_audit_dicom_labels import SHAPE, ct_series

from napari_attnseg.data import read_image

pytestmark = pytest.mark.gui
PLUGIN = "napari-attnseg"
SEG_FILTER = "DICOM SEG (*.dcm)"
MODEL = ["--model", "brain-mri-3d", "--brain-extraction", "off", "--no-prob"]
NAMES = ["background", "tumour", "lung"]


@pytest.fixture(scope="module")
def lung():
    """test_audit_dicom_labels' crop: (CT crop, labels crop, RAS affine, LPS affine, spacing)."""
    return base.lung.__wrapped__()


def _open_series(make_napari_viewer, monkeypatch, folder: Path):
    """A viewer with the series opened as a user does (the plugin's reader preferences, File > Open Folder) and the
    Correct tab."""
    from napari.settings import get_settings

    from napari_attnseg._napari import io_hooks
    from napari_attnseg._napari.correct_widget import CorrectWidget

    viewer = make_napari_viewer()
    monkeypatch.setattr(get_settings().plugins, "extension2reader", {})
    io_hooks.activate()
    viewer._open_or_raise_error([str(folder)])
    image = viewer.layers[folder.name.split(".")[0]]
    assert image._type_string == "image" and image.metadata["format"] == "dicom"
    return viewer, CorrectWidget(viewer), image


def _click_save(panel, monkeypatch, answer: Path, kind: str = SEG_FILTER) -> list:
    """Click *Save mask...* with the dialog answering ``answer`` of type ``kind``; returns the dialog's arguments."""
    from qtpy.QtWidgets import QPushButton

    from napari_attnseg._napari import save_mask

    asked = []

    def dialog(*args, **kwargs):
        asked.append(args)
        return str(answer), kind

    monkeypatch.setattr(save_mask.QFileDialog, "getSaveFileName", dialog)
    next(b for b in panel.findChildren(QPushButton) if b.text() == "Save mask...").click()
    return asked


def _reader_order(image, cts: list) -> list[str]:
    """The SOPInstanceUID of each slice of the image layer, told by its pixels (independent of our SEG writer)."""
    uids = []
    for k in range(SHAPE[0]):
        found = [str(c.SOPInstanceUID) for c in cts if np.array_equal(c.pixel_array, np.asarray(image.data[k]))]
        assert len(found) == 1
        uids.append(found[0])
    return uids


def _read_back(path: Path, folder: Path, uids: list[str]) -> tuple[np.ndarray, np.ndarray, object]:
    """The SEG as our reader puts it on the series, as highdicom does (slices in the reader's order), and the file."""
    import pydicom

    hd = pytest.importorskip("highdicom")
    from napari_attnseg.data.labels_in import read_labels

    ours = read_labels(path, read_image(folder))
    seg = hd.seg.segread(path)
    theirs = np.asarray(seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, combine_segments=True,
                                                          skip_overlap_checks=True))
    return np.asarray(ours.data), theirs, pydicom.dcmread(path)


@pytest.mark.parametrize("feet_first", [False, True])
def test_a_corrected_model_mask_is_saved_as_a_semiautomatic_seg_on_its_series(make_napari_viewer, monkeypatch, lung,
                                                                              tmp_path, feet_first):
    """Was: the dialog offered NIfTI and TIFF only; 'corrected.dcm' typed was written as 'corrected.dcm.nii.gz'.
    Now the SEG holds the corrected mask voxel for voxel as napari shows it, on the series' instances."""
    from napari_attnseg.cli import main

    folder = tmp_path / "CT"
    cts = ct_series(lung, folder, feet_first=feet_first, shuffled=feet_first)
    assert main(["predict", str(folder), *MODEL, "--out", str(tmp_path / "out")]) == 0
    viewer, panel, image = _open_series(make_napari_viewer, monkeypatch, folder)
    viewer._open_or_raise_error([str(tmp_path / "out" / "CT_mask.nii.gz")])  # the model's mask, with its provenance
    mask = viewer.layers["CT_mask"]
    assert mask._type_string == "labels" and mask.metadata["attnseg"]["model"] == "brain-mri-3d"
    panel.labels_combo.value, panel.image_combo.value = mask.name, image.name
    # the correction: a block painted 1 and one erased on slice 3, the classes renamed, slices 2-4 reviewed
    mask.data_setitem(tuple(np.mgrid[3:4, 20:40, 30:50].reshape(3, -1)), 1)
    mask.data_setitem(tuple(np.mgrid[3:4, 60:90, 60:90].reshape(3, -1)), 0)
    panel.class_names_edit.value = ", ".join(NAMES)
    panel.mark_slices([2, 3, 4])
    shown = np.array(mask.data)
    assert set(np.unique(shown)) == {0, 1, 2}

    out = tmp_path / "corrected.dcm"
    asked = _click_save(panel, monkeypatch, out)
    assert SEG_FILTER in asked[0][3].split(";;")  # (offered: the mask's image is a DICOM series)
    assert out.is_file(), panel.save_label.value
    assert panel.save_label.value.startswith(f"Saved CT_mask to {out} as a DICOM SEG on CT's series")
    assert "SEMIAUTOMATIC, corrected from brain-mri-3d" in panel.save_label.value
    ours, theirs, ds = _read_back(out, folder, _reader_order(image, cts))
    np.testing.assert_array_equal(ours, shown)
    np.testing.assert_array_equal(theirs, shown)
    assert [s.SegmentLabel for s in ds.SegmentSequence] == NAMES[1:]
    assert all(s.SegmentAlgorithmType == "SEMIAUTOMATIC" and s.SegmentAlgorithmName == "brain-mri-3d"
               for s in ds.SegmentSequence)
    assert ds.SeriesDescription == "attnseg brain-mri-3d corrected, reviewed images 3-5"  # (InstanceNumbers)
    assert ds.StudyInstanceUID == cts[0].StudyInstanceUID and ds.FrameOfReferenceUID == cts[0].FrameOfReferenceUID
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == cts[0].SeriesInstanceUID
    # saved again over its own SEG (the dialog asked): replaced; over a CT image of the series: refused, unchanged
    mask.data_setitem(tuple(np.mgrid[5:6, 0:8, 0:8].reshape(3, -1)), 2)
    _click_save(panel, monkeypatch, out)
    np.testing.assert_array_equal(_read_back(out, folder, _reader_order(image, cts))[0], np.asarray(mask.data))
    ct_file = sorted(folder.iterdir())[0]
    before = ct_file.read_bytes()
    _click_save(panel, monkeypatch, ct_file)
    assert ct_file.read_bytes() == before and "not a mask this plugin saved" in panel.save_label.value


def test_a_mask_drawn_by_hand_is_a_manual_seg_written_in_a_worker_as_pressed(make_napari_viewer, monkeypatch, lung,
                                                                            tmp_path, qtbot):
    """A mask no model made: MANUAL, no algorithm named. A big one is written in a worker from what was pressed: the
    image closed and the mask painted meanwhile leave the SEG as pressed; a name typed without its suffix gets .dcm."""
    from napari_attnseg._napari import save_mask

    folder = tmp_path / "CT"
    cts = ct_series(lung, folder, feet_first=True)
    viewer, panel, image = _open_series(make_napari_viewer, monkeypatch, folder)
    uids = _reader_order(image, cts)
    drawn = np.zeros(SHAPE, np.uint8)
    drawn[2:5, 40:70, 50:90] = 1
    mask = viewer.add_labels(drawn.copy(), name="drawn", scale=image.scale, translate=image.translate)
    panel.labels_combo.value, panel.image_combo.value = mask.name, image.name
    panel.class_names_edit.value = "background, tumour"
    monkeypatch.setattr(save_mask, "BACKGROUND_VOXELS", 1000)  # this crop counts as big
    gate = threading.Event()
    from napari_attnseg.data import dicom_seg_write

    real = dicom_seg_write.write_dicom_seg

    def held(*args, **kwargs):  # (the writer waits until the viewer has changed)
        gate.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(dicom_seg_write, "write_dicom_seg", held)
    worker = _click_save(panel, monkeypatch, tmp_path / "drawn", SEG_FILTER) and panel._saving
    assert worker is not None and panel.save_label.value.startswith("Saving drawn")
    viewer.layers.remove(image)  # meanwhile: the image closed, the mask painted
    mask.data_setitem((np.array([6]), np.array([1]), np.array([1])), np.array([1], np.uint8))
    gate.set()
    qtbot.waitUntil(lambda: panel.save_label.value.startswith(("Saved", "Not saved")), timeout=30000)
    out = tmp_path / "drawn.dcm"
    assert panel.save_label.value.startswith(f"Saved drawn to {out}"), panel.save_label.value
    assert "MANUAL, no model" in panel.save_label.value
    ours, theirs, ds = _read_back(out, folder, uids)
    np.testing.assert_array_equal(ours, drawn)
    np.testing.assert_array_equal(theirs, drawn)
    segment = ds.SegmentSequence[0]
    assert segment.SegmentLabel == "tumour" and segment.SegmentAlgorithmType == "MANUAL"
    assert "SegmentAlgorithmName" not in segment and ds.SeriesDescription == "attnseg manual, reviewed"


def test_not_a_dicom_image_and_an_empty_mask_are_refused(make_napari_viewer, monkeypatch, lung, tmp_path,
                                                         notifications):
    """A mask on a NIfTI image: no SEG type in the dialog, 'x.dcm' typed is refused naming the mask and saying what
    to do (was: written as 'x.dcm.nii.gz'). An empty mask on a DICOM series: refused, nothing written (a SEG holds at
    least one frame)."""
    import nibabel as nib

    crop, _, affine, _, _ = lung
    nib.save(nib.Nifti1Image(np.ascontiguousarray(crop.transpose(2, 1, 0)), affine), tmp_path / "ct.nii.gz")
    folder = tmp_path / "CT"
    ct_series(lung, folder)
    viewer, panel, image = _open_series(make_napari_viewer, monkeypatch, folder)
    nifti = viewer.open(str(tmp_path / "ct.nii.gz"), plugin=PLUGIN)[0]
    drawn = np.zeros(SHAPE, np.uint8)
    drawn[3, 10:20, 10:20] = 1
    mask = viewer.add_labels(drawn, name="on nifti", scale=nifti.scale, translate=nifti.translate)
    panel.labels_combo.value, panel.image_combo.value = mask.name, nifti.name
    asked = _click_save(panel, monkeypatch, tmp_path / "x.dcm")
    assert SEG_FILTER not in asked[0][3]
    assert not list(tmp_path.glob("x.dcm*"))
    why = panel.save_label.value
    assert why.startswith("Not saved: on nifti cannot be saved as a DICOM SEG: its image 'ct' was not read from a "
                          "DICOM series") and "Save it as NIfTI (.nii.gz) or TIFF (.tif)" in why
    assert any("on nifti cannot be saved as a DICOM SEG" in str(n.message) for n in notifications)

    empty = viewer.add_labels(np.zeros(SHAPE, np.uint8), name="empty", scale=image.scale, translate=image.translate)
    panel.labels_combo.value, panel.image_combo.value = empty.name, image.name
    asked = _click_save(panel, monkeypatch, tmp_path / "empty.dcm")
    assert SEG_FILTER in asked[0][3]
    assert not list(tmp_path.glob("empty.dcm*"))
    assert panel.save_label.value.startswith("Not saved: empty holds no foreground: a DICOM SEG holds at least one")


def test_a_predicted_seg_opened_on_its_image_link_and_corrected_keeps_its_model(make_napari_viewer, monkeypatch,
                                                                                lung, tmp_path):
    """``attnseg predict CT000.dcm --dicom-seg``'s SEG opened in napari on the image link predict wrote beside it
    (``CT000_image.dcm``: read as the series around the file it links to), corrected and saved as a SEG again:
    SEMIAUTOMATIC, naming the model and version the SEG named (not MANUAL: the Labels layer read from a SEG carries
    no run's provenance), its segment names kept. (Was, before the link was followed: 'the series does not read as
    the image', the link's own folder holding one file.)"""
    import pydicom

    from napari_attnseg.cli import main

    folder = tmp_path / "CT"
    cts = ct_series(lung, folder)
    first = sorted(folder.iterdir())[0]
    assert main(["predict", str(first), *MODEL, "--out", str(tmp_path / "out"), "--dicom-seg"]) == 0
    predicted = pydicom.dcmread(tmp_path / "out" / f"{first.stem}_seg.dcm", stop_before_pixels=True).SegmentSequence[0]
    link = tmp_path / "out" / f"{first.stem}_image.dcm"
    assert link.is_symlink()
    viewer, panel, image = _open_series(make_napari_viewer, monkeypatch, link)
    assert image.data.shape == SHAPE
    viewer._open_or_raise_error([str(tmp_path / "out" / f"{first.stem}_seg.dcm")])
    mask = viewer.layers[f"{image.name} {first.stem}_seg"]
    panel.labels_combo.value, panel.image_combo.value = mask.name, image.name
    mask.data_setitem(tuple(np.mgrid[1:2, 0:16, 0:16].reshape(3, -1)), 2)
    panel.mark_slices([1])
    out = tmp_path / "corrected.dcm"
    _click_save(panel, monkeypatch, out)
    ours, theirs, ds = _read_back(out, folder, _reader_order(image, cts))
    np.testing.assert_array_equal(ours, np.asarray(mask.data))
    np.testing.assert_array_equal(theirs, np.asarray(mask.data))
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["grey matter", "white matter"]
    algo = ds.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert ds.SegmentSequence[0].SegmentAlgorithmType == "SEMIAUTOMATIC"
    assert algo.AlgorithmName == "brain-mri-3d" and algo.AlgorithmVersion == \
        predicted.SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion
    assert ds.SeriesDescription == "attnseg brain-mri-3d corrected, reviewed images 2"  # (its InstanceNumber)
