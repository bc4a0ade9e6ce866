"""The cohort summary CSV across runs into one folder: an earlier run's rows are never lost silently."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_attnseg.cli import main
from napari_attnseg.cohort import SUMMARY_NAME, predict_cohort
from napari_attnseg.errors import InputError

OPTIONS = dict(device="cpu", precision="fp32", tile=(16, 32, 32), threads=1, prefetch=0)


def _volumes(folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for name in names:
        p = folder / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(rng.normal(0, 1, (32, 32, 12)).astype(np.float32), np.diag([0.8, 0.8, 2.0, 1])), p)
        paths.append(p)
    return paths


def _rows(out: Path) -> list[dict]:
    with open(out / SUMMARY_NAME, newline="") as f:
        return list(csv.DictReader(f))


def test_a_second_run_into_the_folder_keeps_the_earlier_runs_rows_and_replaces_only_its_cases(
        tmp_path, tiny_checkpoint, capsys):
    """Two batches of one study predicted into one folder: the second summary held only the second
    batch, and the first batch's rows (times, failures) were gone without a word."""
    model = tiny_checkpoint(dims=3)
    first = _volumes(tmp_path / "batch1", ["a", "b"])
    (tmp_path / "batch1" / "bad.nii.gz").write_bytes(b"not a nifti")
    second = _volumes(tmp_path / "batch2", ["c"])
    out = tmp_path / "out"

    one = predict_cohort(model, tmp_path / "batch1", out, **OPTIONS)
    assert [c.status for c in one.cases] == ["done", "done", "failed"]
    earlier = {r["case"]: r for r in _rows(out)}
    assert all(r["run"] for r in earlier.values())  # when the row was written

    two = predict_cohort(model, [second[0], first[1]], out, **OPTIONS)  # a new case and one finished before
    assert [c.status for c in two.cases] == ["done", "skipped"]
    assert "keeps 2 cases of earlier runs" in two.describe()
    rows = _rows(out)
    assert [r["case"] for r in rows] == ["a", "b", "bad", "c"]  # earlier order kept, new cases after
    by_case = {r["case"]: r for r in rows}
    assert by_case["a"] == earlier["a"] and by_case["bad"] == earlier["bad"]  # not in this run: kept as they were
    assert by_case["bad"]["status"] == "failed" and "bad.nii.gz" in by_case["bad"]["error"]
    assert by_case["b"]["status"] == "skipped" and by_case["c"]["status"] == "done"  # this run's word on its cases
    assert by_case["b"]["run"] == by_case["c"]["run"]

    # the CLI says so
    assert main(["predict", str(tmp_path / "batch2"), "--model", str(model), "--out", str(out), "--device", "cpu",
                 "--precision", "fp32", "--tile", "16,32,32"]) == 0
    said = capsys.readouterr().out
    assert "keeps 3 cases of earlier runs" in said and str(out / SUMMARY_NAME) in said
    assert [r["case"] for r in _rows(out)] == ["a", "b", "bad", "c"]


def test_a_file_of_the_summarys_name_that_this_command_did_not_write_is_refused_before_any_case(
        tmp_path, tiny_checkpoint, monkeypatch, capsys):
    import napari_attnseg.cohort.cases as cohort_cases

    model = tiny_checkpoint(dims=3)
    _volumes(tmp_path / "in", ["a"])
    out = tmp_path / "out"
    out.mkdir()
    mine = "case,reader,grade\na,JS,2\n"  # the user's own table, under the summary's name
    (out / SUMMARY_NAME).write_text(mine)
    read = []
    real = cohort_cases._read_case
    monkeypatch.setattr(cohort_cases, "_read_case", lambda src, *rest: read.append(src) or real(src, *rest))
    with pytest.raises(InputError, match=f"{SUMMARY_NAME}.*--overwrite"):
        predict_cohort(model, tmp_path / "in", out, **OPTIONS)
    assert read == [] and (out / SUMMARY_NAME).read_text() == mine

    code = main(["predict", str(tmp_path / "in"), "--model", str(model), "--out", str(out), "--device", "cpu",
                 "--tile", "16,32,32"])
    assert code != 0 and "--overwrite" in capsys.readouterr().err and (out / SUMMARY_NAME).read_text() == mine

    # another summary name leaves it alone; --overwrite replaces it and says so
    other = predict_cohort(model, tmp_path / "in", out, summary="batch_summary.csv", **OPTIONS)
    assert other.csv == out / "batch_summary.csv" and (out / SUMMARY_NAME).read_text() == mine
    forced = predict_cohort(model, tmp_path / "in", out, overwrite=True, **OPTIONS)
    assert "replaced" in forced.describe() and [r["case"] for r in _rows(out)] == ["a"]


def test_a_summary_of_the_earlier_version_without_the_run_column_is_merged(tmp_path, tiny_checkpoint):
    model = tiny_checkpoint(dims=3)
    _volumes(tmp_path / "in", ["a"])
    out = tmp_path / "out"
    out.mkdir()
    old = ("case,status,seconds,voxels_per_s,wait_s,warnings,error,input,worker\n"
           "z,done,1.000,1000,0.000,,,/scans/z.nii.gz,\n")
    (out / SUMMARY_NAME).write_text(old)
    predict_cohort(model, tmp_path / "in", out, **OPTIONS)
    rows = _rows(out)
    assert [(r["case"], r["status"], r["run"]) for r in rows][0] == ("z", "done", "")
    assert rows[1]["case"] == "a" and rows[1]["run"]


def test_a_summary_file_replaced_during_the_run_is_left_and_this_summary_goes_beside_it(tmp_path):
    from napari_attnseg.cohort import CaseResult, CohortSummary
    from napari_attnseg.cohort.cases import _write_summary

    path = tmp_path / SUMMARY_NAME
    path.write_text("my;own;table\n")
    summary = CohortSummary(cases=[CaseResult(case="a", input="a.tif", status="done")], wall_s=1.0, slots=1)
    written = _write_summary(path, summary, run="2024-01-01T00:00:00+00:00")
    assert written == tmp_path / "cohort_summary.1.csv" and path.read_text() == "my;own;table\n"
    assert "cohort_summary.1.csv" in summary.describe() and _rows_of(written)[0]["case"] == "a"


def _rows_of(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
