"""The cases of a dataset this project exported: list them, and take one out.

A case exported by mistake (the wrong scan, a mask not finished, a test) had no way out but deleting its files by
hand, which left the manifest and ``dataset.json`` listing it (every later read refused the dataset). Taking a case
out moves its files into ``<dataset>/removed/<case>_<time>/`` with its manifest entry (``case.json``), never deletes
them, and rewrites the layout's index and the manifest in the same crash-safe commit an export uses
(:func:`~.manifest.commit`): killed at any point, the dataset is seen with the case or without it.
"""

from __future__ import annotations

import datetime as _dt
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from ..errors import DatasetError
from .layouts import index_files
from .manifest import MANIFEST, commit, dataset_lock, read_manifest, recover, write_json_atomic

REMOVED = "removed"  # (not a layout folder: nnU-Net, MONAI and our reader never look in it)

__all__ = ["REMOVED", "CaseLine", "dataset_cases", "remove_case"]


@dataclass
class CaseLine:
    """One case as ``attnseg dataset`` lists it."""

    case_id: str
    source_name: str
    shape: list[int]
    reviewed_slices: list[int] | None
    exported: str
    files: list[str]


def _manifest(folder: Path) -> dict:
    manifest = read_manifest(folder)
    if manifest is None:
        raise DatasetError(f"{folder} has no {MANIFEST}: it is not a dataset exported by napari-attnseg (attnseg "
                           "export / the Correct tab), so its cases are not ours to list or remove; edit its own "
                           "index (dataset.json, datalist.json) instead.")
    return manifest


def _line(case: dict) -> CaseLine:
    files = case.get("files") or {}
    return CaseLine(str(case["case_id"]), str(case.get("source_name") or ""), list(case.get("shape") or []),
                    case.get("reviewed_slices"), str(case.get("exported") or ""),
                    [*(files.get("images") or []), *([files["label"]] if files.get("label") else [])])


def dataset_cases(folder: str | Path) -> list[CaseLine]:
    """The cases of the dataset at ``folder`` in the order of its manifest (an export interrupted earlier is
    finished or undone first, as the next export would)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DatasetError(f"{folder} is not a folder; give the dataset folder an export wrote to.")
    if not os.access(folder, os.W_OK):  # (read-only: a colleague's, a share; its lock file cannot be made) as it is
        return [_line(c) for c in _manifest(folder)["cases"]]
    with dataset_lock(folder):
        recover(folder)
        return [_line(c) for c in _manifest(folder)["cases"]]


def _frames_of(manifest: dict, movie_id: str) -> list[dict]:
    """The frames of the time-lapse ``movie_id`` exported as one 2D case per frame (``<movie_id>_t000``...)."""
    from .export_plan import FRAME_CASE

    return [c for c in manifest["cases"] if c.get("movie_sha256") and (m := FRAME_CASE.match(str(c["case_id"])))
            and m["base"] == str(movie_id)]


def remove_case(folder: str | Path, case_id: str) -> Path:
    """Take case ``case_id`` out of the dataset at ``folder``: its files move to
    ``<folder>/removed/<case_id>_<UTC time>/`` (their layout sub-folders kept) with its manifest entry as
    ``case.json``; ``dataset.json`` / ``datalist.json`` and the manifest no longer list it. Returns that folder. The id
    of a time-lapse exported as one 2D case per frame (the Correct tab's case id) takes out all its frames at once.
    Files of the case already missing are left out of the move (the reason to remove it, often) and named in
    ``case.json``'s ``missing_files``."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DatasetError(f"{folder} is not a folder; give the dataset folder an export wrote to.")
    if not os.access(folder, os.W_OK):
        raise DatasetError(f"{folder} cannot be written (a read-only folder, or another user's): nothing was removed. "
                           "Ask its owner to take the case out, or copy the dataset to a folder of yours.")
    with dataset_lock(folder):
        recover(folder)
        manifest = _manifest(folder)
        chosen = [c for c in manifest["cases"] if str(c["case_id"]) == str(case_id)] or _frames_of(manifest, case_id)
        if not chosen:
            ids = [str(c["case_id"]) for c in manifest["cases"]]
            raise DatasetError(f"{folder} holds no case {case_id!r}; its cases: {', '.join(ids) or 'none'} "
                               f"(attnseg dataset {shlex.quote(str(folder))} lists them).")
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        dest = folder / REMOVED / f"{case_id}_{stamp}"
        n = 2
        while dest.exists():  # (two removals in one second: the same id exported again and removed again)
            dest, n = folder / REMOVED / f"{case_id}_{stamp}_{n}", n + 1
        rel = [r for c in chosen for r in _line(c).files]
        present = [r for r in rel if (folder / r).is_file()]
        dest.mkdir(parents=True)
        entry = chosen[0] if len(chosen) == 1 else {"case_id": str(case_id), "frames": chosen}  # (a time-lapse's)
        write_json_atomic(dest / "case.json", {**entry, "removed": _dt.datetime.now(_dt.timezone.utc).isoformat(
            timespec="seconds"), "missing_files": [r for r in rel if r not in present]})
        left = {**manifest, "cases": [c for c in manifest["cases"] if not any(c is k for k in chosen)]}
        fmt = str(manifest.get("format") or "nnunet")
        commit(folder, [(folder / r, dest / r) for r in present], index_files(folder, fmt, left), left)
    return dest

