"""Write what ``attnseg predict`` produces for one input, and read it back as the segment widget's layers.

``<stem>_predict.json`` (the run's record) names the input and every output file, and the place of each attention
map on the image grid (a TIFF keeps only its pixel size, not the half-pixel offset of a coarser map) and the unit of
its spacing. Reading it back as layers: :mod:`.results_layers` (its names are importable from here too).

Writing a case is crash-safe: a hidden marker ``.<stem>_predict.partial`` is written first, the old
record is deleted before any output is touched, every file is written atomically and the record is
written last. A case therefore counts as finished only when its record exists (see
:func:`case_state`); a marker without a record means a run died half-way through that case.
"""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .data import input_stat, stem, write_image
from .data.volume import Volume
from .errors import InputError
from .inference.outputs import foreground_float32, map_affine, map_origin, room_for, size_text
from .results_layers import RECORD_SUFFIX, _output, is_record, read_record, record_layers, spacing_unit  # noqa: F401
from .results_seg import foreign_seg, seg_is_ours, seg_path, write_seg

PARTIAL_SUFFIX = "_predict.partial"  # hidden marker: ".<stem>_predict.partial"
SAY_FROM_BYTES = 16_000_000  # outputs this big (before compression) take a while to write: ``say`` names them


# ----------------------------------------------------------------------------------------------
# writing one case
# ----------------------------------------------------------------------------------------------
def case_name(src: str | os.PathLike, name: str | None = None) -> str:
    """What ``src``'s outputs are named after: ``name`` when a cohort gave the case one (series folders of one name
    under two patients: ``PAT001_ST001_SE002``, see :func:`napari_attnseg.cohort.outputs.case_names`), else its stem.
    Every function here that names a case's files takes that ``name``."""
    return name or stem(src)


def output_name(src: Path, suffix: str, fmt: str, name: str | None = None) -> str:
    return f"{case_name(src, name)}_{suffix}" + (".tif" if fmt == "tiff" else ".nii.gz")


def record_path(out: Path, src: Path, name: str | None = None) -> Path:
    return Path(out) / f"{case_name(src, name)}{RECORD_SUFFIX}"


def partial_marker(out: Path, src: Path, name: str | None = None) -> Path:
    return Path(out) / f".{case_name(src, name)}{PARTIAL_SUFFIX}"


def existing_outputs(out: Path, src: Path, name: str | None = None) -> list[Path]:
    """Files an earlier run wrote for ``src`` in ``out`` (mask, prob, maps, reference, record)."""
    out = Path(out)
    if not out.is_dir():
        return []
    s = case_name(src, name)
    names = [f"{s}_mask", f"{s}_prob", f"{s}_image", f"{s}{RECORD_SUFFIX}"]
    found = [p for p in out.iterdir() if p.name.startswith(f"{s}_attention_")
             or any(p.name == n or p.name.startswith(n + ".") for n in names)]
    if seg_is_ours(out, src, name):  # (a user's <stem>_seg.dcm is none of ours: never deleted, see foreign_seg)
        found.append(seg_path(out, src, name))
    order = {f"{s}_mask": 0, f"{s}_prob": 1}  # name the mask first: it is what a user may have corrected
    return sorted(found, key=lambda p: (order.get(p.name.split(".")[0], 2), p.name))


def foreign_outputs(out: Path, src: Path, name: str | None = None) -> list[Path]:
    """Files at ``src``'s output names in ``out`` that no run of ours wrote (no record and no marker of a
    killed run beside them): the user's own, e.g. a reference mask named ``<stem>_mask.tif``. They are
    never replaced, not even with overwrite."""
    if record_path(out, src, name).exists() or partial_marker(out, src, name).exists():
        return []
    return existing_outputs(out, src, name)


