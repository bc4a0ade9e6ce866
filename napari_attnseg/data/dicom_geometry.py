"""DICOM headers -> frames with their geometry; which frames make the volume; their order and affine.

A frame is one 2D image: a classic single-frame file, or one frame of an enhanced (multi-frame)
file. Geometry and rescale are read from the frame's PerFrameFunctionalGroupsSequence item first,
then the SharedFunctionalGroupsSequence, then the top level (classic files), so an Enhanced CT/MR
is placed and scaled like its classic equivalent. Nothing identifying leaves this module.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
IDENTITY_ORIENTATION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def _present(value: Any) -> bool:
    if value is None:
        return False
    try:
        return len(value) > 0  # type: ignore[arg-type]
    except TypeError:  # a number
        return True


def functional(ds: Any, index: int, sequence: str, keyword: str) -> Any:
    """``keyword`` of frame ``index``: its per-frame functional group, the shared one, then the top level."""
    groups = []
    per = ds.get("PerFrameFunctionalGroupsSequence")
    if per is not None and len(per) > index:
        groups.append(per[index])
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared is not None and len(shared) > 0:
        groups.append(shared[0])
    for group in groups:
        items = group.get(sequence)
        if items is not None and len(items) > 0:
            value = items[0].get(keyword)
            if _present(value):
                return value
    value = ds.get(keyword)
    return value if _present(value) else None


def _floats(value: Any) -> np.ndarray | None:
    if not _present(value):
        return None
    try:
        return np.array([float(v) for v in value], float)
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return float(value) if _present(value) else None
    except (TypeError, ValueError):
        return None


@dataclass
class Frame:
    """One 2D image of a series: where it comes from and where it lies."""

    path: Path
    index: int  # frame number in its file, from 0
    frames_in_file: int
    header: Any  # the file's dataset, without its pixel data
    shape: tuple[int, int]
    position: np.ndarray | None  # ImagePositionPatient (LPS mm) of the first pixel
    orientation: np.ndarray | None  # ImageOrientationPatient: row direction, column direction
    pixel_spacing: tuple[float, float] | None  # (between rows, between columns) in mm
    thickness: float | None
    between: float | None  # SpacingBetweenSlices
    slope: float
    intercept: float
    location: float | None  # SliceLocation
    instance: int | None
    localizer: bool
    detector: float | None = None  # pixel_spacing is ImagerPixelSpacing (a radiograph's, at the detector): the
    # EstimatedRadiographicMagnificationFactor (0 when the header has none)

    @property
    def name(self) -> str:
        return self.path.name if self.frames_in_file == 1 else f"{self.path.name} (frame {self.index + 1})"


def frames_of(path: Path, ds: Any) -> list[Frame]:
    """The frames of one file, from its header (read without pixel data)."""
    n = int(ds.get("NumberOfFrames") or 1)
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    instance = ds.get("InstanceNumber")
    out = []
    for i in range(n):
        ps = _floats(functional(ds, i, "PixelMeasuresSequence", "PixelSpacing"))
        detector = None
        if ps is None or len(ps) != 2 or min(ps) <= 0:
            ps = _floats(ds.get("ImagerPixelSpacing"))  # projection radiographs (CR/DX) at the detector
            detector = (_float(ds.get("EstimatedRadiographicMagnificationFactor")) or 0.0) if ps is not None else None
        orient = _floats(functional(ds, i, "PlaneOrientationSequence", "ImageOrientationPatient"))
        pos = _floats(functional(ds, i, "PlanePositionSequence", "ImagePositionPatient"))
        slope = _float(functional(ds, i, "PixelValueTransformationSequence", "RescaleSlope"))
        intercept = _float(functional(ds, i, "PixelValueTransformationSequence", "RescaleIntercept"))
        out.append(Frame(
            path=path, index=i, frames_in_file=n, header=ds, shape=(int(ds.Rows), int(ds.Columns)),
            position=pos if pos is not None and len(pos) == 3 else None,
            orientation=orient if orient is not None and len(orient) == 6 else None,
            pixel_spacing=(float(ps[0]), float(ps[1])) if ps is not None and len(ps) == 2 and min(ps) > 0 else None,
            thickness=_float(functional(ds, i, "PixelMeasuresSequence", "SliceThickness")),
            between=_float(functional(ds, i, "PixelMeasuresSequence", "SpacingBetweenSlices")),
            slope=slope if slope else 1.0, intercept=intercept or 0.0,
            location=_float(ds.get("SliceLocation")) if n == 1 else None,
            instance=int(instance) + i if _present(instance) else None,
            localizer="LOCALIZER" in image_type, detector=detector,
        ))
    return out


def _same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return bool(np.max(np.abs(a - b)) < 1e-3)


def select(frames: list[Frame], opened: Path | None = None) -> tuple[list[Frame], str | None]:
    """Leave out localizers/scouts and images of another orientation than the majority (one file
    that the user opened, if it is such an image, is read on its own). Returns the kept frames and
    a note saying what was left out, or None."""
    if opened is not None:
        mine = [f for f in frames if f.path == opened]
        if mine and (mine[0].localizer or not _same(mine[0].orientation, _majority(frames))):
            return mine, None
    axial = [f for f in frames if not f.localizer] or frames
    majority = _majority(axial)
    kept = [f for f in axial if _same(f.orientation, majority)]
    left = [f for f in frames if not any(f is k for k in kept)]
    if not left:
        return kept, None
    return kept, (f"left out {len(left)} image(s) of this series that are localizers/scouts or lie in another "
                  f"orientation (e.g. {left[0].name}); {len(kept)} remain")


def _majority(frames: list[Frame]) -> np.ndarray | None:
    keys = Counter(None if f.orientation is None else tuple(np.round(f.orientation, 2)) for f in frames)
    key = keys.most_common(1)[0][0]
    if key is None:
        return None
    return next(f.orientation for f in frames
                if f.orientation is not None and tuple(np.round(f.orientation, 2)) == key)


@dataclass
class Geometry:
    frames: list[Frame]  # in slice order
    dz: float  # distance between slice planes (mm)
    pixel_spacing: tuple[float, float]
    affine: np.ndarray  # RAS, NIfTI-style: (i = column, j = row, k = slice) -> mm
    warnings: list[str]
    slots: list[int] | None = None  # the grid index of each frame when slices are missing (gaps left empty)


def _distinct(values: np.ndarray, order: list[Frame], source: Path) -> None:
    gaps = np.diff(values)
    if np.any(np.abs(gaps) < 1e-3):
        n = int(np.argmin(np.abs(gaps)))
        a, b = order[n], order[n + 1]
        several = " (a file of several volumes: time points, echoes or b-values? convert it with dcm2niix)" \
            if a.path == b.path else ""
        raise InputError(f"{source}: {a.name} and {b.name} of one series lie at the same position{several}; no echo, "
                         "time point or acquisition number tells them apart, so the series holds duplicates (a copy, "
                         "or a repeated scan): move one of each pair out of the folder" + ("." if several else
                                                                                    " (or convert it with dcm2niix)."))


def _missing(gaps: np.ndarray, offsets: np.ndarray, order: list[Frame]) -> tuple[list[int], str] | None:
    """A few slices missing: every gap a whole multiple (within 5%) of the usual step, most gaps one step,
    at most max(3, a quarter) of the slices gone. Returns the grid index of each frame and a warning."""
    if len(gaps) < 2:
        return None
    unit = float(np.median(gaps[gaps < 1.5 * gaps.min()]))  # the usual step: the gaps near the smallest
    counts = np.rint(gaps / unit).astype(int)
    gone = int((counts - 1).sum())
    if (counts.max() < 2 or np.any(np.abs(gaps / unit - counts) > 0.05) or gone > max(3, len(gaps) // 4)
            or np.count_nonzero(counts == 1) < len(gaps) / 2):
        return None

    def at(i: int) -> str:
        f = order[i]
        return f"{f.name} ({f'instance {f.instance}, ' if f.instance is not None else ''}at {offsets[i]:.4g} mm)"

    where = "; ".join(f"{c - 1} between {at(i)} and {at(i + 1)}" for i, c in enumerate(counts) if c > 1)
    slots = [0, *np.cumsum(counts).tolist()]
    return slots, (f"uneven slice spacing: {gone} slice(s) look missing from the series ({where}), where the "
                   f"others are {unit:.3g} mm apart; {gone} empty slice(s) (the series' lowest value) were inserted "
                   "there so that every slice keeps its place on an even grid: those slices hold no image, and a "
                   "mask drawn or predicted on them means nothing")


def detector_note(ps: tuple[float, float], magnification: float) -> str:
    """What a reader says of a radiograph's pixel size taken from ImagerPixelSpacing (no PixelSpacing, as viewers do)."""
    size = " x ".join(f"{s:.4g}" for s in ps)
    at = (f"; its EstimatedRadiographicMagnificationFactor {magnification:.4g} puts them at about "
          f"{' x '.join(f'{s / magnification:.4g}' for s in ps)} mm in the patient" if magnification > 0 else
          "; in the patient they are smaller by the projection's magnification")
    return (f"pixel size {size} mm from ImagerPixelSpacing (0018,1164), the detector's: the file has no PixelSpacing, "
            f"so lengths and areas are at the detector, not calibrated at the patient{at}")


