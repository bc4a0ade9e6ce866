"""Cohort inference on a Dask LocalCluster: throughput per worker count, input wait, resume after a kill.

    python benchmarks/bench_cohort.py [--cases 24] [--shape 64,256,256] [--workers 1,2,4] [--model brain-mri-3d]

1. Writes ``--cases`` synthetic CT-like int16 volumes (body, lungs, spine, noise; 2 mm voxels, the
   bundled 3D model's spacing, so nothing is resampled) as .nii.gz.
2. Runs ``predict_cohort`` on them in this process (prefetch threads, no Dask) and on a fresh
   ``LocalCluster`` of 1, 2 and 4 worker processes (2 threads each: one computes while the other reads
   or writes; torch gets cores / workers threads). Wall time includes each worker loading the model,
   not the cluster's start and the workers' imports (given apart). Input wait: the time a worker's compute sat idle waiting
   for a case to be read, as a share of (workers x wall). Every run's masks and probabilities are
   compared with the in-process run's.
3. Resume: ``attnseg predict DIR --dask 2 --out OUT`` in a subprocess, killed (SIGKILL, whole
   process group: client, scheduler and workers) once half the cases are finished; then the same
   command again. Checks that no finished case was recomputed (its record and mask untouched), that
   cases half-written at the kill were redone, and that the outputs equal the uninterrupted run's.
Writes benchmarks/results/cohort.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_out_option, machine, results_dir  # noqa: E402

from napari_attnseg.cohort import predict_cohort  # noqa: E402


def ct_like(shape, rng) -> np.ndarray:
    """An int16 CT-like volume (z, y, x) in HU: air, a body ellipse, two lungs, a spine, noise."""
    z, y, x = shape
    yy, xx = np.mgrid[0:y, 0:x]
    vol = np.full(shape, -1000, np.float32)
    for k in range(z):
        s = 1.0 - 0.15 * abs(k / max(z - 1, 1) - 0.5)
        body = ((yy - y / 2) / (0.38 * y * s)) ** 2 + ((xx - x / 2) / (0.46 * x * s)) ** 2 < 1
        lung_l = ((yy - 0.45 * y) / (0.22 * y * s)) ** 2 + ((xx - 0.32 * x) / (0.12 * x * s)) ** 2 < 1
        lung_r = ((yy - 0.45 * y) / (0.22 * y * s)) ** 2 + ((xx - 0.68 * x) / (0.12 * x * s)) ** 2 < 1
        spine = (yy - 0.75 * y) ** 2 + (xx - x / 2) ** 2 < (0.06 * x) ** 2
        vol[k][body] = 40
        vol[k][lung_l | lung_r] = -850
        vol[k][spine] = 700
    vol += rng.normal(0, 25, shape).astype(np.float32)
    return np.clip(vol, -1024, 3071).astype(np.int16)


def make_cases(folder: Path, n: int, shape) -> list[Path]:
    import nibabel as nib

    folder.mkdir(parents=True, exist_ok=True)
    tag = folder / f".made-{n}-{'x'.join(map(str, shape))}"
    paths = [folder / f"ct{i:03d}.nii.gz" for i in range(n)]
    if tag.exists():
        return paths
    rng = np.random.default_rng(0)
    for p in paths:
        vol = ct_like(shape, rng)
        nib.save(nib.Nifti1Image(vol.transpose(2, 1, 0), np.diag([2.0, 2.0, 2.0, 1.0])), p)  # (i, j, k)
    tag.touch()
    return paths


def outputs_equal(a: Path, b: Path, cases) -> int:
    import nibabel as nib

    same = 0
    for c in cases:
        ok = all(np.array_equal(np.asarray(nib.load(a / f"{c}_{k}.nii.gz").dataobj),
                                np.asarray(nib.load(b / f"{c}_{k}.nii.gz").dataobj)) for k in ("mask", "prob"))
        same += ok
    return same


def row(label: str, workers: int, s, startup: float | None, same: int | None) -> dict:
    done = [c for c in s.cases if c.status == "done"]
    return {"run": label, "workers": workers, "cases": f"{s.done} done / {s.failed} failed",
            "wall (s)": f"{s.wall_s:.1f}", "cluster start + imports (s)": "-" if startup is None else f"{startup:.1f}",
            "cases/min": f"{60 * s.done / s.wall_s:.1f}", "Mvox/s": f"{s.throughput / 1e6:.2f}",
            "compute/case (s)": f"{np.median([c.compute_s for c in done]):.2f}",
            "read/case (s)": f"{np.median([c.read_s for c in done]):.2f}",
            "write/case (s)": f"{np.median([c.write_s for c in done]):.2f}",
            "input wait (s)": f"{s.input_wait_s:.1f}", "input wait share": f"{100 * s.input_wait_share:.1f}%",
            "identical to in-process": "-" if same is None else f"{same}/{s.done}"}


def dask_run(n: int, data: Path, out: Path, model: str, cores: int):
    from distributed import Client, LocalCluster

    t0 = time.perf_counter()
    with LocalCluster(n_workers=n, threads_per_worker=2, processes=True, dashboard_address=None) as lc, \
            Client(lc) as client:
        client.wait_for_workers(n)
        client.run(lambda: __import__("torch") and __import__("napari_attnseg.cohort"))  # imports, not the model
        startup = time.perf_counter() - t0
        s = predict_cohort(model, data, out, client=client, threads=max(1, cores // n), device="cpu")
    return s, startup


def resume(data: Path, out: Path, model: str, n_cases: int, workers: int = 2) -> dict:
    cmd = [sys.executable, "-m", "napari_attnseg.cli", "predict", str(data), "--model", model, "--out", str(out),
           "--device", "cpu", "--dask", str(workers)]
    import napari_attnseg

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(napari_attnseg.__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env=env)
    while len(list(out.glob("*_predict.json"))) < n_cases // 2:
        if proc.poll() is not None:
            raise RuntimeError(f"the run ended before half the cases were done (rc {proc.returncode})")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = time.perf_counter() - t0
    time.sleep(1.0)  # let the orphaned workers notice (they are in the killed group too)
    finished = {p.name[: -len("_predict.json")]: (p.stat().st_mtime_ns, (out / p.name.replace("_predict.json", "_mask.nii.gz")).stat().st_mtime_ns)
                for p in out.glob("*_predict.json")}
    partial = sorted(p.name[1: -len("_predict.partial")] for p in out.glob(".*_predict.partial"))
    t1 = time.perf_counter()
    rc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    second = time.perf_counter() - t1
    import csv

    rows = list(csv.DictReader(open(out / "cohort_summary.csv")))
    status = {r["case"]: r["status"] for r in rows}
    untouched = sum(
        (out / f"{c}_predict.json").stat().st_mtime_ns == m[0] and (out / f"{c}_mask.nii.gz").stat().st_mtime_ns == m[1]
        for c, m in finished.items())
    return {"killed after (s)": round(killed_at, 1), "finished at the kill": len(finished),
            "half-written at the kill (marker, no record)": len(partial),
            "second run rc": rc.returncode, "second run (s)": round(second, 1),
            "skipped in the second run": sum(v == "skipped" for v in status.values()),
            "computed in the second run": sum(v == "done" for v in status.values()),
            "finished cases recomputed": len(finished) - untouched,
            "half-written cases redone": sum(status.get(c) == "done" for c in partial),
            "markers left": len(list(out.glob(".*_predict.partial")))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=24)
    ap.add_argument("--shape", default="64,256,256")
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--model", default="brain-mri-3d")
    ap.add_argument("--work", default="/tmp/attnseg_bench_cohort")
    ap.add_argument("--no-serial", action="store_true")
    add_out_option(ap)
    args = ap.parse_args()
    results = results_dir(args.out)
    shape = tuple(int(s) for s in args.shape.split(","))
    work = Path(args.work)
    data = work / "data"
    cases = [p.name[:-7] for p in make_cases(data, args.cases, shape)]
    cores = os.cpu_count() or 1
    import shutil

    rows = []
    ref = work / "out_inprocess"
    shutil.rmtree(ref, ignore_errors=True)
    import torch

    torch.set_num_threads(cores)
    s = predict_cohort(args.model, data, ref, device="cpu")
    rows.append(row("in-process (prefetch threads)", 1, s, None, None))
    print(rows[-1], flush=True)
    for n in [int(w) for w in args.workers.split(",")]:
        out = work / f"out_dask{n}"
        shutil.rmtree(out, ignore_errors=True)
        s, startup = dask_run(n, data, out, args.model, cores)
        rows.append(row("Dask LocalCluster", n, s, startup, outputs_equal(ref, out, [c.case for c in s.cases
                                                                                     if c.status == "done"])))
        print(rows[-1], flush=True)
    out = work / "out_resume"
    shutil.rmtree(out, ignore_errors=True)
    res = resume(data, out, args.model, args.cases)
    res["identical to in-process after resume"] = f"{outputs_equal(ref, out, cases)}/{len(cases)}"
    print(res, flush=True)

    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    cpu = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if ln.startswith("Model name")), "?")
    load = os.getloadavg()
    meta = {"machine": machine(), "cpu": cpu, "cores": cores, "torch_threads": "cores / workers per worker",
            "load_average_at_end": [round(x, 2) for x in load], "cases": args.cases, "shape": list(shape),
            "model": args.model, "volume": "int16 NIfTI (.nii.gz), 2 mm voxels"}
    (results / "cohort.json").write_text(json.dumps({"meta": meta, "rows": rows, "resume": res}, indent=2))
    cols = list(rows[0])
    lines = [f"### Cohort inference: {args.cases} CT-like volumes of {'x'.join(map(str, shape))} ({args.model}, CPU)",
             "", f"Machine: {meta['machine']}; load average at the end {load[0]:.1f}"
             + (" (above the core count: other jobs ran at the same time)" if load[0] > cores else ""), "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    lines += ["", "Resume after killing `attnseg predict DIR --dask 2` half-way (SIGKILL to client, scheduler and "
              "workers), then running the same command again:", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in res.items()]
    text = "\n".join(lines) + "\n"
    (results / "cohort.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
