"""What ``attnseg predict`` checks around writing one input's outputs (one case of a cohort, or a plain run).

* :func:`keep_edited_mask`: a mask attnseg wrote and the user changed since is the user's work; before
  outputs are replaced (``--overwrite``) it is moved to ``<out>/edited_masks/``, never deleted.
* :func:`name_too_long`: an input whose name leaves no room for the temporary output names.
* :func:`case_names`: what each case's outputs are named after (series folders of one name under two patients get
  their patient and study folders' names too), and :func:`kept_names`: the name an earlier run into ``out`` gave a
  series folder stays its name (a patient added later does not rename it).
* A PACS export's series folders (scouts, reformats, the hint for a tree): :mod:`.series`.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

from .held import orphaned_mask
from .inputs import EDITED_DIR
from .series import dicom_below, only_localizers, series_uid, without_scouts  # noqa: F401 - (their home before series.py)

# longest addition to an input's stem among the names written for it: the partial marker's temporary name
# ".<stem>_predict.partial" -> "..<stem>_predict.partial.XXXXXXXX.tmp.partial", a mask's ".<stem>_mask.nii.gz.
# XXXXXXXX.tmp.nii.gz"; attention maps add their level's name
NAME_MARGIN = 48


def keep_edited_mask(out: str | os.PathLike, src: str | os.PathLike, case: str | None = None) -> Path | None:
    """Move ``src``'s mask in ``out`` to ``out/edited_masks/`` when it was changed since attnseg wrote it
    (its size or time differ from the record's, or the record has none), or when a run stopped half-way left it
    (marker, no record: whether it was corrected since cannot be told); return where, or None. ``case``: the name
    the case's outputs have (:func:`case_names`; the input's stem by default)."""
    from ..results import case_name, existing_outputs, partial_marker, record_path

    out = Path(out)
    try:
        record = json.loads(record_path(out, Path(src), case).read_text())
        name = str(record["mask"])
    except (OSError, ValueError, KeyError, TypeError):
        # a run stopped half-way (marker, no record) wrote its mask first: it may have been opened and corrected
        # since, and nothing says it was not, so it is kept too (a rerun replaces the leftovers unasked)
        masks = [p for p in existing_outputs(out, Path(src), case)
                 if p.name.startswith(f"{case_name(Path(src), case)}_mask.")]
        if not (masks and (partial_marker(out, Path(src), case).exists() or orphaned_mask(out, src, case))):
            return None  # (a mask of ours whose record was deleted: kept too, :func:`orphaned_mask`)
        name, record = masks[0].name, {}
    return _keep_if_changed(out, name, record)


def keep_edited_seg(out: str | os.PathLike, src: str | os.PathLike, case: str | None = None) -> Path | None:
    """The same for the DICOM SEG a run wrote (``--dicom-seg``): one re-saved since from napari's *Save mask...* (the
    corrected mask for the PACS) is moved to ``out/edited_masks/`` before a run replaces or removes it."""
    from ..results import record_path

    out = Path(out)
    try:
        record = json.loads(record_path(out, Path(src), case).read_text())
        name = str(record["dicom_seg"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return _keep_if_changed(out, name, record) if name and name != "None" else None


def _keep_if_changed(out: Path, name: str, record: dict) -> Path | None:
    """Move ``out/name`` to ``out/edited_masks/`` when its size or time differ from the record's (or it has none)."""
    from ..data import stem

    mask = out / name
    if not mask.is_file() or Path(name).name != name:
        return None
    st = mask.stat()
    if ((record.get("output_stats") or {}).get(name)) == [st.st_size, st.st_mtime_ns]:
        return None
    folder = out / EDITED_DIR
    folder.mkdir(exist_ok=True)
    dest, n = folder / name, 2
    while dest.exists():
        dest = folder / f"{stem(name)}_{n}{name[len(stem(name)):]}"
        n += 1
    os.replace(mask, dest)
    return dest


def kept_warning(dest: Path, out: str | os.PathLike | None = None, src: str | os.PathLike | None = None,
                 case: str | None = None) -> str:
    """What the case's warning says of a mask :func:`keep_edited_mask` kept (given ``out``, ``src`` and ``case``: one
    without its record, deleted or never written, is said to be such)."""
    from ..results import record_path

    what = "DICOM SEG" if dest.name.endswith(".dcm") else "mask"
    if out is not None and src is not None and not record_path(Path(out), Path(src), case).exists():
        return (f"its {what} had no record of the run that wrote it ({record_path(Path(out), Path(src), case).name} "
                "deleted, or that run stopped before writing it), so whether it was corrected since could not be told; "
                f"this run replaced it and kept that version as {EDITED_DIR}/{dest.name}")
    return (f"its {what} had been changed since attnseg wrote it (corrected by hand?); this run replaced it "
            f"and kept that version as {EDITED_DIR}/{dest.name}")


