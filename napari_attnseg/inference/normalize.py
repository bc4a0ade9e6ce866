"""Intensity normalisation from the model card, with statistics computed once per image.

A card's spec is ``{"scheme": "percentile", "lower": 1, "upper": 99}``, ``{"scheme": "zscore"}``,
``{"scheme": "scale", "upper": 99}`` (divide by that percentile: MRI, where the minimum is "no signal"; a positive
minimum held by at least 1 % of the voxels, a constant offset some converters and cameras add, is taken off first,
so ``image + c`` is normalised as ``image``),
``{"scheme": "ct", "window": [lo, hi]}`` or ``{"scheme": "none"}``. ``"nonzero": true`` (percentile, scale and
zscore) takes the statistics over the voxels that are not 0 only, as nnU-Net does for skull-stripped
MRI: the amount of empty background around the object (the field of view) then no longer moves them.
The whole image is still normalised with them, the zeros included."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..errors import InputError

SCHEMES = ("percentile", "scale", "zscore", "ct", "none")
NONZERO_SCHEMES = ("percentile", "scale", "zscore")  # the ones with statistics that "nonzero" can restrict
_MAX_SAMPLE = 2_000_000  # voxels used for statistics on big images


def _sample(image, channel_axis: bool, native: bool = False) -> np.ndarray:
    """A strided subsample of the image (per channel when ``channel_axis``), as float64 (``native``: integer
    images keep their integer type, which :func:`percentiles` reads ~10x faster)."""
    shape = image.shape[1:] if channel_axis else image.shape
    n = int(np.prod(shape))
    step = max(1, math.ceil((n / _MAX_SAMPLE) ** (1 / len(shape)) - 1e-9))  # at most ~_MAX_SAMPLE values
    region = tuple(slice(None, None, step) for _ in shape)
    data = image[(slice(None), *region)] if channel_axis else image[region]
    data = np.asarray(data)
    if native and data.dtype.kind in "iub":
        return data.view(np.uint8) if data.dtype == bool else data  # (NumPy has no subtraction of booleans)
    return np.asarray(data, dtype=np.float64)


def finite_values(values: np.ndarray) -> np.ndarray:
    """The finite values of a sample, flat (an integer sample, as :func:`_sample` gives with ``native``,
    has no NaN or infinity to look for)."""
    return values.ravel() if values.dtype.kind in "iub" else values[np.isfinite(values)]


_HISTOGRAM_RANGE = 1 << 20  # integer samples spanning at most this many values are counted, not partitioned


def percentiles(values: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """``np.percentile(values, qs)`` (its default, linear method) with the same float64 result. Integer values
    spanning a modest range are read off a histogram of their counts instead of partitioned: ~2 ms instead of
    ~14 ms for a 1 M-pixel sample, which is most of a 1024 x 1024 prediction's host time on a GPU."""
    v = np.asarray(values).ravel()
    if v.size == 0 or v.dtype.kind not in "iub":
        return np.percentile(v, qs)
    low, high = int(v.min()), int(v.max())
    if high - low > _HISTOGRAM_RANGE:
        return np.percentile(v, qs)
    shifted = v.astype(np.intp) - low if low else v.astype(np.intp, copy=False)
    cumulative = np.cumsum(np.bincount(shifted, minlength=high - low + 1))
    index = (v.size - 1) * (np.asarray(qs, dtype=np.float64) / 100)  # numpy's virtual index, same operations
    below = np.floor(index)
    gamma = index - below
    lo_k = below.astype(np.intp)
    hi_k = np.minimum(lo_k + 1, v.size - 1)
    a = np.searchsorted(cumulative, lo_k, side="right").astype(np.int64) + low  # the lo_k-th smallest value
    b = np.searchsorted(cumulative, hi_k, side="right").astype(np.int64) + low
    diff = b - a  # numpy's _lerp, the same float operations
    out = np.add(a, diff * gamma)
    np.subtract(b, diff * (1 - gamma), out=out, where=gamma >= 0.5, casting="unsafe")
    return out


# Normalised values beyond this are outliers (a hot or saturated pixel, 65535 in an image of 0-235, came out
# near 300 and spoilt ~180 x 180 pixels around it); the percentile scheme puts the image in about [0, 1.5].
OUTLIER_LIMIT = 5.0


