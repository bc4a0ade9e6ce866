"""One batch of tiles through the network: reading and normalising the tiles, the forward pass under
the chosen precision, softmax (or sigmoid), and averaging over flips (test-time augmentation)."""

from __future__ import annotations

import itertools
import time
from typing import Any

import numpy as np
import torch

from ..errors import Cancelled
from ..models.base import RAW_ATTENTION
from .normalize import apply_stats
from .precision import autocast_context


def read_tile(image, start, tile, chan_axis: bool, stats) -> np.ndarray:
    """Read one tile (C, *tile) from the image, normalised, edge-padded where it passes the end (the
    per-tile NumPy reading the engine did before ``slabs.SlabSource``; the tests compare the two)."""
    spatial = image.shape[1:] if chan_axis else image.shape
    region = tuple(slice(p, min(p + t, s)) for p, t, s in zip(start, tile, spatial))
    data = np.asarray(image[(slice(None), *region)] if chan_axis else image[region])
    if not chan_axis:
        data = data[None]
    data = apply_stats(data, stats) if stats is not None else np.asarray(data, np.float32)
    pads = [(0, 0)] + [(0, t - (r.stop - r.start)) for t, r in zip(tile, region)]
    if any(p[1] for p in pads):
        data = np.pad(data, pads, mode="edge")
    return data


def flip_sets(nd: int, tta: bool) -> list[tuple[int, ...]]:
    """The identity, and with ``tta`` every non-empty set of spatial axes (of a (B, C, ...) tensor)."""
    return [()] + ([tuple(c) for r in range(1, nd + 1) for c in itertools.combinations(range(2, 2 + nd), r)]
                   if tta else [])


def map_centre(model, name: str) -> tuple[float, ...]:
    """The input pixel that pixel 0 of attention map ``name`` is centred on (``SegmentationModel.attention_centre``;
    mid-block, ``(stride - 1) / 2``, for a model without it)."""
    centre = getattr(model, "attention_centre", None)
    return centre(name) if centre is not None else tuple((s - 1) / 2 for s in model.attention_strides[name])


def flip_shifts(net) -> dict[str, tuple[float, ...]]:
    """Per attention map whose pixels are not centred on blocks of the input, and per spatial axis: how far (in
    map pixels) the map of a tile flipped along that axis lies, once flipped back, past the tile's own map grid:
    ``(stride - 1 - 2 * centre) / stride`` (a flip maps a grid of blocks onto itself: tiles are whole multiples
    of the strides; msga's 1/4 grid, centred on input pixels 0, 4, 8, ..., comes back on 3, 7, 11, ...)."""
    out = {}
    for name, strides in (getattr(net, "attention_strides", None) or {}).items():
        shift = tuple((s - 1 - 2 * c) / s for s, c in zip(strides, map_centre(net, name)))
        if any(shift):
            out[name] = shift
    return out


def unflip_map(m: torch.Tensor, dims: tuple[int, ...], shift: tuple[float, ...] | None) -> torch.Tensor:
    """``m`` (B, heads, *map), the map of a tile flipped along ``dims``, flipped back and, where its grid is not
    one of blocks (``shift``, :func:`flip_shifts`), resampled linearly onto the unflipped tile's grid (the edge
    pixel repeated), so that flip averaging does not blur two grids ``shift`` pixels apart."""
    m = torch.flip(m, dims)
    for d in dims if shift else ():
        a = shift[d - 2]
        if not a:
            continue
        n = m.shape[d]
        pos = torch.arange(n, device=m.device, dtype=torch.float32) - a  # pixel j holds what lies at j + a
        lo = pos.floor()
        w = (pos - lo).view([-1 if k == d else 1 for k in range(m.dim())]).to(m.dtype)
        lo_i = lo.long().clamp(0, n - 1)
        hi_i = (lo.long() + 1).clamp(0, n - 1)
        m = m.index_select(d, lo_i) * (1 - w) + m.index_select(d, hi_i) * w
    return m


