"""Defects an audit found in `attnseg predict` over cohorts: a user's summary or corrected mask lost by
following the tool's advice, a DICOM folder linked into itself, a glob reading its own outputs, channels
without axes metadata run as a z-stack without a word, silent skips and unclear messages."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_attnseg.cli import main
from napari_attnseg.cohort import SUMMARY_NAME, collect_inputs, predict_cohort
from napari_attnseg.errors import InputError

OPTIONS = dict(device="cpu", precision="fp32", tile=(32, 32), threads=1)


def _tiffs(folder: Path, names, shape=(32, 32)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for name in names:
        tifffile.imwrite(folder / f"{name}.tif", rng.normal(100, 20, shape).astype(np.uint16))
        paths.append(folder / f"{name}.tif")
    return paths


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _cli(*args) -> list[str]:
    return ["predict", *map(str, args), "--device", "cpu", "--precision", "fp32", "--tile", "32"]


# 1. a user's summary table and a hand-corrected mask ------------------------------------------------
def test_a_column_added_to_the_summary_in_a_spreadsheet_is_kept_not_refused(tmp_path, tiny_checkpoint):
    model = tiny_checkpoint(dims=2)
    _tiffs(tmp_path / "in", ["a", "b"])
    out = tmp_path / "out"
    predict_cohort(model, tmp_path / "in", out, **OPTIONS)
    rows = _rows(out / SUMMARY_NAME)
    with open(out / SUMMARY_NAME, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[*rows[0], "reviewed_by"])
        w.writeheader()
        w.writerows({**r, "reviewed_by": f"JD-{r['case']}"} for r in rows)
    again = predict_cohort(model, tmp_path / "in", out, **OPTIONS)  # before: refused, advising --overwrite
    assert again.skipped == 2
    assert [(r["case"], r["reviewed_by"]) for r in _rows(out / SUMMARY_NAME)] == [("a", "JD-a"), ("b", "JD-b")]
    redo = predict_cohort(model, tmp_path / "in", out, overwrite=True, **OPTIONS)
    assert redo.done == 2 and [r["reviewed_by"] for r in _rows(out / SUMMARY_NAME)] == ["JD-a", "JD-b"]


def test_following_the_advice_for_a_foreign_summary_never_loses_a_corrected_mask(tmp_path, tiny_checkpoint,
                                                                                  capsys):
    model = tiny_checkpoint(dims=2)
    _tiffs(tmp_path / "in", ["n1", "n2"])
    out = tmp_path / "out"
    assert main(_cli(tmp_path / "in", "--model", model, "--out", out)) == 0
    corrected = np.ones((32, 32), np.uint8)
    tifffile.imwrite(out / "n1_mask.tif", corrected)  # a hand correction
    mine = "patient,notes\nP1,my notes\n"
    (out / SUMMARY_NAME).write_text(mine)
    capsys.readouterr()
    assert main(_cli(tmp_path / "in", "--model", model, "--out", out)) != 0
    err = capsys.readouterr().err
    assert "--summary" in err and str(out / SUMMARY_NAME) in err and (out / SUMMARY_NAME).read_text() == mine

    # the advice: --summary NAME (a CLI option now); the user's table and mask stay as they are
    assert main(_cli(tmp_path / "in", "--model", model, "--out", out, "--summary", "batch.csv")) == 0
    assert [r["status"] for r in _rows(out / "batch.csv")] == ["skipped", "skipped"]
    assert (out / SUMMARY_NAME).read_text() == mine
    np.testing.assert_array_equal(tifffile.imread(out / "n1_mask.tif"), corrected)

    # --overwrite redoes every case, but the corrected mask and the user's table are kept, and it says so
    assert main(_cli(tmp_path / "in", "--model", model, "--out", out, "--overwrite")) == 0
    said = capsys.readouterr()
    np.testing.assert_array_equal(tifffile.imread(out / "edited_masks" / "n1_mask.tif"), corrected)
    assert not (out / "edited_masks" / "n2_mask.tif").exists()  # an untouched mask is simply replaced
    assert "edited_masks/n1_mask.tif" in said.err and "cohort_summary.yours.csv" in said.out
    assert (out / "cohort_summary.yours.csv").read_text() == mine
    assert "edited_masks/n1_mask.tif" in {r["case"]: r for r in _rows(out / SUMMARY_NAME)}["n1"]["warnings"]
    # the kept mask is no input of a later run over the folder, nor of one into it
    assert [p.name for p in collect_inputs(out)] == []


def test_overwrite_of_a_single_input_keeps_the_corrected_mask(tmp_path, tiny_checkpoint, capsys):
    model = tiny_checkpoint(dims=2)
    (src,) = _tiffs(tmp_path / "in", ["slide"])
    out = tmp_path / "out"
    args = _cli(src, "--model", model, "--out", out)
    assert main(args) == 0
    tifffile.imwrite(out / "slide_mask.tif", np.ones((32, 32), np.uint8))
    assert main(args + ["--overwrite"]) == 0
    assert "edited_masks/slide_mask.tif" in capsys.readouterr().err
    assert tifffile.imread(out / "edited_masks" / "slide_mask.tif").min() == 1
    # corrected again and overwritten again: the earlier kept version is not replaced either
    tifffile.imwrite(out / "slide_mask.tif", np.full((32, 32), 2, np.uint8))
    assert main(args + ["--overwrite"]) == 0
    assert tifffile.imread(out / "edited_masks" / "slide_mask.tif").min() == 1
    assert tifffile.imread(out / "edited_masks" / "slide_mask_2.tif").min() == 2
    assert main(args + ["--overwrite"]) == 0  # untouched since: nothing more kept
    assert sorted(p.name for p in (out / "edited_masks").iterdir()) == ["slide_mask.tif", "slide_mask_2.tif"]


# 2. a DICOM series predicted into its own folder -------------------------------------------------------
def _series(folder: Path, n: int = 16, size: int = 32) -> Path:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True)
    series, rng = generate_uid(), np.random.default_rng(1)
    for k in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"  # MR
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset("x.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.SeriesInstanceUID, ds.InstanceNumber = "MR", series, k + 1
        ds.ImageOrientationPatient, ds.ImagePositionPatient = [1, 0, 0, 0, 1, 0], [0.0, 0.0, 2.0 * k]
        ds.PixelSpacing, ds.SliceThickness = [1.0, 1.0], 2.0
        ds.Rows = ds.Columns = size
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.PixelData = rng.integers(0, 1000, (size, size)).astype(np.uint16).tobytes()
        ds.save_as(str(folder / f"IM{k:04d}.dcm"), enforce_file_format=True)
    return folder


@pytest.mark.parametrize("cohort", [False, True])
def test_a_dicom_series_predicted_into_its_own_folder_gets_no_link_to_itself(tmp_path, tiny_checkpoint, cohort):
    model = tiny_checkpoint(dims=3)
    series = _series(tmp_path / "scan")
    if cohort:
        predict_cohort(model, [series], series, summary=None, **dict(OPTIONS, tile=(16, 32, 32)))
    else:
        assert main(["predict", str(series), "--model", str(model), "--out", str(series), "--device", "cpu",
                     "--tile", "16,32,32"]) == 0
    assert not (series / "scan_image").is_symlink() and not (series / "scan_image").exists()
    record = json.loads((series / "scan_predict.json").read_text())
    assert record["input"] == str(series.resolve()) and record["input_reference"] is None
    assert (series / "scan_mask.nii.gz").is_file()


# 3. a recursive glob whose tree holds --out ------------------------------------------------------------
def test_a_recursive_glob_leaves_out_the_outputs_of_earlier_runs(tmp_path, tiny_checkpoint, capsys, monkeypatch):
    model = tiny_checkpoint(dims=2)
    _tiffs(tmp_path / "r6" / "a", ["s1"])
    monkeypatch.chdir(tmp_path)
    for _ in range(3):  # before: 1, then 3, then 7 cases (its own masks and probabilities)
        assert main(_cli("r6/**/*.tif", "--model", model, "--out", "r6/out")) == 0
        assert "1 cases:" in capsys.readouterr().out
    # outputs of a run into another folder of the tree: named by its records, found by the glob
    assert main(_cli("r6/a/s1.tif", "--model", model, "--out", "r6/b")) == 0
    tifffile.imwrite("r6/a/s1_mask.tif", np.zeros((32, 32), np.uint8))  # the user's reference beside its image
    assert collect_inputs("r6/**/*.tif", exclude="r6/out") == [Path("r6/a/s1.tif")]


# 4. channels first without axes metadata ---------------------------------------------------------------
def test_planes_along_an_unnamed_first_axis_get_a_note_and_channel_picks_one(tmp_path, tiny_checkpoint, capsys):
    model = tiny_checkpoint(dims=2)
    tmp_path.joinpath("in").mkdir()
    rng = np.random.default_rng(0)  # (two textured planes: constant ones are a label map, warned as such now)
    planes = np.stack([rng.integers(0, 300, (32, 32)), rng.integers(200, 800, (32, 32))]).astype(np.uint16)
    tifffile.imwrite(tmp_path / "in" / "two.tif", planes)  # reads back with axes QYX
    summary = predict_cohort(model, tmp_path / "in", tmp_path / "out", **OPTIONS)
    (note,) = summary.cases[0].warnings
    assert "2 planes along an unnamed first axis" in note and "--channel K" in note
    assert "--channel K" in _rows(tmp_path / "out" / SUMMARY_NAME)[0]["warnings"]
    assert tifffile.imread(tmp_path / "out" / "two_mask.tif").shape == (2, 32, 32)  # not refused: a z-stack

    assert main(_cli(tmp_path / "in" / "two.tif", "--model", model, "--out", tmp_path / "one", "--channel", "1")) == 0
    assert "plane 1" in capsys.readouterr().err
    assert tifffile.imread(tmp_path / "one" / "two_mask.tif").shape == (32, 32)
    assert main(_cli(tmp_path / "in" / "two.tif", "--model", model, "--out", tmp_path / "x", "--channel", "2")) == 1
    assert "--channel is 0 to 1" in capsys.readouterr().err


# 5. skipped entries, CSV paths, names too long ---------------------------------------------------------
def test_a_folders_skipped_entries_get_one_line(tmp_path, tiny_checkpoint):
    model = tiny_checkpoint(dims=2)
    _tiffs(tmp_path / "in", ["a"])
    _tiffs(tmp_path / "in" / "sub", ["b"])
    for name in ("notes.txt", "list.txt", "readme.md"):
        (tmp_path / "in" / name).write_text("x")
    summary = predict_cohort(model, tmp_path / "in", tmp_path / "in" / "out", **OPTIONS)
    assert [c.case for c in summary.cases] == ["a"]
    assert "skipped 3 files of other types and 1 folder that is not a DICOM series" in summary.describe()
    assert "**/*.tif" in summary.describe()  # how to reach the nested image
    again = predict_cohort(model, tmp_path / "in", tmp_path / "in" / "out", **OPTIONS)
    assert "1 folder" in again.describe()  # --out inside the folder is not counted
    (tmp_path / "in" / "sub2").mkdir()
    (tmp_path / "in" / "sub2" / "x.txt").write_text("x")
    assert "3 folders that are not a DICOM series" in predict_cohort(model, tmp_path / "in", tmp_path / "in" / "o2",
                                                                      **OPTIONS).describe()


def test_a_csv_path_relative_to_the_working_directory_says_how_csv_paths_are_read(tmp_path, tiny_checkpoint,
                                                                                   monkeypatch):
    model = tiny_checkpoint(dims=2)
    _tiffs(tmp_path / "data", ["nuc"])
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "c.csv").write_text("path\ndata/nuc.tif\n")
    monkeypatch.chdir(tmp_path)
    summary = predict_cohort(model, "lists/c.csv", "out", **OPTIONS)
    error = summary.cases[0].error
    assert summary.failed == 1 and "relative to the CSV's own folder" in error and "../data/nuc.tif" in error


def test_an_input_name_too_long_for_the_output_names_is_named_with_what_to_do(tmp_path, tiny_checkpoint, capsys):
    model = tiny_checkpoint(dims=2)
    (src,) = _tiffs(tmp_path / "in", ["x" * 240])
    assert main(_cli(src, "--model", model, "--out", tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert "unexpected" not in err and "too long" in err and "shorter name" in err and src.name in err
    summary = predict_cohort(model, tmp_path / "in", tmp_path / "out2", **OPTIONS)
    assert summary.failed == 1 and "shorter name" in summary.cases[0].error


def test_unnamed_planes_only_for_a_2d_model_and_short_axes(tmp_path):
    from napari_attnseg.cohort.inputs import pick_channel, read_input

    tifffile.imwrite(tmp_path / "five.tif", np.zeros((5, 8, 8), np.uint16))
    tifffile.imwrite(tmp_path / "two.tif", np.zeros((2, 8, 8), np.uint16))
    assert not pick_channel(read_input(tmp_path / "five.tif"), None, 1, "five.tif", dims=2).meta.get("note")
    assert not pick_channel(read_input(tmp_path / "two.tif"), None, 1, "two.tif", dims=3).meta.get("note")
    with pytest.raises(InputError, match="no channel axis"):
        pick_channel(read_input(tmp_path / "two.tif"), 1, 1, "two.tif", dims=3)