def name_limit(out: str | os.PathLike) -> int:
    try:
        return int(os.pathconf(out, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def name_too_long(out: str | os.PathLike, src: str | os.PathLike, case: str | None = None) -> str | None:
    """Why ``src``'s outputs (named ``case``, else its stem) cannot be written in ``out`` under names the file
    system takes, or None."""
    from ..results import case_name

    limit = name_limit(out) if Path(out).is_dir() else 255
    n = len(case_name(src, case).encode())
    if n + NAME_MARGIN <= limit:
        return None
    return too_long_message(out, src, limit, case)


def too_long_message(out: str | os.PathLike, src: str | os.PathLike, limit: int | None = None,
                     case: str | None = None) -> str:
    from ..data import stem

    limit = limit or name_limit(out)
    if case and case != stem(src):  # named with its patient's and study's folders (case_names)
        return (f"{src}: the name its outputs get in {out}, {case} (its folders' names, to tell it from the series "
                f"folders of the same name), is too long: its {_size(case)} plus the output and temporary "
                f"suffixes, up to about {NAME_MARGIN} bytes, exceed the {limit} bytes this file system allows. Run the "
                "patients of this name into separate --out folders, or choose an --out on a file system that allows "
                "longer names.")
    return (f"{Path(src).name}: the file name is too long for the outputs written for it in {out}: its "
            f"{_size(stem(src))} plus the output and temporary suffixes, up to about {NAME_MARGIN} bytes, "
            f"exceed the {limit} bytes this file system allows. Give the input a shorter name (or a shorter link "
            "to it) and run again, or choose an --out on a file system that allows longer names.")


def _size(name: str) -> str:
    """A name's length as a file system counts it: bytes in UTF-8 (a Japanese character is 3), with its characters
    where they differ ("its 79 characters ... exceed the 255" was said of a 238-byte name)."""
    n = len(name.encode())
    return f"{n} bytes in UTF-8 ({len(name)} characters)" if n != len(name) else f"{n} bytes"


def is_name_too_long(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG


def case_names(cases: list[Path]) -> list[str]:
    """What each case's outputs are named after: its stem, or, for DICOM series folders that share a name (the same
    series folder under two patients of a PACS tree: ``PAT001/ST001/SE002``, ``PAT002/ST001/SE002``), the shortest tail
    of their paths that tells them apart, the folders joined with ``_`` (``PAT001_ST001_SE002``), the same depth for
    each of them. Files keep their stems: two files of one name (``a/scan.nii.gz``, ``b/scan.nii.gz``) stay a clash
    (the caller fails the second), as does a tail that is another case's name."""
    from ..data import stem

    names = [stem(p) for p in cases]
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(cases):
        if Path(p).is_dir():  # a series folder: its name is the PACS's, not one the user chose
            groups.setdefault(names[i], []).append(i)
    for name, members in groups.items():
        folders = [list(Path(os.path.abspath(cases[i])).parent.parts[1:]) for i in members]  # (less the root)
        for depth in range(1, max(len(f) for f in folders) + 1) if len(members) > 1 else ():
            tails = ["_".join([*f[max(0, len(f) - depth):], name]) for f in folders]
            if len(set(tails)) == len(tails):
                for i, tail in zip(members, tails):
                    names[i] = tail
                break
    return names


def kept_names(out: str | os.PathLike, cases: list[Path], names: list[str]) -> list[str]:
    """``names`` (:func:`case_names`), except that a series folder whose results ``out`` holds already, under another
    name, keeps that name: :func:`case_names` depends on the run's other cases (``SE002`` alone, ``PAT001_ST001_SE002``
    once a second patient's ``SE002`` joins), and a team adding patients to a PACS export over weeks must find each
    series's results under one name, skipped when finished, not redone beside the old ones. The records say which input
    each name is of (also those an earlier version wrote), and, when the recorded folder is gone (the export moved), their
    SeriesInstanceUID; of two names of one input, the one computed now wins, then a finished one."""
    from ..results import RECORD_SUFFIX, finished_record

    out = Path(out)
    series = [i for i, p in enumerate(cases) if Path(p).is_dir()]
    if not series or not out.is_dir():
        return names
    recorded: dict[str, list[str]] = {}
    gone: dict[str, list[str]] = {}  # SeriesInstanceUID -> names whose recorded input is gone (a moved export)
    for rec in sorted(out.glob(f"*{RECORD_SUFFIX}")):
        try:
            record = json.loads(rec.read_text())
            given, uid = record.get("input"), record.get("series_uid")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(given, str) and given:
            recorded.setdefault(os.path.realpath(given), []).append(rec.name[:-len(RECORD_SUFFIX)])
            if isinstance(uid, str) and uid and not os.path.exists(given):
                gone.setdefault(uid, []).append(rec.name[:-len(RECORD_SUFFIX)])
    kept = list(names)
    for i in series:
        found = recorded.get(os.path.realpath(cases[i]), [])
        if not found and gone:  # the export moved (/mnt/pacs -> /data/pacs): the series by its UID
            found = gone.get(series_uid(Path(cases[i])) or "-", [])
        if not found or names[i] in found:
            continue
        done = [n for n in found if finished_record(out, Path(cases[i]), n)]
        choice = (done or found)[0]
        if choice not in kept:  # (never a name another case of this run has)
            kept[i] = choice
    return kept


def other_scan_message(out: Path, src: Path, other: Path | None, name: str) -> str:
    """Why ``src`` fails: ``out`` holds the results of ``other``, another input of the same name that still exists and
    holds other images (not a copy of ``src``: :func:`.series.same_scan`), which are never replaced."""
    what = "series folder" if src.is_dir() else "file"
    head = (f"{out} holds the results of {other}, another {what} whose outputs are also named {name}, with other "
            f"images than {src} (not a copy of it): they are never replaced, not even with --overwrite. ")
    if not src.is_dir():
        return head + ("Give this one another name (or a link of another name), run it into another --out, or move "
                       "those results away first.")
    try:
        common = os.path.commonpath([os.path.abspath(src), os.path.abspath(other or src)])
    except ValueError:  # (other drives)
        common = str(src.parent)
    return head + (f"Give both in one command (a quoted glob over both, e.g. \"{common}/**/\", or a CSV of both): "
                   "series folders of one name are then named by their folders, and the results already there keep "
                   f"{name}. Or run this one into another --out, or move those results away first.")
