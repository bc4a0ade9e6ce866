"""The cases named by a folder, a glob, a CSV or a list."""

from __future__ import annotations

import glob
import json
import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError
from .csv_inputs import read_csv as _read_csv

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from ..data.volume import Volume


def pick_channel(vol: Volume, channel: int | None, in_channels: int, src: str | os.PathLike,
                 dims: int | None = None) -> Volume:
    """The image a model reads from ``vol``: a TIFF whose axes name channels (C, or S: RGB samples) gives channel
    ``channel`` (``--channel``), all of them channel-first for a model that reads as many, or its one channel. RGB(A)
    whose colours are all equal is its grey, a bright-field H&E / IHC picture its hematoxylin (:func:`grey_of_colour`),
    with ``meta["note"]`` saying so. 2 to 4 planes along an unnamed first (or last) axis for a 2D model (``dims``)
    are segmented slice by slice with a note, or give plane ``channel``. An opaque RGBA picture read as RGB gets its
    alpha back for a model of 4 channels. A TZCYX hyperstack is refused. Others come back unchanged (``channel`` None or 0)."""
    import numpy as np

    from ..data.alpha import alpha_back_note, dropped_alpha, with_alpha
    from ..data.hyperstack import last_axis_channel, time_lapse_of_volumes
    from ..data.volume import Volume

    axes = str(vol.meta.get("axes") or "")
    if said := time_lapse_of_volumes(axes, np.shape(vol.data), src, channel, vol.meta.get("channel_names")):
        raise InputError(said)  # (a TZCYX hyperstack: the time point and the channel asked for at once)
    found = [i for i, a in enumerate(axes) if a in "CS"] if len(axes) == np.ndim(vol.data) else []
    if not found:
        if (last := last_axis_channel(vol, channel, dims, src)) is not None:
            return last  # (y, x, C) unnamed: --channel K takes channel K, as the model check advises
        n = int(np.shape(vol.data)[0]) if np.ndim(vol.data) == 3 else 0
        if dims == 2 and len(axes) == 3 and axes[0] in "QI" and 2 <= n <= 4 and (in_channels == 1 or channel is not None):
            return _unnamed_planes(vol, channel, n, src)  # (a model of n channels reads them as its channels: no note)
        if channel not in (None, 0):
            raise InputError(f"{src} has no channel axis (axes {axes or 'unknown'}); leave --channel out.")
        return vol
    ax = found[0]
    n = int(np.shape(vol.data)[ax])
    spacing = tuple(s for i, s in enumerate(vol.spacing) if i != ax) if len(vol.spacing) == len(axes) else vol.spacing
    rest = axes[:ax] + axes[ax + 1:]
    if channel is not None:
        if not 0 <= int(channel) < n:
            raise InputError(f"{src} has {n} channels (axes {axes}); --channel is 0 to {n - 1}, not {channel}.")
        return Volume(np.take(np.asarray(vol.data), int(channel), axis=ax), spacing, vol.affine,
                      {**vol.meta, "axes": rest, "channel": int(channel)})
    if axes[ax] == "S" and n == 3 and in_channels == 4 and (value := dropped_alpha(vol.meta)) is not None:
        data = np.moveaxis(with_alpha(vol.data, value, ax), ax, 0)  # (the opaque alpha the reader dropped, put back)
        return Volume(data, spacing, vol.affine, {**vol.meta, "axes": "C" + rest, "note": alpha_back_note(str(src), value)})
    if n == 1 or n == in_channels:
        data = np.take(np.asarray(vol.data), 0, axis=ax) if n == 1 else np.moveaxis(np.asarray(vol.data), ax, 0)
        return Volume(data, spacing, vol.affine, {**vol.meta, "axes": rest if n == 1 else "C" + rest})
    if axes[ax] == "S" and n in (3, 4) and in_channels == 1 and (grey := grey_of_colour(vol.data, ax)) is not None:
        data, k, note = grey
        if isinstance(k, str):
            note += " --channel K (0 red, 1 green, 2 blue) segments one colour instead."
        earlier = [str(vol.meta["note"]).rstrip(".")] if vol.meta.get("note") else []  # (the reader's: alpha dropped)
        return Volume(data, spacing, vol.affine, {**vol.meta, "axes": rest, "channel": k,
                                                   "note": "; ".join(earlier + [note])})
    if axes[ax] == "S" and n == 4 and in_channels == 3:  # real transparency (an opaque alpha was dropped when read)
        from ..data.alpha import transparency_message

        raise InputError(transparency_message(str(src), np.asarray(vol.data), ax))
    why = ""
    if axes[ax] == "S" and n in (3, 4) and in_channels == 1:  # (a slide that was not taken for one: say why)
        why = (" (its colours hold different images on a dark background, or with a colour dark throughout: a "
               "fluorescence composite, not a bright-field H&E / IHC slide, whose hematoxylin would be segmented)")
    if axes[ax] == "S" and n == 3 and in_channels == 4:  # (no alpha to put back: --channel K is no fix either)
        raise InputError(f"{src} is an RGB picture without alpha (axes {axes}) and the model reads 4 channels (RGBA "
                         "pictures, as it was trained on): give it the picture with its alpha channel, or use a model "
                         "that reads 3 colours or one channel.")
    alpha = axes[ax] == "S" and n == 4  # (its 4th sample is the alpha, varying: one value throughout was dropped)
    raise InputError(f"{src} has {n} channels (axes {axes}) and the model reads {in_channels}{why}: choose one with "
                     f"--channel K (0 to {n - 2 if alpha else n - 1}{', 0 red, 1 green, 2 blue' if why else ''}"
                     f"{'; 3 is its transparency (alpha)' if alpha else ''}; in Python, index that axis of the array).")


