"""Cohort runs into one --out at the same time (a lock per case), and a moved export keeping its names and results.

DICOM trees are built as tests/test_audit_cohort_stable.py builds them (the shared lung CT crop, nuclei-2d, CPU)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_audit_cohort_stable import CLI, OPTIONS, _rows
from test_audit_dicom_pacs import axial
from test_dicom import lung_crop

from napari_attnseg.cohort import predict_cohort
from napari_attnseg.cohort.lock import STALE_S, CaseLock


@pytest.fixture(scope="module")
def lung():
    return lung_crop()


def _masks(out: Path) -> dict[str, bytes]:
    import nibabel as nib

    return {p.name: np.asarray(nib.load(p).dataobj).tobytes() for p in sorted(out.glob("*_mask.nii.gz"))}


def _lock(out: Path, case: str, pid: int, run: str = "other-run", age: float = 0.0) -> Path:
    """The lock file another run (process ``pid`` on this host) holds on ``case``."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f".{case}_predict.lock"
    path.write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "run": run, "since": "earlier",
                                "token": "theirs"}))
    if age:
        os.utime(path, (time.time() - age, time.time() - age))
    return path


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# 1. two runs into one --out ---------------------------------------------------------------------------------------
def test_a_case_another_run_is_computing_is_left_to_it_and_skipped_once_it_finished(tmp_path, lung):
    """Was: nothing locked --out; a second run (another terminal, an overlapping cron job) computed the cases the first
    was computing too. Now it does its other cases, then waits for that one and skips it once the other run wrote it."""
    pacs, out = tmp_path / "PACS", tmp_path / "results"
    axial(lung, pacs / "PAT001" / "ST001" / "SE002", series="1.2.3")
    axial(lung, pacs / "PAT001" / "ST001" / "SE003", series="1.2.4")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # the other run's process
    try:
        lock = _lock(out, "SE003", other.pid)
        stamps = {}

        def the_other_run_finishes(done, total, result):  # meanwhile, the other run writes SE003 and lets it go
            if not stamps:
                lock.unlink()
                predict_cohort("nuclei-2d", pacs / "PAT001" / "ST001" / "SE003", out, summary=None, **OPTIONS)
                stamps.update({p.name: p.stat().st_mtime_ns for p in out.glob("SE003_*")})

        summary = predict_cohort("nuclei-2d", f"{pacs}/**/", out, progress=the_other_run_finishes, **OPTIONS)
    finally:
        other.kill()
        other.wait()
    assert [(c.case, c.status) for c in summary.cases] == [("SE002", "done"), ("SE003", "skipped")]
    assert "computed by another attnseg run" in summary.cases[1].warnings[-1]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("SE003_*")} == stamps  # not computed again
    assert not list(out.glob(".*.lock")) and not list(out.glob(".*.partial"))


def test_a_dead_runs_lock_is_taken_over_and_its_half_written_case_redone(tmp_path, lung):
    """A run killed half-way (its process gone, or its lock untouched for STALE_S: another machine) leaves its lock,
    its marker and a mask without a record: the next run takes the lock over and computes the case."""
    pacs, out = tmp_path / "PACS", tmp_path / "results"
    axial(lung, pacs / "PAT001" / "ST001" / "SE002", series="1.2.3")
    axial(lung, pacs / "PAT001" / "ST001" / "SE003", series="1.2.4")
    _lock(out, "SE002", _dead_pid())
    (out / ".SE002_predict.partial").write_text(json.dumps({"input": str(pacs / "PAT001/ST001/SE002")}))
    (out / "SE002_mask.nii.gz").write_bytes(b"half")
    _lock(out, "SE003", os.getpid(), age=STALE_S + 60)  # alive, but its lock is not kept fresh: a frozen machine's
    summary = predict_cohort("nuclei-2d", f"{pacs}/**/", out, **OPTIONS)
    assert [(c.case, c.status) for c in summary.cases] == [("SE002", "done"), ("SE003", "done")]
    assert not list(out.glob(".*.lock")) and not list(out.glob(".*.partial"))
    assert predict_cohort("nuclei-2d", f"{pacs}/**/", out, **OPTIONS).skipped == 2


def test_a_lock_is_taken_by_one_run_only_and_released_by_its_holder_only(tmp_path):
    path = tmp_path / ".SE002_predict.lock"
    first, second = CaseLock(path, "run-a"), CaseLock(path, "run-b")
    assert first.try_acquire() is None
    holder = second.try_acquire()
    assert holder is not None and holder.pid == os.getpid() and holder.run == "run-a"
    assert str(os.getpid()) in holder.describe()
    second.release()  # (it holds nothing: the lock stays)
    assert path.exists()
    again = CaseLock(path, "run-a")  # the same run (a Dask task run again after its worker died): its own
    assert again.try_acquire() is None
    first.release()  # (no longer its token: left to the run that holds it)
    assert path.exists()
    again.release()
    assert not path.exists()


