"""Everything that can refuse an export, decided before a single file is written (:func:`_plan`): the arrays and
the folder checked, the dataset's label and channel tables made or kept, the labels' values against the table
(instance ids, an 'unlabelled' value), unreviewed slices set to 'ignore', the case id chosen and checked, files
that no manifest case wrote left alone; and the warning for a case whose image the dataset already holds
(:func:`_duplicates`). Writing the case is :mod:`.export`, which re-exports these names."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._version import __version__
from ..errors import DatasetError, InputError
from .export_advice import the_labels, unlabelled_advice
from .export_colour import COLOUR_CHANNELS, check_same_kind
from .export_plane import one_plane  # noqa: F401 (re-exported: its home was here)
from .inserted import without_inserted  # noqa: F401 (re-exported: its home was here)
from .label_values import check_class_ids, clean_names, values_outside_table
from .layouts import case_paths, detect_format
from .manifest import LAYOUT_DIRS, MANIFEST, read_manifest

_CASE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
MANIFEST_VERSION = 1
MAX_AUTO_CLASSES = 20  # more distinct label values without --label-names: instance ids, not classes


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
    lut: np.ndarray | None = None  # the labels' values -> the dataset's (classes matched by name), else None
    case_ids: list[str] | None = None  # a time-lapse's frames, one 2D case each (``<case>_t000``...): their ids
    frames: list[int] | None = None  # the frames those cases hold (the reviewed ones)


def _values_present(a: np.ndarray, size: int) -> set[int]:
    """The values ``a`` holds (each in 0..size-1), a block at a time: ``np.bincount`` of the whole mask made it int64
    first (288 MB for a 6000 x 6000 uint8 mask)."""
    if a.dtype == bool or a.dtype.kind not in "ui" or (a.dtype.kind == "i" and a.size and a.min() < 0):
        return set(np.unique(a).astype(np.int64).tolist())  # (odd masks: as they are, no block trick)
    seen, flat = np.zeros(max(1, size), bool), a.reshape(-1)
    for i in range(0, flat.size, 1 << 20):
        seen[flat[i:i + (1 << 20)]] = True
    return set(np.flatnonzero(seen).tolist()) if flat.size else set()


def _plan(folder: Path, format: str, labels: np.ndarray, n_channels: int, ndim: int, *, reviewed_slices,
          case_id, label_names, channel_names, overwrite, ct: bool = False, what: str = "the labels",
          time_lapse: bool = False, colour: bool = False) -> _Plan:
    """Everything that can refuse the export, decided before a single file is written. ``time_lapse``: the labels are
    a time-lapse's (T, y, x), exported as one ``ndim`` (2D) case per frame, ``<case>_t000``...; reviewed slices are
    reviewed frames, and a frame nobody reviewed is left out (a case all 'ignore' teaches nothing, and fine-tuning
    refuses one). ``colour``: the image is an RGB picture's colours (:mod:`.export_colour`), one kind a dataset."""
    frames = list(range(labels.shape[0])) if time_lapse else []
    if time_lapse and reviewed_slices is not None:
        frames = sorted({int(t) for t in reviewed_slices if 0 <= int(t) < labels.shape[0]})
        if not frames:
            raise InputError(f"None of the {labels.shape[0]} frames of the time-lapse ({what}) is marked reviewed, so "
                             "there is nothing to export: review the frames you corrected (napari: press R on each; "
                             "attnseg export --reviewed-slices 0,3-5 names them), or leave the marks out to export "
                             "every frame as labelled.")
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
    if reviewed_slices is not None and labels.ndim == 3:  # unreviewed slices go out as 'ignore': their values need no name
        rows = sorted({int(z) for z in reviewed_slices if 0 <= int(z) < labels.shape[0]})
        counted = labels[rows]
    n_classes = int(counted.max(initial=0)) + 1
    present = _values_present(counted, n_classes)
    n_values = len(present)
    if (max(n_values, n_classes - 1) > MAX_AUTO_CLASSES and not label_names
            and (manifest is None or n_classes > len(manifest["label_names"]))):
        few = n_values <= MAX_AUTO_CLASSES + 1 and n_classes - 1 in (255, 65535)  # a few classes + an 'unlabelled' value
        raise InputError(
            f"{the_labels(what)} hold {n_values} distinct values (up to {n_classes - 1}, which would make a table of "
            f"{n_classes} classes): " + (unlabelled_advice(n_classes - 1, labels, rows, time_lapse) if few else
                                         "they look like instance ids (one value per object), not classes. Export them "
                                         "as one foreground class (attnseg export --foreground; in napari, tick 'One "
                                         "class (labels > 0)' above Export: labels > 0 become 1), or name every class "
                                         "(--label-names; in napari, Class names)."))
    notes = []
    absent = sorted(set(range(1, n_classes)) - present)
    if manifest is None and not label_names and n_classes > 2 and absent:
        notes.append(f"the labels have no voxel of value(s) {', '.join(map(str, absent))}, yet the new dataset's label "
                     f"table names every value up to {n_classes - 1} ('class 1'..'class {n_classes - 1}'); if the "
                     "values are not class ids, export with --foreground, or name the classes (--label-names; in napari, the "
                     "Class names field of Correct and export)")
    if manifest is None:
        names = list(label_names) if label_names else (
            ["background", "foreground"] if n_classes <= 2 else ["background"] + [f"class {i}" for i in range(1, n_classes)])
        chans = list(channel_names) if channel_names else (list(COLOUR_CHANNELS[:n_channels]) if colour else ["CT" if ct
                                                           else "image"] if n_channels == 1 else
                                                           [f"channel{i}" for i in range(n_channels)])
        if len(set(names)) != len(names) or "ignore" in names:
            raise InputError(f"Label names must be distinct and must not include 'ignore' (reserved); got {names}.")
        if any(n.lower() == "background" for n in names[1:]):  # nnU-Net: 'background' is value 0
            rest = [n for n in names if n.lower() != "background"]
            raise InputError(f"'background' names label value 0 (the first name); got {names}. Give the names in "
                             f"the order of the values, background first, e.g. --label-names background,"
                             f"{','.join(rest)} (napari: Class names {', '.join(['background', *rest])}).")
        if len(names) < 2:
            raise InputError(f"Label names give one name per label value, background (0) first; got only {names}. "
                             f"Use e.g. --label-names background,{names[0] if names else 'tumour'} (napari: Class "
                             f"names background, {names[0] if names else 'tumour'}).")
        manifest = {"format": format, "format_version": MANIFEST_VERSION, "label_names": names,
                    "channel_names": chans, "spatial_dims": ndim, "tool": f"napari-attnseg {__version__}",
                    "cases": [], **({"colour": True} if colour else {})}
    table, lut = list(manifest["label_names"]), None
    if label_names and list(label_names) != table:  # the mask's classes found in the table by name, renumbered
        if n_classes > len(label_names):
            raise InputError(f"{values_outside_table(counted, len(label_names), rows, what)} beyond the label names "
                             f"given ({', '.join(label_names)}): give one name per label value, background first.")
        lut, said = by_name(list(label_names), table, folder, what)
        notes.extend(said)
        labels = labels if lut is None else renumber(labels, lut)
    if channel_names and list(channel_names) != list(manifest.get("channel_names", [])):
        raise InputError(f"The channel names {list(channel_names)} differ from those of the dataset in {folder} "
                         f"({manifest.get('channel_names')}); a dataset keeps one channel table. Give the same "
                         "names (--channel-names), or leave them out to take the dataset's, or export into another folder.")
    check_same_kind(manifest, colour, folder, n_channels)  # (grey and colour cases never mixed)
    if len(manifest.get("channel_names", [])) not in (0, n_channels):
        raise InputError(f"The images of the dataset in {folder} have {len(manifest['channel_names'])} channel(s); "
                         f"this one has {n_channels}. A dataset's cases share their channels: export this image "
                         "into another folder (or pick its channel with --channel).")
    if time_lapse and manifest.get("spatial_dims", ndim) == 3:  # (an earlier version wrote a movie as one 3D case)
        raise InputError(_old_movie(folder, manifest, labels.shape, format))
    if manifest.get("spatial_dims", ndim) != ndim:
        raise InputError(f"The dataset in {folder} holds {manifest['spatial_dims']}D cases; this one is {ndim}D. "
                         "A dataset's cases share their dimensions: export this image into another folder.")
    if n_classes > len(table):
        hint = (f"--label-names gives one name per label value, background (0) first, e.g. "
                f"--label-names background,{','.join(table)} (napari: Class names background, {', '.join(table)})."
                if label_names and table[0] != "background" else
                "Give a name to every label value (--label-names, background first; napari: Class names) or check "
                "the mask.")
        if manifest["cases"]:
            hint = "The dataset keeps its label table; export this mask into another folder or check its values."
        raise InputError(f"{values_outside_table(counted, len(table), rows, what)} not in the dataset's label table "
                         f"({', '.join(f'{i}={n}' for i, n in enumerate(table))}). {hint}")
    ignore_value = None
    exported = labels
    if reviewed_slices is not None:
        from ..correct import ignore_unreviewed

        if labels.ndim != 3:
            raise InputError("Reviewed slices apply to 3D volumes; a 2D image is reviewed as a whole.")
        ignore_value = len(table)  # nnU-Net v2: 'ignore' is the highest label value
        exported = ignore_unreviewed(labels, reviewed_slices, ignore_value)
    ids = [c["case_id"] for c in manifest["cases"]]
    owned = {f for c in manifest["cases"] for f in [*c["files"].get("images", []), c["files"].get("label")]}

    def not_ours(cid: str) -> list[Path]:  # files at a case's paths that no manifest case wrote
        return [p for p in case_paths(folder, format, cid, n_channels, colour)
                if p.exists() and str(p.relative_to(folder)) not in owned]

    if case_id is None:
        n = len(ids)
        while f"case_{n:04d}" in ids or any(c in ids or not_ours(c) for c in frame_ids(f"case_{n:04d}", frames)):
            n += 1
        case_id = f"case_{n:04d}"
    if not _CASE_RE.match(case_id):
        hint = f" e.g. {ascii_case_id(case_id)!r}" if ascii_case_id(case_id) else ""
        raise InputError(f"Case id {case_id!r} may only hold the letters A-Z and a-z (no accents), digits, '_' and '-', "
                         f"and not start with '_' or '-' (no spaces or dots: the id names the case's files in every "
                         f"layout); use{hint or ' another id'}.")
    all_ids = frame_ids(case_id, frames)
    if time_lapse:
        _check_movie_ids(folder, ids, case_id, frames, overwrite)
    for cid in all_ids:
        if cid in ids and not overwrite:
            raise DatasetError(f"Case {cid!r} already exists in {folder}; choose another case id (leave it empty for "
                               "the next free one), or replace that case on purpose (napari: tick 'Replace the case'; "
                               "attnseg export --case-id ID --overwrite).")
        if blocked := not_ours(cid):
            raise DatasetError(f"{blocked[0]} already exists and is not a case in {folder / MANIFEST}; napari-attnseg "
                               "never replaces it. Move it away or choose another case id.")
    if time_lapse:
        return _Plan(manifest, all_ids[0], exported, None, notes, lut, all_ids, frames)
    return _Plan(manifest, all_ids[0], exported, ignore_value, notes, lut)


