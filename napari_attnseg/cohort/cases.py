"""One case of a cohort: its result, the summary, and read -> compute -> write (serially or on a worker)."""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data.orientation import volume_codes
from ..errors import AttnSegError, Cancelled

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from ..data.volume import Volume

SUMMARY_NAME = "cohort_summary.csv"
SUMMARY_COLUMNS = ("case", "status", "seconds", "voxels_per_s", "wait_s", "warnings", "error", "input", "worker",
                   "run")
# the columns of summaries written before the ``run`` column (still merged into)
_EARLIER_COLUMNS = SUMMARY_COLUMNS[:-1]
CSV_PATH_COLUMNS = ("path", "input", "image", "file", "filename", "case")
# keyword arguments of `predict` that the cohort sets per case or that cannot travel
_NOT_FORWARDED = ("progress", "cancel", "out", "spacing")


@dataclass
class CaseResult:
    """How one case went: ``status`` is ``done`` (computed now), ``skipped`` (finished before), ``failed`` or
    ``interrupted`` (not reached: the run was stopped by Ctrl+C)."""

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
    # a case another run into out computed while this one ran (skipped here): that run's start and its result, which
    # the summary shows (the row that run writes, whichever of the two ends last)
    by_other_run: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def voxels_per_s(self) -> float:
        return self.voxels / self.seconds if self.seconds > 0 else 0.0

    def row(self) -> dict[str, Any]:
        """The summary's row (without ``run``); a case another run computed meanwhile: that run's row, with ``run``."""
        other = self.by_other_run
        if other.get("result") and other.get("run"):
            try:
                return {**CaseResult(**{**other["result"], "by_other_run": {}}).row(), "run": str(other["run"])}
            except TypeError:  # (a result of another version)
                pass
        return {"case": self.case, "status": self.status, "seconds": f"{self.seconds:.3f}",
                "voxels_per_s": f"{self.voxels_per_s:.0f}", "wait_s": f"{self.wait_s:.3f}",
                "warnings": " | ".join(self.warnings), "error": self.error, "input": self.input,
                "worker": self.worker}


@dataclass
class CohortSummary:
    """What a cohort run did. ``csv``: the summary file written in ``out``; ``kept``: rows of earlier runs'
    cases (not in this run) it keeps; ``note``: what happened to an earlier file of the summary's name."""

    cases: list[CaseResult]
    wall_s: float
    slots: int  # compute slots that ran cases (1 in this process, one per Dask worker used)
    csv: Path | None = None
    kept: int = 0
    note: str = ""

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
    def by_other_runs(self) -> int:
        """Cases skipped because another run into ``out`` computed them while this one ran."""
        return sum(c.status == "skipped" and bool(c.by_other_run) for c in self.cases)

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
        from .summary import describe_summary  # (one process in words; several --dask workers keep the slots)

        return describe_summary(self)


# ----------------------------------------------------------------------------------------------
# one case (the same code serially and on a Dask worker)
# ----------------------------------------------------------------------------------------------
class _Slot:
    """The compute slot of one process or worker: a lock, and since when it has been free."""

    def __init__(self) -> None:
        from ..inference import CancelToken

        self.lock = threading.Lock()
        self.free_since = time.perf_counter()
        self.cancel = CancelToken()  # Ctrl-C: the case computing stops, no further case starts computing


@dataclass
class _Job:
    src: str
    case: str  # what its outputs are named after (outputs.case_names: its stem, or PAT001_ST001_SE002)
    out: str
    options: dict[str, Any]
    request: dict[str, Any]
    threads: int | None = None
    run: str = ""  # this cohort run: a case it finished is not computed again (a lost worker's result)
    channel: int | None = None  # of a multi-channel TIFF (inputs.pick_channel)
    weights: str | None = None  # the weights' sha256: a case another run finished meanwhile is skipped (.lock)
    overwrite: bool = False
    wait: bool = True  # for a case another run into out is computing; False: its result is "busy" (run again later)
    started: str = ""  # this run's start time (its summary rows' ``run``), kept in the record for another run's summary


