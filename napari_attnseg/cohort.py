"""Cohort inference: one model over many inputs, resumable, serially or on a Dask cluster.

    >>> from napari_attnseg.cohort import predict_cohort
    >>> summary = predict_cohort("brain-mri-3d", "scans/*.nii.gz", "out/")           # this process
    >>> summary = predict_cohort("brain-mri-3d", "scans/", "out/", client=client)     # Dask workers

* **Inputs**: a folder (its images and DICOM series folders), a glob, a CSV (a column of paths), a
  single file, or a list of any of these.
* **Overlap of disk and compute**: each case runs as read -> compute -> write, and only the compute
  holds the *compute slot* (one per process or Dask worker, so one model on one device). With
  ``prefetch`` extra threads the next case is read, and the previous one written, while the current
  one computes. ``wait_s`` is the time the slot sat idle waiting for a case's input.
* **Resumable**: a case whose ``<stem>_predict.json`` records the same weights (sha256) and the same
  request is skipped; outputs of another model or other settings are replaced, as are the leftovers
  of a killed run; outputs that may hold a user's corrections are replaced only with ``overwrite``
  (see :func:`napari_attnseg.results.case_state`). Every file is written atomically, the record last.
* **Failures**: a failed case is reported in the summary and the others run.
* **Dask**: tasks are cases; each worker process loads the model once and keeps it; a case whose
  worker died is rerun elsewhere (Dask's ``allowed-failures``) and one that raised an unexpected
  error is retried ``retries`` times. Outputs are written by the workers: ``out`` must be on a file
  system every worker sees.

No Qt or napari here; ``distributed`` is imported only when a client is given.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import importlib
import json
import os
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import AttnSegError, InputError

SUMMARY_NAME = "cohort_summary.csv"
SUMMARY_COLUMNS = ("case", "status", "seconds", "voxels_per_s", "wait_s", "warnings", "error", "input", "worker")
CSV_PATH_COLUMNS = ("path", "input", "image", "file", "filename", "case")
# keyword arguments of `predict` that the cohort sets per case or that cannot travel
_NOT_FORWARDED = ("progress", "cancel", "out", "spacing")


@dataclass
class CaseResult:
    """How one case went: ``status`` is ``done`` (computed now), ``skipped`` (finished before) or ``failed``."""

    case: str
    input: str
    status: str
    seconds: float = 0.0  # read + compute + write
    voxels: int = 0
    wait_s: float = 0.0  # the compute slot idle, waiting for this case's input
    read_s: float = 0.0
    compute_s: float = 0.0
    write_s: float = 0.0
    warnings: list[str] = field(default_factory=list)
    error: str = ""
    worker: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def voxels_per_s(self) -> float:
        return self.voxels / self.seconds if self.seconds > 0 else 0.0

    def row(self) -> dict[str, Any]:
        return {"case": self.case, "status": self.status, "seconds": f"{self.seconds:.3f}",
                "voxels_per_s": f"{self.voxels_per_s:.0f}", "wait_s": f"{self.wait_s:.3f}",
                "warnings": " | ".join(self.warnings), "error": self.error, "input": self.input,
                "worker": self.worker}


@dataclass
class CohortSummary:
    """What a cohort run did. ``csv``: the summary file written in ``out``."""

    cases: list[CaseResult]
    wall_s: float
    slots: int  # compute slots that ran cases (1 in this process, one per Dask worker used)
    csv: Path | None = None

    def count(self, status: str) -> int:
        return sum(c.status == status for c in self.cases)

    @property
    def done(self) -> int:
        return self.count("done")

    @property
    def skipped(self) -> int:
        return self.count("skipped")

    @property
    def failed(self) -> int:
        return self.count("failed")

    @property
    def voxels(self) -> int:
        return sum(c.voxels for c in self.cases if c.status == "done")

    @property
    def throughput(self) -> float:
        """Voxels per second of wall time over the cases computed in this run."""
        return self.voxels / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def input_wait_s(self) -> float:
        return sum(c.wait_s for c in self.cases)

    @property
    def input_wait_share(self) -> float:
        """The slots' time spent waiting for input, as a share of their wall time (slots x wall)."""
        return self.input_wait_s / (self.slots * self.wall_s) if self.wall_s > 0 and self.slots else 0.0

    def describe(self) -> str:
        return (f"{len(self.cases)} cases: {self.done} done, {self.skipped} skipped, {self.failed} failed "
                f"in {self.wall_s:.1f} s ({self.throughput / 1e6:.2f} Mvoxel/s); compute waited "
                f"{self.input_wait_s:.1f} s for input ({100 * self.input_wait_share:.1f}% of "
                f"{self.slots} slot{'s' if self.slots != 1 else ''} x wall)")