def segmented_channel(image: Volume, channel: int | str | None) -> Volume:
    """The channel a run segmented (``--channel K``: the record's ``channel``) of a multi-channel or RGB input, so
    a reopened record shows, corrects and exports the image its mask was made on (a slide's red channel reopened
    as the slide, and its export wrote the hematoxylin); the input itself otherwise (a slide's hematoxylin: the
    picture, whose grey layer the panels make)."""
    import numpy as np

    axes = str(image.meta.get("axes") or "")
    found = [i for i, a in enumerate(axes) if a in "CS"] if len(axes) == np.ndim(image.data) else []
    if not isinstance(channel, int) or not found or not 0 <= channel < np.shape(image.data)[found[0]]:
        return image
    return pick_channel(image, channel, 1, image.meta.get("source_path", "the input"))


def _unnamed_planes(vol: Volume, channel: int | None, n: int, src: str | os.PathLike) -> Volume:
    """A (2-4, Y, X) TIFF whose first axis has no name, for a 2D model: a z-stack with a note, or one plane."""
    import numpy as np

    from ..data.volume import Volume

    axes = str(vol.meta["axes"])
    what = f"{n} planes along an unnamed first axis (axes {axes})"
    earlier = [str(vol.meta["note"])] if vol.meta.get("note") else []
    if channel is None and n == 3 and vol.meta.get("planar_rgb"):  # (tifffile's planar RGB: a stained slide is colour)
        from ..data.stains import stain_grey

        if (stained := stain_grey(np.moveaxis(np.asarray(vol.data), 0, -1), -1)) is not None:
            spacing = tuple(vol.spacing[1:]) if len(vol.spacing) == 3 else vol.spacing
            note = (f"{what}, stored as planar RGB, looks like a bright-field stained picture: read as colour; "
                    f"{stained[1]}")
            return Volume(stained[0], spacing, vol.affine, {**vol.meta, "axes": "YX", "channel": "hematoxylin",
                                                            "note": "; ".join(earlier + [note])})
    if channel is None:
        note = (f"{what}, segmented as a z-stack slice by slice; if they are channels, choose one with "
                f"--channel K (0 to {n - 1})")
        return Volume(vol.data, vol.spacing, vol.affine, {**vol.meta, "note": "; ".join(earlier + [note])})
    if not 0 <= int(channel) < n:
        raise InputError(f"{src} has {what}; --channel is 0 to {n - 1}, not {channel}.")
    spacing = tuple(vol.spacing[1:]) if len(vol.spacing) == 3 else vol.spacing
    note = f"{what}: plane {int(channel)} segmented (--channel {int(channel)})"
    return Volume(np.take(np.asarray(vol.data), int(channel), axis=0), spacing, vol.affine,
                  {**vol.meta, "axes": axes[1:], "channel": int(channel), "note": "; ".join(earlier + [note])})