def geometry(frames: list[Frame], source: Path) -> Geometry:
    """Slice order, spacing and the exact affine of the kept frames."""
    warnings: list[str] = []
    first = frames[0]
    orient = first.orientation if first.orientation is not None else np.array(IDENTITY_ORIENTATION)
    row, col = orient[:3], orient[3:]  # direction of increasing column index, of increasing row index
    normal = np.cross(row, col)
    ps = first.pixel_spacing
    if ps is None:
        ps = (1.0, 1.0)
        warnings.append("no PixelSpacing in the headers: 1 mm pixels assumed")
    n = len(frames)
    nominal = first.between or first.thickness
    slots: list[int] | None = None
    origin = np.zeros(3)
    if all(f.position is not None for f in frames):
        offsets = np.array([float(f.position @ normal) for f in frames])
        order_idx = np.argsort(offsets, kind="stable")
        order = [frames[i] for i in order_idx]
        _distinct(offsets[order_idx], order, source)
        origin = order[0].position
        if n > 1:
            gaps = np.diff(offsets[order_idx])
            if (found := _missing(gaps, offsets[order_idx], order)) is not None:
                slots, note = found
                warnings.append(note)
            # sheared (gantry tilt) stays exact
            step = (order[-1].position - order[0].position) / (slots[-1] if slots else n - 1)
            dz = abs(float(step @ normal))
            if slots is None and np.max(np.abs(gaps - dz)) > 0.01 * dz:
                warnings.append(f"uneven slice spacing ({gaps.min():.3g}-{gaps.max():.3g} mm); using the mean "
                                f"step {dz:.3g} mm")
            shear = float(np.linalg.norm(step - (step @ normal) * normal))
            if shear > 0.01 * dz:
                off = shear * (slots[-1] if slots else n - 1) / 2  # (data.nifti.unsheared: the qform written)
                warnings.append(f"the slices are sheared (gantry tilt of {np.degrees(np.arctan2(shear, dz)):.1f} "
                                "degrees): the affine places each slice exactly, but the voxels are not boxes. NIfTI "
                                "outputs keep the shear in their sform (napari, nibabel); a qform cannot hold it, so "
                                "tools that read the qform (ITK-based viewers: 3D Slicer, ITK-SNAP) place them "
                                f"approximately: the middle slice exact, the first and last {off:.1f} mm off")
        else:
            dz = float(nominal or 1.0)
            step = normal * dz
    else:
        if n > 1:  # a lone 2D image (a radiograph) has no position to speak of
            warnings.append(f"ImagePositionPatient is missing on {sum(f.position is None for f in frames)} of {n} "
                            "images: the position in space is unknown (origin set to 0)")
        if n > 1 and all(f.location is not None for f in frames):
            locs = np.array([f.location for f in frames])
            order_idx = np.argsort(locs, kind="stable")
            order = [frames[i] for i in order_idx]
            _distinct(locs[order_idx], order, source)
            gaps = np.diff(locs[order_idx])
            if (found := _missing(gaps, locs[order_idx], order)) is not None:
                slots, note = found
                warnings.append(note)
            dz = abs(float(locs[order_idx][-1] - locs[order_idx][0])) / (slots[-1] if slots else n - 1)
            if slots is None and np.max(np.abs(gaps - dz)) > 0.01 * dz:
                warnings.append(f"uneven slice spacing ({gaps.min():.3g}-{gaps.max():.3g} mm, from SliceLocation); "
                                f"using the mean step {dz:.3g} mm")
            else:
                warnings.append(f"slice spacing {dz:.3g} mm from SliceLocation")
        else:
            order = sorted(frames, key=lambda f: (f.instance is None, f.instance or 0, str(f.path), f.index))
            if nominal:
                dz = float(nominal)
                if n > 1:
                    warnings.append(f"slices ordered by InstanceNumber; spacing {dz:.3g} mm from "
                                    f"{'SpacingBetweenSlices' if first.between else 'SliceThickness'}")
            else:
                dz = 1.0
                if n > 1:
                    warnings.append("no slice positions or spacing in the headers: slices ordered by InstanceNumber, "
                                    "1 mm apart (assumed)")
        step = normal * dz
    lps = np.eye(4)
    lps[:3, 0] = row * ps[1]
    lps[:3, 1] = col * ps[0]
    lps[:3, 2] = step
    lps[:3, 3] = origin
    return Geometry(order, dz, ps, LPS_TO_RAS @ lps, warnings, slots)