def read_with_channel(src, channel: int | None):
    """``(volume, channel left to pick)``: the input read (:func:`.inputs.read_input`), except that ``--channel K``
    on a 4D NIfTI reads its volume K alone (the channel is then used up: None)."""
    from ..data import image_format
    from .inputs import read_input

    if channel is not None and image_format(src) == "nifti":
        from ..data.nifti import nifti_volumes, read_nifti

        if nifti_volumes(Path(src)) > 1:
            return read_nifti(Path(src), volume=channel), None
    return read_input(src), channel


def read_for_model(src, channel: int | None, model) -> Volume:
    """The image ``model`` reads from the input ``src``: read with ``--channel`` (:func:`read_with_channel`), then the
    channel, colour or slide stain it takes (:func:`.inputs.pick_channel`). What predict, suggest and evaluate read."""
    from .inputs import pick_channel

    vol = pick_channel(*read_with_channel(src, channel), int(getattr(model, "in_channels", 1)), src,
                       dims=getattr(model, "spatial_dims", None))
    return fill_inserted(vol)


def fill_inserted(vol: Volume) -> Volume:
    """A DICOM series' slices inserted where images are missing (the series' lowest value: a black slab across a
    brain) are given to the model as the mean of their nearest real neighbours, so that the slices beside them are
    segmented as without the gap (a mask on an inserted slice still means nothing, as the reader's warning says)."""
    import numpy as np

    from ..data.dicom import inserted_slices
    from ..data.volume import Volume

    data = vol.data
    if np.ndim(data) != 3 or not (gone := inserted_slices(vol.meta, int(np.shape(data)[0]))):
        return vol
    return Volume(fill_slices(np.asarray(data), gone), vol.spacing, vol.affine, vol.meta)


def fill_slices(data: np.ndarray, gone: list[int]) -> np.ndarray:
    """A copy of the (z, y, x) array ``data`` whose slices ``gone`` are the mean of their nearest other slices (the
    model's input for a series' missing images: :func:`fill_inserted`, napari's Segment tab)."""
    import numpy as np

    real = [k for k in range(data.shape[0]) if k not in set(gone)]
    out = np.array(data, copy=True)
    for k in gone:
        below, above = max((r for r in real if r < k), default=None), min((r for r in real if r > k), default=None)
        near = [data[r].astype(np.float32) for r in (below, above) if r is not None]
        if near:
            mean = sum(near) / len(near)
            out[k] = (np.rint(mean) if data.dtype.kind in "iub" else mean).astype(data.dtype)
    return out


def _read_case(src: str, channel: int | None):
    """Read a case fully into memory (a memory-mapped TIFF would otherwise be read during compute), and the
    channel left to pick (:func:`read_with_channel`)."""
    import numpy as np

    vol, channel = read_with_channel(src, channel)
    if not isinstance(vol.data, np.ndarray) or isinstance(vol.data, np.memmap):
        vol.data = np.array(vol.data)
    return vol, channel


def _cohort_channel(vol: Volume, channel: int | None, dims: int | None) -> tuple[int | None, str]:
    """``--channel K`` in a cohort picks a channel of the inputs that have channels (a 4D NIfTI's volume was read
    already); an input of one channel runs as it is, with a warning, instead of failing (as a lone file does): a
    folder mixing one 4D NIfTI with 3D scans is run with the --channel its 4D file asks for."""
    import numpy as np

    from ..data.hyperstack import channel_last

    if channel in (None, 0):
        return channel, ""
    axes = str(vol.meta.get("axes") or "")
    if len(axes) == np.ndim(vol.data) and any(a in "CS" for a in axes):
        return channel, ""
    if dims == 2 and len(axes) == 3 and axes[0] in "QI" and 2 <= int(np.shape(vol.data)[0]) <= 4 \
            or channel_last(np.shape(vol.data), axes, dims):
        return channel, ""  # (planes along an unnamed axis, first or last: pick_channel takes the plane)
    return None, f"--channel {channel} does not apply to this input (one channel): segmented as it is"


