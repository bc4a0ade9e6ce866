"""The DICOM SEG among a case's outputs (``attnseg predict --dicom-seg``): its name, whether a run of ours wrote it
(a user's own ``<stem>_seg.dcm`` is never replaced nor deleted) and writing it (:mod:`.data.dicom_seg_write`).
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


def write_seg(out: Path, src: Path, vol, model, pred, name: str | None, say, written: list[Path]) -> str | None:
    """The DICOM SEG of ``pred``'s mask on the series ``src`` (:mod:`.data.dicom_seg_write`): its name once written,
    else None (why: a warning of ``pred``)."""
    from . import __version__
    from .data.dicom_seg_write import write_dicom_seg
    from .inference.outputs import room_for
    from .results import _model_info

    path = seg_path(out, src, name)
    if say is not None:
        say(f"writing {path.name} (DICOM SEG of the mask on {Path(src).name})")
    card = getattr(model, "card", None)
    sha = getattr(card, "weights_sha256", None)
    version = getattr(card, "version", None) or " ".join(
        [str(getattr(card, "code_version", "") or __version__)] + ([f"(weights sha256 {sha[:12]})"] if sha else []))
    written.append(path)  # (removed with the others if a write fails)
    with room_for(path, out, src, pred):
        done, note = write_dicom_seg(path, src, np.asarray(pred.labels), [str(c) for c in pred.classes],
                                     _model_info(model)["model"] or "attnseg model", version, vol.affine,
                                     f"napari-attnseg {__version__}")
    if note:
        pred.warnings.append(note)
    if not done:
        written.remove(path)
    return path.name if done else None
