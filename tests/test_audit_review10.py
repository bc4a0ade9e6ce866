"""Review of 2026-12-06 (h_review9): a scan copied without its time, or a DICOM folder whose images did not change,
is not 'another scan' (results_layers.input_changed); a rerun over one of two case twins keeps the name an earlier run
gave it (cohort.held.distinct_names)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
from test_audit_cohort_more import _crops
from test_audit_cohort_stable import OPTIONS
from test_io import write_dicom_series

from napari_attnseg.cli import main
from napari_attnseg.cohort import predict_cohort
from napari_attnseg.results_layers import input_changed

NUCLEI = Path(__file__).resolve().parents[2] / "shared" / "data" / "nuclei2d" / "image.tif"


def _predict(tiny_checkpoint, src: Path, out: Path) -> Path:
    assert main(["predict", str(src), "--model", str(tiny_checkpoint(dims=2)), "--out", str(out), "--device", "cpu"]) == 0
    return next(out.glob("*_predict.json"))


@pytest.mark.skipif(not NUCLEI.is_file(), reason="shared nuclei data not found")
def test_a_copy_of_the_scan_without_its_time_is_not_another_scan(tmp_path, tiny_checkpoint):
    """Was: the same bytes with another modification time (plain cp, a download, a copy to another drive and back)
    were 'changed since the prediction ... predict it again' on every open and export."""
    img = np.asarray(tifffile.imread(NUCLEI))[:64, :64]
    src = tmp_path / "scans" / "cells.tif"
    src.parent.mkdir()
    tifffile.imwrite(src, img)
    record = _predict(tiny_checkpoint, src, tmp_path / "out")
    st = src.stat()
    os.utime(src, (st.st_atime, st.st_mtime + 60))
    assert input_changed(json.loads(record.read_text()), src) == ""
    tifffile.imwrite(src, np.ascontiguousarray(img[::-1]))  # another scan of the same size under its name: still said
    assert "changed since the prediction" in input_changed(json.loads(record.read_text()), src)


def test_a_dicom_folder_whose_images_did_not_change_is_not_another_scan(tmp_path, tiny_checkpoint):
    """Was: any file added to or removed from the series folder (a viewer's DICOMDIR, notes) changed the folder's
    time, and the record was said to be of another scan."""
    folder = write_dicom_series(tmp_path / "ct", np.random.default_rng(0).normal(0, 100, (3, 48, 48)).astype(np.float32))
    record = _predict(tiny_checkpoint, folder, tmp_path / "out")
    st = folder.stat()
    (folder / "notes.txt").write_text("a viewer's file beside the images")
    os.utime(folder, (st.st_atime, st.st_mtime + 60))
    assert input_changed(json.loads(record.read_text()), folder) == ""


def test_an_older_record_names_no_prediction_date_it_does_not_have(tmp_path):
    """Was: a record without input_modified gave the scan's own new time as 'the prediction of <date>'."""
    src = tmp_path / "x.tif"
    tifffile.imwrite(src, np.zeros((8, 8), np.uint8))
    said = input_changed({"input": str(src), "input_size_bytes": 1}, src)
    assert "1 -> " in said and "the prediction of" not in said


def test_a_rerun_of_one_of_two_case_twins_keeps_its_name(tmp_path):
    """Was: Case3.tif and case3.tif ran as Case3 and case3_2; a rerun of case3.tif alone ('scans/case*.tif') named it
    case3 and computed it again beside case3_2's outputs (its corrections there unseen), and case3_mask.tif beside
    Case3_mask.tif is one file on macOS / Windows."""
    scans, out = tmp_path / "scans", tmp_path / "out"
    _crops(scans, ["case3"])
    tifffile.imwrite(scans / "Case3.tif", np.ascontiguousarray(tifffile.imread(scans / "case3.tif")[::-1]))
    first = predict_cohort("nuclei-2d", scans, out, **OPTIONS)
    assert [(c.case, c.status) for c in first.cases] == [("Case3", "done"), ("case3_2", "done")]
    again = predict_cohort("nuclei-2d", str(scans / "case*.tif"), out, **OPTIONS)
    names = [p.name for p in out.iterdir()]
    assert len({n.casefold() for n in names}) == len(names), names
    assert [(c.case, c.status) for c in again.cases] == [("case3_2", "skipped")]


# -- h_review10 (the latest commits) ---------------------------------------------------------------------------------
def _export(corr, qtbot, tmp_path, **extra):
    corr.dataset_edit.value = str(tmp_path / "ds")
    corr.class_names_edit.value = "background, cell"
    for k, v in extra.items():
        getattr(corr, k).value = v
    assert corr.export() is not None
    qtbot.waitUntil(lambda: corr.export_button.enabled and (tmp_path / "ds" / "manifest.json").is_file(), timeout=60000)
    qtbot.wait(50)


@pytest.mark.gui
def test_edits_on_unreviewed_slices_are_offered_back_after_export(dock, notifications, qtbot, tmp_path):
    """Corrections on slice 4, only slice 2 marked reviewed, Export (slice 4 goes out as 'ignore'), then the mask is
    removed: the corrections on slice 4 are in no file, yet no Restore is offered."""
    import nibabel as nib

    viewer, d = dock
    viewer.add_image(np.random.default_rng(0).random((6, 32, 32)).astype(np.float32), name="vol")
    mask = viewer.add_labels(np.zeros((6, 32, 32), np.uint8), name="vol mask")
    corr = d.correct
    corr.labels_combo.value, corr.image_combo.value = "vol mask", "vol"
    ys, xs = np.meshgrid(np.arange(5, 9), np.arange(5, 9), indexing="ij")
    for z in (2, 4):  # two brush edits (napari's undo history)
        mask.data_setitem((np.full(16, z), ys.ravel(), xs.ravel()), 1)
    corr.mark_slices([2])
    _export(corr, qtbot, tmp_path)
    lab = np.asarray(nib.load(next((tmp_path / "ds" / "labelsTr").glob("*.nii.gz"))).dataobj)
    assert lab.size  # (slice 4 went out as 'ignore')
    viewer.layers.remove(mask)
    qtbot.wait(300)
    said = [str(n.message) for n in notifications if "vol mask" in str(n.message) and "Restore" in str(n.message)]
    assert said, "no Restore offered for the slice-4 corrections that the export left out"


@pytest.mark.gui
def test_a_nifti_mask_without_a_unit_stays_on_its_micron_image(make_napari_viewer, tmp_path):
    """A mask written as NIfTI by another tool (nibabel's default: xyz_units 'unknown') with the image's 0.65 pixel:
    it overlaid its micron image before 113e74d; now it is read as mm and scaled x1000 onto the micron image."""
    import nibabel as nib

    from napari_attnseg._napari import io_hooks

    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((3, 16, 16), np.float32), name="cells", scale=(2.0, 0.65, 0.65),
                             units=("micrometer",) * 3)
    path = str(tmp_path / "cells_mask.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((16, 16, 3), np.uint8), np.diag([0.65, 0.65, 2.0, 1.0])), path)
    io_hooks.activate()
    [(data, kwargs, kind)] = io_hooks.get_nifti_reader(path)(path)
    np.testing.assert_allclose(np.sort(kwargs["scale"]), np.sort(image.scale), rtol=1e-6)


def test_an_instance_mask_of_a_phantom_is_not_called_swapped(tmp_path):
    """A piecewise-constant image (a phantom: 5 grey levels, flat objects: 'looks like a label mask') with its mask of
    36 instance ids (> 20 values: 'looks like an image' by the new test alone): refused as swapped since 76b6c8f,
    with no way round; the mask looks like a label map, so it is none."""
    import tifffile

    from napari_attnseg.cli import main

    img = np.full((128, 128), 10, np.uint8)
    mask = np.zeros((128, 128), np.uint16)
    for k in range(36):
        i, j = divmod(k, 6)
        img[i * 20 + 2:i * 20 + 16, j * 20 + 2:j * 20 + 16] = 40 + 30 * ((i + j) % 5)
        mask[i * 20 + 2:i * 20 + 16, j * 20 + 2:j * 20 + 16] = k + 1
    tifffile.imwrite(tmp_path / "phantom.tif", img)
    tifffile.imwrite(tmp_path / "phantom_mask.tif", mask)
    assert main(["export", "--image", str(tmp_path / "phantom.tif"), "--labels", str(tmp_path / "phantom_mask.tif"),
                 "--dataset", str(tmp_path / "ds"), "--foreground"]) == 0
