"""`attnseg predict` cohort mode over a PACS tree whose series folders share names across patients
(PAT001/ST001/SE002 and PAT002/ST001/SE002): both run into one --out, named by the shortest tail of their paths that
tells them apart (PAT001_ST001_SE002_mask.nii.gz), with distinct summary rows, resume and --overwrite per case, and
the same outputs on Dask. Series are written with pydicom from a crop of the radiomics lung CT."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from test_audit_dicom_pacs import axial
from test_dicom import lung_crop

from napari_attnseg.cli import main
from napari_attnseg.cohort import predict_cohort

CLI = ["--model", "nuclei-2d", "--device", "cpu", "--precision", "fp32"]
OPTIONS = dict(device="cpu", precision="fp32", threads=1)
NAMES = ("PAT001_ST001_SE002", "PAT002_ST001_SE002", "SE003")


@pytest.fixture(scope="module")
def lung():
    return lung_crop()


def _pacs(root: Path, lung) -> Path:
    """PACS/PAT001/ST001/SE002, PACS/PAT002/ST001/{SE002, SE003}: two series folders of one name, no DICOMDIR."""
    pacs = root / "PACS"
    axial(lung, pacs / "PAT001" / "ST001" / "SE002", series="1.2.3")
    axial(lung, pacs / "PAT002" / "ST001" / "SE002", series="1.2.5")
    axial(lung, pacs / "PAT002" / "ST001" / "SE003", series="1.2.6")
    return pacs


def _rows(out: Path) -> dict[str, dict]:
    with open(out / "cohort_summary.csv", newline="", encoding="utf-8") as f:
        return {r["case"]: r for r in csv.DictReader(f)}


def _mask(out: Path, name: str) -> np.ndarray:
    return np.asarray(nib.load(out / f"{name}_mask.nii.gz").dataobj)


def test_series_folders_of_one_name_under_two_patients_run_into_one_out_named_by_their_folders(
        tmp_path, lung, capsys):
    """Was: the second SE002 failed ('has the same name as ...: run each patient's or study's folder into its own
    --out'), so one --out held one patient's SE002 and the summary one SE002 row."""
    pacs, out = _pacs(tmp_path, lung), tmp_path / "out"
    assert main(["predict", f"{pacs}/**/", *CLI, "--out", str(out)]) == 0
    assert "same name" not in capsys.readouterr().err
    for name in NAMES:
        record = json.loads((out / f"{name}_predict.json").read_text())
        assert record["mask"] == f"{name}_mask.nii.gz" and all(n.startswith(f"{name}_") for n in record["outputs"])
        assert (out / f"{name}_image").is_symlink()
    inputs = {n: json.loads((out / f"{n}_predict.json").read_text())["input"] for n in NAMES}
    assert inputs == {NAMES[0]: str(pacs / "PAT001/ST001/SE002"), NAMES[1]: str(pacs / "PAT002/ST001/SE002"),
                      NAMES[2]: str(pacs / "PAT002/ST001/SE003")}
    assert not list(out.glob("SE002_*")) and not list(out.glob(".*partial"))
    rows = _rows(out)
    assert {k: r["status"] for k, r in rows.items()} == dict.fromkeys(NAMES, "done")
    assert Path(rows[NAMES[0]]["input"]).parts[-3] == "PAT001" and Path(rows[NAMES[1]]["input"]).parts[-3] == "PAT002"

    # the same command again: both finished cases skipped, nothing rewritten
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*_mask.nii.gz")}
    assert main(["predict", f"{pacs}/**/", *CLI, "--out", str(out)]) == 0
    assert {k: r["status"] for k, r in _rows(out).items()} == dict.fromkeys(NAMES, "skipped")
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*_mask.nii.gz")} == stamps

    # a corrected mask of one of them: --overwrite redoes both and keeps that one, under its own name
    image = nib.load(out / f"{NAMES[1]}_mask.nii.gz")
    edited = np.zeros(image.shape, np.uint8)
    nib.save(nib.Nifti1Image(edited, image.affine), out / f"{NAMES[1]}_mask.nii.gz")
    assert main(["predict", f"{pacs}/**/", *CLI, "--out", str(out), "--overwrite"]) == 0
    assert {k: r["status"] for k, r in _rows(out).items()} == dict.fromkeys(NAMES, "done")
    assert np.array_equal(_mask(out / "edited_masks", NAMES[1]), edited)
    assert [p.name for p in (out / "edited_masks").iterdir()] == [f"{NAMES[1]}_mask.nii.gz"]
    assert f"{NAMES[1]}: warning: its mask had been changed" in capsys.readouterr().err


def test_a_killed_run_of_a_renamed_series_is_redone_and_its_neighbour_skipped(tmp_path, lung, tiny_checkpoint):
    """The half-written case (marker, no record) is found under its new name, not under the series folder's."""
    pacs, out = _pacs(tmp_path, lung), tmp_path / "out"
    model = tiny_checkpoint(dims=2)
    predict_cohort(model, f"{pacs}/**/", out, **OPTIONS)
    (out / f"{NAMES[0]}_predict.json").unlink()
    (out / f".{NAMES[0]}_predict.partial").write_text("{}")
    summary = predict_cohort(model, f"{pacs}/**/", out, **OPTIONS)
    assert [(c.case, c.status) for c in summary.cases] == [(NAMES[0], "done"), (NAMES[1], "skipped"),
                                                          (NAMES[2], "skipped")]
    assert not (out / f".{NAMES[0]}_predict.partial").exists()


def test_a_single_series_keeps_its_plain_name(tmp_path, lung):
    pacs, out = _pacs(tmp_path, lung), tmp_path / "one"
    assert main(["predict", str(pacs / "PAT001" / "ST001" / "SE002"), *CLI, "--out", str(out)]) == 0
    assert (out / "SE002_mask.nii.gz").is_file() and (out / "SE002_predict.json").is_file()


def test_case_names_take_the_shortest_tail_that_tells_the_series_apart(tmp_path):
    from napari_attnseg.cohort.outputs import case_names

    for folder in ("P1/ST001/SE002", "P1/ST002/SE002", "P2/ST001/SE002", "P3/ST009/SE004"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "y").mkdir()
    (tmp_path / "y" / "scan.nii.gz").write_bytes(b"")
    series = [tmp_path / f for f in ("P1/ST001/SE002", "P1/ST002/SE002", "P3/ST009/SE004")]
    assert case_names(series) == ["ST001_SE002", "ST002_SE002", "SE004"]
    series.insert(2, tmp_path / "P2/ST001/SE002")
    assert case_names(series) == ["P1_ST001_SE002", "P1_ST002_SE002", "P2_ST001_SE002", "SE004"]
    # files keep their names: two of one name still clash (the second fails, as documented)
    assert case_names([tmp_path / "y" / "scan.nii.gz", tmp_path / "z" / "scan.nii.gz"]) == ["scan", "scan"]


def test_dask_writes_the_same_files_under_the_same_names(tmp_path, lung, tiny_checkpoint):
    distributed = pytest.importorskip("distributed")
    pacs = _pacs(tmp_path, lung)
    model = tiny_checkpoint(dims=2)
    serial = predict_cohort(model, f"{pacs}/**/", tmp_path / "serial", **OPTIONS)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None,
                                  worker_class=distributed.Nanny) as lc, distributed.Client(lc) as client:
        dask = predict_cohort(model, f"{pacs}/**/", tmp_path / "dask", client=client, **OPTIONS)
    assert [(c.case, c.status) for c in dask.cases] == [(c.case, c.status) for c in serial.cases] == [
        (n, "done") for n in NAMES]
    for name in NAMES:
        assert np.array_equal(_mask(tmp_path / "serial", name), _mask(tmp_path / "dask", name))


