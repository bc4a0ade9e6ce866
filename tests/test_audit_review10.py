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
