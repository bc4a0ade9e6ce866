"""``predict_cohort``: the cohort, serially with prefetch or on a Dask client."""

from __future__ import annotations

import datetime
import importlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import InputError
from .cases import (
    _NOT_FORWARDED,
    SUMMARY_NAME,
    CaseResult,
    CohortSummary,
    _describe_exc,
    _Job,
    _read_summary,
    _run_case,
    _Slot,
    _write_summary,
    other_run,
    other_run_warning,
    summary_refusal,
)
from .held import distinct_names, finished_or_missing, orphan_message, orphaned_mask
from .inputs import EDITED_DIR, gather
from .lock import CaseLock
from .moved import adopt, moved_from
from .outputs import case_names, kept_names, name_too_long, other_scan_message
from .series import same_scan
from .summary import row_key
from .workers import _run_dask

SEG_ONLY = "from the saved mask"  # (in the note of a case whose SEG alone was written: cli's lines tell it by this)


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
    channel: int | None = None,
    dicom_seg: bool = False,
    **options: Any,
) -> CohortSummary:
    """Segment every case of ``inputs`` into ``out``; return (and write as CSV) a summary.

    Args:
        model: a bundled model name or a ``.safetensors`` path, or a model from ``load_model``
            (with a ``client`` it must have been loaded from a file: workers load it themselves).
        inputs: a folder, a glob, a CSV of paths, a file, or a list of these (:func:`collect_inputs`).
        out: the output folder (``<stem>_mask``, ``_prob``, maps, ``<stem>_predict.json`` per case; DICOM series
            folders of one name under two patients are named with their folders: ``PAT001_ST001_SE002_mask``; a series
            keeps the name a run into ``out`` gave it, :func:`.outputs.kept_names`).
        client: a ``dask.distributed.Client``: run the cases on its workers (one task per case).
        overwrite: also redo finished cases and replace outputs that may have been edited (a mask changed
            since attnseg wrote it is moved to ``out/edited_masks/``, never deleted).
        prefetch: cases read (and written) by extra threads while one computes; 0 reads in turn.
        retries: Dask retries of a case that raised an unexpected error (a lost worker is always
            retried, up to Dask's ``distributed.scheduler.allowed-failures``).
        threads: ``torch.set_num_threads`` for the compute (per worker with a client).
        summary: name of the summary CSV in ``out`` (None: none written). One written there before is
            updated: this run's rows replace those of its cases, the rows of other cases are kept
            (``CohortSummary.kept``), and so are columns a user added to it; a file of that name this
            command did not write is refused before any case (with ``overwrite`` it is kept, renamed
            ``<name>.yours.csv``, and the summary takes its name).
        progress: called with ``(finished, total, CaseResult)`` after each case.
        channel: the channel to segment of multi-channel or RGB TIFFs (:func:`~.inputs.pick_channel`).
        dicom_seg: also write each mask as a DICOM SEG on its DICOM series (``<case>_seg.dcm``); every case must be
            DICOM (others are refused before any case). A case finished with a SEG is skipped by a run without.
        **options: keyword arguments of :func:`napari_attnseg.predict` (``attention``, ``tile``,
            ``overlap``, ``device``, ``precision``, ``mode``, ``tta``, ``return_probabilities``, ...);
            with the weights' sha256 they decide whether a finished case can be skipped.
    """
    from ..checkpoint import read_card, resolve_model_path
    from ..results import (
        case_state,
        foreign_message,
        foreign_outputs,
        other_input,
        record_path,
        writable_folder,
    )

    t_start, t_wall = time.perf_counter(), time.time()
    bad = sorted(set(options) & set(_NOT_FORWARDED))
    if bad:
        raise InputError(f"predict_cohort sets {', '.join(bad)} itself for every case; leave them out.")
    _check_option_names(options)
    got = gather(inputs, exclude=out)
    cases = got.cases
    if not cases:
        shown = str(inputs) if isinstance(inputs, (str, os.PathLike)) else ", ".join(map(str, inputs))
        zarr = any(str(p).rstrip("/\\").lower().endswith(".zarr") for p in ([inputs] if isinstance(
            inputs, (str, os.PathLike)) else inputs))
        raise InputError(f"No images found in {shown}: check the folder, the pattern or the CSV (NIfTI, DICOM, "
                         "TIFF inputs)." + (" A Zarr store is read by the Python API (predict(model, zarr.open(PATH))) "
                                            "and by napari, not by the command line." if zarr else "")
                         + "".join(f" {note}." for note in got.notes))  # (why: a PACS tree's series lie deeper)
    if dicom_seg:
        from ..data.dicom_seg_write import refuse_not_dicom

        refuse_not_dicom([Path(c) for c in cases])
    out = writable_folder(Path(out))
    if summary is not None and not (out / summary).parent.is_dir():  # (it failed after every case, on its lock file)
        raise InputError(f"--summary {summary}: its folder {(out / summary).parent} does not exist (a relative path is "
                         "taken inside --out): give a file name, or an absolute path in an existing folder. Nothing was run.")
    earlier = _read_summary(out / summary) if summary is not None else []
    if earlier is None and not overwrite:
        raise InputError(summary_refusal(out / summary))  # before any case: the user's file stays as it is
    before = {row_key(r) for r in earlier or []}  # (rows another run writes while this one runs are told from these)

    loaded = seg_model = resolved = None
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
    if channel is not None:
        request["channel"] = int(channel)
    if dicom_seg:  # (results.write_prediction writes the SEG as the request says)
        request["dicom_seg"] = True
    run = uuid.uuid4().hex[:12]
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")

    results: dict[int, CaseResult] = {}
    todo: list[tuple[int, _Job]] = []
    seg_todo: list[tuple[int, _Job]] = []
    by_name: dict[str, int] = {}
    names = case_names(cases)  # series folders of one name under two patients: PAT001_ST001_SE002, PAT002_ST001_SE002
    # ... but a series keeps the name an earlier run into out gave it; Case3 and case3 (one on macOS) get two names
    names, renamed = distinct_names(out, cases, kept_names(out, cases, names))
    for i, src in enumerate(cases):
        name = names[i]
        if name in by_name:
            results[i] = CaseResult(case=name, input=str(src), status="failed",
                                    error=f"{src} has the same name as {cases[by_name[name]]}; their outputs would "
                                          "collide in one folder. Rename one, or run them into separate folders.")
            continue
        by_name[name] = i
        why = got.hints.get(str(src)) if not Path(src).exists() else None
        why = (f"{src} does not exist: {why}. Correct that row of the CSV (or put the file back) and run the same "
               "command again: the finished cases are skipped." if why else name_too_long(out, src, name))
        if why:  # a CSV row relative to the working directory, a name too long for the outputs' names
            results[i] = CaseResult(case=name, input=str(src), status="failed", error=why)
            continue
        state = case_state(out, src, sha, request, name)
        copy_of = None
        if state == "other":  # (replacing them mixed two patients' results under one name)
            other = other_input(json.loads(record_path(out, Path(src), name).read_text()), Path(src))
            if other is None or not same_scan(Path(src), other):
                results[i] = CaseResult(case=name, input=str(src), status="failed",
                                        error=other_scan_message(out, Path(src), other, name))
                continue
            copy_of, state = other, case_state(out, other, sha, request, name)  # a copy: its results are this one's
        moved = moved_from(out, Path(src), sha, request, name) if state in ("stale", "edited") else None
        if (state == "done" or moved is not None) and not overwrite:  # the summary keeps what the run that made it said
            record, gone = finished_or_missing(out, Path(copy_of or src), name)  # (one read of the record)
            gone = gone if state == "done" else []
            meanwhile = other_run(record, run) if _written_since(out, Path(copy_of or src), name, t_wall) else {}
            adopted = adopt(out, Path(src), name, moved) if moved else ""
            what = "series" if Path(src).is_dir() else "file"
            results[i] = CaseResult(case=name, input=str(src), status="skipped", by_other_run=meanwhile,
                                    warnings=list(record.get("warnings") or []) + ([
                                        f"the same scan as {copy_of} (the same images): its results ({name}) are "
                                        "kept, not computed again"] if copy_of else []) + ([
                                        f"the same {'images' if what == 'series' else 'content'} as {moved}, whose "
                                        f"results ({name}) these are (the {what} moved or exported again): kept, not "
                                        "computed again" + (f"; {adopted}" if adopted else "")] if moved else [])
                                    + ([other_run_warning(out)] if meanwhile else [])
                                    + ([f"{', '.join(gone)} missing from {out}: not written again, the case's mask "
                                        "having been corrected since its run (to compute the case again, move that "
                                        "mask aside and run the same command)"] if gone else []))
            continue
        orphan = orphaned_mask(out, src, name) if state == "foreign" else None  # (the user deleted the record)
        if state == "foreign" and not (orphan and overwrite):
            results[i] = CaseResult(case=name, input=str(src), status="failed", error=orphan_message(
                out, Path(src), name, *orphan) if orphan else foreign_message(out, Path(src), foreign_outputs(
                    out, Path(src), name), name))
            continue
        if state == "edited" and not overwrite:
            results[i] = CaseResult(case=name, input=str(src), status="failed", error=(
                f"{out} holds outputs for this input that are not from an unchanged earlier run (a mask may "
                "have been corrected by hand); to redo it, run this input alone with --overwrite (overwrite=True in "
                "Python; over the whole cohort it redoes every finished case too): a mask changed since attnseg wrote "
                f"it is then kept in {out / EDITED_DIR}, not deleted."))
            continue
        job = _Job(src=str(src), case=name, out=str(out), options=dict(options), request=request, channel=channel,
                   threads=threads, run=run, weights=sha, overwrite=overwrite, started=started)
        if state == "stale" and dicom_seg and not overwrite and copy_of is None:  # (finished before without its SEG)
            seg_todo.append((i, job))  # (written below, each said as it is done; computed when that is refused)
            continue
        todo.append((i, job))

    total = len(cases)
    finished = 0

    def report(i: int, res: CaseResult) -> None:
        nonlocal finished
        results[i] = res
        res.warnings[:0] = [renamed[i]] if i in renamed and renamed[i] not in res.warnings else []
        finished += 1
        if progress:
            progress(finished, total, res)

    for i in sorted(results):  # (those decided before any case runs: skipped, failed)
        report(i, results[i])

    def summarise(slots: int) -> CohortSummary:
        for i, job in [*seg_todo, *todo]:  # (only after Ctrl+C: cases not reached)
            results.setdefault(i, CaseResult(case=job.case, input=job.src, status="interrupted",
                                             error="not run: the run was interrupted; run it again to go on"))
        found = CohortSummary(cases=[results[i] for i in range(total)], wall_s=time.perf_counter() - t_start,
                              slots=max(1, slots), note="; ".join(got.notes))
        if summary is not None:  # (two runs ending at once: one after the other, each keeping the other's rows)
            with CaseLock((out / summary).with_name(f".{(out / summary).name}.lock"), run):
                found.csv = _write_summary(out / summary, found, started, overwrite, before)
        return found

    try:
        for i, job in seg_todo:  # (before computing: a refused one joins the cases to compute)
            if seg_model is None:
                seg_model = loaded if loaded is not None else _card_of(resolved)
            if (seg_only := _seg_only(out, Path(job.src), job.case, seg_model, request, run)) is not None:
                report(i, seg_only)
            else:
                todo.append((i, job))
        seg_todo.clear()
        if client is None:
            slots = 1
            if todo:
                if loaded is None:
                    from ..checkpoint import load_model

                    loaded = load_model(model_path, device=options.get("device", "auto"))
                slot = _Slot()
                _run_serial(todo, loaded, slot, prefetch, report)
        else:
            slots = _run_dask(client, todo, model_path, sha, retries, report)
    except KeyboardInterrupt:  # Ctrl+C: the summary still says which cases finished (it was written only at the end)
        summarise(1)
        raise
    return summarise(slots)