# ----------------------------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------------------------
def collect_inputs(inputs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """The cases named by ``inputs``, in order, each once.

    A folder gives its images (``.tif``, ``.nii.gz``, ...) and its DICOM series sub-folders, sorted,
    leaving out what ``attnseg predict`` wrote there (so ``out`` may be the input folder); a folder
    that is itself a DICOM series is one case. A string with ``*``, ``?`` or ``[`` is a glob
    (``**`` recursive). A ``.csv`` gives the paths of its ``path``/``input``/``image``/``file``
    column (else its first column), relative to the CSV's folder. Anything else is one case; a
    missing file stays in the list and fails on its own.
    """
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    found: list[Path] = []
    for item in items:
        found += _expand(item)
    seen: set[Path] = set()
    cases = []
    for p in found:
        key = p.resolve() if p.exists() else p.absolute()
        if key not in seen:
            seen.add(key)
            cases.append(p)
    return cases


def _expand(item: str | os.PathLike) -> list[Path]:
    from .data import image_format

    text = os.fspath(item)
    p = Path(text)
    if any(c in text for c in "*?[") and not p.exists():
        return [Path(m) for m in sorted(glob.glob(text, recursive=True)) if not Path(m).name.startswith(".")
                and (Path(m).is_file() or image_format(m) == "dicom")]
    if p.suffix.lower() == ".csv" and p.is_file():
        return _read_csv(p)
    if p.is_dir() and image_format(p) != "dicom":
        return _folder_cases(p)
    return [p]


def _folder_cases(folder: Path) -> list[Path]:
    from .data import image_format
    from .results import RECORD_SUFFIX

    ours: set[str] = set()  # outputs of earlier runs into this folder are not inputs
    for rec in folder.glob(f"*{RECORD_SUFFIX}"):
        try:
            record = json.loads(rec.read_text())
            ours.update(record.get("outputs") or [])
            if record.get("input_reference") and Path(record["input"]).parent != folder.resolve():
                ours.add(record["input_reference"])
        except (OSError, ValueError, AttributeError, TypeError):
            continue
    cases = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or p.name in ours or p.name.endswith(RECORD_SUFFIX):
            continue
        fmt = image_format(p)
        if fmt == "dicom" and p.is_file():  # loose DICOM files of a series in a folder of cases
            continue
        if fmt is not None:
            cases.append(p)
    return cases


def _read_csv(path: Path) -> list[Path]:
    try:
        rows = [r for r in csv.reader(path.read_text().splitlines()) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"Could not read the CSV {path} ({exc}).") from None
    if not rows:
        raise InputError(f"The CSV {path} names no inputs.")
    header = [c.strip().lower() for c in rows[0]]
    col = next((header.index(n) for n in CSV_PATH_COLUMNS if n in header), None)
    if col is not None:
        rows = rows[1:]
    else:
        col = 0
        first = Path(rows[0][0].strip())
        if not (first if first.is_absolute() else path.parent / first).exists() and not first.suffix:
            rows = rows[1:]  # a header with another name for the column
    cases = []
    for r in rows:
        if col < len(r) and r[col].strip():
            p = Path(r[col].strip()).expanduser()
            cases.append(p if p.is_absolute() else path.parent / p)
    return cases


# ----------------------------------------------------------------------------------------------
# one case (the same code serially and on a Dask worker)
# ----------------------------------------------------------------------------------------------
class _Slot:
    """The compute slot of one process or worker: a lock, and since when it has been free."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.free_since = time.perf_counter()


@dataclass
class _Job:
    src: str
    case: str
    out: str
    options: dict[str, Any]
    request: dict[str, Any]
    threads: int | None = None
    run: str = ""  # this cohort run: a case it finished is not computed again (a lost worker's result)


def _read_case(src: str):
    """Read a case fully into memory (a memory-mapped TIFF would otherwise be read during compute)."""
    import numpy as np

    from .data import read_image

    vol = read_image(src)
    if not isinstance(vol.data, np.ndarray) or isinstance(vol.data, np.memmap):
        vol.data = np.array(vol.data)
    return vol


def _run_case(job: _Job, model, slot: _Slot, worker: str = "") -> CaseResult:
    """read -> (slot) compute -> write; an :class:`AttnSegError` is a failed case, anything else raises."""
    import math

    from .inference import predict
    from .results import finished_record, write_prediction

    t0 = time.perf_counter()
    if job.run:
        record = finished_record(Path(job.out), Path(job.src))
        if record and record.get("cohort_run") == job.run:  # finished by this run on a worker since lost
            return CaseResult(**record["cohort_result"])
    res = CaseResult(case=job.case, input=job.src, status="failed", worker=worker)
    try:
        vol = _read_case(job.src)
        t1 = time.perf_counter()
        res.read_s = t1 - t0
        with slot.lock:
            t2 = time.perf_counter()
            res.wait_s = max(0.0, t2 - slot.free_since)
            try:
                if job.threads:
                    import torch

                    if torch.get_num_threads() != job.threads:
                        torch.set_num_threads(job.threads)
                pred = predict(model, vol.data, spacing=vol.spacing, **job.options)
            finally:
                slot.free_since = time.perf_counter()
            t3 = slot.free_since
        res.compute_s = t3 - t2
        res.voxels = int(math.prod(pred.labels.shape))
        res.warnings = list(pred.warnings)
        done = dict(asdict(res), status="done", seconds=time.perf_counter() - t0)
        write_prediction(job.out, job.src, vol, model, pred, request=job.request,
                         extra={"cohort_run": job.run, "cohort_result": done} if job.run else None)
        res.write_s = time.perf_counter() - t3
        res.status = "done"
    except AttnSegError as exc:
        res.error = str(exc)
    res.seconds = time.perf_counter() - t0
    return res


# ----------------------------------------------------------------------------------------------
# per-worker model cache (Dask)
# ----------------------------------------------------------------------------------------------
_CACHE_LOCK = threading.Lock()
_MODELS: dict[tuple[str, str | None, str], Any] = {}
_SLOTS: dict[str, _Slot] = {}


def _worker_device(device: str) -> str:
    """``auto`` on a worker of a machine with several GPUs: the GPU of the worker's number."""
    import torch

    if str(device) != "auto" or not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        return str(device)
    try:
        from distributed import get_worker

        name = get_worker().name
        return f"cuda:{int(name) % torch.cuda.device_count()}"
    except (ImportError, ValueError, TypeError):
        return str(device)


def _cached_model(path: str, sha: str | None, device: str):
    """The model for ``(path, sha, device)``, loaded once per process and kept."""
    from .checkpoint import load_model
    from .errors import CheckpointError

    key = (path, sha, device)
    with _CACHE_LOCK:
        model = _MODELS.get(key)
        if model is None:
            model = load_model(path, device=device)
            got = getattr(getattr(model, "card", None), "weights_sha256", None)
            if sha is not None and got != sha:
                raise CheckpointError(f"{path} on this worker holds other weights (sha256 {got}) than the "
                                      f"driver's ({sha}); every worker must see the same file.")
            _MODELS[key] = model
        return model


def _warm_readers() -> None:
    """Import the image readers with the model, so that a fresh worker's first read is only a read."""
    for name in ("nifti", "tiff", "dicom"):
        importlib.import_module(f".data.{name}", __package__)


def _dask_case(job: _Job, model_path: str, sha: str | None) -> CaseResult:
    """A Dask task: one case on this worker, with its cached model and its compute slot."""
    from distributed import get_worker

    try:
        worker = get_worker()
        name = str(worker.address)
    except ValueError:  # run outside a worker (tests, client.submit on a local executor)
        name = f"pid{os.getpid()}"
    device = _worker_device(job.options.get("device", "auto"))
    options = dict(job.options, device=device)
    try:
        model = _cached_model(model_path, sha, device)
        _warm_readers()
    except AttnSegError as exc:
        return CaseResult(case=job.case, input=job.src, status="failed", error=str(exc), worker=name)
    with _CACHE_LOCK:
        slot = _SLOTS.setdefault(name, _Slot())  # free since the model is ready: loading is not waiting
    return _run_case(_Job(**{**asdict(job), "options": options}), model, slot, worker=name)


# ----------------------------------------------------------------------------------------------
# the cohort
# ----------------------------------------------------------------------------------------------
def predict_cohort(
    model,
    inputs: str | os.PathLike | Iterable[str | os.PathLike],
    out: str | os.PathLike,
    *,
    client=None,
    overwrite: bool = False,
    prefetch: int = 2,
    retries: int = 2,
    threads: int | None = None,
    summary: str | os.PathLike | None = SUMMARY_NAME,
    progress: Callable[[int, int, CaseResult], Any] | None = None,
    **options: Any,
) -> CohortSummary:
    """Segment every case of ``inputs`` into ``out``; return (and write as CSV) a summary.

    Args:
        model: a bundled model name or a ``.safetensors`` path, or a model from ``load_model``
            (with a ``client`` it must have been loaded from a file: workers load it themselves).
        inputs: a folder, a glob, a CSV of paths, a file, or a list of these (:func:`collect_inputs`).
        out: the output folder (``<stem>_mask``, ``_prob``, maps, ``<stem>_predict.json`` per case).
        client: a ``dask.distributed.Client``: run the cases on its workers (one task per case).
        overwrite: also redo finished cases and replace outputs that may have been edited.
        prefetch: cases read (and written) by extra threads while one computes; 0 reads in turn.
        retries: Dask retries of a case that raised an unexpected error (a lost worker is always
            retried, up to Dask's ``distributed.scheduler.allowed-failures``).
        threads: ``torch.set_num_threads`` for the compute (per worker with a client).
        summary: name of the summary CSV in ``out`` (None: none written).
        progress: called with ``(finished, total, CaseResult)`` after each case.
        **options: keyword arguments of :func:`napari_attnseg.predict` (``attention``, ``tile``,
            ``overlap``, ``device``, ``precision``, ``mode``, ``tta``, ``return_probabilities``, ...);
            with the weights' sha256 they decide whether a finished case can be skipped.
    """
    from .checkpoint import read_card, resolve_model_path
    from .data import stem
    from .results import case_state

    t_start = time.perf_counter()
    bad = sorted(set(options) & set(_NOT_FORWARDED))
    if bad:
        raise InputError(f"predict_cohort sets {', '.join(bad)} itself for every case; leave them out.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cases = collect_inputs(inputs)
    if not cases:
        raise InputError(f"No images found in {inputs!r}.")

    loaded = None
    if isinstance(model, (str, os.PathLike)):
        resolved = resolve_model_path(model)
        sha = read_card(resolved).weights_sha256
        # workers resolve a bundled name in their own installation; a file by its absolute path
        model_path = str(model) if _is_bundled(model, resolved) else str(resolved.resolve())
    else:
        loaded = model
        model_path = getattr(model, "checkpoint_path", None)
        sha = getattr(getattr(model, "card", None), "weights_sha256", None)
        if client is not None and model_path is None:
            raise InputError("With a Dask client the model must come from a file (workers load it): "
                             "pass its name or path, or save it with save_model first.")
    request = _request(options)
    run = uuid.uuid4().hex[:12]

    results: dict[int, CaseResult] = {}
    todo: list[tuple[int, _Job]] = []
    by_stem: dict[str, int] = {}
    for i, src in enumerate(cases):
        name = stem(src)
        if name in by_stem:
            results[i] = CaseResult(case=name, input=str(src), status="failed",
                                    error=f"{cases[by_stem[name]]} has the same name; their outputs would collide "
                                          "in one folder. Rename one, or run them into separate folders.")
            continue
        by_stem[name] = i
        state = case_state(out, src, sha, request)
        if state == "done" and not overwrite:
            results[i] = CaseResult(case=name, input=str(src), status="skipped")
            continue
        if state == "edited" and not overwrite:
            results[i] = CaseResult(case=name, input=str(src), status="failed", error=(
                f"{out} holds outputs for this input that are not from an unchanged earlier run (a mask may "
                "have been corrected by hand); pass overwrite (--overwrite) to replace them."))
            continue
        todo.append((i, _Job(src=str(src), case=name, out=str(out), options=dict(options), request=request,
                             threads=threads, run=run)))

    total = len(cases)
    finished = 0
    for i in sorted(results):
        finished += 1
        if progress:
            progress(finished, total, results[i])

    def report(i: int, res: CaseResult) -> None:
        nonlocal finished
        results[i] = res
        finished += 1
        if progress:
            progress(finished, total, res)

    if client is None:
        slots = 1
        if todo:
            if loaded is None:
                from .checkpoint import load_model

                loaded = load_model(model_path, device=options.get("device", "auto"))
            slot = _Slot()
            _run_serial(todo, loaded, slot, prefetch, report)
    else:
        slots = _run_dask(client, todo, model_path, sha, retries, report)

    summary_obj = CohortSummary(cases=[results[i] for i in range(total)], wall_s=time.perf_counter() - t_start,
                                slots=max(1, slots))
    if summary is not None:
        summary_obj.csv = _write_summary(out / summary, summary_obj)
    return summary_obj


def _is_bundled(model, resolved: Path) -> bool:
    from ._paths import models_dir

    try:
        return not Path(model).expanduser().exists() and resolved.resolve().parent == models_dir().resolve()
    except FileNotFoundError:
        return False


def _request(options: dict[str, Any]) -> dict[str, Any]:
    """What decides, with the weights, whether a finished case can be skipped: the options that differ
    from ``predict``'s defaults (so spelling a default out changes nothing, and an option added to
    ``predict`` later does not invalidate earlier runs), the device aside."""
    import inspect

    from .inference import predict

    defaults: dict[str, Any] = {}
    for fn in (predict, getattr(importlib.import_module(predict.__module__), "_iter_predict", None)):
        if fn is None:
            continue
        params = inspect.signature(fn).parameters.values()
        defaults = {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY and p.default is not p.empty}
        if defaults:
            break

    def same(a, b) -> bool:
        return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)

    return {k: options[k] for k in sorted(options)
            if k != "device" and not (k in defaults and same(options[k], defaults[k]))}


def _run_serial(todo: Sequence[tuple[int, _Job]], model, slot: _Slot, prefetch: int,
                report: Callable[[int, CaseResult], None]) -> None:
    """Cases on ``1 + prefetch`` threads sharing one compute slot, started in order."""
    def guarded(job: _Job) -> CaseResult:
        try:
            return _run_case(job, model, slot)
        except Exception as exc:  # an unexpected error fails this case only
            return CaseResult(case=job.case, input=job.src, status="failed", error=_describe_exc(exc))

    if prefetch <= 0:
        for i, job in todo:
            report(i, guarded(job))
        return
    pool = ThreadPoolExecutor(max_workers=1 + prefetch, thread_name_prefix="attnseg-case")
    try:
        futures = {pool.submit(guarded, job): i for i, job in todo}
        for fut in as_completed(futures):
            report(futures[fut], fut.result())
    except BaseException:  # Ctrl-C: start no further case (those running finish their atomic writes)
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def _run_dask(client, todo: Sequence[tuple[int, _Job]], model_path: str, sha: str | None, retries: int,
              report: Callable[[int, CaseResult], None]) -> int:
    """One task per case on the client's workers; returns how many workers ran cases."""
    from distributed import as_completed as dask_completed

    futures = {}
    for i, job in todo:
        fut = client.submit(_dask_case, job, model_path, sha, key=f"attnseg-case-{job.case}-{job.run}",
                            retries=retries, pure=False)
        futures[fut] = (i, job)
    workers: set[str] = set()
    for fut in dask_completed(list(futures)):
        i, job = futures[fut]
        try:
            res = fut.result()
        except Exception as exc:  # retries exhausted, or the worker died too often (KilledWorker)
            res = CaseResult(case=job.case, input=job.src, status="failed", error=_describe_exc(exc))
        if res.worker:
            workers.add(res.worker)
        report(i, res)
    return len(workers)


def _describe_exc(exc: BaseException) -> str:
    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return f"unexpected error: {last}"


def _write_summary(path: Path, summary: CohortSummary) -> Path:
    from ._files import atomic_write

    def dump(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=SUMMARY_COLUMNS)
            w.writeheader()
            for c in summary.cases:
                w.writerow(c.row())

    return atomic_write(path, dump)


# ----------------------------------------------------------------------------------------------
# a Dask client for the command line
# ----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def dask_client(spec: str | int = "auto", *, echo: Callable[[str], Any] = print):
    """Yield ``(client, threads)`` for ``attnseg predict --dask``; close what was started here.

    ``spec``: a scheduler address (``tcp://host:8786``) to use an existing cluster; a number N to
    start a ``LocalCluster`` of N worker processes; ``auto``: one worker per GPU, or two CPU workers
    without one. Local workers get two threads (one computes while the other reads or writes) and,
    on the CPU, an equal share of the cores for torch (``threads``; None: leave torch alone).
    """
    import importlib.util

    from distributed import Client, LocalCluster

    spec = str(spec).strip()
    cluster = None
    threads = None
    if "://" in spec or ":" in spec:
        client = Client(spec)
    else:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        try:
            n = (gpus or 2) if spec == "auto" else int(spec)
        except ValueError:
            raise InputError(f"--dask takes a number of workers or a scheduler address (tcp://host:8786); got "
                             f"{spec!r}. Put --dask after the inputs, or write --dask=N.") from None
        if n < 1:
            raise InputError(f"--dask needs at least one worker; got {n}.")
        threads = None if gpus else max(1, (os.cpu_count() or 2) // n)
        dashboard = ":8787" if importlib.util.find_spec("bokeh") else None
        cluster = LocalCluster(n_workers=n, threads_per_worker=2, processes=True, dashboard_address=dashboard)
        client = Client(cluster)
    try:
        services = client.scheduler_info().get("services", {})
        if "dashboard" in services:
            echo(f"Dask dashboard: {client.dashboard_link}")
        else:
            echo("Dask dashboard: none (install bokeh>=3.1 on the scheduler for one)")
        echo(f"Dask: {len(client.scheduler_info().get('workers', {}))} workers at {client.scheduler.address}")
        yield client, threads
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
