"""How an image is shown: CT windows in Hounsfield units and a robust default for other images.

Pure numpy; the napari readers and panels call it so a CT opens in a window a radiologist would
pick (soft tissue) instead of the whole -1024..3071 range.
"""

from __future__ import annotations

import math

import numpy as np

# (lower, upper) in HU, from the usual (width, level) pairs: soft tissue W400 L40, lung W1500 L-600,
# bone W1800 L400, brain W80 L40.
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "soft tissue": (-160.0, 240.0),
    "lung": (-1350.0, 150.0),
    "bone": (-500.0, 1300.0),
    "brain": (0.0, 80.0),
}
DEFAULT_CT_WINDOW = "soft tissue"
FULL_RANGE = "full range"
WINDOW_PRESETS: tuple[str, ...] = (*CT_WINDOWS, FULL_RANGE)


def _sample(image: np.ndarray, n: int = 200_000) -> np.ndarray:
    """About ``n`` values of ``image``, strided along every axis before anything is read (a lazy dask or zarr
    volume is not loaded whole; the layer checks run on every layer event)."""
    if not hasattr(image, "shape"):
        image = np.asarray(image)
    size = int(np.prod(image.shape))
    step = max(1, math.ceil((size / n) ** (1 / max(1, len(image.shape))) - 1e-9)) if size else 1
    sample = np.asarray(image[tuple(slice(None, None, step) for _ in image.shape)]).reshape(-1)
    return sample[np.isfinite(sample)] if sample.dtype.kind == "f" else sample


def is_hounsfield(image: np.ndarray) -> bool:
    """True when the values look like a CT in Hounsfield units: air near -1000 and a range that
    reaches at least soft tissue (a 2D or 3D grey-level array; RGB or multi-channel: False)."""
    a = image if hasattr(image, "shape") and hasattr(image, "dtype") else np.asarray(image)
    if len(a.shape) not in (2, 3) or np.dtype(a.dtype).kind not in "iuf" or int(np.prod(a.shape)) == 0:
        return False
    s = _sample(a).astype(np.float32)
    # below -1200 HU is neither body nor air: a scanner's padding outside its circular field of view (-3024, -2048,
    # -2000 HU, GE / Siemens / Philips), well below air and a minority of the image; the rest says whether it is a CT
    pad = s < -1200.0
    if pad.any() and pad.mean() < 0.5 and np.count_nonzero(pad & (s > -1500.0)) <= 0.05 * np.count_nonzero(pad):
        s = s[~pad]
    if s.size == 0:
        return False
    lo, hi = float(s.min()), float(s.max())
    if not (-1200.0 <= lo <= -900.0) or hi < 100.0 or hi > 40000.0:
        return False
    # a real CT holds air (outside the body, in the lungs) and soft tissue around 0..100 HU
    air = float(np.mean(s < -900.0))
    tissue = float(np.mean((s > -200.0) & (s < 300.0)))
    return air > 0.01 and tissue > 0.02


def window_limits(image: np.ndarray, preset: str) -> tuple[float, float]:
    """Contrast limits for ``preset`` (a key of :data:`CT_WINDOWS`, or ``"full range"``)."""
    if preset in CT_WINDOWS:
        return CT_WINDOWS[preset]
    if preset == FULL_RANGE:
        s = _sample(image)
        return (float(s.min()), float(s.max())) if s.size else (0.0, 1.0)
    raise ValueError(f"Unknown display window {preset!r}; choose one of {', '.join(WINDOW_PRESETS)}.")


def outlier_limits(image: np.ndarray) -> tuple[float, float, str] | None:
    """Contrast limits up to the 99.9th percentile, and a note saying so, when a few voxels lie far above the rest (a
    hot voxel, a marker, a corrupt value: napari's full range showed the scan black); None otherwise."""
    s = _sample(image).astype(np.float64)
    if s.size == 0:
        return None
    lo, top = float(s.min()), float(np.percentile(s, 99.9))
    a = np.asarray(image)
    hi = float(np.nanmax(a))  # (the whole image: one hot voxel is rarely in the sample)
    if not (top > lo and hi - lo > 10.0 * (top - lo)):
        return None
    if np.count_nonzero(a > top + 0.5 * (hi - top)) > max(8, 1e-5 * a.size):
        return None  # a few bright objects (cells, beads, a small lesion), not hot voxels: shown as napari shows them
    return lo, top, (f"a few voxels reach {hi:.6g}, far above the rest (99.9% are at most {top:.6g}): shown up to "
                     f"{top:.6g} (layer controls: contrast limits to change it)")


def default_window(image: np.ndarray) -> tuple[float, float] | None:
    """The window an image should open with: soft tissue for a CT in HU, else None (the viewer's own)."""
    return CT_WINDOWS[DEFAULT_CT_WINDOW] if is_hounsfield(image) else None


# -- attention heatmaps -------------------------------------------------------------------------------
# inferno from 0.1 to 0.85 (dark purple -> red -> orange-yellow; inferno's black and near-white ends are lost
# over a dark background and over bright tissue), transparent at 0 and opaque at 1 (alpha = value). Drawn
# 'translucent' over the image at opacity 0.8: where the attention is low the image shows as it is, and the
# colour of a high value does not depend on how bright the image is below it. The former additive inferno at
# 0.5 washed out over bright tissue: on the MNI152 T1 (white matter) and on a CT in the soft-tissue window,
# 2D and 3D (MIP), the change a heat ramp 0 -> 1 made to the rendered pixels over the brighter half of the
# tissue correlated 0.01-0.68 with the heat (0.12 on the T1 slice; up to every pixel clipped to white in the
# CT's 3D view); with these settings 0.87-1.0, no pixel clipped (docs/napari.md).
_INFERNO_10_85 = (  # inferno sampled at 0.1, 0.175, ..., 0.85 (RGB)
    (0.0902, 0.0451, 0.2296), (0.2154, 0.0368, 0.3817), (0.3399, 0.0618, 0.4292), (0.4591, 0.1058, 0.4299),
    (0.5783, 0.1480, 0.4044), (0.6954, 0.1954, 0.3540), (0.8032, 0.2597, 0.2820), (0.8918, 0.3500, 0.1965),
    (0.9533, 0.4655, 0.1025), (0.9843, 0.5984, 0.0237), (0.9834, 0.7418, 0.1362),
)
HEATMAP_COLORMAP_NAME = "inferno (transparent low)"
HEATMAP_BLENDING = "translucent"
HEATMAP_OPACITY = 0.8


def heatmap_colormap() -> dict:
    """The heatmaps' colormap as napari takes it (``colormap=`` of an image layer): RGBA colours at evenly
    spaced values 0..1, alpha rising from 0 to 1."""
    n = len(_INFERNO_10_85)
    colors = [(*rgb, i / (n - 1)) for i, rgb in enumerate(_INFERNO_10_85)]
    return {"colors": colors, "name": HEATMAP_COLORMAP_NAME}


def heatmap_style() -> dict:
    """The display settings of an attention heatmap layer (keyword arguments of ``viewer.add_image``); the
    values 0-1 of a map span the whole colour scale."""
    return {"colormap": heatmap_colormap(), "blending": HEATMAP_BLENDING, "opacity": HEATMAP_OPACITY,
            "contrast_limits": (0.0, 1.0)}
