"""`attnseg predict`'s inputs and ``--out`` checked before anything runs: an ``--out`` that is a file or cannot be
written, one input named twice (through a symlinked folder, or a DICOM file with its series folder), two inputs whose
outputs would share a name."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def _check_out_folder(out: Path) -> None:
    """Refuse an ``--out`` that is an existing file, before anything runs."""
    from ..errors import InputError

    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; choose a folder (it is created if missing).")
    from ..results import writable_folder

    writable_folder(out, keep=False)  # written in once now: not an error after the whole prediction


def _distinct_inputs(inputs: list[Path], out: Path) -> list[Path]:
    """The inputs, each file once (also when named through a symlinked folder: 'Patient/CT.nii.gz' and
    'Link to patient/CT.nii.gz' were refused as two inputs of one name); refuse two different inputs whose outputs
    would share names in ``out``."""
    from ..data import stem
    from ..errors import InputError

    unique: dict[str, Path] = {}
    for src in inputs:
        unique.setdefault(os.path.realpath(src), src)
    for real, src in list(unique.items()):  # a DICOM series given as its folder and as one of its files: run once
        if (folder := _series_folder_of(src, [p for r, p in unique.items() if r != real])) is not None:
            print(f"{src}: one file of the DICOM series {folder} (also given): the series is run once, as {folder}",
                  file=sys.stderr)
            del unique[real]
    first: dict[str, Path] = {}
    for src in unique.values():
        other = first.setdefault(stem(src), src)
        if other is not src:
            series = Path(src).is_dir() and Path(other).is_dir()  # (a cohort names DICOM series folders by their path)
            raise InputError(f"{src} has the same name as {other}; their outputs would collide in {out}. "
                             + ("Add --summary cohort_summary.csv to run them as a cohort, which names series folders "
                                "of one name by their parent folders (PAT001_ST001_SE002)" if series else
                                "Rename one, or run them into separate folders") + ". Nothing was run.")
    return list(unique.values())


def _series_folder_of(src: Path, others: list[Path]) -> Path | None:
    """The folder among ``others`` that reads the same DICOM volume as the file ``src`` (the same frames: a folder of
    several series, or of several volumes of one, reads one of them), or None."""
    from ..data.dicom import _frames, is_dicom_path  # (headers only, as the reader chooses the frames)
    from ..data.dicom_choice import split_volumes
    from ..data.dicom_geometry import select
    from ..errors import AttnSegError

    def files(p: Path) -> set[str]:
        opened = None if p.is_dir() else p
        frames, _ = _frames(p)
        frames, _ = select(frames, opened)
        return {os.path.realpath(f.path) for f in split_volumes(frames, opened)[0]}

    real = Path(os.path.realpath(src))
    folders = [p for p in others if p.is_dir() and Path(os.path.realpath(p)) in real.parents]
    if not folders or src.is_dir() or not is_dicom_path(src):
        return None
    try:
        mine = files(src)
        return next((p for p in folders if files(p) == mine), None)
    except (AttnSegError, OSError, ValueError):  # (unreadable: the run says so)
        return None