def grey_of_colour(data: np.ndarray, ax: int = -1) -> tuple[np.ndarray, int | str, str] | None:
    """The grey image to segment of an RGB(A) picture (samples along ``ax``): ``(image, channel, note)``, or
    None when it holds no single grey image. Its grey or its one varying colour (:func:`~napari_attnseg.data.stains.grey_sample`; channel
    0-2), else, for a bright-field picture (H&E, IHC), its hematoxylin (:func:`~napari_attnseg.data.stains.
    stain_grey`; channel ``"hematoxylin"``). ``attnseg predict``, ``attnseg export`` and the napari panels all
    take this one choice, so a mask, its export and a fine-tuning on it see the same image."""
    import numpy as np

    from ..data.stains import grey_sample, stain_grey

    if (found := grey_sample(data, ax)) is not None:
        k, note = found
        return np.take(np.asarray(data), k, axis=ax), k, note
    if (stained := stain_grey(data, ax)) is not None:
        image, note = stained
        return image, "hematoxylin", note + "."
    return None


# ----------------------------------------------------------------------------------------------
# reading one input
# ----------------------------------------------------------------------------------------------
class _Quiet(logging.Filter):
    """Drops a library's log lines in the threads that are reading an input: :func:`read_input`
    says itself, in one line naming the file, what went wrong."""

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self.local, "on", False)


_QUIET = _Quiet()


def read_input(path: str | os.PathLike) -> Volume:
    """:func:`napari_attnseg.data.read_image` for a user's input: without tifffile's log lines, and
    a damaged TIFF is called one (not "list index out of range"). Raises ``InputError``."""
    from ..data import image_format, read_image

    logger = logging.getLogger("tifffile")
    if _QUIET not in logger.filters:
        logger.addFilter(_QUIET)
    _QUIET.local.on = True
    try:
        return read_image(path)
    except InputError as exc:
        if image_format(path) == "tiff" and str(exc).startswith("Could not read"):
            raise InputError(f"{path} is not a readable TIFF: the file is damaged or cut short, or it is not a "
                             "TIFF at all. Check it, or save the image again as TIFF.") from None
        if image_format(path) == "nifti" and str(exc).startswith("Could not read"):  # a copy cut short, mostly
            reason = str(exc).split(": ", 1)[-1]
            raise InputError(f"{path} is not a readable NIfTI file ({reason}): the file is damaged or cut short (an "
                             "interrupted copy or download?). Copy it again from its source, or convert the scan again."
                             ) from None
        raise
    finally:
        _QUIET.local.on = False


# ----------------------------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------------------------
EDITED_DIR = "edited_masks"  # where --overwrite keeps a mask the user changed (outputs.keep_edited_mask)


@dataclass
class Collected:
    """The cases of some inputs, with what the user should hear about them."""

    cases: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # entries of a folder that were left out, ...
    hints: dict[str, str] = field(default_factory=dict)  # a case's path -> why it will not be found


def collect_inputs(inputs: str | os.PathLike | Iterable[str | os.PathLike],
                   exclude: str | os.PathLike | None = None) -> list[Path]:
    """The cases named by ``inputs``, in order, each once.

    A folder gives its images (``.tif``, ``.nii.gz``, ...) and its DICOM series sub-folders, sorted,
    leaving out what ``attnseg predict`` wrote there (so ``out`` may be the input folder); a folder
    that is itself a DICOM series is one case. A string with ``*``, ``?`` or ``[`` is a glob
    (``**`` recursive), which leaves out what ``attnseg predict`` wrote too. A ``.csv`` gives the paths
    of its ``path``/``input``/``image``/``file`` column (else its first column), relative to the CSV's
    folder. Anything else is one case; a missing file stays in the list and fails on its own.
    ``exclude``: the output folder; nothing inside it is a case of a folder or a glob.
    """
    return gather(inputs, exclude).cases


