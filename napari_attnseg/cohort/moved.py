"""A case's input moved (``/mnt/scans`` to ``/data/scans``, the old path gone) or exported again with the same content:
its results stay its results.

* :func:`input_identity`: what a case's record keeps of its input's content: a file's ``input_sha256`` (its bytes, with
  a MetaImage or NRRD header's data file), a DICOM series folder's ``series_uid`` and ``images_sha256``
  (:func:`.series.series_identity`).
* :func:`moved_from`: the path a finished case's record names when ``src`` holds the same content there (the case is
  finished), and :func:`adopt`: the record and the ``<case>_image`` link then follow the input to its new path, so the
  next run finds the case finished without hashing it again and the link does not dangle.

Cost: a file is hashed once when its case is computed, in the thread that reads it (sha256, 31 ms for the 13 MB
``.nii.gz`` of a 48x512x512 CT, whose read takes 370 ms), and once more only when a run finds its record's input
gone and a file of that name and size in its place.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
from pathlib import Path


def file_sha256(src: str | os.PathLike) -> str:
    """The sha256 of a file's bytes (with a MetaImage or NRRD header's data file, in that order); a file hashed before
    in this process, unchanged since (path, size, time), is not read again."""
    from ..data.metaio import data_file_of

    p = Path(src)
    files = [p, *[d for d in (data_file_of(p),) if d is not None]]
    return _sha256(tuple((str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files))


@functools.lru_cache(maxsize=256)
def _sha256(files: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for f, _, _ in files:
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def input_identity(src: str | os.PathLike) -> dict[str, str]:
    """For a case's record: a file's ``input_sha256``, a series folder's ``series_uid`` and ``images_sha256``; {} when
    unreadable (the case fails reading it anyway)."""
    from .series import series_identity

    if Path(src).is_dir():
        return series_identity(src)
    try:
        return {"input_sha256": file_sha256(src)}
    except OSError:
        return {}


def moved_from(out: Path, src: Path, weights: str | None, request: dict | None, name: str) -> str | None:
    """The input a finished case's record in ``out`` names when ``src`` holds the same content (moved, or exported
    again: the old path gone or the files rewritten) and the run is of the same weights and options: the case is
    finished; None otherwise (the usual rules hold). A file is compared by size first, then by its sha256; a series
    folder by its images (SOP instance UIDs and pixel data)."""
    from ..results import _jsonable, _same_request, finished_record
    from .series import series_identity

    if not weights:
        return None
    record = finished_record(out, src, name)
    key = "images_sha256" if src.is_dir() else "input_sha256"
    if not record or not record.get(key) or record.get("model_weights_sha256") != weights \
            or not _same_request(record.get("request"), _jsonable(request)):  # (the resume rule of case_state)
        return None
    given = str(record.get("input") or "")
    if given and os.path.exists(given) and os.path.realpath(given) != os.path.realpath(src):
        return None  # (another input that still exists: same_scan decides)
    if src.is_dir():
        return given if series_identity(src).get(key) == record[key] else None
    try:
        from ..data.io import input_stat

        if int(record.get("input_size_bytes", -1)) != input_stat(src)[0]:
            return None  # (another size: another file, not hashed)
        return given if file_sha256(src) == record[key] else None
    except (OSError, ValueError, TypeError):
        return None


def adopt(out: Path, src: Path, name: str, old: str) -> str:
    """After :func:`moved_from`: the record of case ``name`` names ``src`` (its size and time, the path it moved from
    in ``moved_from``) and its ``<name>_image`` link points at ``src``. Done holding the case's lock (skipped when
    another run holds it: the next run does it). Returns a note for the case's warnings ("" when nothing changed)."""
    from ..data.io import input_stat
    from ..data.manifest import write_json_atomic
    from ..results import record_path
    from .lock import CaseLock, lock_path

    lock = CaseLock(lock_path(out, src, name))
    if lock.try_acquire() is not None:
        return ""
    try:
        path = record_path(out, src, name)
        record = json.loads(path.read_text())
        if str(record.get("input") or "") != old:
            return ""
        size, modified = input_stat(src)
        reference = _relink(out, src, name, record.get("input_reference"), old)
        moves = [m for m in (record.get("moved_from") or []) if isinstance(m, str)]
        record.update(input=str(src.resolve()), input_size_bytes=size, input_modified=modified,
                      input_reference=reference, moved_from=[*moves, old])
        write_json_atomic(path, record)
        return f"its record{' and link ' + reference if reference else ''} now name{'' if reference else 's'} {src}"
    except (OSError, ValueError, AttributeError):
        return ""
    finally:
        lock.release()


def _relink(out: Path, src: Path, name: str, reference, old: str) -> str | None:
    """Point the case's ``<name>_image`` link at ``src`` (replaced atomically; only a link of ours, never a file), and
    remove the old link when its name differs (another suffix). Returns the reference the record keeps."""
    from ..data import stem
    from ..results import case_name

    resolved = src.resolve()
    if resolved == out.resolve():
        return None
    if resolved.parent == out.resolve():
        return src.name
    link = out / f"{case_name(src, name)}_image{src.name[len(stem(src)):]}"
    if isinstance(reference, str) and reference != link.name and Path(reference).name == reference:
        prior = out / reference
        if prior.is_symlink() and os.readlink(prior) == old:
            prior.unlink()
    if os.path.lexists(link) and not link.is_symlink():
        return None  # (a file of the user's at that name: left as it is)
    tmp = out / f".{link.name}.relink"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        tmp.symlink_to(resolved, target_is_directory=resolved.is_dir())
        os.replace(tmp, link)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        return None
    return link.name