def _run_case(job: _Job, model, slot: _Slot, worker: str = "") -> CaseResult:
    """read -> (slot) compute -> write, holding the case's lock (:mod:`.lock`: another run into ``out`` at once
    neither computes it too nor takes its half-written files for finished); an :class:`AttnSegError` is a failed case,
    anything else raises. A case another run holds waits for it (``job.wait``) or is ``busy``; so is one whose lock
    another run took over while this one computed it (another machine's run, this one paused longer than
    :data:`.lock.STALE_S`): that run writes it, not this one too."""
    from ..results import case_state, finished_record
    from .lock import CaseLock, lock_path

    if job.run:
        record = finished_record(Path(job.out), Path(job.src), job.case)
        if record and record.get("cohort_run") == job.run:  # finished by this run on a worker since lost
            return CaseResult(**record["cohort_result"])
    lock = CaseLock(lock_path(job.out, job.src, job.case), job.run)
    holder = lock.acquire(wait=float("inf") if job.wait else 0.0, cancelled=lambda: slot.cancel.cancelled)
    if holder is not None:
        if slot.cancel.cancelled:
            raise Cancelled("The run was interrupted before this case.")
        return CaseResult(case=job.case, input=job.src, status="busy", worker=worker,
                          warnings=[f"{holder.describe()} into {job.out} is computing it"])
    try:
        if not job.overwrite and job.weights and case_state(
                Path(job.out), Path(job.src), job.weights, job.request, job.case) == "done":
            record = finished_record(Path(job.out), Path(job.src), job.case) or {}
            return CaseResult(case=job.case, input=job.src, status="skipped", worker=worker, warnings=[
                *(record.get("warnings") or []), other_run_warning(job.out)], by_other_run=other_run(record, job.run))
        return _compute_case(job, model, slot, worker, lock.owned)
    except _TakenOver:
        pass
    finally:
        lock.release()
    return _run_case(job, model, slot, worker)  # (held by the run that took it over now: busy, or waited for)


class _TakenOver(Exception):
    """The case's lock was taken over by another run while this one computed it: nothing is written."""


def other_run_warning(out) -> str:
    return f"computed by another attnseg run into {out} while this one ran: not computed again"


def other_run(record: dict, run: str) -> dict[str, Any]:
    """What a finished case's ``record`` says of the cohort run that computed it, when that is not ``run``: its start
    and its result (:attr:`CaseResult.by_other_run`); {} otherwise."""
    result, started = record.get("cohort_result"), record.get("cohort_started")
    if record.get("cohort_run") in (None, run) or not isinstance(result, dict) or not started:
        return {}
    return {"run": str(started), "result": result}


