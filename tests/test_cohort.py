"""Cohort inference: inputs, serial vs a 2-process Dask LocalCluster, a failing case, resume, CLI."""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_attnseg.cli import main
from napari_attnseg.cohort import collect_inputs, predict_cohort
from napari_attnseg.results import case_state, partial_marker, record_path

OPTIONS = dict(device="cpu", precision="fp32", tile=(16, 32, 32), threads=1)


def _volumes(folder: Path, n: int, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        shape = (40 + 4 * i, 36, 12)  # NIfTI (i, j, k): cases of different sizes
        p = folder / f"case{i}.nii.gz"
        nib.save(nib.Nifti1Image(rng.normal(0, 1, shape).astype(np.float32), np.diag([0.8, 0.8, 2.0, 1])), p)
        paths.append(p)
    return paths


def _arrays(out: Path, case: str) -> tuple[np.ndarray, np.ndarray]:
    return (np.asarray(nib.load(out / f"{case}_mask.nii.gz").dataobj),
            np.asarray(nib.load(out / f"{case}_prob.nii.gz").dataobj))


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None,
                                  worker_class=distributed.Nanny) as lc, distributed.Client(lc) as client:
        yield client


def _crash_once(marker: str):
    """Installed on every worker: the first read of a case named 'crash*' kills its worker process."""
    import napari_attnseg.cohort.cases as cohort

    original = cohort._read_case

    def read(src, *rest):
        if "crash" in os.path.basename(src) and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)
        return original(src, *rest)

    cohort._read_case = read


def test_a_2_process_cluster_gives_the_serial_results_survives_a_lost_worker_and_reports_a_corrupt_case(
        tmp_path, tiny_checkpoint, cluster):
    model = tiny_checkpoint(dims=3)
    cases = _volumes(tmp_path / "in", 4)
    (tmp_path / "in" / "corrupt.nii.gz").write_bytes(b"not a nifti")
    cases[3].rename(tmp_path / "in" / "crash3.nii.gz")

    serial = predict_cohort(model, tmp_path / "in", tmp_path / "serial", **OPTIONS)
    assert [c.status for c in serial.cases] == ["done", "done", "done", "failed", "done"]
    assert serial.cases[3].case == "corrupt" and "corrupt.nii.gz" in serial.cases[3].error

    cluster.run(_crash_once, str(tmp_path / "crashed"))
    dask = predict_cohort(model, tmp_path / "in", tmp_path / "dask", client=cluster, **OPTIONS)
    assert (tmp_path / "crashed").exists()  # a worker died on crash3 and the case ran again elsewhere
    assert [c.status for c in dask.cases] == [c.status for c in serial.cases]
    assert "corrupt.nii.gz" in dask.cases[3].error
    for c in serial.cases:
        if c.status == "done":
            for a, b in zip(_arrays(tmp_path / "serial", c.case), _arrays(tmp_path / "dask", c.case)):
                np.testing.assert_array_equal(a, b)
    # every worker loaded the model once and kept it
    loaded = cluster.run(lambda: len(__import__("napari_attnseg.cohort.workers", fromlist=["_MODELS"])._MODELS))
    assert set(loaded.values()) <= {0, 1} and sum(loaded.values()) >= 1

    rows = list(csv.DictReader(open(tmp_path / "dask" / "cohort_summary.csv")))
    assert [r["case"] for r in rows] == ["case0", "case1", "case2", "corrupt", "crash3"]
    assert {"case", "status", "seconds", "voxels_per_s", "warnings"} <= set(rows[0])
    assert rows[3]["status"] == "failed" and float(rows[0]["voxels_per_s"]) > 0

    # the CLI on the same scheduler: everything finished is skipped
    code = main(["predict", str(tmp_path / "in"), "--model", str(model), "--out", str(tmp_path / "dask"),
                 "--device", "cpu", "--precision", "fp32", "--tile", "16,32,32",
                 "--dask", cluster.scheduler.address])
    assert code == 1  # the corrupt case still fails
    rows = list(csv.DictReader(open(tmp_path / "dask" / "cohort_summary.csv")))
    assert [r["status"] for r in rows] == ["skipped", "skipped", "skipped", "failed", "skipped"]


