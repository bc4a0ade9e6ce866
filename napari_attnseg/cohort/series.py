"""What a cohort makes of the DICOM series folders of a PACS export (patient/study/series folders, no DICOMDIR).

* :func:`dicom_below`: where a sub-folder that is not a series holds series further down (the hint for a PACS tree).
* :func:`without_scouts`: a study's series folders less the ones a radiologist does not segment: scouts (localizers
  only) and reformats (sagittal/coronal MPR, MIP: ``DERIVED`` images) of a study whose original series is a case too,
  each left out with a note.
* :func:`same_scan`: whether two inputs hold the same images (a copy of an export kept beside the original).
* :func:`series_identity`: what a case's record keeps of a series folder (its SeriesInstanceUID and a digest of its
  images), so that the series moved elsewhere (or exported again) keeps its name and results (:mod:`.moved`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .inputs import Collected

# ImageType values of images computed from others in another plane or as a projection (DICOM PS3.3 C.8.16.1 and
# the vendors' own): a reformat, not the acquisition a model is run on
REFORMAT_TYPES = {"REFORMATTED", "MPR", "MIP", "MINIP", "MINIMUM", "MAXIMUM", "PROJECTION IMAGE", "CURVED", "CPR",
                  "VOLUME", "VR", "3D"}


NOT_SEGMENTED = ("SEG", "RTSTRUCT", "RTDOSE", "RTPLAN")  # DICOM objects of a study that are not images to segment


@dataclass
class SeriesKind:
    """A series folder as its first images tell it (:func:`series_kind`)."""

    localizer: bool = False  # every image a localizer (a scout)
    reformat: bool = False  # DERIVED images in another plane than axial, or an MPR / MIP
    study: str = ""
    plane: str = ""  # axial, coronal, sagittal, oblique ("" unknown)
    no_images: bool = False  # no images: structured reports (a dose report), KO, PR, SEG, RT objects only

    @property
    def original(self) -> bool:
        return not self.localizer and not self.reformat


def _plane(orientation) -> str:
    try:
        r, c = [float(v) for v in orientation[:3]], [float(v) for v in orientation[3:6]]
    except (TypeError, ValueError, IndexError):
        return ""
    n = [abs(r[1] * c[2] - r[2] * c[1]), abs(r[2] * c[0] - r[0] * c[2]), abs(r[0] * c[1] - r[1] * c[0])]
    if max(n) < 0.8:
        return "oblique"
    return ("sagittal", "coronal", "axial")[n.index(max(n))]


def series_kind(folder: Path, probed: int = 20) -> SeriesKind:
    """What the DICOM images of ``folder`` (its first ``probed`` files) are: localizers only, a reformat, or neither."""
    import pydicom

    from ..data.dicom import is_dicom_file

    kind, types, planes, seen = SeriesKind(), [], set(), 0
    files = sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith("."))
    for f in files[:probed]:
        if not is_dicom_file(f):
            continue
        try:
            ds = pydicom.dcmread(str(f), stop_before_pixels=True, force=True,
                                 specific_tags=["ImageType", "Rows", "StudyInstanceUID", "ImageOrientationPatient", "Modality"])
        except Exception:  # (an unreadable file: the reader names it when the case runs)
            return SeriesKind()
        if "Rows" not in ds or str(ds.get("Modality") or "").upper() in NOT_SEGMENTED:
            kind.no_images = True  # (until an image is seen) a report, a presentation state, a SEG, an RT object
            continue
        seen += 1
        types.append([str(v).strip().upper() for v in (ds.get("ImageType") or [])])
        planes.add(_plane(ds.get("ImageOrientationPatient")))
        kind.study = kind.study or str(ds.get("StudyInstanceUID") or "")
    if not seen:  # (more files than probed: images may follow the reports; the reader says it when there are none)
        kind.no_images = kind.no_images and len(files) <= probed
        return kind
    kind.no_images = False
    kind.localizer = all("LOCALIZER" in t for t in types)
    kind.plane = planes.pop() if len(planes) == 1 else ""
    derived = all(t[:1] == ["DERIVED"] for t in types)
    kind.reformat = not kind.localizer and derived and (
        any(REFORMAT_TYPES & set(t) for t in types) or kind.plane in ("coronal", "sagittal", "oblique"))
    return kind


def only_localizers(folder: Path, probed: int = 20) -> bool:
    """Whether the DICOM images of ``folder`` (its first ``probed`` files) are all localizers (ImageType LOCALIZER)."""
    return series_kind(folder, probed).localizer


def _shown(paths: list[Path]) -> str:
    return ", ".join(str(p) for p in paths[:3]) + (", ..." if len(paths) > 3 else "")


def without_scouts(cases: list[Path], where: str | os.PathLike, got: Collected | None) -> list[Path]:
    """``cases`` less the DICOM series folders a radiologist does not segment, with a note naming them: those that
    hold only localizers (scouts: the study's planning images, which a PACS export puts in a series folder of their
    own), and reformats (``DERIVED`` images: a coronal or sagittal MPR, a MIP) of a study whose original series is
    among ``cases`` too (the model segments that one; a reformat alone stays a case)."""
    kinds = {p: series_kind(p) for p in cases if p.is_dir()}
    scouts = [p for p, k in kinds.items() if k.localizer]
    reports = [p for p, k in kinds.items() if k.no_images]
    studies = {k.study for k in kinds.values() if k.original}
    reformats = [p for p, k in kinds.items() if k.reformat and k.study in studies]
    if scouts and got is not None:
        got.notes.append(f"{where}: left out {len(scouts)} DICOM series of localizer (scout) images only, not "
                         f"segmented ({_shown(scouts)}); to segment one anyway, give its folder as the input")
    if reports and got is not None:
        got.notes.append(f"{where}: left out {len(reports)} DICOM series without images to segment (structured "
                         f"reports, key objects, presentation states, SEG or RT objects; {_shown(reports)})")
    if reformats and got is not None:
        planes = sorted({kinds[p].plane or "other" for p in reformats})
        got.notes.append(f"{where}: left out {len(reformats)} DICOM series of reformatted images ({', '.join(planes)}; "
                         f"DERIVED in their ImageType: MPR, MIP) of studies whose original series is segmented "
                         f"({_shown(reformats)}); to segment one anyway, give its folder as the input")
    return [p for p in cases if p not in scouts and p not in reformats and p not in reports]


def dicom_below(folder: Path, limit: int = 200, depth: int = 4, budget: list[int] | None = None) -> Path | None:
    """The first folder below ``folder`` (depth first, sorted, at most ``depth`` levels down and ``limit`` folders
    looked at) holding a DICOM file among its first five: a patient or study folder of a PACS export without DICOMDIR
    (patient/study/series: 3 levels); else None. ``budget``: ``[folders]`` shared by the calls of one listing, spent
    as folders are looked at, so that a folder beside a big tree (a BIDS ``derivatives``, a previous run's outputs)
    is not walked once per sibling."""
    from ..data.dicom import is_dicom_file

    budget = budget if budget is not None else [limit]
    base = len(folder.parts)
    for n, (root, dirs, files) in enumerate(os.walk(folder)):
        if n >= limit or budget[0] <= 0:
            break
        budget[0] -= 1
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if len(Path(root).parts) - base < depth else []
        names = sorted(f for f in files if not f.startswith(".") and f != "DICOMDIR")[:5]
        if Path(root) != folder and any(is_dicom_file(Path(root) / f) for f in names):
            return Path(root)
    return None


# ----------------------------------------------------------------------------------------------
# the same scan at two paths
# ----------------------------------------------------------------------------------------------
def _images(folder: Path) -> dict[str, str]:
    """A series folder's images: SOPInstanceUID -> sha256 of the pixel data (stored bytes)."""
    import pydicom

    from ..data.dicom import is_dicom_file

    found: dict[str, str] = {}
    for f in sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".")):
        if not is_dicom_file(f):
            continue
        ds = pydicom.dcmread(str(f), force=True)
        if "PixelData" in ds:
            found[str(ds.get("SOPInstanceUID") or f.name)] = hashlib.sha256(ds.PixelData).hexdigest()
    return found


