"""Dask: the per-worker model cache, the case task, and a client for the command line."""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from ..errors import AttnSegError, InputError
from .cases import CaseResult, _describe_exc, _Job, _run_case, _Slot

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
    from ..checkpoint import load_model
    from ..errors import CheckpointError

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
        importlib.import_module(f"napari_attnseg.data.{name}")


def _dask_case(job: _Job, model_path: str, sha: str | None) -> CaseResult:
    """A Dask task: one case on this worker, with its cached model and its compute slot."""
    import logging

    from distributed import get_worker

    # the case's warnings travel back in its result and are printed with its name: not also by the worker
    logging.getLogger("napari_attnseg.inference.engine").setLevel(logging.ERROR)

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

    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # a hard dependency, but an install with --no-deps or a split conda env lacks it
        raise InputError(f"--dask needs Dask's distributed scheduler, which is not installed here ({exc}): "
                         "pip install distributed (or run without --dask).") from None

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