def foreign_message(out: Path, src: Path, found: list[Path], name: str | None = None) -> str:
    names = ", ".join(p.name for p in found[:3]) + (", ..." if len(found) > 3 else "")
    return (f"{Path(out)} holds {names}, at the names this run writes for {Path(src).name}, but no run of "
            f"attnseg wrote them (there is no {record_path(out, src, name).name}): your files are never replaced, "
            "not even with --overwrite. Choose another --out, or move or rename them.")


def writable_folder(out: Path, keep: bool = True) -> Path:
    """``out``, created if needed, once a file can be written in it: a read-only or unreachable folder is an
    InputError before any case is read or computed (not a failure per case after the work). ``keep=False``:
    the folders this check created are removed again (the run creates them when it writes)."""
    import tempfile

    created = [p for p in (out, *out.parents) if not p.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".attnseg-write-test-"):
            pass
    except OSError as exc:
        raise InputError(f"--out {out} is not a folder napari-attnseg can write in ({exc.strerror or exc}); "
                         "choose another output folder.") from None
    finally:
        if not keep:
            for folder in created:  # innermost first
                try:
                    folder.rmdir()
                except OSError:
                    break
    return out


def _stat(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def finished_record(out: Path, src: Path, name: str | None = None) -> dict | None:
    """The record of ``src`` in ``out`` if the case is finished (record there, every output it names too)."""
    try:
        record = json.loads(record_path(out, src, name).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or "mask" not in record:
        return None
    return record if all((Path(out) / n).is_file() for n in record.get("outputs") or []) else None


def missing_outputs(out: Path, src: Path, name: str | None = None) -> list[str]:
    """The outputs a case's record names that are not in ``out`` (a probability map the user deleted)."""
    try:
        record = json.loads(record_path(out, src, name).read_text())
    except (OSError, ValueError):
        return []
    return [n for n in record.get("outputs") or [] if not (out / n).is_file()]


def case_state(out: Path, src: Path, weights_sha256: str | None, request: dict[str, Any] | None,
               name: str | None = None) -> str:
    """Where ``src``'s outputs in ``out`` stand, for a resumable run.

    ``done``: a record of the same weights (sha256) and the same request, and every output it names
    is there. ``stale``: outputs of another model or other settings, untouched since that run (their
    size and time are the recorded ones), or the leftovers of a run killed half-way (marker, no
    record): safe to replace. ``edited``: outputs of ours that may hold a user's work (changed since the
    run): replaced only with ``overwrite``. ``foreign``: files at its output names that no run of ours
    wrote (:func:`foreign_outputs`): never replaced. ``other``: the results of another input of the same name that
    still exists (another patient's series folder SE002): never replaced. ``new``: nothing there. ``name``: the
    case's (:func:`case_name`).
    """
    out, src = Path(out), Path(src)
    rec_path = record_path(out, src, name)
    if rec_path.exists():
        try:
            record = json.loads(rec_path.read_text())
        except (OSError, ValueError):
            record = None
        if isinstance(record, dict) and "mask" in record:
            if other_input(record, src) is not None:
                return "other"
            names = list(record.get("outputs") or [])
            present = all((out / n).is_file() for n in names)
            same = (weights_sha256 is not None and record.get("model_weights_sha256") == weights_sha256
                    and _same_request(record.get("request"), _jsonable(request)) and _same_input(record, src))
            if same and present:
                return "done"
            stats = record.get("output_stats") or {}
            mask = out / record["mask"]
            untouched = bool(stats) and (not mask.exists() or stats.get(record["mask"]) == _stat(mask))
            seg = out / str(record.get("dicom_seg") or "")  # (a SEG re-saved from napari: corrected, as a mask)
            if untouched and record.get("dicom_seg") and seg.is_file() and stats.get(seg.name) != _stat(seg):
                untouched = False
            if same and not untouched and mask.is_file():  # a corrected mask, another output deleted (a big prob map):
                return "done"  # finished; computing it again would need --overwrite, which redoes every case
            return "stale" if untouched else "edited"
        return "edited"
    if partial_marker(out, src, name).exists():
        return "stale"
    return "foreign" if existing_outputs(out, src, name) else "new"


def other_input(record: dict, src: Path) -> Path | None:
    """The input a run's ``record`` was made from when it is another path than ``src`` that still exists (its results
    are that input's, e.g. another patient's series folder of the same name); None otherwise (the same path, or one
    that is gone: a moved or re-exported scan)."""
    given = record.get("input")
    try:
        other = Path(given) if given else None
        return other if other is not None and other.resolve() != Path(src).resolve() and other.exists() else None
    except OSError:
        return None


def _same_input(record: dict, src: Path) -> bool:
    """The record was made from this very input: the same file (path), size and time (a scan re-exported under the
    same name, or another folder's case of that name, is a new input)."""
    try:
        if Path(record.get("input", "")).resolve() != src.resolve():
            return False
        size, modified = input_stat(src)  # (a header's data file too)
        if "input_modified" in record and abs(float(record["input_modified"]) - modified) > 1e-3:
            return False
        if src.is_file() and "input_size_bytes" in record and int(record["input_size_bytes"]) != size:
            return False
    except (OSError, ValueError, TypeError):
        return False
    return True


def _same_request(recorded, request) -> bool:
    """The request of a finished case serves ``request``: the same, or the same but for ``dicom_seg`` where this run
    does not ask for a SEG (the one of the finished case is kept, not deleted by computing the case again)."""
    if recorded == request:
        return True
    if isinstance(recorded, dict) and recorded.get("dicom_seg") and not (request or {}).get("dicom_seg"):
        return {k: v for k, v in recorded.items() if k != "dicom_seg"} == request
    return False


def _jsonable(value):
    """``value`` as it reads back from JSON (tuples become lists), for comparing requests."""
    return json.loads(json.dumps(value)) if value is not None else None


def write_prediction(out: str | os.PathLike, src: str | os.PathLike, vol, model, pred,
                     request: dict[str, Any] | None = None, fmt: str | None = None,
                     extra: dict[str, Any] | None = None, say=None, name: str | None = None,
                     dicom_seg: bool | None = None) -> dict:
    """Write ``pred`` for input ``src`` (read as ``vol``) into ``out``; return the record. ``request``: the
    options asked for (a later run with the same weights and request skips the case); ``extra``: more
    entries for the record; ``say``: called with a line before each file of :data:`SAY_FROM_BYTES` or more before
    compression (a big volume's take minutes); ``name``: what the files are named after (:func:`case_name`; the
    input's stem by default); ``dicom_seg``: also write the mask as a DICOM SEG ``<stem>_seg.dcm`` on the DICOM
    series ``src`` (default: as ``request`` says); a user's file of that name is refused (an InputError before
    anything is written), a mask without foreground writes none (a warning).

    Replaces every output an earlier run left for ``src`` (the caller decides whether that is allowed).
    Mask, probability (foreground classes, float32), one file per attention map, a link to the input and
    ``<stem>_predict.json`` are written in that order, each atomically, the record last. A write that fails
    (full disk, file-size limit) removes what it wrote; a full disk or a size limit is an
    :class:`InputError` naming the file."""
    from ._files import atomic_write
    from .cohort.moved import input_identity
    from .data.manifest import write_json_atomic

    out, src = Path(out), Path(src)
    out.mkdir(parents=True, exist_ok=True)
    fmt = fmt or ("tiff" if vol.meta.get("format") == "tiff" else "nifti")
    dicom_seg = bool((request or {}).get("dicom_seg")) if dicom_seg is None else dicom_seg
    if dicom_seg and (theirs := foreign_seg(out, src, name)) is not None:
        raise InputError(foreign_message(out, src, [theirs], name))
    marker = partial_marker(out, src, name)
    old_seg = seg_is_ours(out, src, name)
    with room_for(marker, out, src, pred):
        atomic_write(marker, lambda tmp: Path(tmp).write_text(json.dumps({"input": str(src), "pid": os.getpid(),
                                                                          "dicom_seg": dicom_seg or old_seg})))
    record_path(out, src, name).unlink(missing_ok=True)  # from here on the case does not look finished
    for old in existing_outputs(out, src, name):  # a stale map of a level this model lacks must not linger
        old.unlink()
    if old_seg and not dicom_seg:  # (it showed the mask replaced now)
        pred.warnings.append(f"removed {seg_path(out, src, name).name}, the DICOM SEG of the earlier run (it showed "
                             "the mask replaced now); add --dicom-seg to write one of this mask")
    for tmp in out.glob(f".{glob.escape(case_name(src, name))}_*.tmp*"):  # temporary files of a run killed while writing
        tmp.unlink(missing_ok=True)

    written: list[Path] = []
    reference = None

    def write(suffix: str, data, what: str, **geometry) -> Path:
        path = out / output_name(src, suffix, fmt, name)
        if say is not None and data.nbytes >= SAY_FROM_BYTES:  # (a small output's line was noise)
            say(f"writing {path.name} ({what}, {size_text(data.nbytes)} before compression)")
        written.append(path)  # before the write: a failure half-way removes it with the others
        with room_for(path, out, src, pred):
            return write_image(path, data, **geometry)  # atomic

    try:  # the mask keeps the model that made it (attnseg export records it)
        write("mask", np.asarray(pred.labels), "mask", like=vol, model_info=_model_info(model),
              class_names=[str(c) for c in pred.classes] or None)  # (NIfTI: attnseg export names the classes)
        if pred.probabilities is not None:
            fg = foreground_float32(pred.probabilities, reversed_layout=fmt != "tiff")  # one float32 copy
            if fmt == "tiff" and fg.ndim == vol.data.ndim + 1:  # a multi-class model: one plane per class, axis C
                write("prob", fg, "probability", like=_class_axis_first(vol), spacing=(1.0, *vol.spacing))
            else:
                write("prob", fg, "probability", like=vol)
            del fg
        maps = []
        for amap in pred.attention:
            # maps keep their native resolution: the file's spacing is the map's pixel size, its affine (NIfTI:
            # the source's qform and sform and codes) or ImageJ origin (TIFF) puts its pixels on the image's
            spacing = tuple(s * sc for s, sc in zip(vol.spacing[-amap.data.ndim:], amap.scale))
            affine = map_affine(vol.affine, amap) if vol.affine is not None else None
            level = amap.name.replace(" ", "_").replace("/", "-")
            path = write(f"attention_{level}", np.asarray(amap.data, np.float32), f"attention {amap.name}",
                         like=vol, spacing=spacing, affine=affine, origin=map_origin(amap, vol.meta))
            maps.append({"file": path.name, "name": amap.name, "level": amap.level,
                         "scale": list(amap.scale), "translate": list(amap.translate)})
        seg = write_seg(out, src, vol, model, pred, name, say if np.asarray(pred.labels).nbytes >= SAY_FROM_BYTES
                        else None, written) if dicom_seg else None
        reference = _link_input(out, src, name)
        record = _record(src, reference, model, pred, written)  # (+ the input's digest: a copy without its time is the same scan)
        record.update(mask=written[0].name, probability=written[1].name if pred.probabilities is not None else None,
                      attention=maps, shape=list(pred.labels.shape), spacing=list(vol.spacing), dicom_seg=seg,
                      request=_jsonable(request), output_stats={p.name: _stat(p) for p in written},
                      **({"unit": unit} if (unit := spacing_unit(vol.meta)) else {}), **_channel_of(vol),
                      **({} if set(extra or {}) & {"input_sha256", "images_sha256"} else input_identity(src)), **(extra or {}))
        with room_for(record_path(out, src, name), out, src, pred):
            write_json_atomic(record_path(out, src, name), record)  # the commit point
    except Exception:  # Ctrl+C or a kill leaves the marker and what was written, like a crash (see case_state)
        _remove_partial(out, src, written, reference, marker, name)
        raise
    marker.unlink(missing_ok=True)
    return record


def _class_axis_first(vol: Volume) -> Volume:
    """``vol`` as the ``like`` of a TIFF with one more axis in front (one plane per foreground class of a
    multi-class model): its axes label starts with C, so the file says channels, not slices (Fiji, tifffile)."""
    axes = vol.meta.get("axes") if isinstance(vol.meta.get("axes"), str) and len(vol.meta["axes"]) == vol.data.ndim \
        else "ZYX"[-vol.data.ndim:]
    if "C" in axes:
        return vol
    return Volume(vol.data, vol.spacing, vol.affine, {**vol.meta, "axes": "C" + axes})


def _remove_partial(out: Path, src: Path, written: list[Path], reference: str | None, marker: Path,
                    name: str | None = None) -> None:
    """After a failed write: the files this call wrote go, then the marker (kept if one could not go)."""
    link = out / reference if reference and reference.startswith(f"{case_name(src, name)}_image") else None
    left = False
    for p in [*written, *([link] if link is not None and link.is_symlink() else [])]:
        try:
            p.unlink(missing_ok=True)
        except OSError:
            left = True
    if not left:
        marker.unlink(missing_ok=True)


def _link_input(out: Path, src: Path, name: str | None = None) -> str | None:
    """A copy-free reference to the input beside its outputs: a symlink ``<stem>_image<ext>``, named after the
    input as given (a symlinked input's link is not named after its target, as the outputs are not).

    Nothing is made when the outputs already sit next to the input or inside it (a DICOM folder), or where
    the file system refuses links (the record written beside the outputs still names the input).
    """
    given, src = Path(src), src.resolve()
    if src == out.resolve():  # a DICOM series predicted into its own folder: no link to itself inside it
        return None
    if src.parent == out.resolve():
        return src.name
    suffix = given.name[len(stem(given)):]  # .tif, .nii.gz, ... ("" for a DICOM folder)
    link = out / f"{case_name(given, name)}_image{suffix}"
    try:
        link.symlink_to(src, target_is_directory=src.is_dir())
    except OSError:
        return None
    return link.name


def _channel_of(vol) -> dict:  # the record's channel: colour, stain or channel segmented, or a 4D NIfTI's volume
    k = vol.meta.get("channel") if vol.meta.get("channel") is not None else vol.meta.get("volume")
    return {"channel": k} if k is not None else {}


def _model_info(model) -> dict:
    card = getattr(model, "card", None)
    return {"model": getattr(card, "name", None) or getattr(model, "arch", None),
            "weights_sha256": getattr(card, "weights_sha256", None), "checkpoint": checkpoint_of(model)}


def checkpoint_of(model) -> str | None:
    """The file ``model`` was loaded from, absolute (``attnseg export`` or the Correct tab run from another folder finds
    it; ``--model ./dir/best.safetensors`` was recorded as typed); a bundled model's name is kept as is."""
    path = getattr(model, "checkpoint_path", None)
    return os.path.abspath(path) if path and os.path.isfile(path) else path


def _record(src: Path, reference: str | None, model, pred, written: list[Path]) -> dict:
    """What produced the outputs: the input, the model (with its weights' digest) and the run's settings."""
    from . import __version__

    src = src.resolve()
    size, modified = input_stat(src)
    card = getattr(model, "card", None)
    return {
        "input": str(src),
        "input_size_bytes": size,
        "input_modified": modified,
        "input_reference": reference,
        "outputs": [p.name for p in written],
        "model": getattr(card, "name", None),
        "model_path": checkpoint_of(model),
        "model_weights_sha256": getattr(card, "weights_sha256", None),
        "classes": list(pred.classes),
        "device": pred.device,
        "precision": pred.precision,
        "params": {k: v for k, v in pred.params.items() if isinstance(v, (int, float, str, bool, list, tuple, type(None)))},
        "timings_s": pred.timings,
        "warnings": list(pred.warnings),
        "napari_attnseg": __version__,
    }