def gather(inputs: str | os.PathLike | Iterable[str | os.PathLike],
           exclude: str | os.PathLike | None = None) -> Collected:
    """:func:`collect_inputs`, with notes on what was left out and hints for CSV rows that name no file."""
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    got = Collected()
    found: list[Path] = []
    out = Path(exclude).resolve() if exclude is not None else None
    for item in items:
        found += _expand(item, out, got)
    seen: set[Path] = set()
    for p in found:
        key = p.resolve() if p.exists() else p.absolute()
        if key not in seen:
            seen.add(key)
            got.cases.append(p)
    return got


def _expand(item: str | os.PathLike, out: Path | None, got: Collected) -> list[Path]:
    from ..data import image_format

    text = os.fspath(item)
    p = Path(text)
    if any(c in text for c in "*?[") and not p.exists():
        from .series import holds_images  # (a DICOMDIR's top folder is no series)

        matches = [Path(m) for m in sorted(glob.glob(_escape_literal_prefix(text), recursive=True))
                   if not Path(m).name.startswith(".")
                   and (Path(m).is_file() or (image_format(m) == "dicom" and holds_images(Path(m))))]
        from .outputs import without_scouts

        return without_scouts(_not_outputs(matches, out), text, got)
    if p.suffix.lower() == ".csv" and p.is_file():
        return _read_csv(p, got)
    if p.is_dir() and image_format(p) != "dicom":
        return _folder_cases(p, out, got)
    return [p]


def _escape_literal_prefix(pattern: str) -> str:
    """``pattern`` with its longest leading folder that exists as written escaped: a folder named
    ``Scan [2024]`` is that folder in ``"Scan [2024]/*.tif"``, not a character class matching nothing."""
    parts = Path(pattern).parts
    for k in range(len(parts) - 1, 0, -1):
        head = Path(*parts[:k])
        if any(c in str(head) for c in "*?[") and head.is_dir():
            return os.path.join(glob.escape(str(head)), *parts[k:])
    return pattern


def _inside(folder: Path, out: Path | None) -> bool:
    return out is not None and (folder == out or out in folder.parents)


def _ours(folder: Path) -> set[str]:
    """Names in ``folder`` that ``attnseg predict`` wrote (its records' outputs and links, a killed run's
    outputs so far, the records themselves, a kept edited mask folder): not inputs."""
    from ..results import PARTIAL_SUFFIX, RECORD_SUFFIX, existing_outputs

    ours: set[str] = set()
    for rec in folder.glob(f"*{RECORD_SUFFIX}"):
        ours.add(rec.name)
        ours.add(EDITED_DIR)
        try:
            record = json.loads(rec.read_text())
            ours.update(record.get("outputs") or [])
            if record.get("input_reference") and Path(record["input"]).parent != folder.resolve():
                ours.add(record["input_reference"])
        except (OSError, ValueError, AttributeError, TypeError):
            continue
    for marker in folder.glob(f".*{PARTIAL_SUFFIX}"):  # a run killed while writing a case: its outputs so far
        name = marker.name[1:-len(PARTIAL_SUFFIX)]
        ours.update(f.name for f in existing_outputs(folder, Path(name)))
    return ours


def _not_outputs(paths: list[Path], out: Path | None) -> list[Path]:
    """The matches of a glob less what ``attnseg predict`` wrote: anything in a sub-folder of ``out`` (``out`` may be
    the glob's folder, as a folder input's), the files records name, kept edited masks, images named like outputs."""
    from ..results import RECORD_SUFFIX

    ours: dict[Path, set[str]] = {}
    kept = []
    for p in paths:
        folder = p.parent.resolve()
        if (_inside(folder, out) and folder != out) or p.name.endswith(RECORD_SUFFIX):
            continue
        if folder not in ours:
            ours[folder] = _ours(folder)
        if p.name in ours[folder]:
            continue
        if folder.name == EDITED_DIR:
            if folder.parent not in ours:
                ours[folder.parent] = _ours(folder.parent)
            if EDITED_DIR in ours[folder.parent]:
                continue
        kept.append(p)
    by_folder: dict[Path, list[Path]] = {}
    for p in kept:
        by_folder.setdefault(p.parent.resolve(), []).append(p)
    mine = {q for group in by_folder.values() for q in _masks_among(group)}
    return [p for p in kept if p not in mine]