def by_name(names: list[str], table: list[str], folder: Path, what: str) -> tuple[np.ndarray | None, list[str]]:
    """The labels' classes (``names``, value 0 first) found in a dataset's label ``table`` by name, as training matches
    classes (:func:`~.label_values.class_key`: case, ``_`` / ``-`` and spacing aside): ``(lut, notes)``, ``lut[v]`` the
    table's value of the labels' value ``v`` (None: the same numbering). An RTSTRUCT lists its ROIs in its own order
    (each patient's file another), so the same classes came numbered otherwise; value 0 stays background. Refused,
    naming them, when a class is not in the table (or two names are alike)."""
    from .label_values import class_key

    keys, index = [class_key(n) for n in names], {class_key(n): i for i, n in enumerate(table)}
    targets = [0] + [index.get(k, 0) for k in keys[1:]]
    missing = [n for n, k, t in zip(names[1:], keys[1:], targets[1:]) if not t]
    if missing or len(set(keys)) < len(keys) or len(index) < len(table):
        said = (f"{what} has class{'es' if len(missing) > 1 else ''} {', '.join(missing)}, which the dataset in "
                f"{folder} does not have" if missing else f"the names of {what} do not match the dataset's one to one")
        raise InputError(f"The label names {names} differ from the dataset's ({', '.join(table)}): {said}; a dataset "
                         "keeps one label table. Export only classes it has (a DICOM RTSTRUCT/SEG: --roi picks ROIs by "
                         f"name, e.g. --roi {','.join(table[1:])}), give the mask's values the dataset's names in their "
                         f"order (e.g. --label-names {','.join(table)}; napari: Class names), or export into another "
                         "folder.")
    notes = []
    moved = [(names[v], v, t) for v, t in enumerate(targets) if v and t != v]
    if moved:
        notes.append("classes renumbered by name to the dataset's table: "
                     + ", ".join(f"{n} {v}->{t}" for n, v, t in moved))
    if lacking := [n for i, n in enumerate(table) if i and i not in targets]:
        notes.append(f"{what} has no class {', '.join(lacking)} of the dataset's label table: this case teaches "
                     "background wherever those lie")
    return (np.asarray(targets) if moved else None), notes


