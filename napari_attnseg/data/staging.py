"""Where an export writes a case's files before its commit: a hidden folder of the dataset, never the layout
folders themselves.

nnU-Net v2 lists ``imagesTr`` by suffix (``subfiles(folder, suffix=".nii.gz")``: hidden names included, folders
skipped), and ``pathlib``'s ``glob("*.tif")`` matches hidden names too: a staged ``.x.nii.gz`` beside the cases
would be counted as a case if the export were killed. So the files are staged in ``<dataset>/.attnseg-staging/
<layout folder>/`` (the dataset's file system: the rename into place stays atomic), or, when a layout folder
is on another file system (a link to another disk), in a hidden folder inside it, which readers skip as a folder.
Anything left there by a killed export is removed by the next export (``manifest.recover``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

STAGING = ".attnseg-staging"
STAGED_MARK = ".attnseg-staged"
LAYOUT_DIRS = ("imagesTr", "labelsTr", "images", "labels")


def staged_name(final: Path, token: str) -> Path:
    """The staged file for ``final`` (``<dataset>/<layout folder>/<name>``), in the dataset's hidden staging
    folder, on ``final``'s file system; keeps the suffix (writers pick the format from it). Creates the folders."""
    name = final.name
    suffix = ".nii.gz" if name.endswith(".nii.gz") else final.suffix
    final.parent.mkdir(parents=True, exist_ok=True)  # the rename needs it; an empty folder counts as no case
    stage = final.parent.parent / STAGING / final.parent.name
    stage.mkdir(parents=True, exist_ok=True)
    if _device(stage) != _device(final.parent):  # a layout folder on another disk (a link): stage inside it
        stage = final.parent / STAGING
        stage.mkdir(exist_ok=True)
    return stage / f".{name[: len(name) - len(suffix)]}.{token}{STAGED_MARK}{suffix}"


def _device(path: Path) -> int:
    return os.stat(path).st_dev


def _ours(f: Path) -> bool:
    """A staged file or a writer's temporary (``.name.XXXX.tmp.nii.gz``): never a user's file."""
    return f.name.startswith(".") and (STAGED_MARK in f.name or ".tmp" in f.name)


def staging_dirs(folder: Path) -> list[Path]:
    """Every staging folder of the dataset at ``folder`` (deepest first, for removal)."""
    roots = [folder / STAGING, *(folder / sub / STAGING for sub in LAYOUT_DIRS)]
    return [d for r in roots if r.is_dir() for d in [*(r / sub for sub in LAYOUT_DIRS), r] if d.is_dir()]


def prune(folder: Path) -> None:
    """Remove the staging folders that are empty (a finished or discarded export leaves none behind)."""
    for d in staging_dirs(folder):
        with contextlib.suppress(OSError):  # missing, or not empty (a file that is not ours stays)
            d.rmdir()


def discard(staged: Iterable[Path], folder: Path) -> None:
    """Delete the staged files of an export that was not committed, and their folders when empty."""
    for tmp in staged:
        tmp.unlink(missing_ok=True)
    prune(folder)


def clear(folder: Path) -> bool:
    """Delete what uncommitted exports left (call with the dataset lock held, after applying any journal): the
    staging folders' files, and the hidden staged or temporary files earlier versions wrote beside the cases.
    Returns True when something was deleted."""
    found = [f for d in staging_dirs(folder) for f in d.iterdir() if f.is_file() and _ours(f)]
    found += [f for sub in LAYOUT_DIRS if (folder / sub).is_dir() for f in (folder / sub).iterdir()
              if f.is_file() and _ours(f)]
    for f in found:
        f.unlink(missing_ok=True)
    prune(folder)
    return bool(found)
