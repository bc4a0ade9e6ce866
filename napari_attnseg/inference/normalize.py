"""Intensity normalisation from the model card, with statistics computed once per image.

A card's spec is ``{"scheme": "percentile", "lower": 1, "upper": 99}``, ``{"scheme": "zscore"}``,
``{"scheme": "scale", "upper": 99}`` (divide by that percentile, no offset: MRI, where 0 is "no signal"),
``{"scheme": "ct", "window": [lo, hi]}`` or ``{"scheme": "none"}``. ``"nonzero": true`` (percentile, scale and
zscore) takes the statistics over the voxels that are not 0 only, as nnU-Net does for skull-stripped
MRI: the amount of empty background around the object (the field of view) then no longer moves them.
The whole image is still normalised with them, the zeros included."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..errors import InputError

SCHEMES = ("percentile", "scale", "zscore", "ct", "none")
NONZERO_SCHEMES = ("percentile", "scale", "zscore")  # the ones with statistics that "nonzero" can restrict
_MAX_SAMPLE = 2_000_000  # voxels used for statistics on big images


def _sample(image, channel_axis: bool) -> np.ndarray:
    """A strided subsample of the image (per channel when ``channel_axis``), as float64."""
    shape = image.shape[1:] if channel_axis else image.shape
    n = int(np.prod(shape))
    step = max(1, math.ceil((n / _MAX_SAMPLE) ** (1 / len(shape)) - 1e-9))  # at most ~_MAX_SAMPLE values
    region = tuple(slice(None, None, step) for _ in shape)
    data = image[(slice(None), *region)] if channel_axis else image[region]
    return np.asarray(data, dtype=np.float64)


# Normalised values beyond this are outliers (a hot or saturated pixel, 65535 in an image of 0-235, came out
# near 300 and spoilt ~180 x 180 pixels around it); the percentile scheme puts the image in about [0, 1.5].
OUTLIER_LIMIT = 5.0


def compute_stats(image, spec: dict[str, Any] | None, channel_axis: bool) -> dict[str, Any]:
    """Per-channel (offset, scale) so that ``(x - offset) / scale`` is what the model was trained on."""
    spec = dict(spec or {"scheme": "percentile", "lower": 1.0, "upper": 99.0})
    scheme = spec.get("scheme", "percentile")
    if scheme not in SCHEMES:
        raise InputError(f"Unknown normalisation scheme {scheme!r} in the model card; expected one of {SCHEMES}.")
    sample = _sample(image, channel_axis)
    chans = sample if channel_axis else sample[None]
    offsets, scales = [], []
    nonzero = bool(spec.get("nonzero", False)) and scheme in NONZERO_SCHEMES
    for c in chans:
        finite = c[np.isfinite(c)]
        if finite.size == 0:
            raise InputError("The image has no finite values (all NaN or infinite); check the file.")
        if nonzero and np.count_nonzero(finite):  # an all-zero image falls back to every voxel
            finite = finite[finite != 0]
        if scheme == "percentile":
            lo, hi = np.percentile(finite, [float(spec.get("lower", 1.0)), float(spec.get("upper", 99.0))])
            offsets.append(lo)
            scales.append(hi - lo)
        elif scheme == "scale":
            offsets.append(0.0)
            scales.append(abs(np.percentile(finite, float(spec.get("upper", 99.0)))))
        elif scheme == "zscore":
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
    return {"scheme": scheme, "offset": np.asarray(offsets, np.float32), "scale": np.asarray(scales, np.float32),
            "clip": scheme == "ct", "limit": OUTLIER_LIMIT if scheme in ("percentile", "scale", "zscore") else None,
            "fill": float(np.nanmin(sample[np.isfinite(sample)])),
            "constant": bool(np.ptp(sample[np.isfinite(sample)]) == 0)}


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