def _card_of(path: Path):
    """What a SEG names of the model at ``path`` (its card: name, weights' sha256), without loading its weights."""
    from types import SimpleNamespace

    from ..checkpoint import read_card

    return SimpleNamespace(card=read_card(path), checkpoint_path=str(path), arch=None)


def _seg_only(out: Path, src: Path, name: str, model, request: dict[str, Any], run: str) -> CaseResult | None:
    """``dicom_seg`` on a case finished before without its SEG, with these weights and options, its input and its mask
    untouched: only its SEG is written, from the saved mask (as a lone run: :func:`..results_seg.write_seg_only`), the
    case's lock held; the case is done, with a note. None: the case goes on as usual (another request, a mask corrected
    since, a SEG there, another run holding the case)."""
    from ..results_seg import write_seg_only
    from .lock import CaseLock, lock_path

    t0 = time.perf_counter()
    lock = CaseLock(lock_path(out, src, name), run)
    if lock.acquire(wait=0.0) is not None:
        return None  # (another run into out holds it: waited for, or busy, as a computed case)
    try:
        got = write_seg_only(out, src, model, request, name=name)
    except Exception as exc:  # (the SEG's write failed: this case only, as a computed case's would)
        return CaseResult(case=name, input=str(src), status="failed", error=_describe_exc(exc))
    finally:
        lock.release()
    if got is None:
        return None
    record, notes = got
    seconds = time.perf_counter() - t0
    what = (f"SEG written {SEG_ONLY} {record['mask']} ({record['dicom_seg']})" if record["dicom_seg"] else
            f"no SEG to write {SEG_ONLY} {record['mask']} (see the warning)")
    return CaseResult(case=name, input=str(src), status="done", seconds=seconds, write_s=seconds, warnings=[
        f"{what}: finished before with this model and these options, not computed again", *notes])


