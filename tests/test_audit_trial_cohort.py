"""A hospital analyst's cohort over a PACS export (DICOMDIR on top, scouts, reports, a damaged file) and a folder of
NIfTI scans, as docs/cohort.md says: what each run leaves the user (h_trial_cohort's review)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tifffile
from test_audit_dicom_pacs import axial, dataset
from test_dicom import lung_crop

from napari_attnseg.cohort import predict_cohort
from napari_attnseg.cohort.inputs import gather
from napari_attnseg.data import read_image
from napari_attnseg.errors import InputError

OPTIONS = dict(device="cpu", precision="fp32", threads=1)
NUCLEI = Path(__file__).resolve().parents[2] / "shared" / "data" / "nuclei2d" / "image.tif"


@pytest.fixture(scope="module")
def lung():
    return lung_crop()


def _study(lung, folder: Path, study: str) -> None:
    """A study folder of a PACS export: SE001 a scout, SE002 the axial CT, SE999 a dose report (no images)."""
    for n in range(2):
        ds = dataset(series=f"{study}.1", rows=16, cols=16)
        ds.StudyInstanceUID = study
        ds.SeriesNumber, ds.InstanceNumber, ds.ImageType = 1, n + 1, ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.ImageOrientationPatient = [[1, 0, 0, 0, 0, -1], [0, 1, 0, 0, 0, -1]][n]
        ds.ImagePositionPatient, ds.PixelSpacing = [-250.0, 0.0, -500.0], [5.0, 5.0]
        ds.PixelData = np.full((16, 16), 1000, np.int16).tobytes()
        (folder / "SE001").mkdir(parents=True, exist_ok=True)
        ds.save_as(str(folder / "SE001" / f"IM{n + 1:04d}"), enforce_file_format=True)
    axial(lung, folder / "SE002", series=f"{study}.2", extra=lambda ds, k: setattr(ds, "StudyInstanceUID", study))
    report = dataset("1.2.840.10008.5.1.4.1.1.88.67", "SR", series=f"{study}.999", rows=0)
    report.StudyInstanceUID = study
    (folder / "SE999").mkdir()
    report.save_as(str(folder / "SE999" / "SR0001"), enforce_file_format=True)


def _export(tmp_path: Path, lung, dicomdir: bool = True) -> Path:
    from pydicom.sequence import Sequence

    pacs = tmp_path / "PACS"
    for n in (1, 2):
        _study(lung, pacs / f"PAT00{n}" / "ST001", f"1.2.9.{n}")
    if dicomdir:
        index = dataset("1.2.840.10008.1.3.10", "", series="", rows=0)
        index.DirectoryRecordSequence = Sequence([])
        index.save_as(str(pacs / "DICOMDIR"), enforce_file_format=True)
    return pacs


def test_the_glob_of_a_pacs_export_with_a_dicomdir_gives_its_series_not_its_top_folder(tmp_path, lung):
    """Was: "PACS/**/" also matched PACS/ itself, a DICOM 'series' by its DICOMDIR: a case failing on every run ('holds
    6 DICOM series ...; none is chosen for you'), exit status 1; and the folder given alone was refused without the glob."""
    pacs = _export(tmp_path, lung)
    got = gather(f"{pacs}/**/")
    assert [c.parent.parent.name for c in got.cases] == ["PAT001", "PAT002"] and all(c.name == "SE002" for c in got.cases)
    assert not [n for n in got.notes if f"{pacs}," in n or f"{pacs})" in n]  # (the top folder is no series, said left out)
    with pytest.raises(InputError) as err:
        read_image(pacs)
    assert "2 studies" in str(err.value) and f'"{pacs}/**/"' in str(err.value)


def test_a_series_folder_of_reports_only_is_left_out_with_a_note(tmp_path, lung):
    """Was: every study's dose-report series, and a SEG stored in a series of its own, a 'failed' case ('no DICOM images
    found') on every run (exit status 1)."""
    pacs = _export(tmp_path, lung, dicomdir=False)
    seg = dataset("1.2.840.10008.5.1.4.1.1.66.4", "SEG", series="1.2.9.1.300", rows=16, cols=16)
    seg.StudyInstanceUID = "1.2.9.1"
    (pacs / "PAT001" / "ST001" / "SE300").mkdir()
    seg.save_as(str(pacs / "PAT001" / "ST001" / "SE300" / "SEG0001"), enforce_file_format=True)
    got = gather(f"{pacs}/**/")
    assert [c.name for c in got.cases] == ["SE002", "SE002"]
    assert any("3 DICOM series without images" in n and "SE999" in n and "SE300" in n for n in got.notes)


@pytest.mark.parametrize("cut", [600, 0])
def test_a_damaged_file_of_a_series_is_named(tmp_path, lung, cut):
    """Was: a file cut short (or empty: an interrupted copy) left out in silence, its slice said to 'look missing from
    the series', so the user looked for an image the export lacked instead of copying that file again."""
    files = axial(lung, tmp_path / "SE002")
    files[2].write_bytes(files[2].read_bytes()[:cut])
    vol = read_image(tmp_path / "SE002")
    assert f"{files[2].name} ({'empty' if cut == 0 else 'cut short'})" in vol.meta["warning"]
    assert "copy them again" in vol.meta["warning"]


def test_a_corrected_mask_whose_probabilities_were_deleted_is_kept_and_skipped(tmp_path, tiny_checkpoint):
    """Was: 'failed' on every run (a mask 'may have been corrected'; pass --overwrite, which redoes every case), the
    missing probability map never named."""
    if not NUCLEI.exists():
        pytest.skip(f"{NUCLEI} is not here")
    scans = tmp_path / "scans"
    scans.mkdir()
    tifffile.imwrite(scans / "a.tif", tifffile.imread(NUCLEI)[:64, :64])
    model, out = tiny_checkpoint(dims=2), tmp_path / "out"
    assert predict_cohort(model, scans, out, **OPTIONS).done == 1
    mask = tifffile.imread(out / "a_mask.tif")
    mask[:8, :8] = 1 - mask[:8, :8]  # the user's correction
    tifffile.imwrite(out / "a_mask.tif", mask)
    corrected = (out / "a_mask.tif").read_bytes()
    (out / "a_prob.tif").unlink()  # disk space
    again = predict_cohort(model, scans, out, **OPTIONS)
    assert (again.skipped, again.failed) == (1, 0)
    assert "a_prob.tif missing" in " ".join(again.cases[0].warnings)
    assert (out / "a_mask.tif").read_bytes() == corrected


def test_a_failed_series_renamed_by_a_new_patient_keeps_one_summary_row(tmp_path, lung, tiny_checkpoint):
    """Was: SE002 (alone, failed) became PAT001_ST001_SE002 once another patient's SE002 came, and the summary kept
    both rows for the one input."""
    files = axial(lung, tmp_path / "PACS" / "PAT001" / "ST001" / "SE002")
    files[1].write_bytes(files[1].read_bytes()[:-200])  # pixel data cut short: the case fails
    model, out = tiny_checkpoint(dims=3), tmp_path / "out"
    predict_cohort(model, f"{tmp_path}/PACS/**/", out, **OPTIONS)
    axial(lung, tmp_path / "PACS" / "PAT002" / "ST001" / "SE002", series="1.2.77")
    predict_cohort(model, f"{tmp_path}/PACS/**/", out, **OPTIONS)
    with open(out / "cohort_summary.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    inputs = [r["input"] for r in rows]
    assert len(inputs) == len(set(inputs)) == 2
    assert {r["case"] for r in rows} == {"PAT001_ST001_SE002", "PAT002_ST001_SE002"}


def test_a_file_whose_pixel_data_is_cut_short_says_to_copy_it_again(tmp_path):
    """A series file whose pixel data was cut short (an interrupted copy) failed with "could not decode its pixel data
    (The number of bytes ...)": the file was named, but not what to do."""
    from napari_attnseg.data.dicom_pixels import _decode

    ds = dataset(series="9.9", rows=16, cols=16)
    ds.ImagePositionPatient, ds.ImageOrientationPatient, ds.PixelSpacing = [0.0, 0.0, 0.0], [1, 0, 0, 0, 1, 0], [1, 1]
    ds.PixelData = np.zeros((16, 16), np.int16).tobytes()[:100]
    ds.save_as(str(tmp_path / "IM0001"), enforce_file_format=True)
    with pytest.raises(InputError, match="copy it again from the PACS"):
        _decode(tmp_path / "IM0001")


def test_a_series_whose_first_files_are_presentation_states_stays_a_case(tmp_path, lung):
    """A series folder whose first 20 files (sorted) are presentation states, its images after them, was taken for a
    folder without images and left out of the cohort (review)."""
    se = tmp_path / "PAT1" / "ST1" / "SE002"
    axial(lung, se, series="1.2.3.2")
    for k in range(20):
        ds = dataset("1.2.840.10008.5.1.4.1.1.11.1", "PR", series="1.2.3.2", rows=0)
        ds.save_as(str(se / f"A{k:04d}"), enforce_file_format=True)
    assert gather([f"{tmp_path}/**/"], None).cases == [se]


def test_an_empty_file_beside_a_series_that_is_no_image_is_not_called_damaged(tmp_path, lung):
    """An empty VERSION or LOCK file beside a complete series was named 'could not be read ... copy them again'."""
    axial(lung, tmp_path / "SE002")
    (tmp_path / "SE002" / "VERSION").write_bytes(b"")
    vol = read_image(tmp_path / "SE002")
    assert "VERSION" not in str(vol.meta.get("warning") or "")
