"""Checks around brain extraction (:mod:`.brain`): whether an input is skull-stripped already, told from the image
itself rather than from what the extraction would remove.

:func:`extract_brain` takes an input as stripped when its extraction would remove little of the head. That holds
for a T1 whose dark class is CSF (the MNI template), not for other contrasts: without air and skull in the head, the
three-class Otsu's dark class is part of the brain (the grey matter of a contrast-enhanced T1, the white matter of a
T2), the erosion cuts the brain apart and the regrowth through "tissue" leaves half of it out (brain1 stripped with
the product's own mask and given again: 50 % of it removed; a stripped T2-like MNI: 55 %). :func:`looks_stripped`
looks for what a stripped image is: a constant background (its minimum) around one connected region, and no skull
in it: a skull, dark in every MR sequence (cortical bone gives no signal), lies 5-20 mm below the head's surface,
under the scalp; in a stripped brain that band is brain and at most a thin rim of CSF.

A magnitude MRI's background is not constant but noise (Rayleigh distributed, Rician where there is signal); low-field
and fast scans carry a lot of it. :func:`noise_floor` estimates its sigma from the mode of the dark voxels (the air),
and the background is then everything within ``NOISE_K`` sigma of the minimum: a stripped brain with noise in its air
is recognised too (the extraction's thresholds, made for a head, take the noise for the head at 12 % noise on the
stripped MNI, 8 % on stripped brain1, and removed 86-92 % of the brain).

Pure numpy/scipy: no torch, no Qt.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

CONNECTED_SHARE = 0.98  # the non-background voxels in one piece (with its holes): at least this share of them
MIN_REGION_ML = 100.0  # smaller regions (a phantom, a crop around a lesion) are left to the extraction's own rule
DARK_SHARE = 0.15  # "dark": below this share of the region's 99th percentile above the background (skull, air)
SKULL_BAND_MM = (5.0, 20.0)  # depth below the region's surface where a head has its skull
SKULL_SHARE = 0.05  # dark voxels in that band above this share: a skull (heads 0.10-0.99; stripped brains <= 0.01)
NOISE_K = 4.0  # background: within this many noise sigmas of the minimum (Rayleigh air above it: 0.03 % of voxels)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndi.label(mask, structure=np.ones((3,) * mask.ndim, bool))
    if n <= 1:
        return mask.copy()
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def noise_floor(image: np.ndarray, lo: float | None = None) -> float:
    """The sigma of the noise in the air of a magnitude MRI (z, y, x), above its minimum ``lo``: the mode of the
    voxels below the image's Otsu threshold (air is Rayleigh distributed, its mode is sigma). 0.0 when the air is
    constant (at least half of those voxels are the minimum exactly: a stripped or masked image) or has no mode above
    the minimum. Measured: Rician sigma 8.6 / 17.1 / 34.2 on the 2 mm MNI estimated as 8.6 / 17.0 / 32.9."""
    from skimage.filters import threshold_otsu

    a = np.asarray(image, np.float32)
    values = a[np.isfinite(a)][:: max(1, a.size // 1_000_000)]
    lo = float(values.min()) if lo is None else float(lo)
    if values.size < 1000 or values.max() <= lo:
        return 0.0
    dark = values[values < threshold_otsu(values)]
    if dark.size < 1000 or float(np.mean(dark <= lo)) >= 0.5:
        return 0.0
    counts, edges = np.histogram(dark, bins=128)
    i = int(np.argmax(ndi.gaussian_filter1d(counts.astype(np.float64), 1.5)))
    return 0.0 if i == 0 else float(0.5 * (edges[i] + edges[i + 1])) - lo


def looks_stripped(image: np.ndarray, spacing: Sequence[float]) -> tuple[np.ndarray, str] | None:
    """(the brain region, a note) when the volume (z, y, x; ``spacing`` in mm) is skull-stripped already: the voxels
    above its minimum form one connected region (holes filled) of at least ``MIN_REGION_ML``, everything else is the
    minimum exactly, or within ``NOISE_K`` sigmas of the air's noise (:func:`noise_floor`) above it
    (``CONNECTED_SHARE``), and no skull lies in the region: under ``SKULL_SHARE`` of its voxels
    ``SKULL_BAND_MM`` below its surface are darker than ``DARK_SHARE`` of its 99th percentile. None otherwise (noisy
    air, a skull, too small to tell): the extraction then decides as before."""
    from .brain import _depth

    a = np.asarray(image, np.float32)
    spacing = tuple(float(s) for s in spacing)
    if a.ndim != 3 or not np.isfinite(a).all():
        return None
    lo = float(a.min())
    above = a > lo + NOISE_K * noise_floor(a, lo)  # (noisy air: no voxel is the minimum exactly)
    n_above = int(above.sum())
    if n_above == 0 or n_above == a.size:
        return None
    region = ndi.binary_fill_holes(_largest_component(above))
    inside = int(region.sum())
    if (above & region).sum() < CONNECTED_SHARE * n_above or inside == a.size:
        return None  # the background is not constant (more than noise in the air) or nothing of it is left
    if inside * float(np.prod(spacing)) < MIN_REGION_ML * 1000.0:
        return None
    depth = _depth(region, spacing)
    band = region & (depth > SKULL_BAND_MM[0]) & (depth <= SKULL_BAND_MM[1])
    if band.sum() < 1000:
        return None
    ref = float(np.percentile(a[region], 99))
    dark = a <= lo + DARK_SHARE * (ref - lo)
    skull = float(dark[band].mean())
    if skull > SKULL_SHARE:
        return None
    return region, (f"the input looks skull-stripped (a constant or noise-only background around one connected region, no skull "
                    f"in it: {skull:.0%} of the region {SKULL_BAND_MM[0]:.0f}-{SKULL_BAND_MM[1]:.0f} mm below its "
                    "surface is dark); brain extraction not applied")