def test_resume_skips_finished_cases_redoes_other_models_and_half_written_ones(tmp_path, tiny_checkpoint,
                                                                                monkeypatch):
    model = tiny_checkpoint(dims=3)
    _volumes(tmp_path / "in", 3)
    out = tmp_path / "out"
    first = predict_cohort(model, tmp_path / "in", out, prefetch=1, **OPTIONS)
    assert first.done == 3 and first.failed == 0
    stamp = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    again = predict_cohort(model, tmp_path / "in", out, **OPTIONS)
    assert again.skipped == 3 and again.done == 0
    assert all(p.stat().st_mtime_ns == stamp[p.name] for p in out.iterdir() if p.name in stamp
               and p.name != "cohort_summary.csv")

    # other settings or other weights: the case is not finished for this request
    assert case_state(out, tmp_path / "in" / "case0.nii.gz", json.loads(record_path(out, Path("case0")).read_text())
                      ["model_weights_sha256"], {"tile": [32, 32, 32]}) == "stale"
    other = tiny_checkpoint(dims=3, arch="unet", name="other")
    redo = predict_cohort(other, [tmp_path / "in" / "case0.nii.gz", tmp_path / "in" / "case1.nii.gz"], out,
                          **OPTIONS)
    assert redo.done == 2
    assert json.loads((out / "case0_predict.json").read_text())["model"] == "other-3d"

    # a run killed while writing case2 (after its mask, before its probability): not finished
    import napari_attnseg.results as results

    real = results.write_image

    def dying(path, *a, **k):
        if Path(path).name == "case2_prob.nii.gz":
            raise KeyboardInterrupt  # the process is killed here
        return real(path, *a, **k)

    monkeypatch.setattr(results, "write_image", dying)
    with pytest.raises(KeyboardInterrupt):
        predict_cohort(model, [tmp_path / "in" / "case2.nii.gz"], out, overwrite=True, prefetch=0, **OPTIONS)
    monkeypatch.setattr(results, "write_image", real)
    assert (out / "case2_mask.nii.gz").exists() and not (out / "case2_predict.json").exists()
    assert partial_marker(out, Path("case2")).exists()
    assert not (out / "case2_prob.nii.gz").exists()
    resumed = predict_cohort(model, tmp_path / "in", out, **OPTIONS)
    assert [c.status for c in resumed.cases] == ["done", "done", "done"]  # 0, 1: other model; 2: half-written
    assert not partial_marker(out, Path("case2")).exists() and (out / "case2_prob.nii.gz").exists()
    assert predict_cohort(model, tmp_path / "in", out, **OPTIONS).skipped == 3

    # a mask changed by hand after the run is never replaced silently, even for another model
    nib.save(nib.Nifti1Image(np.ones((40, 36, 12), np.uint8), np.eye(4)), out / "case0_mask.nii.gz")
    kept = predict_cohort(other, tmp_path / "in", out, **OPTIONS)
    assert kept.cases[0].status == "failed" and "overwrite" in kept.cases[0].error
    assert np.asarray(nib.load(out / "case0_mask.nii.gz").dataobj).min() == 1
    forced = predict_cohort(model, tmp_path / "in", out, overwrite=True, **OPTIONS)
    assert forced.done == 3

    # a scan re-exported under the same name is a new input: redone, not "finished before"
    time.sleep(0.01)
    nib.save(nib.Nifti1Image(np.zeros((44, 36, 12), np.float32), np.diag([0.8, 0.8, 2.0, 1])),
             tmp_path / "in" / "case1.nii.gz")
    assert [c.status for c in predict_cohort(model, tmp_path / "in", out, **OPTIONS).cases] == ["skipped", "done", "skipped"]


def test_inputs_from_a_folder_a_glob_a_csv_and_a_list(tmp_path, tiny_checkpoint):
    paths = _volumes(tmp_path / "scans", 3)
    (tmp_path / "scans" / "notes.txt").write_text("not an image")
    assert collect_inputs(tmp_path / "scans") == paths
    assert collect_inputs(str(tmp_path / "scans" / "case[02].nii.gz")) == [paths[0], paths[2]]
    (tmp_path / "list.csv").write_text("patient,path\np1,scans/case2.nii.gz\np0,scans/case0.nii.gz\n\n")
    assert collect_inputs(tmp_path / "list.csv") == [tmp_path / "scans" / "case2.nii.gz",
                                                      tmp_path / "scans" / "case0.nii.gz"]
    assert collect_inputs([paths[1], str(tmp_path / "scans" / "*.nii.gz")]) == [paths[1], paths[0], paths[2]]

    # outputs written into the input folder are not inputs of the next run
    model = tiny_checkpoint(dims=3)
    assert main(["predict", str(tmp_path / "scans"), "--model", str(model), "--out", str(tmp_path / "scans"),
                 "--device", "cpu", "--tile", "16,32,32"]) == 0
    assert collect_inputs(tmp_path / "scans") == paths
    assert predict_cohort(model, tmp_path / "scans", tmp_path / "scans", summary=None, device="cpu",
                          tile=[16, 32, 32], attention=False, overlap=None, precision="auto", mode=None, tta=False,
                          return_probabilities=True).skipped == 3  # the CLI's request, said in Python


def test_dask_option_errors_name_what_to_write(tmp_path):
    from napari_attnseg.cohort import dask_client
    from napari_attnseg.errors import InputError

    pytest.importorskip("distributed")
    with pytest.raises(InputError, match="--dask=N"):
        with dask_client("scans/"):
            pass
    with pytest.raises(InputError, match="at least one worker"):
        with dask_client("0"):
            pass


