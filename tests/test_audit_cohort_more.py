"""Two cohort runs into one --out at once (an exclusive takeover of a stale lock, a paused process keeping its lock, the
summary of the run that ends last), and moved inputs (a file of the same bytes at a new path is skipped; the record and
the ``<case>_image`` link follow it). Real runs of the bundled nuclei-2d on crops of the shared nuclei image and lung CT
(DICOM series written as tests/test_audit_cohort_stable.py writes them), CPU."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from test_audit_cohort_lock import _dead_pid
from test_audit_cohort_stable import OPTIONS
from test_audit_dicom_pacs import axial
from test_dicom import lung_crop

from napari_attnseg.cohort import lock as locks
from napari_attnseg.cohort import predict_cohort
from napari_attnseg.cohort.lock import CaseLock, is_stale

NUCLEI = Path("/work/shared/data/nuclei2d/image.tif")


def _crops(folder: Path, names: list[str], size: int = 64) -> list[Path]:
    """Crops of the shared nuclei image, one per name (other places: other images)."""
    if not NUCLEI.exists():
        pytest.skip(f"{NUCLEI} is not here")
    image = np.asarray(tifffile.imread(NUCLEI))
    image = image if image.ndim == 2 else image[..., 0] if image.shape[-1] <= 4 else image[0]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, name in enumerate(names):
        path = folder / f"{name}.tif"
        tifffile.imwrite(path, np.ascontiguousarray(image[k * 8:k * 8 + size, k * 8:k * 8 + size]))
        paths.append(path)
    return paths


def _rows(out: Path) -> dict[str, dict]:
    with open(out / "cohort_summary.csv", newline="", encoding="utf-8") as f:
        return {r["case"]: r for r in csv.DictReader(f)}


def _stale_lock(path: Path, pid: int, token: str = "theirs", host: str | None = None, age: float = 0.0) -> Path:
    path.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(), "run": "gone", "since": "earlier",
                                "token": token}))
    if age:
        os.utime(path, (time.time() - age, time.time() - age))
    return path


def test_an_old_lock_without_a_start_time_whose_number_now_runs_is_judged_by_its_age(tmp_path):
    """A lock an earlier version wrote (no process start time), left by a run that crashed, whose process number now
    belongs to another live process of this host (here: this test's parent), was never taken over: a run waited
    for it forever. Without a start time to tell the processes apart, its age decides, as before."""
    live = os.getppid()
    old = _stale_lock(tmp_path / ".a_predict.lock", live, age=2 * 3600)
    assert is_stale(old, locks._read(old))
    fresh = _stale_lock(tmp_path / ".b_predict.lock", live)  # (touched now: maybe that very process, still working)
    assert not is_stale(fresh, locks._read(fresh))


# 1. a stale lock is taken over by one run only ---------------------------------------------------------------------
def test_a_stale_lock_found_by_several_runs_at_the_same_instant_is_taken_by_exactly_one(tmp_path):
    """Was: each run checked that the stale lock was unchanged, removed it and created its own; a run checking before
    another's removal then removed that run's new lock and created its own: both computed the case (9 of 60 trials of
    6 runs at once here). Now the takeover is a rename made holding an O_EXCL guard: one winner in every trial."""
    dead = _dead_pid()
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # (threads switch as often as they can: the runs interleave)
    try:
        winners_per_trial = []
        for trial in range(150):
            path = _stale_lock(tmp_path / f".C{trial}_predict.lock", dead)
            barrier, winners = threading.Barrier(6), []

            def contend(k: int, path: Path = path, barrier=barrier, winners=winners) -> None:
                lock = CaseLock(path, f"run-{k}")
                barrier.wait()
                if lock.try_acquire() is None:
                    winners.append(lock)

            threads = [threading.Thread(target=contend, args=(k,)) for k in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            winners_per_trial.append(len(winners))
            assert json.loads(path.read_text())["token"] in [w.token for w in winners]
            for w in winners:
                w.release()
    finally:
        sys.setswitchinterval(interval)
    assert winners_per_trial == [1] * 150
    assert not list(tmp_path.glob(".*.lock")) and not list(tmp_path.glob(".attnseg_predict.guard"))


def test_a_guard_left_by_a_dead_run_does_not_block_a_takeover_and_a_live_ones_defers_it(tmp_path, monkeypatch):
    """A run killed in the milliseconds of a takeover leaves the guard: removed at once when its process (this host) is
    gone; a live run's guard (another host, fresh) makes the takeover wait, then find the case held (run later)."""
    monkeypatch.setattr(locks, "GUARD_WAIT_S", 0.2)
    dead = _dead_pid()
    stale = _stale_lock(tmp_path / ".a_predict.lock", dead)
    guard = _stale_lock(tmp_path / locks.GUARD_NAME, dead, token="dead-guard")
    first = CaseLock(stale, "run-a")
    assert first.try_acquire() is None and not guard.exists()
    first.release()
    _stale_lock(stale, dead)
    _stale_lock(guard, 4242, token="busy-guard", host="another-host")
    held = CaseLock(stale, "run-b").try_acquire()
    assert held is not None and held.token == "theirs"  # (not taken: another run's guard is held)
    guard.unlink()
    assert CaseLock(stale, "run-b").try_acquire() is None


def test_three_runs_at_once_over_stale_locks_compute_each_case_once(tmp_path):
    """The real runner: three runs (threads) start at once into an --out whose two cases hold a dead run's locks;
    each case is computed by one run and skipped by the others, and no lock or guard is left."""
    scans, out = tmp_path / "scans", tmp_path / "out"
    _crops(scans, ["a", "b"])
    out.mkdir()
    dead = _dead_pid()
    for case in ("a", "b"):
        _stale_lock(out / f".{case}_predict.lock", dead)
    barrier, summaries = threading.Barrier(3), []

    def run() -> None:
        barrier.wait()
        summaries.append(predict_cohort("nuclei-2d", scans, out, **OPTIONS))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert len(summaries) == 3 and sum(s.done for s in summaries) == 2
    assert sum(s.skipped for s in summaries) == 4 and not any(s.failed for s in summaries)
    assert {k: r["status"] for k, r in _rows(out).items()} == {"a": "done", "b": "done"}
    assert not list(out.glob(".*.lock")) and not (out / ".attnseg_predict.guard").exists()


# 2. a live process keeps its lock ---------------------------------------------------------------------------------
HOLD = """
import sys, time
from pathlib import Path
from napari_attnseg.cohort.lock import CaseLock
lock = CaseLock(Path(sys.argv[1]), "paused-run")
assert lock.try_acquire() is None
print("held", flush=True)
time.sleep(120)
"""


def test_a_paused_process_of_this_host_keeps_its_lock_however_old_and_loses_it_once_gone(tmp_path):
    """Was: a lock untouched for STALE_S (10 min) was taken over even when its process still ran on this host (paused
    with Ctrl+Z, a suspended laptop or virtual machine): two runs computed the case. Now a live process of this host
    keeps its lock; once that process is gone, the lock is taken over at once."""
    path = tmp_path / ".SE002_predict.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        os.kill(holder.pid, signal.SIGSTOP)  # paused: its heartbeat stops too
        os.utime(path, (time.time() - locks.STALE_S - 3600, time.time() - locks.STALE_S - 3600))
        other = CaseLock(path, "other-run")
        found = other.try_acquire()
        assert found is not None and found.pid == holder.pid and found.run == "paused-run"
        assert not other.held
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert other.try_acquire() is None  # its process gone: taken over
    other.release()
    assert not path.exists()


def test_a_lock_of_another_host_is_judged_by_its_age_and_the_holder_keeps_only_its_own_fresh(tmp_path, monkeypatch):
    """Another machine's lock (its process cannot be looked at) is stale once untouched for STALE_S; the holder touches
    its lock every BEAT_S, and stops once another run took it over (it no longer keeps another run's lock fresh)."""
    far = _stale_lock(tmp_path / ".A_predict.lock", 4242, host="another-host", age=30)
    assert not is_stale(far, locks._read(far))
    os.utime(far, (time.time() - locks.STALE_S - 1, time.time() - locks.STALE_S - 1))
    assert is_stale(far, locks._read(far))

    mine = CaseLock(tmp_path / ".B_predict.lock", "run-b", beat=0.05)
    assert mine.try_acquire() is None
    os.utime(mine.path, (time.time() - 100, time.time() - 100))
    time.sleep(0.5)
    assert time.time() - mine.path.stat().st_mtime < 5  # touched
    _stale_lock(mine.path, 4242, token="taken-over", host="another-host", age=100)  # taken over meanwhile
    time.sleep(0.5)
    assert time.time() - mine.path.stat().st_mtime > 90  # not touched any more
    mine.release()
    assert json.loads(mine.path.read_text())["token"] == "taken-over"  # (not its to remove)


def test_a_run_whose_lock_another_machine_took_over_while_it_computed_does_not_write_the_case(tmp_path):
    """A run on another machine took the lock over while this one computed (paused longer than STALE_S, say): this
    run no longer writes the case beside the other's writes; it waits for the lock like any held case, then skips the
    case the other run wrote, or computes it when that run let it go unwritten (here). Was: both wrote it."""
    from napari_attnseg.checkpoint import load_model

    scans, out = tmp_path / "scans", tmp_path / "out"
    _crops(scans, ["a"])
    model = load_model("nuclei-2d", device="cpu")
    seen: dict = {}

    def release_theirs() -> None:  # the other machine's run ends without writing the case
        seen["record_while_theirs"] = (out / "a_predict.json").exists()
        seen["released"] = time.time()
        (out / ".a_predict.lock").unlink()

    def taken_over_during_compute(module, args) -> None:
        if not seen:
            seen["taken"] = True
            _stale_lock(out / ".a_predict.lock", 4242, token="other-machine", host="another-host")
            seen["timer"] = threading.Timer(1.5, release_theirs)
            seen["timer"].start()

    handle = model.register_forward_pre_hook(taken_over_during_compute)
    try:
        summary = predict_cohort(model, scans, out, **OPTIONS)
    finally:
        handle.remove()
    seen["timer"].join(10)
    assert seen["taken"] and seen["record_while_theirs"] is False  # (not written while the other run held it)
    assert [(c.case, c.status) for c in summary.cases] == [("a", "done")]
    assert (out / "a_predict.json").stat().st_mtime >= seen["released"]
    assert not list(out.glob(".*.lock"))


# 3. the summary of the run that ends last --------------------------------------------------------------------------
def test_a_case_another_run_computed_while_this_one_waited_keeps_that_runs_done_row(tmp_path):
    """Was: the run that ended last wrote "skipped" over the other run's "done" row of the case that run computed
    while this one waited for it; describe() counted it as skipped like a case finished last week. Now the summary
    keeps that run's row (done, its run and seconds) and describe() says it was computed by another run."""
    scans, out = tmp_path / "scans", tmp_path / "out"
    _crops(scans, ["a", "b"])
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # the other run's process
    try:
        out.mkdir()
        lock = _stale_lock(out / ".b_predict.lock", sleeper.pid)
        other: list = []

        def the_other_run_computes_b(done, total, result) -> None:
            if not other:
                lock.unlink()
                other.append(predict_cohort("nuclei-2d", [scans / "b.tif"], out, **OPTIONS))

        summary = predict_cohort("nuclei-2d", scans, out, progress=the_other_run_computes_b, **OPTIONS)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert [(c.case, c.status) for c in summary.cases] == [("a", "done"), ("b", "skipped")]
    assert summary.by_other_runs == 1 and "1 computed by another run while this one ran" in summary.describe()
    rows = _rows(out)
    assert rows["b"]["status"] == "done" and rows["a"]["status"] == "done"
    assert float(rows["b"]["seconds"]) == pytest.approx(other[0].cases[0].seconds, abs=1e-3)


def test_cases_the_other_run_finished_before_this_one_started_keep_its_done_rows_when_it_ends_first(tmp_path):
    """A cron run computes a, then a person's run starts (a is skipped: finished) and computes c; the cron run computes
    b and ends; the person's run ends last. Was: its "skipped" replaced the cron run's "done" row of a. Now a run's
    "skipped" gives way to a "done" row another run wrote while it ran; a rerun later still says skipped."""
    scans, out = tmp_path / "scans", tmp_path / "out"
    a, b, c = _crops(scans, ["a", "b", "c"])
    planned, cron_ended, person = threading.Event(), threading.Event(), {}

    def person_run() -> None:
        def wait_for_cron(done, total, result) -> None:
            planned.set()
            assert cron_ended.wait(120)

        person["summary"] = predict_cohort("nuclei-2d", [a, c], out, progress=wait_for_cron, **OPTIONS)

    thread = threading.Thread(target=person_run)

    def start_person(done, total, result) -> None:
        if result.case == "a":
            time.sleep(1.1)  # (the runs' start times, to the second, tell their rows apart)
            thread.start()
            assert planned.wait(120)

    cron = predict_cohort("nuclei-2d", [a, b], out, progress=start_person, prefetch=0, **OPTIONS)
    cron_ended.set()
    thread.join(120)
    assert [x.status for x in cron.cases] == ["done", "done"]
    assert [(x.case, x.status) for x in person["summary"].cases] == [("a", "skipped"), ("c", "done")]
    rows = _rows(out)
    assert {k: r["status"] for k, r in rows.items()} == {"a": "done", "b": "done", "c": "done"}
    assert rows["a"]["run"] == rows["b"]["run"] != rows["c"]["run"]  # a: the cron run's row
    predict_cohort("nuclei-2d", [a, b, c], out, **OPTIONS)  # a later rerun: its word on its cases, as before
    assert {k: r["status"] for k, r in _rows(out).items()} == {"a": "skipped", "b": "skipped", "c": "skipped"}


# 4. moved inputs ---------------------------------------------------------------------------------------------------
def test_a_moved_file_of_the_same_bytes_is_skipped_and_its_record_and_link_follow_it(tmp_path):
    """Was: a TIFF or NIfTI moved (old path gone) kept its name but was computed again (the record matched the path,
    size and time only); its <stem>_image link dangled. Now the record keeps the file's sha256: the moved file is
    skipped with a note, its record and link name the new path (the next run skips it at once), and a file of that
    name with other bytes is computed."""
    old, new, out = tmp_path / "mnt" / "scans", tmp_path / "data" / "scans", tmp_path / "out"
    _crops(old, ["a", "b"])
    predict_cohort("nuclei-2d", old, out, **OPTIONS)
    record = json.loads((out / "a_predict.json").read_text())
    assert len(record["input_sha256"]) == 64
    masks = {p.name: p.stat().st_mtime_ns for p in out.glob("*_mask.tif")}
    new.parent.mkdir(parents=True)
    shutil.move(old, new)
    assert not os.path.exists(os.readlink(out / "a_image.tif"))  # (dangling now)

    summary = predict_cohort("nuclei-2d", new, out, **OPTIONS)
    assert [(c.case, c.status) for c in summary.cases] == [("a", "skipped"), ("b", "skipped")]
    assert "moved or exported again" in summary.cases[0].warnings[-1] and str(old / "a.tif") in \
        summary.cases[0].warnings[-1]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*_mask.tif")} == masks  # not computed again
    assert os.readlink(out / "a_image.tif") == str((new / "a.tif").resolve())
    record = json.loads((out / "a_predict.json").read_text())
    assert record["input"] == str((new / "a.tif").resolve()) and record["moved_from"] == [str(old / "a.tif")]

    again = predict_cohort("nuclei-2d", new, out, **OPTIONS)
    assert [c.status for c in again.cases] == ["skipped", "skipped"]
    assert not any("moved" in w for c in again.cases for w in c.warnings)  # (found finished by its path now)

    moved_again = tmp_path / "archive"
    shutil.move(new, moved_again)
    data = tifffile.imread(moved_again / "b.tif")
    tifffile.imwrite(moved_again / "b.tif", np.ascontiguousarray(data[::-1]))  # same name and size, other image
    summary = predict_cohort("nuclei-2d", moved_again, out, **OPTIONS)
    assert [(c.case, c.status) for c in summary.cases] == [("a", "skipped"), ("b", "done")]


def test_a_moved_series_link_follows_it(tmp_path):
    """Was: a moved series was skipped (same images) but its SE002_image link kept pointing at the old, gone path."""
    old, new, out = tmp_path / "mnt" / "PACS", tmp_path / "data" / "PACS", tmp_path / "results"
    axial(lung_crop(), old / "PAT001" / "ST001" / "SE002", series="1.2.3")
    predict_cohort("nuclei-2d", f"{old}/**/", out, **OPTIONS)
    assert os.readlink(out / "SE002_image") == str(old / "PAT001" / "ST001" / "SE002")
    new.parent.mkdir(parents=True)
    shutil.move(old, new)
    summary = predict_cohort("nuclei-2d", f"{new}/**/", out, **OPTIONS)
    assert [(c.case, c.status) for c in summary.cases] == [("SE002", "skipped")]
    assert os.readlink(out / "SE002_image") == str(new / "PAT001" / "ST001" / "SE002")
    assert (out / "SE002_image").is_dir()
    assert json.loads((out / "SE002_predict.json").read_text())["input"] == str(new / "PAT001" / "ST001" / "SE002")


def test_a_predict_output_listed_in_a_csv_fails_its_case_naming_the_image(tmp_path):
    """A single file was refused (the mask attnseg predict wrote, not an image) but the same path in a CSV cohort was
    segmented silently: now that case fails with the same message while the others run."""
    src = _crops(tmp_path / "in", ["img"])[0]
    out = tmp_path / "out"
    predict_cohort("nuclei-2d", str(src.parent), str(out), **OPTIONS)
    mask = next(out.glob("img_mask.*"))
    table = tmp_path / "cases.csv"
    table.write_text(f"path\n{mask}\n{src}\n")
    summary = predict_cohort("nuclei-2d", str(table), str(tmp_path / "out2"), **OPTIONS)
    rows = {r.case: r for r in summary.cases}
    failed = [r for r in summary.cases if r.status == "failed"]
    assert len(failed) == 1 and "not an image to segment" in failed[0].error and str(src.name) in failed[0].error, rows
    assert sum(r.status == "done" for r in summary.cases) == 1


# 5. --out the input folder, a deleted record, the user's summary columns, names differing by case, re-reads --------
def _lung_nifti(path: Path) -> Path:
    """The shared lung CT's 6 x 24 x 20 crop as a NIfTI file (its RAS affine)."""
    import nibabel as nib

    crop, affine, _, _ = lung_crop()
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(crop.transpose(2, 1, 0)), affine), str(path))
    return path


