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



BIAS_WARN = 1.35  # the white matter's fitted linear field spans more than this (5th-95th percentile ratio): warn
BIAS_STEP_MM = 4.0  # the fit runs on about this grid (a few thousand white-matter voxels are plenty for 4 numbers)


def bias_span(image: np.ndarray, brain: np.ndarray, spacing: Sequence[float]) -> float | None:
    """How much a T1's white matter brightens across the brain: a plane (a linear field) fitted to the log intensity
    of the likely white matter (the brightest of three Otsu classes inside ``brain``, the top 1 % left out: vessels,
    enhancement), refitted four times on the image divided by the last fit (a shaded side's white matter falls into
    the grey class at first); the ratio of its 95th to 5th percentile over that white matter. None when ``brain``
    has too few voxels. Measured on the 2 mm MNI: 1.17 as it is (1 mm, 4 / 6 mm slices and a cut top alike; 1.09
    without its lowest 40 mm), 1.09-1.16 with 4-16 % Rician noise, 1.11-1.17 in a synthetic skull; brain1 (a clinical
    contrast-enhanced T1) 1.25; under smooth random fields of 0.6-1.4 over the volume 1.11-1.42 (the anatomy's own
    gradient adds to the field or takes from it), linear 0.7-1.3 ramps 1.37-1.48."""
    from skimage.filters import threshold_multiotsu

    a, inside = np.asarray(image), np.asarray(brain, bool)
    spacing = tuple(float(s) for s in spacing)
    if a.ndim != 3 or inside.shape != a.shape:
        return None
    step = tuple(max(1, int(round(BIAS_STEP_MM / s))) for s in spacing)
    sub = tuple(slice(None, None, k) for k in step)
    a = a[sub].astype(np.float32)  # (the fit's grid first: no float copy of a whole 1 mm head)
    inside = ndi.binary_erosion(inside[sub])  # (not the brain's edge: partial volume with the background)
    inside &= np.isfinite(a) & (a > 0)
    if inside.sum() < 2000:
        return None
    idx = np.nonzero(inside)
    x = np.stack([np.ones(idx[0].size)] + [(i - (n - 1) / 2) * s * k / 100.0
                                          for i, n, s, k in zip(idx, a.shape, spacing, step)], axis=1)
    v = np.log(a[idx].astype(np.float64))
    fit = np.zeros_like(v)
    wm = np.zeros(v.shape, bool)
    for _ in range(4):
        c = v - fit
        try:
            hi = threshold_multiotsu(c, classes=3)[1]
        except ValueError:  # fewer than three intensity levels: no tissue classes to speak of
            return None
        wm = (c > hi) & (c < np.percentile(c, 99))
        if wm.sum() < 100:
            return None
        coef = np.linalg.lstsq(x[wm], v[wm], rcond=None)[0]
        fit = x @ coef
    p5, p95 = np.percentile(fit[wm], [5, 95])
    return float(np.exp(p95 - p5))


def strong_bias_field(image: np.ndarray, brain: np.ndarray, spacing: Sequence[float]) -> str | None:
    """A warning when the white matter brightens across the brain by more than ``BIAS_WARN`` (:func:`bias_span`):
    a receive-coil bias field the model did not learn (the 2 mm MNI under a 0.6-1.4 field: grey / white matter Dice
    0.912 / 0.914 -> 0.81 / 0.63). None otherwise; weaker fields (up to about +-20 %) go unnoticed."""
    span = bias_span(image, brain, spacing)
    if span is None or span <= BIAS_WARN:
        return None
    return (f"The white matter brightens {span:.2f}x across the brain (a smooth bias field, as from a receive coil, not "
            "corrected?): the model learnt bias-corrected T1s and its mask loses accuracy under one. Correct the bias "
            "field first (N4: ANTs N4BiasFieldCorrection, SimpleITK's N4BiasFieldCorrectionImageFilter, or 3D Slicer's "
            "N4ITK module), then run again.")
