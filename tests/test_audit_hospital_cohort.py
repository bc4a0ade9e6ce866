"""`attnseg predict` over a hospital export, as an analyst gets one: a PACS tree without DICOMDIR (patient/study/series
folders, a scout series beside the axial one), NIfTI files (one 4D, one cut short, one with spaces and accents in its
name) and a CSV naming some of them (relative paths, one missing). Series are written with pydicom from a crop of the
radiomics lung CT (test_audit_dicom_pacs.py); models are tiny untrained checkpoints, so runs take seconds."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from test_audit_dicom_pacs import axial, dataset
from test_dicom import lung_crop

from napari_attnseg.cli import main
from napari_attnseg.cohort import collect_inputs, predict_cohort
from napari_attnseg.errors import InputError

OPTIONS = dict(device="cpu", precision="fp32", threads=1)


@pytest.fixture(scope="module")
def lung():
    return lung_crop()


def _scout(folder: Path, study: str = "1.2.9") -> None:
    """A PACS export's scout series: two localizer images in a series folder of their own."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(2):
        ds = dataset(series="1.2.1")
        ds.StudyInstanceUID = study
        ds.Rows = ds.Columns = 16
        ds.SeriesNumber, ds.InstanceNumber, ds.ImageType = 1, n + 1, ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.ImageOrientationPatient = [[1, 0, 0, 0, 0, -1], [0, 1, 0, 0, 0, -1]][n]
        ds.ImagePositionPatient, ds.PixelSpacing = [-250.0, 0.0, -500.0], [5.0, 5.0]
        ds.PixelData = np.full((16, 16), 1000, np.int16).tobytes()
        ds.save_as(str(folder / f"IM{n + 1:04d}"), enforce_file_format=True)


def _pacs(root: Path, lung) -> Path:
    """PACS/PAT001/ST001/{SE001 scout, SE002 axial CT}, no DICOMDIR anywhere."""
    study = root / "PACS" / "PAT001" / "ST001"
    _scout(study / "SE001")
    axial(lung, study / "SE002")
    return root / "PACS"


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# 1. the PACS tree -------------------------------------------------------------------------------------------------
def test_a_pacs_tree_without_dicomdir_says_where_its_series_are_and_how_to_reach_them(tmp_path, lung, tiny_checkpoint):
    """Was: 'No images found in PACS: check the folder, the pattern or the CSV', the note on the skipped patient
    folders dropped, and (beside other images) a hint for a glob of *.tif, which finds no DICOM series."""
    pacs = _pacs(tmp_path, lung)
    with pytest.raises(InputError) as err:
        predict_cohort(tiny_checkpoint(dims=3), pacs, tmp_path / "out", **OPTIONS)
    text = str(err.value)
    assert "1 folder that is not a DICOM series" in text and "holds DICOM series in their sub-folders" in text
    assert "PACS export without DICOMDIR" in text and f'"{pacs}/**/"' in text and "*.tif" not in text
    assert not (tmp_path / "out").exists()
    cases = collect_inputs(f"{pacs}/**/")  # what the message proposes: the series folders (the scout left out)
    assert cases == [pacs / "PAT001" / "ST001" / "SE002/"]


def test_the_scout_series_of_a_study_is_left_out_with_a_note(tmp_path, lung, tiny_checkpoint):
    """Was: a study folder's scout series segmented as a case of its own ('done': two localizers, one kept, 'the
    image is constant'), beside the axial series, and nothing said which series of the study were segmented."""
    study = _pacs(tmp_path, lung) / "PAT001" / "ST001"
    summary = predict_cohort(tiny_checkpoint(dims=2), study, tmp_path / "out", **OPTIONS)
    assert [(c.case, c.status) for c in summary.cases] == [("SE002", "done")]
    assert "left out 1 DICOM series of localizer (scout) images only" in summary.describe()
    assert str(study / "SE001") in summary.describe()
    mask = nib.load(str(tmp_path / "out" / "SE002_mask.nii.gz"))
    assert mask.shape == lung[0].shape[::-1]  # on the series' grid: (i, j, k)
    np.testing.assert_allclose(mask.affine, lung[1], atol=1e-4)
    # given on its own, a scout series is still read (the user asked for it)
    assert collect_inputs(study / "SE001") == [study / "SE001"]


