"""Export image + corrected mask as a fine-tuning dataset: nnU-Net v2 raw, MONAI datalist or TIFF pairs.

Layouts (``format``):
- ``nnunet``: ``imagesTr/<case>_<channel:04d>.nii.gz``, ``labelsTr/<case>.nii.gz``, ``dataset.json``
  (``channel_names``, ``labels`` with ``ignore`` last when any case has unreviewed slices,
  ``numTraining``, ``file_ending``).
- ``monai``: ``images/<case>.nii.gz``, ``labels/<case>.nii.gz``, ``datalist.json``
  (``{"training": [{"image": ..., "label": ...}]}``, paths relative to the dataset folder).
- ``tiff``: ``images/<case>.tif``, ``labels/<case>.tif`` with the spacing in the TIFF metadata.
Every layout has ``manifest.json``: the dataset's label table and one record per case. A case
exists once it is in the manifest; see ``manifest.py`` for how a killed export is kept out.
What can refuse an export is decided before a file is written (``export_plan.py``); this module writes
the case.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import secrets
import shlex
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError, InputError
from ..options import DATASET_FORMATS
from .export_colour import write_picture
from .export_plan import (  # noqa: F401 (re-exported: the names export_case's checks had here)
    _CASE_RE,
    MANIFEST_VERSION,
    MAX_AUTO_CLASSES,
    _check_arrays,
    _check_folder,
    _duplicates,
    _Plan,
    _plan,
    _visible_files,
    ascii_case_id,
    one_plane,
    prediction_lut,
    renumber,
)
from .grid import check_same_grid
from .io import write_image
from .label_values import check_class_ids
from .layouts import case_paths, detect_format, index_files, manifest_or_empty
from .manifest import (
    JOURNAL,
    commit,
    dataset_lock,
    recover,
    write_json_atomic,
)
from .nifti import in_nifti_unit
from .staging import discard, staged_name
from .volume import Volume

__all__ = ["FORMATS", "CaseRecord", "array_sha256", "check_class_ids", "check_same_grid", "detect_format",
           "export_case", "write_json_atomic"]

FORMATS = DATASET_FORMATS


@dataclass
class CaseRecord:
    """One case's entry in ``manifest.json``."""

    case_id: str
    source_name: str
    image_sha256: str
    shape: list[int]
    spacing: list[float]
    label_names: list[str]
    reviewed_slices: list[int] | None
    ignore_label: int | None
    model: dict[str, Any] = field(default_factory=dict)
    edit_stats: dict[str, Any] | None = None
    files: dict[str, Any] = field(default_factory=dict)
    exported: str = ""
    labels_sha256: str = ""
    warnings: list[str] = field(default_factory=list)  # for the caller; not written to the manifest
    frames: list[str] = field(default_factory=list)  # a time-lapse: its frames' case ids (this record: the first)
    # a time-lapse's frame: array_sha256 of the whole movie as exported (every frame, reviewed or not), the same for
    # each round of one movie and different for another movie of the same file name (the split keeps a movie whole)
    movie_sha256: str = ""


_HASH_BLOCK = 1 << 22  # bytes hashed at a time of an array that is not C-ordered native bytes already


