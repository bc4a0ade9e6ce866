"""The size of each class of a mask in physical units: what a clinician reads off a corrected tumour mask (its
volume in mL on a scan in mm, an area in um² on a microscope image), from per-class voxel counts and the voxel
spacing. Used by the napari Correct tab (kept up to date edit by edit from :class:`~.edit_counts.EditCounts`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

_MM = ("mm", "millimeter", "millimetre")
_UM = ("um", "µm", "μm", "micrometer", "micrometre", "micron")
MAX_LISTED = 12  # more values: an instance mask (one value per nucleus): their number and total size, not one each


def class_sizes(counts: Mapping[int, int], spacing: Sequence[float] | None, unit: str | None,
                names: Sequence[str] | None = None, *, ignore: int | None = None, frames: int = 1) -> str:
    """``"tumour 12.4 mL (8,312 voxels)"`` for each class of ``counts`` (``{class value: voxels}``; background 0
    and ``ignore`` left out), joined by "; ". ``spacing``: the size of a voxel along each axis (2 values: a 2D
    mask's pixel, areas), in ``unit`` (mm: mL, or mm² in 2D; um: um³ / um²; other or none: voxels only).
    ``names``: class names, background first (a missing one is "class N"). ``frames`` > 1: the counts are over that
    many time frames of a 2D image, the areas are given per frame on average. More than ``MAX_LISTED`` values
    (instance ids): their number and total size."""
    spacing = [abs(float(v)) for v in spacing] if spacing is not None else []
    unit = (unit or "").strip().lower()
    one = "voxel" if len(spacing) >= 3 else "pixel"
    # (napari's 'pixel': counts only; so are 4 or more axes, whose product took in a time step: '3.07e+05 µm²')
    physical = len(spacing) in (2, 3) and all(v > 0 for v in spacing) and unit in _MM + _UM
    size = float(np.prod(spacing)) if spacing else 1.0
    parts = []
    values = sorted(int(v) for v, n in counts.items() if n and int(v) != 0 and int(v) != ignore)
    listed = [(str(names[v]) if names is not None and 0 <= v < len(names) and str(names[v]) else f"class {v}",
               int(counts[v])) for v in values]
    if len(values) > MAX_LISTED:  # (nuclei2d's instance labels: 125 parts, a 482-pixel-high block in the panel)
        listed = [(f"{len(values):,} labels (one per object?) together", sum(n for _, n in listed))]
    for name, n in listed:
        amount = f"{n:,} {one}{'s' if n != 1 else ''}"
        if frames > 1:
            amount += f" over {frames} frames"
        per = n * size / max(frames, 1)
        if physical and unit in _MM and len(spacing) == 3:
            parts.append(f"{name} {per / 1000:.3g} mL" + (" per frame" if frames > 1 else "") + f" ({amount})")
        elif physical and unit in _MM + _UM:
            short = "mm" if unit in _MM else "µm"
            parts.append(f"{name} {per:.3g} {short}{'³' if len(spacing) == 3 else '²'}"
                         + (" per frame" if frames > 1 else "") + f" ({amount})")
        else:
            parts.append(f"{name} {amount}")
    return "; ".join(parts)