def _written_since(out: Path, src: Path, name: str, since: float) -> bool:
    """Whether the record of case ``name`` was written after ``since`` (this run's start: by another run meanwhile)."""
    from ..results import record_path

    try:
        return record_path(out, src, name).stat().st_mtime >= since
    except OSError:
        return False


def _check_option_names(options: dict[str, Any]) -> None:
    """Every keyword of ``options`` is one of ``predict``'s (checked here, not in each case)."""
    import difflib
    import inspect

    from ..inference import predict

    valid = [p.name for p in inspect.signature(predict).parameters.values()
             if p.kind is p.KEYWORD_ONLY and p.name not in _NOT_FORWARDED]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        close = difflib.get_close_matches(unknown[0], valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InputError(f"predict_cohort got unknown option(s) {', '.join(map(repr, unknown))}{hint}; the options "
                         f"are predict's keywords: {', '.join(valid)}, and predict_cohort's own.")


def _is_bundled(model, resolved: Path) -> bool:
    from .._paths import models_dir

    try:
        return not Path(model).expanduser().exists() and resolved.resolve().parent == models_dir().resolve()
    except FileNotFoundError:
        return False


def _request(options: dict[str, Any]) -> dict[str, Any]:
    """What decides, with the weights, whether a finished case can be skipped: the options that differ from ``predict``'s
    defaults (spelling a default out changes nothing; an option added later keeps earlier runs valid), the device aside."""
    import inspect

    from ..inference import predict

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
    busy: list[tuple[int, _Job]] = []  # cases another run into out was computing: done last, once it finished them

    def guarded(job: _Job) -> CaseResult:
        try:
            return _run_case(job, model, slot)
        except Exception as exc:  # an unexpected error fails this case only
            return CaseResult(case=job.case, input=job.src, status="failed", error=_describe_exc(exc))

    def first(i: int, job: _Job, res: CaseResult) -> None:
        if res.status == "busy":
            busy.append((i, replace(job, wait=True)))
        else:
            report(i, res)

    if prefetch <= 0:
        for i, job in todo:
            first(i, job, guarded(replace(job, wait=False)))
    else:
        pool = ThreadPoolExecutor(max_workers=1 + prefetch, thread_name_prefix="attnseg-case")
        try:
            futures = {pool.submit(guarded, replace(job, wait=False)): (i, job) for i, job in todo}
            for fut in as_completed(futures):
                first(*futures[fut], fut.result())
        except BaseException:  # Ctrl-C: stop the case computing (before its writes), compute no case read ahead
            slot.cancel.cancel()
            pool.shutdown(wait=True, cancel_futures=True)  # the threads end within a tile, not after their cases
            raise
        pool.shutdown()
    for i, job in sorted(busy):  # (skipped once the other run finished them; computed if it did not)
        report(i, guarded(job))
