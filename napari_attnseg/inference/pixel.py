"""'Where does this pixel look?': the position-attention row of one pixel (msga)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..errors import InputError
from .forward import map_centre
from .normalize import apply_stats, compute_stats
from .prediction import AttentionMap


def pixel_attention_map(model, image: np.ndarray, point: Sequence[float], tile: int = 256, device: str = "cpu") -> AttentionMap:
    """Attention of the pixel at ``point`` (y, x) of a 2D ``image`` over a ``tile``-sized window around it."""
    if not hasattr(model, "pixel_attention"):
        raise InputError(f"The {getattr(model, 'arch', '?')} model has no position attention; use an msga model.")
    image = np.asarray(image)
    if image.ndim != 2:
        raise InputError("'Where does this pixel look?' works on 2D images (or the current slice).")
    h, w = image.shape
    y, x = int(round(point[0])), int(round(point[1]))
    if not (0 <= y < h and 0 <= x < w):
        raise InputError(f"The point ({y}, {x}) is outside the image ({h} x {w}).")
    y0 = min(max(y - tile // 2, 0), max(h - tile, 0)) // 4 * 4
    x0 = min(max(x - tile // 2, 0), max(w - tile, 0)) // 4 * 4
    crop = image[y0 : y0 + tile, x0 : x0 + tile]
    stats = compute_stats(image, getattr(getattr(model, "card", None), "normalization", None), False)
    t = torch.from_numpy(apply_stats(crop[None], stats)[None]).to(device)
    model.eval().to(device)
    row = model.pixel_attention(t, (y - y0, x - x0))[0, 0].float().cpu().numpy()
    cy, cx = map_centre(model, next(iter(model.attention_strides)))  # the maps' 1/4 grid (msga: on pixels 0, 4, ...)
    return AttentionMap("pixel attention", 0, row, (4.0, 4.0), (y0 + cy, x0 + cx))