def same_scan(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` hold the same scan: two files of the same bytes, or two DICOM series folders of the same
    images (the same SOP instance UIDs with the same pixel data, whatever the files are called). Never raises."""
    import filecmp

    try:
        if a.is_file() and b.is_file():
            return a.stat().st_size == b.stat().st_size and filecmp.cmp(a, b, shallow=False)
        if a.is_dir() and b.is_dir():
            images = _images(a)
            return bool(images) and images == _images(b)
    except Exception:  # (unreadable: not known to be the same)
        return False
    return False


def series_uid(folder: Path) -> str:
    """The SeriesInstanceUID of the first DICOM image in ``folder`` ("" when none is read)."""
    import pydicom

    from ..data.dicom import is_dicom_file

    try:
        for f in sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".")):
            if is_dicom_file(f):
                ds = pydicom.dcmread(str(f), stop_before_pixels=True, force=True, specific_tags=["SeriesInstanceUID"])
                if ds.get("SeriesInstanceUID"):
                    return str(ds.SeriesInstanceUID)
    except Exception:  # (unreadable: the reader names it when the case runs)
        return ""
    return ""


def series_identity(src: str | os.PathLike) -> dict[str, str]:
    """For a case's record: a series folder's ``series_uid`` and ``images_sha256`` (its images' SOP instance UIDs with
    the digests of their pixel data, whatever the files are called: :func:`same_scan`'s test); {} for a file."""
    import json

    folder = Path(src)
    if not folder.is_dir():
        return {}
    try:
        images = _images(folder)
    except Exception:  # (unreadable: the case fails reading it anyway)
        return {}
    digest = hashlib.sha256(json.dumps(sorted(images.items())).encode()).hexdigest()
    return {"series_uid": series_uid(folder), "images_sha256": digest} if images else {}


def moved_from(out: Path, src: Path, weights: str | None, request: dict | None, name: str) -> str | None:
    """:func:`.moved.moved_from` (its home before; files too now)."""
    from .moved import moved_from as moved

    return moved(out, src, weights, request, name)


def holds_images(folder: Path) -> bool:
    """Whether a DICOM folder a glob matched holds DICOM files of its own besides a DICOMDIR: the top of a CD/PACS
    export (DICOMDIR, patient/study/series folders below) is no series, and ``"<export>/**/"`` matches its series
    folders anyway (it was a case that failed on every run, "none is chosen for you")."""
    from ..data.dicom import is_dicom_file

    files = sorted(f for f in folder.iterdir()
                   if f.is_file() and not f.name.startswith(".") and f.name.upper() != "DICOMDIR")
    return any(is_dicom_file(f) for f in files[:50])