def test_two_runs_at_once_compute_each_case_once_and_as_a_serial_run_does(tmp_path, lung):
    pacs, out, serial = tmp_path / "PACS", tmp_path / "results", tmp_path / "serial"
    for n in range(4):
        axial(lung, pacs / "PAT001" / "ST001" / f"SE00{n + 2}", series=f"1.2.{n + 3}")
    predict_cohort("nuclei-2d", f"{pacs}/**/", serial, **OPTIONS)
    code = "import sys; from napari_attnseg.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = [sys.executable, "-c", code, "predict", f"{pacs}/**/", *CLI, "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    runs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
            for _ in range(2)]
    logs = [r.communicate(timeout=600)[0] for r in runs]
    assert [r.returncode for r in runs] == [0, 0], logs
    done = sum(line.split(": ")[1].startswith("done") for log in logs for line in log.splitlines()
               if line.startswith("[") and ": " in line)
    assert done == 4, logs  # each case computed by one of the two runs
    assert _masks(out) == _masks(serial)
    assert sorted(r["case"] for r in _rows(out)) == ["SE002", "SE003", "SE004", "SE005"]
    assert not list(out.glob(".*.lock")) and not list(out.glob(".*.partial"))


# 2. a moved export ------------------------------------------------------------------------------------------------
def test_a_moved_export_keeps_its_names_and_finished_cases(tmp_path, lung):
    """Was: the kept names matched the records' input path only; the export moved (/mnt/pacs -> /data/pacs, the old
    path gone) and a second patient's SE002 arriving, week 1's SE002 became PAT001_ST001_SE002 and was computed again."""
    old, new, out = tmp_path / "mnt" / "PACS", tmp_path / "data" / "PACS", tmp_path / "results"
    axial(lung, old / "PAT001" / "ST001" / "SE002", series="1.2.3")
    axial(lung, old / "PAT001" / "ST001" / "SE003", series="1.2.4")
    predict_cohort("nuclei-2d", f"{old}/**/", out, **OPTIONS)
    record = json.loads((out / "SE002_predict.json").read_text())
    assert record["series_uid"] == "1.2.3" and len(record["images_sha256"]) == 64
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*_mask.nii.gz")}

    new.parent.mkdir(parents=True)
    shutil.move(old, new)
    axial(lung, new / "PAT002" / "ST001" / "SE002", series="1.2.5")  # week 2
    summary = predict_cohort("nuclei-2d", f"{new}/**/", out, **OPTIONS)
    assert [(c.case, c.status) for c in summary.cases] == [
        ("SE002", "skipped"), ("SE003", "skipped"), ("PAT002_ST001_SE002", "done")]
    assert "moved or exported again" in summary.cases[0].warnings[-1]
    assert {k: v for k, v in {p.name: p.stat().st_mtime_ns for p in out.glob("*_mask.nii.gz")}.items()
            if k in stamps} == stamps
    assert not list(out.glob("PAT001_*"))


def test_a_series_exported_again_is_skipped_when_its_images_are_the_same_and_redone_when_not(tmp_path, lung):
    pacs, out = tmp_path / "PACS", tmp_path / "results"
    series = pacs / "PAT001" / "ST001" / "SE002"
    axial(lung, series, series="1.2.3")
    predict_cohort("nuclei-2d", f"{pacs}/**/", out, **OPTIONS)
    sops = {}
    import pydicom

    for f in sorted(series.iterdir()):  # exported again: the same images, new files (other names, times)
        ds = pydicom.dcmread(str(f))
        sops[f.name] = ds
        f.unlink()
    for name, ds in sops.items():
        ds.save_as(str(series / f"{name}.dcm"), enforce_file_format=True)
    os.utime(series, (time.time() + 5, time.time() + 5))
    summary = predict_cohort("nuclei-2d", f"{pacs}/**/", out, **OPTIONS)
    assert [(c.case, c.status) for c in summary.cases] == [("SE002", "skipped")]

    first = sorted(series.iterdir())[0]  # one image changed: another scan, redone
    ds = pydicom.dcmread(str(first))
    ds.PixelData = (np.frombuffer(ds.PixelData, np.int16) + 1).astype(np.int16).tobytes()
    ds.save_as(str(first), enforce_file_format=True)
    os.utime(series, (time.time() + 10, time.time() + 10))
    summary = predict_cohort("nuclei-2d", f"{pacs}/**/", out, **OPTIONS)
    assert [(c.case, c.status) for c in summary.cases] == [("SE002", "done")]