def array_sha256(a: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and bytes (C order, native byte order): the same voxels give the same hash.
    An array that is not C-contiguous native bytes (a colour picture's channels-first view, a big-endian TIFF's
    memmap) is hashed a block of rows at a time: the digest of its whole copy, without the copy (108 MB of a
    6000 x 6000 slide's (3, Y, X) view)."""
    a = np.asarray(a)
    native = a.dtype.newbyteorder("=")
    if a.nbytes <= _HASH_BLOCK or (a.flags.c_contiguous and a.dtype == native):
        a = np.ascontiguousarray(a, dtype=native)  # (ndim >= 1: a 0-d array hashes as shape (1,), as it always did)
        h = hashlib.sha256(str((a.dtype.str, a.shape)).encode())
        h.update(memoryview(a).cast("B"))
        return h.hexdigest()
    h = hashlib.sha256(str((np.dtype(native).str, a.shape)).encode())
    for block in _c_blocks(a, native):
        h.update(memoryview(block).cast("B"))
        del block  # (not held while the next block is made)
    return h.hexdigest()


def _c_blocks(a: np.ndarray, dtype: np.dtype):
    """``a``'s bytes in C order as contiguous ``dtype`` blocks of about ``_HASH_BLOCK`` bytes (one row at least)."""
    row = a.nbytes // max(1, a.shape[0])
    if a.ndim > 1 and row > _HASH_BLOCK:  # one index of the first axis is too big: its own rows, in order
        for sub in a:
            yield from _c_blocks(sub, dtype)
        return
    step = max(1, _HASH_BLOCK // max(1, row))
    for start in range(0, a.shape[0], step):
        yield np.ascontiguousarray(a[start:start + step], dtype=dtype)


def export_case(
    image: np.ndarray,
    labels: np.ndarray,
    dataset_dir: str | os.PathLike,
    format: str = "nnunet",
    *,
    spacing: Sequence[float] | None = None,
    affine: np.ndarray | None = None,
    reviewed_slices: Sequence[int] | None = None,
    prediction: np.ndarray | None = None,
    prediction_names: Sequence[str] | None = None,
    case_id: str | None = None,
    label_names: Sequence[str] | None = None,
    channel_names: Sequence[str] | None = None,
    source_name: str | None = None,
    model_info: dict[str, Any] | None = None,
    overwrite: bool = False,
    channel_axis: bool = False,
    foreground: bool = False,
    modality: str | None = None,
    labels_name: str | None = None, unit: str | Sequence[str] | None = None,
    nifti: dict[str, Any] | None = None,
    axes: str | None = None,
    colour: bool = False,
    default_channel_names: Sequence[str] | None = None,
) -> CaseRecord:
    """Add one case (image + corrected labels) to the dataset at ``dataset_dir``; return its record.

    ``image``: (*spatial) or, with ``channel_axis=True``, (C, *spatial). ``labels``: integer class ids
    on the same grid. ``spacing`` (array axis order) and ``affine`` (NIfTI-style, of the source) set
    the geometry of the written files. Unreviewed slices (when ``reviewed_slices`` is given; axial =
    first-axis indices) become the ``ignore`` label, the last value of the table (nnU-Net v2), so
    training learns only from what a person checked. ``prediction`` (the model's mask) adds edit
    statistics to the record; ``prediction_names`` (its classes, value 0 first: the model's) put it in the dataset's
    numbering by name (:func:`~.export_plan.prediction_lut`), else it is taken in the labels' numbering (renumbered
    with them: napari's Correct tab, mask and prediction one layer's); ``model_info`` (e.g. model name and checkpoint sha256) is kept as is.
    A new dataset takes its label table from ``label_names`` (default background/foreground) and its
    channel names from ``channel_names`` (default ``CT`` for an image in Hounsfield units or of DICOM
    ``modality`` CT, nnU-Net's cue for its CT normalisation, else ``default_channel_names``: the channel's own name
    in its file, an OME-TIFF's 'DAPI', else ``image``); an existing one keeps its own (a default follows it), and
    ``label_names`` in another order (an RTSTRUCT's ROIs, listed in each patient's file in its own order) are
    matched to it by name: the values are renumbered, said in ``warnings``; a name the dataset lacks is refused.
    ``foreground=True`` exports labels > 0 as one class (instance ids);
    without it, more than ``MAX_AUTO_CLASSES`` distinct values, or a value above it, and no ``label_names``
    are refused; a new dataset whose auto-named table skips values gets a note in ``warnings``.
    Names are stripped of surrounding spaces; ``labels_name`` (e.g. the mask's file) names the labels in messages.
    ``unit``: the length unit of ``spacing`` for TIFF files (``"µm"``, or a napari layer's ``units``; with an affine mm).
    ``nifti``: the source NIfTI's header facts (``Volume.meta["nifti"]``, a napari layer's ``metadata["nifti"]``):
    with ``affine``, the NIfTI files keep its qform/sform codes and its own qform, so they overlay the source in
    every viewer as the source shows (ITK reads the qform when the sform code is not 1); else codes 1 (scanner).
    ``axes``: the labels' axes as TIFF letters (``TYX`` a time-lapse, ``ZYX``; a napari layer's, the source TIFF's),
    which the TIFF layout's files keep (Fiji opens a time-lapse's frames as frames); default ZYX / YX. In the nnunet
    and monai layouts a time-lapse's frames are 2D cases of their own, ``<case>_t000``... (nnU-Net and MONAI read a
    3D NIfTI as a volume, its frames as z-slices): the record returned is the first frame's, ``frames`` names all;
    ``reviewed_slices`` are then reviewed frames, and a frame nobody reviewed is left out (all 'ignore', it would
    teach nothing).
    ``colour=True``: ``image`` is a 2D RGB(A) picture ``(Y, X, 3|4)`` whose colours the dataset keeps (for a model
    that reads them), written as one RGB TIFF in every layout (:mod:`.export_colour`); a dataset holds grey or colour
    cases, never both.
    Only pixel values and geometry are written (no source headers). Nothing is written when any
    input is refused (``InputError`` / ``DatasetError``), and no file that is not a case of the
    dataset's manifest is replaced. ``CaseRecord.warnings`` also names earlier cases with the same image.
    """
    from ..correct import edit_stats

    if format not in FORMATS:
        raise InputError(f"format must be one of {', '.join(FORMATS)}; got {format!r}.")
    folder = Path(dataset_dir)
    image = np.asarray(image)
    labels = np.asarray(labels)
    if colour:  # the picture's colours: its channels (first) until they are written as one RGB file
        if image.ndim != 3 or image.shape[-1] not in (3, 4) or labels.ndim not in (2, 3):
            raise InputError(f"A colour picture is (Y, X, 3) or (Y, X, 4); got shape {image.shape} with labels of "
                             f"shape {labels.shape}.")
        image, channel_axis = np.moveaxis(image, -1, 0), True
    volumes = manifest_or_empty(folder).get("spatial_dims") == 3  # (a one-slice volume joins a dataset of volumes)
    image, labels, spacing, axes, reviewed_slices, prediction = one_plane(  # (1, Y, X) with (Y, X): one 2D plane
        image, labels, channel_axis, spacing, axes, reviewed_slices, prediction, labels_name or "the labels", volumes)
    _check_arrays(image, labels, channel_axis)
    if prediction is not None:
        check_class_ids(prediction, "The prediction (the model's mask)")
    if foreground:
        labels = (labels > 0).astype(np.uint8)
        prediction = None if prediction is None else (np.asarray(prediction) > 0).astype(np.uint8)
    chans = image if channel_axis else image[None]
    ndim = labels.ndim
    if format == "monai" and chans.shape[0] > 1 and not colour:
        raise InputError("Multi-channel MONAI export is not supported; use the nnunet format.")
    if format == "tiff" and chans.shape[0] > 1 and ndim == 3:
        raise InputError("The TIFF layout is for 2D or single-channel 3D images; use nnunet or monai.")
    if prediction is not None and np.shape(prediction) != labels.shape:
        raise InputError(f"The prediction's shape {np.shape(prediction)} differs from the labels' {labels.shape}.")
    if spacing is not None and len(spacing) != ndim:
        raise InputError(f"spacing needs {ndim} values (one per axis); got {list(spacing)}.")
    spacing_l = [float(s) for s in (spacing or (1.0,) * ndim)]
    axes_l = str(axes).upper() if axes and len(str(axes)) == ndim and str(axes).upper().endswith("YX") \
        and len(set(str(axes).upper())) == ndim and set(str(axes).upper()) <= set("TZYX") else None
    top = int(labels.max(initial=0))
    if top > 65535:
        raise InputError(f"Label value {top} is too large for a class id; a Labels layer of instance ids "
                         "needs converting to classes first (attnseg export --foreground: labels > 0 become 1).")
    labels_int = labels.astype(np.uint8 if top < 255 else np.uint16)
    if colour and ndim != 2:
        raise InputError("The colours of a picture are kept for a 2D picture and its 2D mask; export a stack's grey.")
    if channel_names is None and chans.shape[0] == 1:
        from ..display import is_hounsfield

        ct = modality == "CT" or is_hounsfield(chans[0])  # nnU-Net normalises a channel named CT as CT
    else:
        ct = False
    frames = format in ("nnunet", "monai") and ndim == 3 and (axes_l or "").startswith("T")  # a time-lapse
    opts = dict(reviewed_slices=reviewed_slices, case_id=case_id, label_names=label_names,
                channel_names=_channels(folder, channel_names, default_channel_names, colour), overwrite=overwrite,
                ct=ct, what=labels_name or "the labels", time_lapse=frames, colour=colour)
    case_ndim = 2 if frames else ndim

    _check_folder(folder)
    if not (folder / JOURNAL).exists():  # refuse before creating anything (a folder, a lock file)
        _plan(folder, format, labels_int, chans.shape[0], case_ndim, **opts)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"Cannot create {folder}: {exc.strerror or exc}.") from None

    with dataset_lock(folder):
        recover(folder)
        opts["channel_names"] = _channels(folder, channel_names, default_channel_names, colour)  # (now it is locked)
        plan = _plan(folder, format, labels_int, chans.shape[0], case_ndim, **opts)
        manifest, cid = plan.manifest, plan.case_id
        if overwrite and not frames:  # (a mistyped case id, 'Replace the case' ticked: another scan's case was gone)
            _refuse_other_image(manifest, cid, source_name, image, folder)
        if (table := list(manifest.get("channel_names") or [])) and opts["channel_names"] is None \
                and default_channel_names and [str(n) for n in default_channel_names] != table:  # (kept, not refused)
            plan.notes.append(f"the image's channel is named {', '.join(map(str, default_channel_names))} in its "
                              f"file; the dataset names its channels {', '.join(table)}, kept for this case (a "
                              "dataset keeps one channel table: export another channel into another folder)")
        if plan.lut is not None:  # the classes renumbered by name onto the dataset's table
            labels = renumber(labels_int, plan.lut)
        if prediction is not None and prediction_names is not None and not foreground:  # by its own class names
            pred_lut, said = prediction_lut(list(prediction_names), list(manifest["label_names"]), "the prediction")
            plan.notes.extend(said)
            prediction = prediction if pred_lut is None else renumber(np.asarray(prediction), pred_lut)
        elif prediction is not None and plan.lut is not None:  # the labels' numbering (napari: the same layer's)
            prediction = renumber(np.asarray(prediction), plan.lut)
        reviewed = sorted({int(s) for s in reviewed_slices}) if reviewed_slices is not None else None
        if frames:  # one 2D case per frame: (case id, channels, labels, their labels as given, prediction, frame)
            parts = [(fid, chans[:, t], plan.labels[t], labels[t], None if prediction is None else prediction[t], t)
                     for t, fid in zip(plan.frames or [], plan.case_ids or [])]
            sp_case, affine = spacing_l[1:], None
        else:
            parts, sp_case = [(cid, chans, plan.labels, labels, prediction, None)], spacing_l
        if format != "tiff" and not colour and affine is None:  # NIfTI names micron, mm, meter: nm, cm converted,
            sp_case, named = in_nifti_unit(sp_case, unit)  # the record's spacing as the files say it (65 nm: 0.065)
            unit = named or unit
        movie_sha = array_sha256(image) if frames else ""  # (the movie's identity: its frames' records)
        token = secrets.token_hex(4)
        staged: list[tuple[Path, Path]] = []
        records: list[CaseRecord] = []
        try:
            for pid, pchans, plabels, given, pred, t in parts:
                finals = case_paths(folder, format, pid, chans.shape[0], colour)
                arrays = ([np.moveaxis(pchans, 0, -1), plabels] if colour else [*pchans, plabels]
                          if format == "nnunet" else [pchans[0] if pchans.shape[0] == 1 else pchans, plabels])
                for final, data in zip(finals, arrays):
                    tmp = staged_name(final, token)
                    staged.append((tmp, final))
                    if colour and data is arrays[0]:  # (the picture: one RGB TIFF, its pixel size as its resolution)
                        write_picture(tmp, data, sp_case, unit)
                        _hook("file")
                        continue
                    sp = sp_case if data.ndim == case_ndim else [1.0, *sp_case]  # (C, y, x) TIFF: channels first
                    # a (C, y, x) TIFF is labelled CYX: Fiji opens channels, not z-slices 1 unit apart; a time-lapse TYX
                    like = Volume(data, tuple(sp), None, {"axes": "CYX"}) if (data.ndim, case_ndim) == (3, 2) else None
                    if like is None and format == "tiff" and axes_l is not None:
                        like = Volume(data, tuple(sp), None, {"axes": axes_l})
                    if nifti and affine is not None and format != "tiff":  # the source's header codes and qform
                        like = Volume(data, tuple(sp), np.asarray(affine, float), {"nifti": dict(nifti)})
                    write_image(tmp, data, like, spacing=sp, affine=affine, unit="mm" if affine is not None else unit)
                    _hook("file")
                frame_image = pchans if channel_axis else pchans[0]  # (a frame hashes as that 2D image exported alone)
                image_sha, labels_sha = array_sha256(image if t is None else frame_image), array_sha256(plabels)
                records.append(CaseRecord(
                    case_id=pid, source_name=str(source_name or "image") + ("" if t is None else f" (frame {t})"),
                    image_sha256=image_sha, shape=list(given.shape), spacing=list(sp_case),
                    label_names=list(manifest["label_names"]),
                    reviewed_slices=reviewed if t is None else None,
                    ignore_label=plan.ignore_value, model=dict(model_info or {}),
                    edit_stats=edit_stats(pred, given) if pred is not None else None,
                    files={"images": [str(p.relative_to(folder)) for p in finals[:-1]],
                           "label": str(finals[-1].relative_to(folder))},
                    exported=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    labels_sha256=labels_sha, warnings=_duplicates(manifest, pid, image_sha, labels_sha),
                    movie_sha256=movie_sha if t is not None else "",
                ))
            record = records[0]
            record.warnings = plan.notes + [w for r in records for w in r.warnings]
            if frames:
                record.frames = [r.case_id for r in records]
            entries = [{k: v for k, v in asdict(r).items() if k not in ("warnings", "frames")
                        and (k != "movie_sha256" or v)} for r in records]
            ids = {r.case_id for r in records}
            manifest = {**manifest, "cases": [c for c in manifest["cases"] if c["case_id"] not in ids] + entries}
            manifest.setdefault("channel_names", [])
            index = index_files(folder, format, manifest)
        except BaseException as exc:  # not committed: the dataset is untouched; drop the staged files
            discard([tmp for tmp, _ in staged], folder)
            if isinstance(exc, OSError):
                raise DatasetError(f"Writing case {cid} to {folder} failed ({exc.strerror or exc}); "
                                   "the dataset is unchanged.") from None
            raise
        try:  # the label files first: killed between renames, no reader lists a case's image without its label
            labels_first = sorted(staged, key=lambda pair: pair[1].parent.name not in ("labelsTr", "labels"))
            commit(folder, labels_first, index, manifest, hook=_hook)
        except OSError as exc:
            if (folder / JOURNAL).exists():  # committed: the staged files must stay for the journal
                raise DatasetError(f"Case {cid} was committed to {folder} but not finished ({exc.strerror or exc}); "
                                   "the next export or read of the dataset finishes it.") from None
            discard([tmp for tmp, _ in staged], folder)
            raise DatasetError(f"Writing case {cid} to {folder} failed ({exc.strerror or exc}); "
                               "the dataset is unchanged.") from None
    return record


def _refuse_other_image(manifest: dict, case_id: str, source_name: str | None, image: np.ndarray, folder: Path) -> None:
    """Replacing ``case_id`` when it holds another file's other image (another name, other voxels): refused, as it
    would delete that scan and its corrected labels from the dataset (a case id mistyped: audit). The same scan
    exported again (its voxels, or its file's name) replaces its case as before."""
    old = next((c for c in manifest["cases"] if c["case_id"] == case_id), None)
    if old is None or not source_name or old.get("source_name") in (None, str(source_name)) \
            or old.get("image_sha256") == array_sha256(image):
        return
    same = [c["case_id"] for c in manifest["cases"] if c.get("source_name") == str(source_name)]
    raise DatasetError(f"Case {case_id} in {folder} holds another image ({old['source_name']}, exported "
                       f"{str(old.get('exported', '?'))[:10]}): replacing it with {source_name} would delete that image "
                       f"and its labels from the dataset; nothing was written. Check the case id"
                       f"{f' ({source_name} is in ' + ', '.join(same) + ')' if same else ''}, or leave it empty for a new "
                       f"case. If it is meant to replace that case: take the case out first (attnseg dataset "
                       f"{shlex.quote(str(folder))} --remove {shlex.quote(str(case_id))}; its files are kept in "
                       f"{folder / 'removed'}), then export again.")


def _channels(folder: Path, given: Sequence[str] | None, default: Sequence[str] | None,
              colour: bool) -> Sequence[str] | None:
    """The channel names for a case: those given, else ``default`` (a channel's own name in its file) for a new
    dataset, which it names; None (the dataset's table) for an existing one, whose names the first export set."""
    if given or not default or colour or manifest_or_empty(folder):
        return given
    return [str(n) for n in default]


def _hook(step: str) -> None:
    """Test seam, called after each staged file ("file"), the commit and each rename: the crash
    tests replace it in a subprocess to stop (SIGKILL) or stall the export at a chosen step."""