def test_an_output_folder_that_cannot_be_written_is_refused_before_any_case(tmp_path, tiny_checkpoint, monkeypatch):
    """A read-only or unreachable --out was found only after every case had been read and computed (three
    times on Dask, with retries); an empty input is refused before --out is even created."""
    import napari_attnseg.cohort.cases as cohort_cases
    from napari_attnseg.errors import InputError

    _volumes(tmp_path / "in", 2)
    (tmp_path / "afile").write_text("x")
    read = []
    monkeypatch.setattr(cohort_cases, "_read_case", lambda src, *rest: read.append(src))
    with pytest.raises(InputError, match="not a folder napari-attnseg can write in"):
        predict_cohort(tiny_checkpoint(dims=3), tmp_path / "in", tmp_path / "afile" / "sub", **OPTIONS)
    assert read == []
    with pytest.raises(InputError, match="No images found in .*nothing"):
        predict_cohort(tiny_checkpoint(dims=3), str(tmp_path / "nothing" / "*.nii.gz"), tmp_path / "o2", **OPTIONS)
    assert not (tmp_path / "o2").exists()


def test_a_run_killed_while_writing_into_its_input_folder_leaves_no_new_input(tmp_path):
    """--out may be the input folder: the outputs a killed run had written for a case (marker, no record)
    are not cases of the next run (its half-written mask was read as a new input and failed)."""
    from napari_attnseg.results import partial_marker

    paths = _volumes(tmp_path / "in", 2)
    partial_marker(tmp_path / "in", paths[0]).write_text("{}")
    nib.save(nib.Nifti1Image(np.zeros((40, 36, 12), np.uint8), np.eye(4)), tmp_path / "in" / "case0_mask.nii.gz")
    assert [p.name for p in collect_inputs(tmp_path / "in")] == ["case0.nii.gz", "case1.nii.gz"]


def test_the_summary_times_exclude_queueing_and_skipped_rows_keep_their_warnings(tmp_path, tiny_checkpoint):
    """A case's seconds are its read + compute + write (waiting for the compute slot while another case
    computes made voxels/s read 2-3x low); a rerun's skipped rows keep the warnings their run recorded."""
    rng = np.random.default_rng(0)
    (tmp_path / "in").mkdir()
    for i in range(3):  # CT-like volumes (air and soft tissue in HU): the model was not trained on CT
        ct = np.full((40, 36, 12), -1000.0, np.float32)
        ct[8:32, 8:28, 2:10] = rng.normal(40, 20, (24, 20, 8))
        nib.save(nib.Nifti1Image(ct, np.diag([0.8, 0.8, 2.0, 1])), tmp_path / "in" / f"ct{i}.nii.gz")
    model = tiny_checkpoint(dims=3)
    first = predict_cohort(model, tmp_path / "in", tmp_path / "out", prefetch=2, **OPTIONS)
    for c in first.cases:
        assert c.status == "done" and abs(c.seconds - (c.read_s + c.compute_s + c.write_s)) < 0.05, c
        assert any("Hounsfield" in w for w in c.warnings)
    again = predict_cohort(model, tmp_path / "in", tmp_path / "out", **OPTIONS)
    assert all(c.status == "skipped" and any("Hounsfield" in w for w in c.warnings) for c in again.cases)


def test_ctrl_c_stops_the_run_without_computing_the_cases_read_ahead(tmp_path, tiny_checkpoint):
    """Ctrl-C (here raised from the progress callback after the first case) stops the case computing and
    computes none of the cases already read ahead (they ran to the end before: 17 s on a real cohort)."""
    _volumes(tmp_path / "in", 5)
    seen = []

    def interrupt(finished, total, case):
        seen.append(case.case)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_cohort(tiny_checkpoint(dims=3), tmp_path / "in", tmp_path / "out", prefetch=2, progress=interrupt,
                       **OPTIONS)
    time.sleep(1.0)  # (before: the threads went on in the background; now the call returns after they stopped)
    masks = sorted(p.name for p in (tmp_path / "out").glob("*_mask.nii.gz"))
    # the reported case, and at most the one computing then if it was already writing; never the read-ahead ones
    assert f"{seen[0]}_mask.nii.gz" in masks and len(masks) <= 2, masks


def test_a_case_that_runs_out_of_memory_fails_alone_with_what_to_try(tmp_path, tiny_checkpoint, monkeypatch):
    """A MemoryError in one case went out of the cohort as an unexpected error; now that case fails with what to
    try, and the others run."""
    import functools

    import napari_attnseg.inference as inference
    from napari_attnseg.data import read_image

    paths = _volumes(tmp_path / "in", 2)
    too_big = tuple(read_image(paths[0]).data.shape)
    real = inference.predict

    @functools.wraps(real)
    def predict(model, image, **kwargs):
        if tuple(image.shape) == too_big:
            raise MemoryError("Unable to allocate 6.0 GiB")
        return real(model, image, **kwargs)

    monkeypatch.setattr(inference, "predict", predict)
    summary = predict_cohort(tiny_checkpoint(dims=3), tmp_path / "in", tmp_path / "out", prefetch=0, **OPTIONS)
    assert sorted(c.status for c in summary.cases) == ["done", "failed"], [vars(c) for c in summary.cases]
    failed = next(c for c in summary.cases if c.status == "failed")
    assert "ran out of memory (Unable to allocate 6.0 GiB)" in failed.error and "--no-prob" in failed.error
