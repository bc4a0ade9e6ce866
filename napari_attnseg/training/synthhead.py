"""Synthetic non-brain tissue around a skull-stripped brain: CSF, skull, scalp fat and skin as shells of
random, smoothly varying thickness and intensity (the idea of SynthStrip-style training data, made
from a label map), so a stripped template can stand in for a scan straight from the scanner.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

# (name, thickness range in mm, intensity range as a fraction of white matter)
SHELLS: tuple[tuple[str, tuple[float, float], tuple[float, float]], ...] = (
    ("csf", (1.5, 4.0), (0.08, 0.2)),
    ("skull", (4.0, 8.0), (0.03, 0.12)),
    ("diploe", (0.0, 2.0), (0.35, 0.6)),
    ("outer table", (1.0, 2.0), (0.03, 0.12)),
    ("scalp fat", (3.0, 7.0), (0.85, 1.15)),
    ("skin", (1.0, 2.5), (0.45, 0.65)),
)


def _smooth_field(shape, rng: np.random.Generator, sigma_vox: Sequence[float]) -> np.ndarray:
    """Noise in [0, 1] that varies over a few centimetres."""
    f = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_vox)
    f -= f.min()
    return f / max(float(f.max()), 1e-6)


def wrap_in_head(brain: np.ndarray, spacing: Sequence[float], seed: int, *, pad_mm: float = 24.0,
                 labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """``brain`` (a skull-stripped volume, background at its minimum) padded by ``pad_mm`` and wrapped
    in shells of CSF, skull, scalp fat and skin. Returns (image, labels padded the same way, the
    padding per axis as (before, after) pairs in voxels)."""
    rng = np.random.default_rng(seed)
    spacing = tuple(float(s) for s in spacing)
    a = np.asarray(brain, np.float32)
    pad = [(int(np.ceil(pad_mm / s)),) * 2 for s in spacing]
    a = np.pad(a, pad, constant_values=float(a.min()))
    inside = ndi.binary_fill_holes(a > a.min())
    wm = float(np.percentile(a[inside], 95)) if inside.any() else 1.0
    dist = ndi.distance_transform_edt(~inside, sampling=spacing)
    sigma = [20.0 / s for s in spacing]  # thickness varies over ~2 cm
    out = a.copy()
    edge = np.zeros(a.shape, np.float32)
    for _name, (t_lo, t_hi), (i_lo, i_hi) in SHELLS:
        thickness = t_lo + (t_hi - t_lo) * _smooth_field(a.shape, rng, sigma)
        level = wm * rng.uniform(i_lo, i_hi)
        shell = (dist > edge) & (dist <= edge + thickness)
        out[shell] = level * (0.9 + 0.2 * _smooth_field(a.shape, rng, sigma)[shell])
        edge = edge + thickness
    air = dist > edge
    out[air] = float(a.min())
    noise = rng.normal(0.0, 0.01 * wm, a.shape).astype(np.float32)
    out[~inside] += noise[~inside]
    out = np.clip(out, float(a.min()), None)
    lab = None if labels is None else np.pad(np.asarray(labels), pad, constant_values=0)
    return out, lab, np.asarray(pad)
