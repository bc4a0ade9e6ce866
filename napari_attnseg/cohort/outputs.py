"""What ``attnseg predict`` checks around writing one input's outputs (one case of a cohort, or a plain run).

* :func:`keep_edited_mask`: a mask attnseg wrote and the user changed since is the user's work; before
  outputs are replaced (``--overwrite``) it is moved to ``<out>/edited_masks/``, never deleted.
* :func:`name_too_long`: an input whose name leaves no room for the temporary output names.
* :func:`dicom_below`, :func:`without_scouts`: what a folder listing or a glob makes of a PACS export without DICOMDIR
  (patient/study/series folders; a scout series beside the axial one).
* :func:`case_names`: what each case's outputs are named after (series folders of one name under two patients get
  their patient and study folders' names too).
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .inputs import EDITED_DIR

if TYPE_CHECKING:  # pragma: no cover
    from .inputs import Collected

# longest addition to an input's stem among the names written for it: the partial marker's temporary name
# ".<stem>_predict.partial" -> "..<stem>_predict.partial.XXXXXXXX.tmp.partial", a mask's ".<stem>_mask.nii.gz.
# XXXXXXXX.tmp.nii.gz"; attention maps add their level's name
NAME_MARGIN = 48


def keep_edited_mask(out: str | os.PathLike, src: str | os.PathLike, case: str | None = None) -> Path | None:
    """Move ``src``'s mask in ``out`` to ``out/edited_masks/`` when it was changed since attnseg wrote it
    (its size or time differ from the record's, or the record has none), or when a run stopped half-way left it
    (marker, no record: whether it was corrected since cannot be told); return where, or None. ``case``: the name
    the case's outputs have (:func:`case_names`; the input's stem by default)."""
    from ..data import stem
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
        if not (partial_marker(out, Path(src), case).exists() and masks):
            return None
        name, record = masks[0].name, {}
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


def kept_warning(dest: Path) -> str:
    return ("its mask had been changed since attnseg wrote it (corrected by hand?); this run replaced it "
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
                f"folders of the same name), is too long: its {len(case)} characters plus the output and temporary "
                f"suffixes, up to about {NAME_MARGIN}, exceed the {limit} this file system allows. Run the "
                "patients of this name into separate --out folders, or choose an --out on a file system that allows "
                "longer names.")
    return (f"{Path(src).name}: the file name is too long for the outputs written for it in {out} (its "
            f"{len(stem(src))} characters plus the output and temporary suffixes, up to about {NAME_MARGIN}, "
            f"exceed the {limit} this file system allows). Give the input a shorter name (or a shorter link "
            "to it) and run again, or choose an --out on a file system that allows longer names.")


def is_name_too_long(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG


def without_scouts(cases: list[Path], where: str | os.PathLike, got: Collected | None) -> list[Path]:
    """``cases`` less the DICOM series folders that hold only localizers (scouts: the study's planning images, which
    a PACS export puts in a series folder of their own), with a note naming them."""
    scouts = [p for p in cases if p.is_dir() and only_localizers(p)]
    if scouts and got is not None:
        shown = ", ".join(str(p) for p in scouts[:3]) + (", ..." if len(scouts) > 3 else "")
        got.notes.append(f"{where}: left out {len(scouts)} DICOM series of localizer (scout) images only, not "
                         f"segmented ({shown}); to segment one anyway, give its folder as the input")
    return [p for p in cases if p not in scouts]


def only_localizers(folder: Path, probed: int = 20) -> bool:
    """Whether the DICOM images of ``folder`` (its first ``probed`` files) are all localizers (ImageType LOCALIZER)."""
    import pydicom

    from ..data.dicom import is_dicom_file

    seen = 0
    for f in sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith("."))[:probed]:
        if not is_dicom_file(f):
            continue
        try:
            ds = pydicom.dcmread(str(f), stop_before_pixels=True, force=True, specific_tags=["ImageType", "Rows"])
        except Exception:  # (an unreadable file: the reader names it when the case runs)
            return False
        if "Rows" not in ds:
            continue  # a report or presentation state beside the images
        if "LOCALIZER" not in [str(v).upper() for v in (ds.get("ImageType") or [])]:
            return False
        seen += 1
    return seen > 0


def dicom_below(folder: Path, limit: int = 2000) -> Path | None:
    """The first folder below ``folder`` (depth first, sorted, at most ``limit`` folders looked at) holding a DICOM
    file among its first five: a patient or study folder of a PACS export without DICOMDIR; else None."""
    from ..data.dicom import is_dicom_file

    for n, (root, dirs, files) in enumerate(os.walk(folder)):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if n >= limit:
            break
        names = sorted(f for f in files if not f.startswith(".") and f != "DICOMDIR")[:5]
        if Path(root) != folder and any(is_dicom_file(Path(root) / f) for f in names):
            return Path(root)
    return None


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
