"""Which images of a DICOM folder make the volume, as a PACS export holds them: one series among several
(a scout, the axial series, a coronal reformat, ...) and, within a series, one volume among several at
the same slice positions (MR echoes, time points, b-values, repeated acquisitions).

Messages name series by their SeriesNumber, modality, plane, size and a file: never by their description
or UID (free text and identifiers stay in the headers).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .dicom_geometry import Frame, functional, select

AXIAL = 0.8  # |slice normal . z| above this: an axial series (gantry tilts up to ~35 degrees included)
# what tells apart volumes stacked at the same positions in one series: (what it is, functional group, keyword)
VOLUME_KEYS = (
    ("echo", "", "EchoNumbers"), ("echo time", "MREchoSequence", "EffectiveEchoTime"), ("echo time", "", "EchoTime"),
    ("time point", "", "TemporalPositionIdentifier"), ("time point", "FrameContentSequence", "TemporalPositionIndex"),
    ("b-value", "MRDiffusionSequence", "DiffusionBValue"), ("b-value", "", "DiffusionBValue"),
    ("trigger time", "CardiacSynchronizationSequence", "NominalCardiacTriggerDelayTime"), ("trigger time", "", "TriggerTime"),
    ("acquisition", "FrameContentSequence", "FrameAcquisitionNumber"), ("acquisition", "", "AcquisitionNumber"),
)


def _where(f: Frame, root: Path) -> str:
    try:
        name = str(f.path.relative_to(root)) if root.is_dir() else f.path.name
    except ValueError:
        name = f.path.name
    return name if f.frames_in_file == 1 else f"{name} (frame {f.index + 1})"


def _plane(frames: list[Frame]) -> str:
    if all(f.localizer for f in frames):
        return "localizer"
    o = frames[0].orientation
    if o is None:
        return "orientation unknown"
    normal = np.abs(np.cross(o[:3], o[3:]))
    return {0: "sagittal", 1: "coronal", 2: "axial"}[int(np.argmax(normal))] if normal.max() > AXIAL else "oblique"


def _describe(frames: list[Frame], root: Path) -> str:
    first = frames[0].header
    number = first.get("SeriesNumber")
    files = len({f.path for f in frames})
    images = f", {len(frames)} images" if len(frames) != files else ""
    return (f"series{f' {number}' if number not in (None, '') else ''} ({first.get('Modality') or '?'}, "
            f"{_plane(frames)}, {files} file{'s' if files != 1 else ''}{images}, e.g. {_where(frames[0], root)})")


def choose_series(series: dict[str, list[Frame]], source: Path, nested: bool = False) -> tuple[list[Frame], str | None]:
    """The series to read from a folder holding several (``nested``: in its subfolders, a CD/PACS export with a
    DICOMDIR): the only axial one that is a volume (no localizer, two images or more), or the only such volume
    when none is axial; otherwise a refusal listing them. Returns its frames and a note naming the others and
    how to read one of them."""
    if len(series) == 1 and not nested:
        return next(iter(series.values())), None
    listed = sorted(series.values(), key=lambda fs: (str(fs[0].header.get("SeriesNumber") or ""), str(fs[0].path)))
    volumes = [fs for fs in listed if not all(f.localizer for f in fs) and len(select(fs)[0]) >= 2]
    axial = [fs for fs in volumes if _plane(select(fs)[0]) == "axial"]
    chosen = axial[0] if len(axial) == 1 else volumes[0] if len(volumes) == 1 and not axial else None
    studies = {str(fs[0].header.get("StudyInstanceUID") or "") for fs in listed}
    if len(studies) > 1:  # several examinations (patients, days): not for this reader to choose
        chosen, axial = None, []
    how = ("open the series' own folder (or give it to attnseg predict)" if nested else
           "open one file of the series you want instead of the folder (or give that file to attnseg predict)")
    if chosen is None:
        desc = "; ".join(_describe(fs, source) for fs in listed)
        why = (f"they come from {len(studies)} studies (examinations)" if len(studies) > 1 else
               f"{len(axial)} of them are axial volumes" if len(axial) > 1 else f"{len(volumes)} of them are volumes")
        example = max(axial or volumes or listed, key=len)[0]
        every = (f"; to segment every series, each as a case of a resumable run (scouts and reports left out), give "
                 f"attnseg predict the quoted glob \"{source}/**/\"") if nested and len(studies) > 1 else ""
        raise InputError(f"{source} holds {len(series)} DICOM series ({desc}); {why}, so none is chosen for you: "
                         f"{how}, e.g. {example.path.parent if nested else _where(example, source)}{every}.")
    if len(series) == 1:  # the one series of a CD export: no note
        return chosen, None
    others = "; ".join(_describe(fs, source) for fs in listed if fs is not chosen)
    kind = "the only axial volume" if axial else "the only volume"
    return chosen, (f"{source} holds {len(series)} DICOM series: read {_describe(chosen, source)}, {kind}; left out "
                    f"{others}; to read another, {how}")


def _value(f: Frame, sequence: str, keyword: str) -> Any:
    value = functional(f.header, f.index, sequence, keyword) if sequence else f.header.get(keyword)
    if value is None or value == "":
        return None
    return str(value)


def _order(value: str) -> tuple[int, float | str]:
    try:
        return 0, float(value)
    except ValueError:
        return 1, value


def split_volumes(frames: list[Frame], opened: Path | None = None) -> tuple[list[Frame], str | None]:
    """One volume when several share the slice positions of one series (echoes, time points, b-values,
    repeated acquisitions): the one holding ``opened`` (a file the user opened), else the largest, the
    first echo/time point among equals. Returns the kept frames and a note, or the frames unchanged
    (duplicates nothing tells apart are refused later, naming the files)."""
    if len(frames) < 4 or any(f.position is None for f in frames):
        return frames, None
    o = frames[0].orientation if frames[0].orientation is not None else np.array([1.0, 0, 0, 0, 1, 0])
    normal = np.cross(o[:3], o[3:])
    offsets = [round(float(f.position @ normal), 2) for f in frames]
    if len(set(offsets)) == len(offsets):
        return frames, None
    for label, sequence, keyword in VOLUME_KEYS:
        values = [_value(f, sequence, keyword) for f in frames]
        if any(v is None for v in values):
            continue
        groups: dict[str, list[int]] = defaultdict(list)
        for n, v in enumerate(values):
            groups[v].append(n)
        if len(groups) < 2 or min(len(g) for g in groups.values()) < 2 or \
                any(len({offsets[n] for n in g}) < len(g) for g in groups.values()):
            continue
        keys = sorted(groups, key=_order)
        mine = [k for k in keys if opened is not None and any(frames[n].path == opened for n in groups[k])]
        pick = mine[0] if mine else max(keys, key=lambda k: len(groups[k]))  # the first among the largest
        kept = [frames[n] for n in groups[pick]]
        other = next(k for k in keys if k != pick)
        if len({f.path for f in frames}) == 1:
            how = f"convert the file with dcm2niix (one volume per {label})"
        else:
            how = f"open one of its files instead of the folder (e.g. {frames[groups[other][0]].path.name} for {label} {other})"
        shown = ", ".join(keys[:8]) + (", ..." if len(keys) > 8 else "")
        return kept, (f"the series holds {len(keys)} volumes at the same slice positions, one per {label} ({shown}): "
                      f"read {label} {pick} ({len(kept)} images, e.g. {kept[0].name}); to read another, {how}")
    return frames, None