def _compute_case(job: _Job, model, slot: _Slot, worker: str = "", owned=lambda: True) -> CaseResult:
    """:func:`_run_case`'s work, the lock held (``owned()``: still held, looked at before writing)."""
    import math

    from ..inference import predict
    from ..results import write_prediction

    t0 = time.perf_counter()
    res = CaseResult(case=job.case, input=job.src, status="failed", worker=worker)
    queued = 0.0  # waiting for the compute slot (another case computing): not this case's time
    try:
        from ..data.mask_input import label_map_warning, refuse_our_output
        from ..inference.checks import check_time_axis
        from .inputs import pick_channel
        from .moved import input_identity
        from .outputs import (
            is_name_too_long,
            keep_edited_mask,
            keep_edited_seg,
            kept_warning,
            too_long_message,
        )

        vol, channel = _read_case(job.src, job.channel)
        refuse_our_output(job.src, vol.meta)  # a mask attnseg predict wrote, listed in a CSV: this case fails, saying so
        identity = input_identity(job.src)  # (an input moved later keeps its results: moved.moved_from)
        channel, unused = _cohort_channel(vol, channel, getattr(model, "spatial_dims", None))
        vol = pick_channel(vol, channel, int(getattr(model, "in_channels", 1)), job.src,
                           dims=getattr(model, "spatial_dims", None))
        vol = fill_inserted(vol)  # (a series' missing image: its neighbours for the model, not a black slab)
        label_map = label_map_warning(vol.data, job.src)  # (after the channel pick: a grey saved as RGB is no mask)
        # a time-lapse of volumes fails naming its axes; frames a 3D model takes for slices: a warning (as one file)
        time_lapse = check_time_axis(str(vol.meta.get("axes") or ""), tuple(vol.data.shape), job.src,
                                     int(getattr(model, "in_channels", 1)) > 1, getattr(model, "spatial_dims", None))
        t1 = time.perf_counter()
        res.read_s = t1 - t0
        with slot.lock:
            t2 = time.perf_counter()
            queued = t2 - t1
            if slot.cancel.cancelled:  # interrupted while this case was read ahead: nothing computed or written
                raise Cancelled("The run was interrupted before this case.")
            res.wait_s = max(0.0, t2 - slot.free_since)
            try:
                if job.threads:
                    import torch

                    if torch.get_num_threads() != job.threads:
                        torch.set_num_threads(job.threads)
                pred = predict(model, vol.data, spacing=vol.spacing, orientation=volume_codes(vol), cancel=slot.cancel,
                               **job.options)
            finally:
                slot.free_since = time.perf_counter()
            t3 = slot.free_since
        res.compute_s = t3 - t2
        res.voxels = int(math.prod(pred.labels.shape))
        for key in ("note", "warning"):  # what the reader noticed (uneven DICOM slices, grey saved as RGB, ...)
            if vol.meta.get(key):
                pred.warnings.insert(0, str(vol.meta[key]))
        if time_lapse:
            pred.warnings.insert(0, time_lapse)
        if label_map:
            pred.warnings.insert(0, label_map)
        if unused:
            pred.warnings.insert(0, unused)
        if not owned():  # (taken over by another run meanwhile: it writes the case)
            raise _TakenOver(job.case)
        for keep in (keep_edited_mask, keep_edited_seg):  # --overwrite, or edited during the run: the user's work stays
            if kept := keep(job.out, job.src, job.case):
                pred.warnings.append(kept_warning(kept, job.out, job.src, job.case))
        res.warnings = list(pred.warnings)
        done = dict(asdict(res), status="done", seconds=time.perf_counter() - t0 - queued)
        write_prediction(job.out, job.src, vol, model, pred, request=job.request, name=job.case,
                         extra={**identity, **({"cohort_run": job.run, "cohort_result": done, "cohort_started": job.started}
                                                 if job.run else {})})
        res.warnings = list(pred.warnings)  # (with what writing added: no SEG written, voxels left out, a SEG removed)
        res.write_s = time.perf_counter() - t3
        res.status = "done"
    except AttnSegError as exc:
        res.error = str(exc)
    except OSError as exc:
        if not is_name_too_long(exc):
            raise
        res.error = too_long_message(job.out, job.src, case=job.case)
    except MemoryError as exc:  # this case did not fit; the others still run (the summary says what to try)
        res.error = (f"ran out of memory ({' '.join(str(exc).split()) or 'MemoryError'}); try --no-prob (no "
                     "probability map), without --attention/--tta, a crop of the image, or a machine with more memory.")
    res.seconds = time.perf_counter() - t0 - queued  # read + compute + write
    return res


def _describe_exc(exc: BaseException) -> str:
    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return f"unexpected error: {last}"


from .summary import (  # noqa: E402, F401 (their home before summary.py; cases is imported first by it)
    _aside_name,
    _free_name,
    _merge_rows,
    _read_summary,
    _read_summary_table,
    _write_summary,
    summary_refusal,
)