def test_another_patients_results_of_the_same_name_are_never_replaced(tmp_path, lung):
    """PAT002's series run into an --out, then PAT001's (each alone, so both are plain 'SE002'): PAT001's SE002
    replaced PAT002's outputs without a word (another folder's case of that name counted as a new input); it is now
    refused, with --overwrite too, and PAT002's results stay as they were."""
    pacs, out = _pacs(tmp_path, lung), tmp_path / "out2"
    assert main(["predict", f"{pacs}/PAT002/**/", *CLI, "--out", str(out)]) == 0
    theirs = (out / "SE002_mask.nii.gz").read_bytes()
    for extra in ([], ["--overwrite"]):
        assert main(["predict", f"{pacs}/PAT001/**/", *CLI, "--out", str(out), *extra]) == 1
        row = _rows(out)["SE002"]
        assert row["status"] == "failed" and "PAT002" in row["error"] and "never replaced" in row["error"], row
        assert (out / "SE002_mask.nii.gz").read_bytes() == theirs
        assert json.loads((out / "SE002_predict.json").read_text())["input"] == str(pacs / "PAT002/ST001/SE002")


def test_two_series_folders_of_one_name_given_plainly_are_told_how_to_run_them(tmp_path, lung, capsys):
    """`attnseg predict PAT001/ST001/SE002 PAT002/ST001/SE002 --out x` (plain mode) said only "Rename one": the
    cohort mode (--summary) runs them, named by their folders."""
    pacs, out = _pacs(tmp_path, lung), tmp_path / "o"
    a, b = str(pacs / "PAT001/ST001/SE002"), str(pacs / "PAT002/ST001/SE002")
    assert main(["predict", a, b, *CLI, "--out", str(out)]) == 1
    assert "--summary" in capsys.readouterr().err
    assert main(["predict", a, b, *CLI, "--out", str(out), "--summary", "s.csv"]) == 0
    assert {p.name for p in out.glob("*_mask.nii.gz")} == {f"{n}_mask.nii.gz" for n in NAMES[:2]}