def prediction_lut(names: list[str], table: list[str], what: str) -> tuple[np.ndarray | None, list[str]]:
    """The model's prediction (its classes ``names``, value 0 first) in a dataset's numbering (``table``), by name as
    :func:`by_name` matches the labels, so the edit statistics compare class with class: ``(lut, notes)``, lut None
    when it is numbered as the table, or shares no class name with it (compared by value then, as such labels go in).
    A class the table lacks counts as background (the labels cannot hold it), said; never refused (it only records
    what was edited)."""
    from .label_values import class_key

    names = [str(n).strip() for n in names]
    index = {class_key(n): i for i, n in enumerate(table) if i}
    targets = [0] + [index.get(class_key(n), 0) for n in names[1:]]
    if not any(targets) or targets == list(range(len(targets))):
        return None, []
    notes = [f"{what}'s classes renumbered by name to the dataset's table for the edit statistics: "
             + ", ".join(f"{names[v]} {v}->{t}" for v, t in enumerate(targets) if v and t and t != v)]
    if lacking := [names[v] for v, t in enumerate(targets) if v and not t]:
        notes.append(f"{what}'s class(es) {', '.join(lacking)} are not in the dataset's label table: counted as "
                     "background in the edit statistics")
    return np.asarray(targets), [n for n in notes if not n.endswith(": ")]