class MapBatch(dict):
    """The attention maps of a batch of tiles, name -> (B, *map). ``relative``: the maps that came back raw
    (the model's ``relative_attention``, name -> scaling), to be scaled once the whole image is blended
    (``SlabBlender.attention_maps``); the others are final values in [0, 1]. The note travels with the maps
    it describes: a plain dict means every map is final."""

    def __init__(self, maps=(), relative: dict[str, str] | None = None):
        super().__init__(maps)
        self.relative = dict(relative or {})


def run_batch(net, x: torch.Tensor | np.ndarray, mode: str, dev, prec: str, attention: bool, tta: bool,
              n_classes: int, cancel, to_numpy: bool = True):
    """Run the model on a batch of tiles (B, C, *tile), a tensor (the engine's: already on ``dev``) or a
    NumPy array; returns probabilities (B, K, *tile) and maps (B, *map), as NumPy arrays, or as
    float32 tensors on ``dev`` with ``to_numpy=False``. The maps are a :class:`MapBatch`: a model's relative
    maps are asked for raw (``return_attention="raw"``), so that tiles are not scaled each on its own."""
    xt = (x if isinstance(x, torch.Tensor) else torch.from_numpy(x)).to(dev, non_blocking=True)
    squeeze = mode == "slices"
    if squeeze:
        xt = xt[:, :, 0]
    nd = xt.dim() - 2
    flips = flip_sets(nd, tta)
    prob_sum = None
    map_sum: dict[str, torch.Tensor] = {}
    relative = dict(getattr(net, "relative_attention", None) or {}) if attention else {}
    ask = RAW_ATTENTION if relative else True  # (a model without relative maps is called as it always was)
    shifts = flip_shifts(net) if attention and tta else {}
    with torch.inference_mode(), autocast_context(dev, prec):
        for f in flips:
            if cancel is not None and cancel.cancelled:
                raise Cancelled("Prediction cancelled; no output was written.")
            inp = torch.flip(xt, f) if f else xt
            inp = inp.contiguous(memory_format=torch.channels_last if nd == 2 else torch.channels_last_3d)
            if attention:
                logits, maps = net(inp, return_attention=ask)
            else:
                logits, maps = net(inp), {}
            logits = logits.float()
            p = torch.softmax(logits, 1) if n_classes > 1 else torch.cat([1 - torch.sigmoid(logits), torch.sigmoid(logits)], 1)
            if f:
                p = torch.flip(p, f)
            prob_sum = p if prob_sum is None else prob_sum + p
            for name, m in maps.items():
                m = m.float()
                if f:
                    m = unflip_map(m, f, shifts.get(name))
                m = m.mean(1)  # several gates (heads) per level are shown as their mean
                map_sum[name] = map_sum.get(name, 0) + m
    n = len(flips)
    relative = {k: how for k, how in relative.items() if k in map_sum}
    if not to_numpy:
        probs, maps_t = prob_sum / n, {k: v / n for k, v in map_sum.items()}
        if squeeze:
            probs = probs[:, :, None]
            maps_t = {k: v[:, None] for k, v in maps_t.items()}
        return probs.contiguous(), MapBatch(maps_t, relative)
    probs = (prob_sum / n).cpu().numpy()
    maps_np = {k: (v / n).cpu().numpy() for k, v in map_sum.items()}
    if squeeze:
        probs = probs[:, :, None]
        maps_np = {k: v[:, None] for k, v in maps_np.items()}
    return probs, MapBatch(maps_np, relative)


class ForwardTimer:
    """Seconds the forward passes took. On CUDA the passes run asynchronously, so they are timed
    with CUDA events on the current stream (read once, at the end); elsewhere with the wall clock."""

    def __init__(self, dev: torch.device):
        self.cuda = dev.type == "cuda"
        self.dev = dev
        self.seconds = 0.0
        self.events: list[tuple[Any, Any]] = []

    def __enter__(self) -> ForwardTimer:
        if self.cuda:
            self.events.append((torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)))
            self.events[-1][0].record(torch.cuda.current_stream(self.dev))
        else:
            self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            self.events[-1][1].record(torch.cuda.current_stream(self.dev))
        else:
            self.seconds += time.perf_counter() - self._t0

    def total(self) -> float:
        if self.cuda and self.events:
            self.events[-1][1].synchronize()
            self.seconds += sum(a.elapsed_time(b) for a, b in self.events) / 1000.0
            self.events.clear()
        return self.seconds
