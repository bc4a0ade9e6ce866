"""The DICOM SEG among a case's outputs (``attnseg predict --dicom-seg``): its name, whether a run of ours wrote it
(a user's own ``<stem>_seg.dcm`` is never replaced nor deleted) and writing it (:mod:`.data.dicom_seg_write`), also
alone from the saved mask of a case finished before without it (:func:`write_seg_only`).
Imported by :mod:`.results`, whose names these functions use."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def seg_path(out: Path, src: Path, name: str | None = None) -> Path:
    """Where ``--dicom-seg`` writes the DICOM SEG of ``src``: ``<stem>_seg.dcm``."""
    from .data.dicom_seg_write import SEG_SUFFIX
    from .results import case_name

    return Path(out) / f"{case_name(src, name)}{SEG_SUFFIX}"


def seg_is_ours(out: Path, src: Path, name: str | None = None) -> bool:
    """``<stem>_seg.dcm`` is there and a run of ours wrote it: its record names it, or the marker of a run killed
    half-way says it was to write one."""
    from .results import partial_marker, record_path

    seg = seg_path(out, src, name)
    if not seg.is_file():
        return False
    for file, key in ((record_path(out, src, name), "outputs"), (partial_marker(out, src, name), "dicom_seg")):
        try:
            value = json.loads(file.read_text()).get(key)
        except (OSError, ValueError, AttributeError):
            continue
        if value is True or (isinstance(value, list) and seg.name in value):
            return True
    return False


def foreign_seg(out: Path, src: Path, name: str | None = None) -> Path | None:
    """A ``<stem>_seg.dcm`` in ``out`` that no run of ours wrote (the user's own SEG): ``--dicom-seg`` refuses the
    input rather than replace it."""
    seg = seg_path(out, src, name)
    return seg if seg.exists() and not seg_is_ours(out, src, name) else None


def seg_refusal_note(out: Path, src: Path, model=None, request: dict | None = None) -> str:
    """What a refused lone ``--dicom-seg`` run on a finished case adds: its earlier run, of this model and these options,
    asked for the SEG and wrote none because the mask has no foreground (computing again would write none either);
    a mask corrected since: how to send it as a SEG; else that ``--overwrite`` computes the case again with its DICOM
    SEG; '' when the SEG is there."""
    from .results import _jsonable, _stat, record_path

    if seg_path(out, src).exists():
        return ""
    try:
        record = json.loads(record_path(out, src).read_text())
    except (OSError, ValueError):
        record = None
    if isinstance(record, dict) and (record.get("request") or {}).get("dicom_seg") and not record.get("dicom_seg"):
        mask = out / str(record.get("mask") or "")
        if not mask.is_file() or (record.get("output_stats") or {}).get(mask.name) != _stat(mask):
            return ("; its mask was changed since that run: to send your mask to the PACS, open it in napari and save it "
                    "as DICOM SEG (Save mask); --overwrite computes the case again, keeping your mask in edited_masks")
        sha = getattr(getattr(model, "card", None), "weights_sha256", None)
        same = (model is None or record.get("model_weights_sha256") == sha) and \
            (request is None or record.get("request") == _jsonable(request))
        if same:
            return ("; it was segmented with --dicom-seg already and its mask has no foreground, so there is no DICOM SEG "
                    "to write (segmenting it again with the same model finds none either)")
    return "; --overwrite computes the case again, with its DICOM SEG"


def write_seg(out: Path, src: Path, vol, model, pred, name: str | None, say, written: list[Path]) -> str | None:
    """The DICOM SEG of ``pred``'s mask on the series ``src`` (:mod:`.data.dicom_seg_write`): its name once written,
    else None (why: a warning of ``pred``)."""
    from . import __version__
    from .data.dicom_seg_write import algorithm_of, write_dicom_seg
    from .inference.outputs import room_for
    from .results import _model_info

    path = seg_path(out, src, name)
    if say is not None:
        say(f"writing {path.name} (DICOM SEG of the mask on {Path(src).name})")
    algorithm, version, sha = algorithm_of(_model_info(model))  # (as napari's Save mask names it)
    written.append(path)  # (removed with the others if a write fails)
    with room_for(path, out, src, pred):
        done, note = write_dicom_seg(path, src, np.asarray(pred.labels), [str(c) for c in pred.classes], algorithm,
                                     version, vol.affine, f"napari-attnseg {__version__}", weights_sha256=sha)
    if note:
        pred.warnings.append(note)
    if not done:
        written.remove(path)
    return path.name if done else None


def write_seg_only(out: Path, src: Path, model, request: dict, say=None,
                   name: str | None = None) -> tuple[dict, list[str]] | None:
    """``attnseg predict --dicom-seg`` on a case finished before without its SEG: when its record is of the same input,
    weights and request (``request`` but for ``dicom_seg``) and its mask is as that run wrote it, the SEG of the saved
    mask is written (as that run would have written it) and the record updated to list it; the updated record and the
    warnings of the SEG's write, or None when the case is to be computed (another request, a mask changed since, a SEG
    there, a run stopped half-way, a record of a lone run before requests were recorded). Never touches a SEG that is
    there (the user's, or one corrected since: :func:`foreign_seg`, keep_edited_seg).
    ``name``: the case's (a cohort's, :func:`.results.case_name`)."""
    from types import SimpleNamespace

    from ._files import atomic_write
    from .data.io import read_image
    from .data.manifest import write_json_atomic
    from .results import _jsonable, _same_input, _stat, finished_record, partial_marker, record_path

    out, src = Path(out), Path(src)
    record = finished_record(out, src, name)
    marker, seg = partial_marker(out, src, name), seg_path(out, src, name)
    sha = getattr(getattr(model, "card", None), "weights_sha256", None)
    if not request.get("dicom_seg") or record is None or marker.exists() or seg.exists() or not sha \
            or record.get("model_weights_sha256") != sha or record.get("dicom_seg") \
            or record.get("request") != _jsonable({k: v for k, v in request.items() if k != "dicom_seg"}) \
            or not _same_input(record, src):
        return None
    mask = out / str(record["mask"])
    if not mask.is_file() or (record.get("output_stats") or {}).get(mask.name) != _stat(mask):
        return None  # (a mask corrected since: the SEG would not be the model's; the usual rules apply)
    saved = read_image(mask)
    pred = SimpleNamespace(labels=np.asarray(saved.data), classes=list(record.get("classes") or []), warnings=[],
                           probabilities=None, attention=[])
    atomic_write(marker, lambda tmp: Path(tmp).write_text(json.dumps({"input": str(src), "dicom_seg": True})))
    written: list[Path] = []
    try:
        done = write_seg(out, src, saved, model, pred, name, say, written)  # (None: no foreground, a warning says)
        if done is not None:
            record["outputs"] = [*record.get("outputs", []), done]
            record["output_stats"] = {**(record.get("output_stats") or {}), done: _stat(seg)}
        record.update(dicom_seg=done, request=_jsonable(request),
                      warnings=[*record.get("warnings", []), *pred.warnings])
        write_json_atomic(record_path(out, src, name), record)
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
    finally:
        marker.unlink(missing_ok=True)
    return record, pred.warnings