def names_by_value(names: list[str], folder: str | os.PathLike, what: str) -> str | None:
    """The warning for exporting by value (the dataset's classes, the names left aside) a mask whose own class names
    (saved with it, or a model's, e.g. ``nucleus``) are none of the label table of the dataset in ``folder`` (e.g.
    ``foreground``); None when there is no dataset there, or one of the names is in its table (compared as
    :func:`by_name` does): those are matched by name (renumbered, or a class it lacks refused). A mask's values were
    painted as classes, the names may be a model's defaults that nobody renamed: refusing them would refuse exports
    that went in as they are."""
    manifest = read_manifest(Path(folder)) if str(folder) and Path(folder).is_dir() else None
    if manifest is None:
        return None
    from .label_values import class_key

    table, names = [str(n) for n in manifest["label_names"]], [str(n).strip() for n in names]
    if names == table or {class_key(n) for n in names[1:]} & {class_key(n) for n in table[1:]}:
        return None
    pairs = ", ".join(f"{v} {names[v]} as {table[v]}" for v in range(1, min(len(names), len(table))))
    return (f"{what}'s class names ({', '.join(names)}) are none of the label table of the dataset in {folder} "
            f"({', '.join(table)}): its values go in as they are{f' ({pairs})' if pairs else ''}. If they are other "
            "classes, export into another folder; give the values the dataset's names to export without this warning "
            f"(attnseg export --label-names {','.join(table)}; napari: Class names).")