def compute_stats(image, spec: dict[str, Any] | None, channel_axis: bool) -> dict[str, Any]:
    """Per-channel (offset, scale) so that ``(x - offset) / scale`` is what the model was trained on."""
    spec = dict(spec or {"scheme": "percentile", "lower": 1.0, "upper": 99.0})
    scheme = spec.get("scheme", "percentile")
    if scheme not in SCHEMES:
        raise InputError(f"Unknown normalisation scheme {scheme!r} in the model card; expected one of {SCHEMES}.")
    sample = _sample(image, channel_axis, native=True)
    chans = sample if channel_axis else sample[None]
    offsets, scales, saturated = [], [], 0.0
    nonzero = bool(spec.get("nonzero", False)) and scheme in NONZERO_SCHEMES
    for c in chans:
        finite = finite_values(c)
        if finite.size == 0:
            raise InputError("The image has no finite values (all NaN or infinite); check the file.")
        # the background of an MRI is its minimum: 0 as scanners write it, or a constant offset (a converter's
        # intercept, a camera's baseline) that "scale" takes off, as if the image had been written from 0
        base = background_level(finite) if scheme == "scale" or nonzero else 0.0
        if nonzero and np.count_nonzero(finite != base):  # an all-background image falls back to every voxel
            finite = finite[finite != base]
        if scheme == "percentile":
            lo, hi = percentiles(finite, [float(spec.get("lower", 1.0)), float(spec.get("upper", 99.0))])
            hi, share = _below_saturation(finite, lo, hi, float(spec.get("upper", 99.0)))
            saturated = max(saturated, share)
            offsets.append(lo)
            scales.append(hi - lo)
        elif scheme == "scale":
            offsets.append(base)
            scales.append(abs(percentiles(finite, [float(spec.get("upper", 99.0))])[0] - base))
        elif scheme == "zscore":
            finite = finite.astype(np.float64, copy=False)
            offsets.append(finite.mean())
            scales.append(finite.std())
        elif scheme == "ct":
            lo, hi = spec.get("window", [-1000.0, 400.0])
            offsets.append(float(lo))
            scales.append(float(hi) - float(lo))
        else:
            offsets.append(0.0)
            scales.append(1.0)
    scales = [s if s > 1e-12 else 1.0 for s in scales]
    every = finite_values(sample)
    return {"scheme": scheme, "offset": np.asarray(offsets, np.float32), "scale": np.asarray(scales, np.float32),
            "clip": scheme == "ct", "limit": OUTLIER_LIMIT if scheme in ("percentile", "scale", "zscore") else None,
            "fill": float(np.min(every)), "constant": bool(np.ptp(every) == 0), "saturated": saturated}


def background_level(finite: np.ndarray) -> float:
    """A positive minimum that is a background (a constant offset: at least 1 % of the values; brain1 + 12.5: 5.6 %),
    else 0: the darkest tissue of a crop inside the head (a few voxels at its minimum) is no offset."""
    low = max(0.0, float(finite.min()))
    return low if low and np.count_nonzero(finite == low) >= 0.01 * finite.size else 0.0


def _below_saturation(finite: np.ndarray, lo: float, hi: float, upper: float) -> tuple[float, float]:
    """The upper percentile ``hi`` when it is not the brightest value; when it is (more than ``100 - upper`` % of
    the image at its maximum: a saturated stripe, debris, a stitched tile at 65535) and the other values' same
    percentile lies over :data:`OUTLIER_LIMIT` times lower, that one, with the saturated share (else 0). The
    saturated pixels are then clipped as outliers; ``hi`` at 65535 made every nucleus of 0-235 background."""
    top = finite.max()
    if hi < top or hi <= lo:
        return float(hi), 0.0
    rest = finite[finite < top]
    below = float(percentiles(rest, [upper])[0]) if rest.size else hi
    if below <= lo or (float(top) - lo) / (below - lo) <= OUTLIER_LIMIT:
        return float(hi), 0.0
    return below, float(np.mean(finite == top))


def apply_stats(tile: np.ndarray, stats: dict[str, Any]) -> np.ndarray:
    """Normalise a (C, *spatial) tile in float32; NaN/Inf become the image minimum first."""
    out = np.asarray(tile, dtype=np.float32)
    if not np.isfinite(out).all():
        out = np.where(np.isfinite(out), out, np.float32(stats["fill"]))
    shape = (-1,) + (1,) * (out.ndim - 1)
    out = (out - stats["offset"].reshape(shape)) / stats["scale"].reshape(shape)
    if stats["clip"]:
        np.clip(out, 0.0, 1.0, out=out)
    elif stats.get("limit"):
        np.clip(out, -stats["limit"], stats["limit"], out=out)
    return out


def apply_stats_tensor(x: torch.Tensor, stats: dict[str, Any] | None, out: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`apply_stats` on a (C, *spatial) tensor of any dtype on any device: the same float32
    operations (so the same values), done where the tensor is, written into ``out`` (a new float32
    tensor when None). ``x`` itself is never modified."""
    if out is None:
        out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
    if stats is None:
        return out.copy_(x)
    if x.is_floating_point():  # NaN/Inf become the image minimum; no check first (it would wait for a GPU)
        fill = float(np.float32(stats["fill"]))
        torch.nan_to_num(x.to(torch.float32), nan=fill, posinf=fill, neginf=fill, out=out)
        src = out
    else:
        src = x.to(torch.float32) if x.dtype == torch.bool else x  # integers: exact in float32 arithmetic
    shape = (-1,) + (1,) * (x.dim() - 1)
    offset = torch.from_numpy(stats["offset"]).to(out.device, non_blocking=True).view(shape)
    scale = torch.from_numpy(stats["scale"]).to(out.device, non_blocking=True).view(shape)
    torch.sub(src, offset, out=out)  # tensors, not Python scalars: a scalar divisor may become a reciprocal
    out.div_(scale)
    if stats["clip"]:
        out.clamp_(0.0, 1.0)
    elif stats.get("limit"):
        out.clamp_(-float(stats["limit"]), float(stats["limit"]))
    return out
