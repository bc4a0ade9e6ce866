"""`attnseg predict` over a PACS export that grows: a hospital team runs the same command over the export folder as new
patients arrive (patient/study/series DICOM folders written with pydicom from a crop of the radiomics lung CT, plus
NIfTI). Names stay stable across runs, a copy of the export kept beside the original counts as the same scans, a
study's reformats are left out beside its original series, the PACS hint does not walk a big tree beside the scans,
and a CSV saved by Excel in a European locale (semicolons, BOM, CRLF, quoted paths with spaces) is read."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from test_audit_dicom_pacs import axial, dataset
from test_audit_hospital_cohort import _scout
from test_dicom import lung_crop

from napari_attnseg.cli import main
from napari_attnseg.cohort import collect_inputs, predict_cohort
from napari_attnseg.cohort.inputs import gather

CLI = ["--model", "nuclei-2d", "--device", "cpu", "--precision", "fp32"]
OPTIONS = dict(device="cpu", precision="fp32", threads=1)


@pytest.fixture(scope="module")
def lung():
    return lung_crop()


def _rows(out: Path) -> list[dict]:
    with open(out / "cohort_summary.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _status(out: Path) -> dict[str, str]:
    return {r["case"]: r["status"] for r in _rows(out)}


def _stamps(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in out.glob("*_mask.nii.gz")}


def _reformat(folder: Path, orientation=(1, 0, 0, 0, 0, -1), image_type=("DERIVED", "SECONDARY", "REFORMATTED"),
              series="1.2.40", n=4) -> None:
    """A coronal (default) reformat of the study 1.2.9 in a series folder of its own, as a PACS exports it."""
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        ds = dataset(series=series, rows=10, cols=20)
        ds.SeriesNumber, ds.InstanceNumber, ds.ImageType = 3, k + 1, list(image_type)
        ds.ImageOrientationPatient = list(orientation)
        ds.ImagePositionPatient, ds.PixelSpacing = [-100.0, -80.0 + 3 * k, 3.0 * k], [2.0, 0.7]
        ds.PixelData = np.zeros((10, 20), np.int16).tobytes()
        ds.save_as(str(folder / f"IM{k + 1:04d}"), enforce_file_format=True)


# 1. names that do not change as patients arrive -------------------------------------------------------------------
def test_a_series_keeps_its_name_and_is_skipped_when_another_patients_series_of_that_name_arrives(tmp_path, lung):
    """Was: week 1's SE002 (alone) became PAT001_ST001_SE002 once PAT002/ST001/SE002 joined the export: computed again,
    its SE002 files and summary row left beside the new ones."""
    pacs, out = tmp_path / "PACS", tmp_path / "results"
    axial(lung, pacs / "PAT001" / "ST001" / "SE002", series="1.2.3")
    axial(lung, pacs / "PAT001" / "ST001" / "SE003", series="1.2.4")
    argv = ["predict", f"{pacs}/**/", *CLI, "--out", str(out)]
    assert main(argv) == 0
    assert _status(out) == {"SE002": "done", "SE003": "done"}
    stamps = _stamps(out)

    axial(lung, pacs / "PAT002" / "ST001" / "SE002", series="1.2.5")  # week 2
    assert main(argv) == 0
    assert _status(out) == {"SE002": "skipped", "SE003": "skipped", "PAT002_ST001_SE002": "done"}
    assert {k: v for k, v in _stamps(out).items() if k in stamps} == stamps  # not rewritten
    assert not list(out.glob("PAT001_*")), sorted(p.name for p in out.iterdir())
    records = {p.name: json.loads(p.read_text())["input"] for p in out.glob("*_predict.json")}
    assert records == {"SE002_predict.json": str(pacs / "PAT001/ST001/SE002"),
                       "SE003_predict.json": str(pacs / "PAT001/ST001/SE003"),
                       "PAT002_ST001_SE002_predict.json": str(pacs / "PAT002/ST001/SE002")}

    axial(lung, pacs / "PAT003" / "ST001" / "SE003", series="1.2.6")  # week 3: a second SE003
    assert main(argv) == 0
    assert _status(out) == {"SE002": "skipped", "SE003": "skipped", "PAT002_ST001_SE002": "skipped",
                            "PAT003_ST001_SE003": "done"}
    assert len(_rows(out)) == 4  # one row per series


def test_names_an_earlier_run_gave_stay_when_a_patient_leaves_the_export(tmp_path, lung):
    """The other way round (a patient archived out of the export): PAT001_ST001_SE002 would have become SE002."""
    pacs, out = tmp_path / "PACS", tmp_path / "results"
    axial(lung, pacs / "PAT001" / "ST001" / "SE002", series="1.2.3")
    axial(lung, pacs / "PAT002" / "ST001" / "SE002", series="1.2.5")
    predict_cohort("nuclei-2d", f"{pacs}/**/", out, **OPTIONS)
    shutil.move(pacs / "PAT002", tmp_path / "archived")
    summary = predict_cohort("nuclei-2d", f"{pacs}/**/", out, **OPTIONS)
    assert [(c.case, c.status) for c in summary.cases] == [("PAT001_ST001_SE002", "skipped")]
    assert not list(out.glob("SE002_*"))


def test_an_interrupted_run_resumes_under_the_same_names_after_a_patient_arrives(tmp_path, lung):
    pacs, out = tmp_path / "PACS", tmp_path / "results"
    for pat in ("PAT001", "PAT002"):
        axial(lung, pacs / pat / "ST001" / "SE002", series=f"1.2.{pat[-1]}")

    def stop(done, total, result):  # Ctrl+C after the first case
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_cohort("nuclei-2d", f"{pacs}/PAT001/**/", out, progress=stop, prefetch=0, **OPTIONS)
    assert _status(out) == {"SE002": "done"}
    axial(lung, pacs / "PAT003" / "ST001" / "SE002", series="1.2.9")
    summary = predict_cohort("nuclei-2d", f"{pacs}/**/", out, **OPTIONS)
    assert [(c.case, c.status) for c in summary.cases] == [
        ("SE002", "skipped"), ("PAT002_ST001_SE002", "done"), ("PAT003_ST001_SE002", "done")]


# 2. a copy of the export kept beside the original ----------------------------------------------------------------
def test_an_identical_copy_of_the_scans_is_the_same_case_and_another_scan_is_refused_clearly(tmp_path, lung):
    """Was: 'holds the results of <original>, another input of the name SE002: never replaced' for a copy of the very
    same scans (the export copied to an archive, both kept), and for a NIfTI copied elsewhere."""
    pacs, out = tmp_path / "PACS", tmp_path / "results"
    axial(lung, pacs / "PAT001" / "ST001" / "SE002", series="1.2.3")
    (tmp_path / "nifti").mkdir()
    nib.save(nib.Nifti1Image(np.transpose(lung[0]).astype(np.int16), lung[1]), tmp_path / "nifti" / "ct.nii.gz")
    assert main(["predict", f"{pacs}/**/", str(tmp_path / "nifti"), *CLI, "--out", str(out)]) == 0
    stamps = _stamps(out)

    archive = tmp_path / "archive"
    shutil.copytree(pacs, archive / "PACS")
    shutil.copytree(tmp_path / "nifti", archive / "nifti")
    for i, f in enumerate(sorted((archive / "PACS/PAT001/ST001/SE002").iterdir())):  # other file names: same images
        f.rename(f.with_name(f"1.2.3.{i}.dcm"))
    assert main(["predict", f"{archive}/PACS/**/", str(archive / "nifti"), *CLI, "--out", str(out)]) == 0
    rows = {r["case"]: r for r in _rows(out)}
    assert {k: r["status"] for k, r in rows.items()} == {"SE002": "skipped", "ct": "skipped"}
    assert f"the same scan as {pacs / 'PAT001/ST001/SE002'}" in rows["SE002"]["warnings"]
    assert _stamps(out) == stamps

    # another patient's SE002 (other images) run alone: refused, saying it is another scan and how to have both
    other = tmp_path / "new" / "PAT002" / "ST001" / "SE002"
    axial(lung, other, series="1.2.5", rescale=lambda k: (1, -1000))
    assert main(["predict", f"{tmp_path / 'new'}/**/", *CLI, "--out", str(out)]) == 1
    error = {r["case"]: r for r in _rows(out)}["SE002"]["error"]
    assert "never replaced" in error and "not a copy of it" in error and "Give both in one command" in error, error
    assert _stamps(out) == stamps
    # ... and given in one command with the first, as the message says: both, under names that stay
    assert main(["predict", f"{pacs}/**/", f"{tmp_path / 'new'}/**/", *CLI, "--out", str(out)]) == 0
    assert {r["case"]: r["status"] for r in _rows(out)} == {"SE002": "skipped", "ct": "skipped",
                                                            "PAT002_ST001_SE002": "done"}


# 3. a study's reformats -------------------------------------------------------------------------------------------
def test_reformats_of_a_study_whose_original_series_is_there_are_left_out_with_a_note(tmp_path, lung):
    """Was: a study folder's coronal and sagittal reformats (DERIVED\\SECONDARY\\REFORMATTED, MPR) each became a case
    beside the axial series they were computed from."""
    study = tmp_path / "PACS" / "PAT001" / "ST001"
    _scout(study / "SE001")
    axial(lung, study / "SE002")
    _reformat(study / "SE003")
    _reformat(study / "SE004", orientation=(0, 1, 0, 0, 0, -1), image_type=("DERIVED", "PRIMARY", "MPR"), series="1.2.41")
    for given in (study, f"{tmp_path / 'PACS'}/**/"):
        got = gather(given)
        assert got.cases == [study / "SE002"], got.cases
        note = next(n for n in got.notes if "reformatted" in n)
        assert "left out 2 DICOM series of reformatted images (coronal, sagittal" in note
        assert str(study / "SE003") in note and "give its folder as the input" in note
    summary = predict_cohort("nuclei-2d", study, tmp_path / "out", **OPTIONS)
    assert [(c.case, c.status) for c in summary.cases] == [("SE002", "done")]
    assert "reformatted images" in summary.describe()
    # a reformat given as the input, or without its study's original series, is still segmented
    assert collect_inputs(study / "SE003") == [study / "SE003"]
    alone = tmp_path / "alone"
    shutil.copytree(study / "SE003", alone / "SE003")
    assert collect_inputs(alone) == [alone / "SE003"]


def test_an_original_sagittal_acquisition_stays_a_case(tmp_path, lung):
    """A 3D T1 MR acquired sagittally (ORIGINAL\\PRIMARY) is what is segmented, not a reformat."""
    study = tmp_path / "ST001"
    axial(lung, study / "SE002")
    _reformat(study / "SE005", orientation=(0, 1, 0, 0, 0, -1), image_type=("ORIGINAL", "PRIMARY", "M", "ND"),
              series="1.2.42")
    assert collect_inputs(study) == [study / "SE002", study / "SE005"]


# 4. the PACS hint beside a big tree -------------------------------------------------------------------------------
def test_the_pacs_hint_looks_at_few_folders_beside_a_big_derivatives_tree(tmp_path, lung, monkeypatch):
    """Was: every sub-folder walked up to 2000 folders deep looking for DICOM (a BIDS derivatives tree: minutes on a
    network share) and, for a folder of NIfTI scans, a hint to glob '*.tif'."""
    scans = tmp_path / "scans"
    scans.mkdir()
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 3), np.float32), np.eye(4)), scans / "sub-01.nii.gz")
    for s in range(150):
        for ses in ("ses-1", "ses-2"):
            folder = scans / "derivatives" / "fmriprep" / f"sub-{s:03d}" / ses / "anat"
            folder.mkdir(parents=True)
            (folder / "desc.json").write_text("{}")
    axial(lung, scans / "zz_PACS" / "PAT001" / "ST001" / "SE002")
    walked = []
    walk = os.walk

    def counting(top, *args, **kwargs):
        for entry in walk(top, *args, **kwargs):
            walked.append(entry[0])
            yield entry

    monkeypatch.setattr(os, "walk", counting)
    got = gather(scans)
    assert got.cases == [scans / "sub-01.nii.gz"]
    assert len(walked) <= 250, len(walked)
    note = got.notes[0]
    assert "1 of them holds DICOM series in their sub-folders" in note and "zz_PACS" in note, note
    assert "*.tif" not in note


# 5. a CSV from Excel ----------------------------------------------------------------------------------------------
def test_a_csv_saved_by_excel_in_a_european_locale_is_read(tmp_path, lung):
    """Was: 'My Scans/Patient A.nii.gz;x does not exist' for Excel's CSV with semicolons (a decimal-comma locale)."""
    (tmp_path / "My Scans").mkdir()
    for name in ("Patient A.nii.gz", "Müller, B.nii.gz"):
        nib.save(nib.Nifti1Image(np.transpose(lung[0]).astype(np.int16), lung[1]), tmp_path / "My Scans" / name)
    axial(lung, tmp_path / "PACS export" / "PAT 001" / "ST001" / "SE002")
    rows = ['"My Scans/Patient A.nii.gz"', '"My Scans/Müller, B.nii.gz"', '"PACS export/PAT 001/ST001/SE002"']
    want = [tmp_path / "My Scans" / "Patient A.nii.gz", tmp_path / "My Scans" / "Müller, B.nii.gz",
            tmp_path / "PACS export" / "PAT 001" / "ST001" / "SE002"]
    for sep, header, encoding in ((",", "path,reviewer", "utf-8-sig"), (";", "Pfad;Befund", "utf-8-sig"),
                                  (";", "path;note", "cp1252"), ("\t", "path\tnote", "utf-8")):
        table = tmp_path / f"list{len(header)}{encoding}.csv"
        table.write_bytes("\r\n".join([header, *[f"{r}{sep}x" for r in rows], ""]).encode(encoding))
        assert collect_inputs(table) == want, (sep, header, encoding)
    summary = predict_cohort("nuclei-2d", table, tmp_path / "out", **OPTIONS)
    assert [c.status for c in summary.cases] == ["done"] * 3, [c.error for c in summary.cases]