def renumber(values: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """``values`` with each value ``v`` below ``len(lut)`` replaced by ``lut[v]`` (others as they are), same dtype."""
    values = np.asarray(values)
    inside = (values >= 0) & (values < len(lut))
    out = values.copy()
    out[inside] = lut[values[inside].astype(np.int64)]
    return out


def _old_movie(folder: Path, manifest: dict, shape: tuple, format: str) -> str:
    """Why a time-lapse cannot join a dataset of 3D cases (one of them, of its shape, may be this movie exported by
    an earlier version as one 3D case), and what to do."""
    same = [c["case_id"] for c in manifest["cases"] if list(c.get("shape") or []) == list(shape)]
    held = (f"holds 3D cases ({', '.join(same[:3])}{', ...' if len(same) > 3 else ''} of this movie's shape "
            f"{'x'.join(map(str, shape))}: a time-lapse exported by an earlier version as one 3D case, its frames as "
            "z-slices)" if same else "holds 3D cases (volumes, or a time-lapse exported by an earlier version as one "
            "3D case, its frames as z-slices)")
    return (f"The dataset in {folder} {held}; a time-lapse now goes to {'nnU-Net' if format == 'nnunet' else 'MONAI'} "
            "as one 2D case per frame, which cannot join 3D cases. Export it into a new dataset folder (mark the frames "
            "of earlier rounds reviewed too when this mask holds them), or in the tiff format into a new folder, "
            "which keeps a movie as one t, y, x file (attnseg export --format tiff; napari: format tiff).")


FRAME_CASE = re.compile(r"^(?P<base>.+)_t(?P<t>\d{3,})$")  # a time-lapse's frame exported as a 2D case


def _check_movie_ids(folder: Path, ids: list[str], case_id: str, frames: list[int], overwrite: bool) -> None:
    """Refuse a time-lapse export that would split one movie in the dataset: a frame's own case id given as the case id
    (new cases ``<frame>_t000``... that the train/validation split takes for another movie), or a replacement
    (``overwrite``) that leaves frames exported before, and not reviewed now, with their earlier labels beside it."""
    if (typed := FRAME_CASE.match(case_id)) and case_id in ids:
        base = typed["base"]
        raise DatasetError(f"{case_id} is a frame of the time-lapse {base} in {folder}, exported as one 2D case per "
                           f"frame: exporting the movie under {case_id} would add new cases {case_id}_t000... beside it. "
                           f"Give {base} as the case id to replace the movie's frames (attnseg export --case-id {base} "
                           "--overwrite; napari: Replace the case), or no case id for a new case.")
    if not overwrite:
        return
    before = {int(m["t"]): cid for cid in ids if (m := FRAME_CASE.match(cid)) and m["base"] == case_id}
    lost = sorted(set(before) - set(frames))
    if lost:
        from ..correct import format_slice_ranges

        names = ", ".join(before[t] for t in lost[:3]) + (", ..." if len(lost) > 3 else "")
        raise DatasetError(f"Replacing {case_id} in {folder} would not replace frames {format_slice_ranges(lost)} "
                           f"({names}): they were exported as reviewed frames of this time-lapse and are not reviewed "
                           "in this export, so they would stay with their earlier labels beside the new frames. Mark "
                           "them reviewed too if these labels there are checked (attnseg export --reviewed-slices; "
                           "napari: R on each frame), or export as a new case (no --overwrite / case id; napari: untick "
                           "Replace the case).")


def frame_ids(case_id: str, frames: list[int]) -> list[str]:
    """The case ids of a time-lapse's frames (``<case>_t000``...), or ``[case_id]`` for an image that is not one."""
    return [f"{case_id}_t{t:03d}" for t in frames] if frames else [case_id]


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