def _masks_among(cases: list[Path]) -> list[Path]:
    """A file named like an output of another image here (cells_mask.tif beside cells.tif: the user's own
    reference or correction, or ours) is that image's mask, not an image to segment."""
    from ..data.io import stem

    stems = {stem(p) for p in cases}
    outputs = {f"{s}_{kind}" for s in stems for kind in ("mask", "prob", "image")}

    def is_mask(p: Path) -> bool:
        s = stem(p)
        if s in outputs or any(s.startswith(f"{t}_attention_") for t in stems):
            return True
        # 3D Slicer's segmentation (brain1.seg.nrrd) or label map (brain1-label.nrrd) beside its scan
        return (s.endswith(".seg") and s[:-4] in stems) or (s.endswith("-label") and s[:-6] in stems)

    return [p for p in cases if is_mask(p)]


def _folder_cases(folder: Path, out: Path | None = None, got: Collected | None = None) -> list[Path]:
    from ..data import image_format
    from ..data.metaio import data_file_of
    from ..results import RECORD_SUFFIX
    from .series import dicom_below, without_scouts
    from .summary import is_summary

    ours = _ours(folder)  # outputs of earlier runs into this folder are not inputs
    cases = []
    files = folders = loose = 0
    trees: list[Path] = []  # sub-folders with DICOM series further down (a PACS export without DICOMDIR)
    budget = [2000]  # folders looked at below the sub-folders, all together (a BIDS derivatives tree beside the scans)
    entries = sorted(folder.iterdir())
    data_files = {d for p in entries if (d := data_file_of(p)) is not None}  # (.raw of .mhd / .nhdr: part of a case)
    for p in entries:
        if p.name.startswith(".") or p.name in ours or p.name.endswith(RECORD_SUFFIX) or p.resolve() in data_files:
            continue
        fmt = image_format(p)
        if fmt == "dicom" and p.is_file():  # loose DICOM files of a series in a folder of cases
            loose += 1
        elif fmt is not None:
            cases.append(p)
        elif p.is_dir():
            if not _inside(p.resolve(), out):
                folders += 1
                trees += [series] if (series := dicom_below(p, budget=budget)) is not None else []
        elif not is_summary(p):  # (a cohort_summary.csv of ours, when out is this folder: an output, said nothing of)
            files += 1
    parts = [f"{n} {what}{'s' if n != 1 else ''}{rest.format('is' if n == 1 else 'are')}"
             for n, what, rest in ((files, "file", " of other types"), (loose, "DICOM file", " outside a series folder"),
                                   (folders, "folder", " that {} not a DICOM series")) if n]
    if parts and got is not None:
        hint = f" (sub-folders are not searched: use a quoted glob like \"{folder}/**/*{_suffix(cases)}\")" if folders else ""
        if trees:  # a PACS tree (patient/study/series folders): a glob of *.tif finds nothing there
            hint = (f" ({len(trees)} of them hold{'s' if len(trees) == 1 else ''} DICOM series in their sub-folders, "
                    f"e.g. {trees[0]}: a PACS export "
                    "without DICOMDIR, whose sub-folders are not searched. Give the series folders: a quoted glob "
                    f"\"{folder}/**/\" (every series folder below, each a case; scouts are left out) or a CSV of them; "
                    "series folders of one name under two patients are named with their folders too, e.g. PAT001_ST001_SE002)")
        got.notes.append(f"{folder}: skipped {' and '.join(parts)}{hint}")
    mine = set(_masks_among(cases))
    return without_scouts([p for p in cases if p not in mine], folder, got)


def _suffix(cases: list[Path]) -> str:
    """The commonest file suffix of ``cases`` (``.nii.gz`` for a folder of NIfTI scans; ``.tif`` without files)."""
    from collections import Counter

    from ..data.io import stem

    found = Counter(p.name[len(stem(p)):] for p in cases if p.is_file() and p.name[len(stem(p)):])
    return found.most_common(1)[0][0] if found else ".tif"