def _write_rows(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_a_cohort_into_its_own_input_folder_says_nothing_of_its_own_outputs(tmp_path):
    """Was: the rerun of `attnseg predict scans/ --out scans` said "scans: skipped 1 file of other types": its own
    cohort_summary.csv (the masks, maps and records were left out already). A summary of another name (--summary) is
    ours too; a CSV of the user's there is still counted."""
    folder = tmp_path / "scans"
    _crops(folder, ["a", "b"])
    _lung_nifti(folder / "ct.nii.gz")
    options = dict(OPTIONS, return_probabilities=True, attention=True)
    first = predict_cohort("nuclei-2d", folder, folder, **options)
    assert first.done == 3 and first.note == "", first.describe()
    again = predict_cohort("nuclei-2d", folder, folder, **options)
    assert again.skipped == 3 and again.note == "", again.describe()
    predict_cohort("nuclei-2d", folder, folder, summary="weekly.csv", **options)
    (folder / "notes.csv").write_text("patient,comment\n1,ok\n")
    last = predict_cohort("nuclei-2d", folder, folder, **options)
    assert last.skipped == 3 and last.note == f"{folder}: skipped 1 file of other types", last.describe()


def test_a_case_whose_record_was_deleted_is_said_to_be_so_and_overwrite_keeps_its_mask(tmp_path):
    """Was: a case whose <case>_predict.json the user deleted (its mask still there) failed as "no run of attnseg wrote
    them ... never replaced, not even with --overwrite": our own mask called foreign, and no way given to redo it. Now
    the case says its record is missing and that its mask (attnseg's, by its header) is kept, maybe corrected; with
    --overwrite it is computed again and that mask kept in edited_masks/. A user's own file there stays foreign."""
    scans, out = tmp_path / "scans", tmp_path / "out"
    _crops(scans, ["a", "b", "own"])
    _lung_nifti(scans / "ct.nii.gz")
    predict_cohort("nuclei-2d", scans, out, return_probabilities=True, **OPTIONS)
    for case in ("a", "ct", "own"):
        (out / f"{case}_predict.json").unlink()
    own = out / "own_mask.tif"
    tifffile.imwrite(own, np.zeros((64, 64), np.uint8))  # the user's reference mask, no note of ours
    before = {p.name: p.read_bytes() for p in out.glob("*_mask.*")}

    summary = predict_cohort("nuclei-2d", scans, out, return_probabilities=True, **OPTIONS)
    cases = {c.case: c for c in summary.cases}
    assert [cases[c].status for c in ("a", "b", "ct", "own")] == ["failed", "skipped", "failed", "failed"]
    for case, mask in (("a", "a_mask.tif"), ("ct", "ct_mask.nii.gz")):
        error = cases[case].error
        assert f"the record of this case, {case}_predict.json, is missing" in error and "no run of attnseg" not in \
            error, error
        assert f"{mask} (attnseg wrote it: nuclei-2d" in error and "--overwrite" in error, error
    assert "no run of attnseg wrote them" in cases["own"].error
    assert {p.name: p.read_bytes() for p in out.glob("*_mask.*")} == before  # nothing touched

    redo = predict_cohort("nuclei-2d", [scans / "a.tif", scans / "ct.nii.gz", scans / "own.tif"], out,
                          return_probabilities=True, overwrite=True, **OPTIONS)
    cases = {c.case: c for c in redo.cases}
    assert (cases["a"].status, cases["ct"].status, cases["own"].status) == ("done", "done", "failed")
    assert "had no record of the run that wrote it" in " ".join(cases["a"].warnings)
    assert (out / "edited_masks" / "a_mask.tif").read_bytes() == before["a_mask.tif"]
    assert (out / "edited_masks" / "ct_mask.nii.gz").read_bytes() == before["ct_mask.nii.gz"]
    assert (out / "a_predict.json").is_file() and (out / "ct_predict.json").is_file()
    assert own.read_bytes() == before["own_mask.tif"]


def test_columns_the_user_added_stay_on_the_row_of_a_renamed_series(tmp_path):
    """Was: a failed series SE002 renamed PAT001_ST001_SE002 once another patient's SE002 arrived (D5: one row for its
    input) lost the reader_comment the user had written on its row; the other rows kept theirs."""
    pacs, out = tmp_path / "PACS", tmp_path / "out"
    lung = lung_crop()
    files = axial(lung, pacs / "PAT001" / "ST001" / "SE002")
    files[1].write_bytes(files[1].read_bytes()[:-200])  # pixel data cut short: the case fails, so has no record
    axial(lung, pacs / "PAT001" / "ST001" / "SE003", series="1.2.4")
    predict_cohort("nuclei-2d", f"{pacs}/**/", out, **OPTIONS)
    rows = list(_rows(out).values())
    for row in rows:
        row["reader_comment"] = {"SE002": "file 2 asked again from the PACS", "SE003": "seen"}[row["case"]]
    _write_rows(out / "cohort_summary.csv", rows)

    axial(lung, pacs / "PAT002" / "ST001" / "SE002", series="1.2.77")
    predict_cohort("nuclei-2d", f"{pacs}/**/", out, **OPTIONS)
    rows = _rows(out)
    assert set(rows) == {"PAT001_ST001_SE002", "SE003", "PAT002_ST001_SE002"}
    assert rows["PAT001_ST001_SE002"]["reader_comment"] == "file 2 asked again from the PACS"
    assert rows["SE003"]["reader_comment"] == "seen" and rows["PAT002_ST001_SE002"]["reader_comment"] == ""


def test_cases_whose_names_differ_only_by_case_get_names_a_case_insensitive_out_keeps_apart(tmp_path):
    """Case3.tif and case3.tif (two files here) wrote Case3_* and case3_*: one set of files on macOS or a Windows share,
    where the second case replaced the first's results (both said done). Now the later one is Case3_2, said in its
    warning and summary row; outputs an earlier run wrote keep their name (case3, finished before Case3 came)."""
    scans, out = tmp_path / "scans", tmp_path / "out"
    _crops(scans, ["case3"])
    predict_cohort("nuclei-2d", scans, out, **OPTIONS)
    stamp = (out / "case3_mask.tif").stat().st_mtime_ns
    tifffile.imwrite(scans / "Case3.tif", np.ascontiguousarray(tifffile.imread(scans / "case3.tif")[::-1]))
    summary = predict_cohort("nuclei-2d", scans, out, **OPTIONS)
    cases = {c.case: c for c in summary.cases}
    assert {k: c.status for k, c in cases.items()} == {"Case3_2": "done", "case3": "skipped"}
    assert "named Case3_2, not Case3" in cases["Case3_2"].warnings[0] and "upper/lower case" in \
        cases["Case3_2"].warnings[0]
    assert "named Case3_2" in _rows(out)["Case3_2"]["warnings"]
    assert (out / "case3_mask.tif").stat().st_mtime_ns == stamp
    names = [p.name for p in out.iterdir()]
    assert len({n.casefold() for n in names}) == len(names), names
    assert json.loads((out / "Case3_2_predict.json").read_text())["input"] == str((scans / "Case3.tif").resolve())
    again = predict_cohort("nuclei-2d", scans, out, **OPTIONS)
    assert [(c.case, c.status) for c in again.cases] == [("Case3_2", "skipped"), ("case3", "skipped")]

    fresh = tmp_path / "fresh"  # both new: the first (sorted) keeps its name
    summary = predict_cohort("nuclei-2d", scans, fresh, **OPTIONS)
    assert [(c.case, c.status) for c in summary.cases] == [("Case3", "done"), ("case3_2", "done")]


def test_a_rerun_reads_each_record_once_besides_case_state(tmp_path, monkeypatch):
    """Was: a finished case whose probability map was deleted (its mask corrected) had its record read three times on
    a rerun (case_state, finished_record, missing_outputs); now twice, as a finished case with all its outputs."""
    scans, out = tmp_path / "scans", tmp_path / "out"
    _crops(scans, ["a", "b"])
    predict_cohort("nuclei-2d", scans, out, return_probabilities=True, **OPTIONS)
    for case in ("a", "b"):
        (out / f"{case}_prob.tif").unlink()
        (out / f"{case}_mask.tif").touch()  # (corrected since: the case stays finished, its map not written again)
    reads = []
    real = Path.read_text

    def counted(self, *args, **kwargs):
        reads.extend([self.name] if self.name.endswith("_predict.json") else [])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counted)  # (counts the reads; every read is the real one)
    summary = predict_cohort("nuclei-2d", scans, out, return_probabilities=True, **OPTIONS)
    monkeypatch.undo()
    assert [c.status for c in summary.cases] == ["skipped", "skipped"]
    assert "a_prob.tif missing" in " ".join(summary.cases[0].warnings)
    assert sorted(reads) == ["a_predict.json"] * 2 + ["b_predict.json"] * 2, reads
