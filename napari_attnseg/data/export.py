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
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import DatasetError, InputError
from ..options import DATASET_FORMATS
from .grid import check_same_grid
from .io import write_image
from .label_values import check_class_ids, clean_names, values_outside_table
from .layouts import case_paths, detect_format, index_files
from .manifest import (
    JOURNAL,
    LAYOUT_DIRS,
    MANIFEST,
    commit,
    dataset_lock,
    read_manifest,
    recover,
    write_json_atomic,
)
from .staging import discard, staged_name
from .volume import Volume

__all__ = ["FORMATS", "CaseRecord", "array_sha256", "check_class_ids", "check_same_grid", "detect_format",
           "export_case", "write_json_atomic"]

FORMATS = DATASET_FORMATS
_CASE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
MANIFEST_VERSION = 1
MAX_AUTO_CLASSES = 20  # more distinct label values without --label-names: instance ids, not classes


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


def array_sha256(a: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and bytes (C order): the same voxels give the same hash."""
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(str((a.dtype.str, a.shape)).encode())
    h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def _check_arrays(image: np.ndarray, labels: np.ndarray, channel_axis: bool) -> None:
    spatial = image.shape[1:] if channel_axis else image.shape
    if len(spatial) not in (2, 3):
        raise InputError(f"The image must be 2D or 3D{' after its channel axis' if channel_axis else ''}; "
                         f"got shape {image.shape}.")
    if tuple(labels.shape) != tuple(spatial):
        raise InputError(f"Labels of shape {labels.shape} do not match the image's shape {tuple(spatial)}; "
                         "export the mask that belongs to this image.")
    check_class_ids(labels, "Labels")
    if image.dtype.kind not in "iufb":
        raise InputError(f"The image must be numeric; got dtype {image.dtype}.")


def _check_folder(folder: Path) -> None:
    if folder.exists():
        if not folder.is_dir():
            raise DatasetError(f"{folder} is a file; choose a folder for the dataset.")
        target = folder
    else:
        target = folder.parent
        while not target.exists() and target != target.parent:
            target = target.parent
        if not target.is_dir():
            raise DatasetError(f"Cannot create {folder}: {target} is not a folder.")
    if not os.access(target, os.W_OK | os.X_OK):
        raise DatasetError(f"Cannot write to {target}; choose a folder you can write to.")


@dataclass
class _Plan:
    manifest: dict
    case_id: str
    labels: np.ndarray
    ignore_value: int | None
    notes: list[str]  # warnings for the caller


def _plan(folder: Path, format: str, labels: np.ndarray, n_channels: int, ndim: int, *, reviewed_slices,
          case_id, label_names, channel_names, overwrite, ct: bool = False, what: str = "the labels") -> _Plan:
    """Everything that can refuse the export, decided before a single file is written."""
    existing = detect_format(folder) if folder.exists() else None
    manifest = read_manifest(folder) if folder.exists() else None
    if manifest is None and existing is not None:
        raise DatasetError(f"{folder} holds a {existing} dataset that napari-attnseg did not write (no {MANIFEST}); "
                           "export into a new or empty folder so its cases are not overwritten.")
    if manifest is None and (found := _visible_files(folder)):
        raise DatasetError(f"{folder} already holds files napari-attnseg did not write (no {MANIFEST}), e.g. "
                           f"{found[0]}; export into a new or empty folder so they are not overwritten.")
    if existing is not None and existing != format:
        raise DatasetError(f"{folder} holds a {existing} dataset; export to it with format {existing!r} "
                           "or pick another folder.")
    label_names, channel_names = clean_names(label_names, "Label"), clean_names(channel_names, "Channel")
    counted, rows = labels, None
    if reviewed_slices is not None and ndim == 3:  # unreviewed slices go out as 'ignore': their values need no name
        rows = sorted({int(z) for z in reviewed_slices if 0 <= int(z) < labels.shape[0]})
        counted = labels[rows]
    n_classes = int(counted.max(initial=0)) + 1
    present = set(np.flatnonzero(np.bincount(counted.ravel())).tolist()) if counted.size else set()
    n_values = len(present)
    if (max(n_values, n_classes - 1) > MAX_AUTO_CLASSES and not label_names
            and (manifest is None or n_classes > len(manifest["label_names"]))):
        few = n_values <= MAX_AUTO_CLASSES + 1 and n_classes - 1 in (255, 65535)  # a few classes + an 'unlabelled' value
        raise InputError(
            f"The labels hold {n_values} distinct values (up to {n_classes - 1}, which would make a table of {n_classes} "
            "classes): " + (f"a few classes and {n_classes - 1}, the value other tools write for 'unlabelled'. Give the "
                            f"slices you checked (--reviewed-slices; {n_classes - 1} there becomes 'ignore'), or set "
                            f"{n_classes - 1} to 0 first (--foreground would make every unlabelled voxel foreground)."
                            if few else
                            "they look like instance ids (one value per object), not classes. Export them as one "
                            "foreground class (attnseg export --foreground: labels > 0 become 1), or name every class "
                            "with --label-names."))
    notes = []
    absent = sorted(set(range(1, n_classes)) - present)
    if manifest is None and not label_names and n_classes > 2 and absent:
        notes.append(f"the labels have no voxel of value(s) {', '.join(map(str, absent))}, yet the new dataset's label "
                     f"table names every value up to {n_classes - 1} ('class 1'..'class {n_classes - 1}'); if the "
                     "values are not class ids, export with --foreground, or name the classes with --label-names")
    if manifest is None:
        names = list(label_names) if label_names else (
            ["background", "foreground"] if n_classes <= 2 else ["background"] + [f"class {i}" for i in range(1, n_classes)])
        chans = list(channel_names) if channel_names else (["CT" if ct else "image"] if n_channels == 1 else
                                                           [f"channel{i}" for i in range(n_channels)])
        if len(set(names)) != len(names) or "ignore" in names:
            raise InputError(f"Label names must be distinct and must not include 'ignore' (reserved); got {names}.")
        if any(n.lower() == "background" for n in names[1:]):  # nnU-Net: 'background' is value 0
            raise InputError(f"'background' names label value 0 (the first name); got {names}. Give the names in "
                             f"the order of the values, background first, e.g. --label-names background,"
                             f"{','.join(n for n in names if n.lower() != 'background')}.")
        if len(names) < 2:
            raise InputError(f"Label names give one name per label value, background (0) first; got only {names}. "
                             f"Use e.g. --label-names background,{names[0] if names else 'tumour'}.")
        manifest = {"format": format, "format_version": MANIFEST_VERSION, "label_names": names,
                    "channel_names": chans, "spatial_dims": ndim, "tool": f"napari-attnseg {__version__}",
                    "cases": []}
    table = list(manifest["label_names"])
    if label_names and list(label_names) != table:
        raise InputError(f"The label names {list(label_names)} differ from the dataset's ({', '.join(table)}); "
                         "a dataset keeps one label table. Use the same names or another folder.")
    if channel_names and list(channel_names) != list(manifest.get("channel_names", [])):
        raise InputError(f"The channel names {list(channel_names)} differ from those of the dataset in {folder} "
                         f"({manifest.get('channel_names')}); a dataset keeps one channel table. Give the same "
                         "names (--channel-names), or leave them out to take the dataset's, or export into another folder.")
    if len(manifest.get("channel_names", [])) not in (0, n_channels):
        raise InputError(f"The images of the dataset in {folder} have {len(manifest['channel_names'])} channel(s); "
                         f"this one has {n_channels}. A dataset's cases share their channels: export this image "
                         "into another folder (or pick its channel with --channel).")
    if manifest.get("spatial_dims", ndim) != ndim:
        raise InputError(f"The dataset in {folder} holds {manifest['spatial_dims']}D cases; this one is {ndim}D. "
                         "A dataset's cases share their dimensions: export this image into another folder.")
    if n_classes > len(table):
        hint = (f"--label-names gives one name per label value, background (0) first, e.g. "
                f"--label-names background,{','.join(table)}." if label_names and table[0] != "background" else
                "Give a name to every label value (--label-names, background first) or check the mask.")
        if manifest["cases"]:
            hint = "The dataset keeps its label table; export this mask into another folder or check its values."
        raise InputError(f"{values_outside_table(counted, len(table), rows, what)} not in the dataset's label table "
                         f"({', '.join(f'{i}={n}' for i, n in enumerate(table))}). {hint}")
    ignore_value = None
    exported = labels
    if reviewed_slices is not None:
        from ..correct import ignore_unreviewed

        if ndim != 3:
            raise InputError("Reviewed slices apply to 3D volumes; a 2D image is reviewed as a whole.")
        ignore_value = len(table)  # nnU-Net v2: 'ignore' is the highest label value
        exported = ignore_unreviewed(labels, reviewed_slices, ignore_value)
    ids = [c["case_id"] for c in manifest["cases"]]
    owned = {f for c in manifest["cases"] for f in [*c["files"].get("images", []), c["files"].get("label")]}

    def not_ours(cid: str) -> list[Path]:  # files at a case's paths that no manifest case wrote
        return [p for p in case_paths(folder, format, cid, n_channels)
                if p.exists() and str(p.relative_to(folder)) not in owned]

    if case_id is None:
        n = len(ids)
        while f"case_{n:04d}" in ids or not_ours(f"case_{n:04d}"):
            n += 1
        case_id = f"case_{n:04d}"
    if not _CASE_RE.match(case_id):
        hint = f" e.g. {ascii_case_id(case_id)!r}" if ascii_case_id(case_id) else ""
        raise InputError(f"Case id {case_id!r} may only hold the letters A-Z and a-z (no accents), digits, '_' and '-', "
                         f"and not start with '_' or '-' (no spaces or dots: the id names the case's files in every "
                         f"layout); use{hint or ' another id'}.")
    if case_id in ids and not overwrite:
        raise DatasetError(f"Case {case_id!r} already exists in {folder}; choose another case id (leave it empty for "
                           "the next free one), or replace that case on purpose (napari: tick 'Replace the case'; "
                           "attnseg export --case-id ID --overwrite).")
    if blocked := not_ours(case_id):
        raise DatasetError(f"{blocked[0]} already exists and is not a case in {folder / MANIFEST}; napari-attnseg "
                           "never replaces it. Move it away or choose another case id.")
    return _Plan(manifest, case_id, exported, ignore_value, notes)


def ascii_case_id(text: str) -> str:
    """A valid case id close to ``text``: accents dropped (Müller -> Muller), letters without an ASCII form,
    spaces, dots and other signs -> '_'; '' when nothing is left."""
    import unicodedata

    plain = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9_-]", "_", plain)).strip("_-")


def _visible_files(folder: Path) -> list[Path]:
    """Files in the layout folders other than hidden ones (hidden = our own temporary files)."""
    return [p for sub in LAYOUT_DIRS if (folder / sub).is_dir()
            for p in sorted((folder / sub).iterdir()) if not p.name.startswith(".")]


def _duplicates(manifest: dict, case_id: str, image_sha: str, labels_sha: str) -> list[str]:
    """Warnings for earlier cases with the same image voxels (the case being replaced aside)."""
    out = []
    replaced = any(c["case_id"] == case_id for c in manifest["cases"])  # this export replaces case_id
    for c in manifest["cases"]:
        if c["case_id"] != case_id and c.get("image_sha256") == image_sha:
            same = "the same labels" if c.get("labels_sha256") == labels_sha else "other labels"
            # (after a replacement, "give its id and replace it" told the user to do what they had just done)
            what = (f"To keep one copy, remove case {c['case_id']} from the dataset or replace it instead of "
                    f"{case_id}" if replaced else "To update a case instead, give its id and replace it")
            out.append(f"case {c['case_id']} already holds this image (with {same}). attnseg's fine-tuning takes "
                       "both as one case (this export's labels, the older one's on slices only it reviewed), but "
                       f"other tools (nnU-Net's cross-validation) would train and validate on copies. {what} "
                       "(napari: 'Replace the case'; attnseg export --case-id ID --overwrite).")
    return out


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
) -> CaseRecord:
    """Add one case (image + corrected labels) to the dataset at ``dataset_dir``; return its record.

    ``image``: (*spatial) or, with ``channel_axis=True``, (C, *spatial). ``labels``: integer class ids
    on the same grid. ``spacing`` (array axis order) and ``affine`` (NIfTI-style, of the source) set
    the geometry of the written files. Unreviewed slices (when ``reviewed_slices`` is given; axial =
    first-axis indices) become the ``ignore`` label, the last value of the table (nnU-Net v2), so
    training learns only from what a person checked. ``prediction`` (the model's mask) adds edit
    statistics to the record; ``model_info`` (e.g. model name and checkpoint sha256) is kept as is.
    A new dataset takes its label table from ``label_names`` (default background/foreground) and its
    channel names from ``channel_names`` (default ``CT`` for an image in Hounsfield units or of DICOM
    ``modality`` CT, nnU-Net's cue for its CT normalisation, else ``image``); an existing one keeps its own. ``foreground=True`` exports labels > 0 as one class (instance ids);
    without it, more than ``MAX_AUTO_CLASSES`` distinct values, or a value above it, and no ``label_names``
    are refused; a new dataset whose auto-named table skips values gets a note in ``warnings``.
    Names are stripped of surrounding spaces; ``labels_name`` (e.g. the mask's file) names the labels in messages.
    ``unit``: the length unit of ``spacing`` for TIFF files (``"µm"``, or a napari layer's ``units``; with an affine mm).
    ``nifti``: the source NIfTI's header facts (``Volume.meta["nifti"]``, a napari layer's ``metadata["nifti"]``):
    with ``affine``, the NIfTI files keep its qform/sform codes and its own qform, so they overlay the source in
    every viewer as the source shows (ITK reads the qform when the sform code is not 1); else codes 1 (scanner).
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
    _check_arrays(image, labels, channel_axis)
    if prediction is not None:
        check_class_ids(prediction, "The prediction (the model's mask)")
    if foreground:
        labels = (labels > 0).astype(np.uint8)
        prediction = None if prediction is None else (np.asarray(prediction) > 0).astype(np.uint8)
    chans = image if channel_axis else image[None]
    ndim = labels.ndim
    if format == "monai" and chans.shape[0] > 1:
        raise InputError("Multi-channel MONAI export is not supported; use the nnunet format.")
    if format == "tiff" and chans.shape[0] > 1 and ndim == 3:
        raise InputError("The TIFF layout is for 2D or single-channel 3D images; use nnunet or monai.")
    if prediction is not None and np.shape(prediction) != labels.shape:
        raise InputError(f"The prediction's shape {np.shape(prediction)} differs from the labels' {labels.shape}.")
    if spacing is not None and len(spacing) != ndim:
        raise InputError(f"spacing needs {ndim} values (one per axis); got {list(spacing)}.")
    spacing_l = [float(s) for s in (spacing or (1.0,) * ndim)]
    top = int(labels.max(initial=0))
    if top > 65535:
        raise InputError(f"Label value {top} is too large for a class id; a Labels layer of instance ids "
                         "needs converting to classes first (attnseg export --foreground: labels > 0 become 1).")
    labels_int = labels.astype(np.uint8 if top < 255 else np.uint16)
    if channel_names is None and chans.shape[0] == 1:
        from ..display import is_hounsfield

        ct = modality == "CT" or is_hounsfield(chans[0])  # nnU-Net normalises a channel named CT as CT
    else:
        ct = False
    opts = dict(reviewed_slices=reviewed_slices, case_id=case_id, label_names=label_names,
                channel_names=channel_names, overwrite=overwrite, ct=ct, what=labels_name or "the labels")

    _check_folder(folder)
    if not (folder / JOURNAL).exists():  # refuse before creating anything (a folder, a lock file)
        _plan(folder, format, labels_int, chans.shape[0], ndim, **opts)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"Cannot create {folder}: {exc.strerror or exc}.") from None

    with dataset_lock(folder):
        recover(folder)
        plan = _plan(folder, format, labels_int, chans.shape[0], ndim, **opts)
        manifest, cid = plan.manifest, plan.case_id
        image_sha, labels_sha = array_sha256(image), array_sha256(plan.labels)
        finals = case_paths(folder, format, cid, chans.shape[0])
        token = secrets.token_hex(4)
        staged: list[tuple[Path, Path]] = []
        try:
            arrays = ([*chans, plan.labels] if format == "nnunet" else
                      [chans[0] if chans.shape[0] == 1 else chans, plan.labels])
            for final, data in zip(finals, arrays):
                tmp = staged_name(final, token)
                staged.append((tmp, final))
                sp = spacing_l if data.ndim == ndim else [1.0, *spacing_l]  # (C, y, x) TIFF: channels first
                # a (C, y, x) TIFF is labelled CYX: Fiji opens channels, not z-slices 1 unit apart
                like = Volume(data, tuple(sp), None, {"axes": "CYX"}) if (data.ndim, ndim) == (3, 2) else None
                if nifti and affine is not None and format != "tiff":  # the source's header codes and qform
                    like = Volume(data, tuple(sp), np.asarray(affine, float), {"nifti": dict(nifti)})
                write_image(tmp, data, like, spacing=sp, affine=affine, unit="mm" if affine is not None else unit)
                _hook("file")
            record = CaseRecord(
                case_id=cid, source_name=str(source_name or "image"), image_sha256=image_sha,
                shape=list(labels.shape), spacing=spacing_l, label_names=list(manifest["label_names"]),
                reviewed_slices=sorted({int(s) for s in reviewed_slices}) if reviewed_slices is not None else None,
                ignore_label=plan.ignore_value, model=dict(model_info or {}),
                edit_stats=edit_stats(prediction, labels) if prediction is not None else None,
                files={"images": [str(p.relative_to(folder)) for p in finals[:-1]],
                       "label": str(finals[-1].relative_to(folder))},
                exported=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                labels_sha256=labels_sha, warnings=plan.notes + _duplicates(manifest, cid, image_sha, labels_sha),
            )
            entry = {k: v for k, v in asdict(record).items() if k != "warnings"}
            manifest = {**manifest, "cases": [c for c in manifest["cases"] if c["case_id"] != cid] + [entry]}
            manifest.setdefault("channel_names", [])
            index = index_files(folder, format, manifest)
        except BaseException as exc:  # not committed: the dataset is untouched; drop the staged files
            discard([tmp for tmp, _ in staged], folder)
            if isinstance(exc, OSError):
                raise DatasetError(f"Writing case {cid} to {folder} failed ({exc.strerror or exc}); "
                                   "the dataset is unchanged.") from None
            raise
        try:  # the label file first: killed between renames, no reader lists the case's image without its label
            commit(folder, staged[-1:] + staged[:-1], index, manifest, hook=_hook)
        except OSError as exc:
            if (folder / JOURNAL).exists():  # committed: the staged files must stay for the journal
                raise DatasetError(f"Case {cid} was committed to {folder} but not finished ({exc.strerror or exc}); "
                                   "the next export or read of the dataset finishes it.") from None
            discard([tmp for tmp, _ in staged], folder)
            raise DatasetError(f"Writing case {cid} to {folder} failed ({exc.strerror or exc}); "
                               "the dataset is unchanged.") from None
    return record


def _hook(step: str) -> None:
    """Test seam, called after each staged file ("file"), the commit and each rename: the crash
    tests replace it in a subprocess to stop (SIGKILL) or stall the export at a chosen step."""
