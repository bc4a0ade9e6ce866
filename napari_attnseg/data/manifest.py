"""A dataset's ``manifest.json`` and the commit protocol that keeps a dataset whole.

An export stages every file of a case in the dataset's hidden staging folder (``staging.py``: nothing
in the layout folders, where nnU-Net would count it), then writes a journal (the new manifest, the new
index files and the renames to do) atomically: that write is the commit point. Applying the journal
renames the staged files into place (the label file first), rewrites ``dataset.json`` /
``datalist.json`` and ``manifest.json`` atomically and deletes the journal. An export killed before
the commit leaves only staged files in the hidden folder, which the next export deletes; one killed
after it is finished by the next export or ``read_dataset``, so a dataset is always seen as it was
before an export or as it is after, even when a case is overwritten.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .._files import atomic_write
from ..errors import DatasetError
from .staging import LAYOUT_DIRS, STAGED_MARK, clear, prune, staged_name

__all__ = ["JOURNAL", "LAYOUT_DIRS", "LOCK", "MANIFEST", "STAGED_MARK", "apply_journal", "commit", "dataset_lock",
           "export_running", "exported_case_of", "ignore_value_of", "read_manifest", "recover", "refuse_while_exporting",
           "staged_name", "write_json_atomic"]

MANIFEST = "manifest.json"
JOURNAL = ".attnseg-journal.json"
LOCK = ".attnseg.lock"


def write_json_atomic(path: Path, obj: Any) -> None:
    def dump(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, dump)


def read_manifest(folder: Path) -> dict | None:
    path = Path(folder) / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except ValueError:
        raise DatasetError(f"{path} is not valid JSON; the dataset manifest is damaged.") from None
    if not isinstance(manifest, dict) or "cases" not in manifest or "label_names" not in manifest:
        raise DatasetError(f"{path} is not an napari-attnseg dataset manifest.")
    return manifest


@contextlib.contextmanager
def dataset_lock(folder: Path) -> Iterator[None]:
    """One writer at a time per dataset (a second export waits); a no-op where flock is missing."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(Path(folder) / LOCK, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def export_running(folder: Path) -> bool:
    """True while an export (in napari or ``attnseg export``) holds the dataset's lock at ``folder``: a reader (a
    fine-tuning run) would see what it has not finished. Probes without waiting; False where locks do not exist."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock to probe
        return False
    lock = Path(folder) / LOCK
    if not lock.is_file():
        return False
    try:
        with open(lock) as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    except BlockingIOError:
        return True
    except OSError:  # (unreadable: the reader says what is wrong)
        return False
    return False


def refuse_while_exporting(folder: Path) -> None:
    """Raise :class:`~..errors.DatasetError` while an export writes to the dataset at ``folder`` (a training run would
    read it without the case being exported)."""
    if export_running(folder):
        raise DatasetError(f"An export is writing to the dataset '{folder}'; wait until it has finished, then start "
                           "the run again (it would train without the case being exported).")


def commit(folder: Path, renames: list[tuple[Path, Path]], index: dict[str, Any], manifest: dict,
           hook=None) -> None:
    """Write the journal (the commit point), then apply it."""
    journal = {
        "renames": [[str(a.relative_to(folder)), str(b.relative_to(folder))] for a, b in renames],
        "index": index, "manifest": manifest,
    }
    write_json_atomic(folder / JOURNAL, journal)
    if hook:
        hook("committed")
    apply_journal(folder, journal, hook)


def apply_journal(folder: Path, journal: dict, hook=None) -> None:
    """Finish a committed export; safe to repeat after a crash at any point."""
    for staged, final in journal["renames"]:
        src = folder / staged
        if src.exists():
            (folder / final).parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, folder / final)
        if hook:
            hook("renamed")
    for name, obj in journal["index"].items():
        write_json_atomic(folder / name, obj)
    write_json_atomic(folder / MANIFEST, journal["manifest"])
    (folder / JOURNAL).unlink(missing_ok=True)
    prune(folder)


def recover(folder: Path) -> bool:
    """Finish a committed but interrupted export and delete staged files of uncommitted ones.

    Returns True when something was repaired. Call with the dataset lock held.
    """
    folder = Path(folder)
    repaired = False
    journal_path = folder / JOURNAL
    if journal_path.exists():
        try:
            journal = json.loads(journal_path.read_text())
        except ValueError:  # a torn journal cannot exist (it is written atomically); be safe anyway
            journal = None
        if journal is not None:
            apply_journal(folder, journal)
        else:
            journal_path.unlink()
        repaired = True
    repaired = clear(folder) or repaired  # staged files of uncommitted exports (a committed one's are renamed now)
    for f in folder.glob(".*.tmp*"):  # temp files of atomic JSON writes
        f.unlink(missing_ok=True)
        repaired = True
    return repaired


def exported_case_of(label_file: str | Path) -> tuple[dict, dict] | None:
    """``(manifest, case)`` of the dataset case whose label file is ``label_file`` (``<dataset>/labelsTr/x.nii.gz``,
    ``<dataset>/labels/x.tif``): its reviewed slices, 'ignore' value and the dataset's label table; None for any
    other file (or a damaged manifest)."""
    path = Path(label_file).resolve()
    for folder in path.parents[:2]:
        try:
            manifest = read_manifest(folder) if (folder / MANIFEST).is_file() else None
        except DatasetError:  # not ours, or damaged: nothing from it
            manifest = None
        for case in (manifest or {}).get("cases", []):
            rel = (case.get("files") or {}).get("label")
            if rel and (folder / rel).resolve() == path:
                return manifest, case
    return None


def ignore_value_of(label_file: str | Path) -> int | None:
    """The 'ignore' value (slices nobody reviewed) of an exported label file, from the manifest of the dataset
    it belongs to (``<dataset>/labelsTr/x.nii.gz``, ``<dataset>/labels/x.tif``); None for any other file."""
    found = exported_case_of(label_file)
    return int(found[1]["ignore_label"]) if found and found[1].get("ignore_label") is not None else None