# 2. a 4D NIfTI among 3D ones ----------------------------------------------------------------------------------------
def test_channel_for_a_4d_nifti_in_a_folder_leaves_the_3d_scans_running(tmp_path, tiny_checkpoint):
    """Was: the 4D file's advice ('choose one with --channel K') failed every other case of the folder: 'has no
    channel axis; leave --channel out'."""
    folder = tmp_path / "nifti"
    folder.mkdir()
    rng = np.random.default_rng(0)
    vol = rng.normal(100, 20, (32, 32, 4)).astype(np.float32)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), folder / "Patient Müller é.nii.gz")
    nib.save(nib.Nifti1Image(np.stack([vol, vol[::-1]], -1), np.eye(4)), folder / "mri_4d.nii.gz")
    model = tiny_checkpoint(dims=2)
    first = predict_cohort(model, folder, tmp_path / "out", **OPTIONS)
    assert {c.case: c.status for c in first.cases} == {"Patient Müller é": "done", "mri_4d": "failed"}
    assert "--channel K" in next(c.error for c in first.cases if c.failed)
    again = predict_cohort(model, folder, tmp_path / "out", channel=1, **OPTIONS)
    by_case = {c.case: c for c in again.cases}
    assert [c.status for c in again.cases] == ["done", "done"], [c.error for c in again.cases]
    assert any("--channel 1 does not apply to this input" in w for w in by_case["Patient Müller é"].warnings)
    assert not any("--channel" in w for w in by_case["mri_4d"].warnings)
    rows = {r["case"]: r for r in _rows(tmp_path / "out" / "cohort_summary.csv")}
    assert "does not apply" in rows["Patient Müller é"]["warnings"]
    mask = nib.load(str(tmp_path / "out" / "mri_4d_mask.nii.gz"))
    assert mask.shape == vol.shape  # the chosen volume's grid


# 3. the CSV ---------------------------------------------------------------------------------------------------------
def test_a_csv_row_naming_a_missing_file_says_what_to_do(tmp_path, tiny_checkpoint):
    """Was: '/abs/gone.nii.gz does not exist.' (and, for a relative row, only why): nothing on what to do."""
    folder = tmp_path / "export"
    (folder / "nifti").mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.random.default_rng(0).normal(100, 20, (32, 32, 2)).astype(np.float32), np.eye(4)),
             folder / "nifti" / "brain crop.nii.gz")
    (folder / "cohort.csv").write_text(f"path\nnifti/brain crop.nii.gz\nnifti/missing.nii.gz\n{tmp_path / 'gone.nii.gz'}\n",
                                       encoding="utf-8")
    summary = predict_cohort(tiny_checkpoint(dims=2), folder / "cohort.csv", tmp_path / "out", **OPTIONS)
    status = {c.case: (c.status, c.error) for c in summary.cases}
    assert status["brain crop"][0] == "done"
    for case in ("missing", "gone"):
        assert status[case][0] == "failed" and "does not exist" in status[case][1]
        assert "Correct that row of the CSV (or put the file back)" in status[case][1]
    assert str(folder / "cohort.csv") in status["gone"][1]


# 4. the whole export from the command line: resume, --overwrite --------------------------------------------------
def test_the_export_from_the_command_line_runs_resumes_and_overwrites(tmp_path, lung, tiny_checkpoint, capsys):
    pacs = _pacs(tmp_path, lung)
    study = pacs / "PAT001" / "ST001"
    nifti = tmp_path / "nifti"
    nifti.mkdir()
    nib.save(nib.Nifti1Image(np.transpose(lung[0]).astype(np.int16), lung[1]), nifti / "ct padded é.nii.gz")
    raw = (nifti / "ct padded é.nii.gz").read_bytes()
    (nifti / "truncated.nii.gz").write_bytes(raw[: len(raw) // 2])
    model = str(tiny_checkpoint(dims=2))
    argv = ["predict", str(study), str(nifti), "--model", model, "--out", str(tmp_path / "out"), "--device", "cpu"]
    assert main(argv) == 1  # the truncated file failed
    rows = {r["case"]: r for r in _rows(tmp_path / "out" / "cohort_summary.csv")}
    assert {k: r["status"] for k, r in rows.items()} == {"SE002": "done", "ct padded é": "done", "truncated": "failed"}
    assert "truncated.nii.gz is not a readable NIfTI file" in rows["truncated"]["error"]
    assert "Copy it again" in rows["truncated"]["error"]
    capsys.readouterr()
    assert main(argv) == 1
    rows = {r["case"]: r["status"] for r in _rows(tmp_path / "out" / "cohort_summary.csv")}
    assert rows == {"SE002": "skipped", "ct padded é": "skipped", "truncated": "failed"}
    assert main([*argv, "--overwrite"]) == 1
    rows = {r["case"]: r["status"] for r in _rows(tmp_path / "out" / "cohort_summary.csv")}
    assert rows == {"SE002": "done", "ct padded é": "done", "truncated": "failed"}
    assert "left out 1 DICOM series of localizer (scout) images only" in capsys.readouterr().out


def test_series_folders_of_one_name_under_two_patients_say_how_to_run_them(tmp_path, lung, tiny_checkpoint):
    """Was: 'Rename one, or run them into separate folders' for SE002 under two patients of a PACS tree; then 'run
    each patient's or study's folder into its own --out'. Now both run, named by their folders
    (test_audit_cohort_names.py)."""
    pacs = _pacs(tmp_path, lung)
    axial(lung, pacs / "PAT002" / "ST001" / "SE002", series="1.2.5")
    summary = predict_cohort(tiny_checkpoint(dims=2), f"{pacs}/**/", tmp_path / "out", **OPTIONS)
    assert [(c.case, c.status) for c in summary.cases] == [("PAT001_ST001_SE002", "done"), ("PAT002_ST001_SE002", "done")]
