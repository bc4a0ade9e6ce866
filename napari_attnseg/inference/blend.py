"""Blending tiles into the outputs, slab by slab along the first axis.

Each tile's probabilities are added, weighted by a Gaussian importance map, into a slab one tile
deep; slices that no remaining tile can touch are finished (divided by the sum of the weights,
turned into labels and probabilities) and shifted out. Attention maps are blended the same way on
their own coarser grids. On a GPU the slab, the weights and the map sums are device tensors and
only finished slices come back; on the CPU it is NumPy on the same memory.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .prediction import AttentionMap
from .resample import argmax_classes
from .tiling import TileGrid, block_mean

# voxels normalised at a time when slices are finished: keeps temporaries small on big volumes
# (4 slices of a 512x512 CT) without a Python loop per row of a 2D image; more on a GPU
FINALIZE_VOXELS = {"cpu": 2**20, "device": 2**24}


def scale_whole(data, how: str):
    """``data`` (a fresh float32 NumPy array or tensor: scaled in place) to [0, 1] over all its values, as
    ``models.base.scale_relative`` scales each sample of a call: ``"minmax"`` (the weakest value -> 0, the
    strongest -> 1) or ``"max"`` (divided by the strongest). A constant map becomes 0."""
    if how not in ("minmax", "max"):
        raise ValueError(f"unknown attention scaling {how!r}")
    if math.prod(data.shape) == 0:
        return data
    hi = float(data.max())
    if how == "max":
        data /= max(hi, 1e-30)
        return data
    lo = float(data.min())
    data -= lo
    data /= max(hi - lo, 1e-12)
    return data


class SlabBlender:
    """Accumulates batches of tiles (in ``starts`` order) and writes finished slices to the outputs.

    Outputs: ``labels`` and ``probs`` (either may be None), or ``full_probs`` (float32, every class,
    for a prediction that is zoomed back to the image grid afterwards).
    """

    def __init__(self, grid: TileGrid, starts: list[tuple[int, ...]], tile_shape: tuple[int, ...],
                 work_spatial: tuple[int, ...], k_out: int, batch: int, dev: torch.device, on_dev: bool,
                 strides: dict[str, tuple[int, ...]], attention: bool, labels, probs, full_probs,
                 label_dtype, prob_dtype, centres: dict[str, tuple[float, ...]] | None = None):
        self.grid, self.starts, self.tile_shape, self.work_spatial = grid, starts, tile_shape, work_spatial
        self.k_out, self.dev, self.on_dev, self.strides = k_out, dev, on_dev, strides
        self.centres = dict(centres or {})  # name -> the input pixel map pixel 0 is centred on (default: mid-block)
        self.labels, self.probs, self.full_probs = labels, probs, full_probs
        self.label_dtype, self.prob_dtype = label_dtype, prob_dtype
        self.imp = self._dev_array(grid.importance)
        self.map_acc: dict[str, Any] = {}
        self.map_tile_w: dict[str, Any] = {}
        self.relative: dict[str, str] = {}  # maps blended raw, scaled once per image (see attention_maps)
        if attention:
            for name, s in strides.items():
                self.map_acc[name] = self._zeros(tuple(e // st for e, st in zip(grid.extent, s)))
                self.map_tile_w[name] = self._dev_array(block_mean(grid.importance, s))
        self.depth0 = tile_shape[0]
        # the slab being blended holds, for classes k >= 1, the sum over tiles of weight * p_k; the
        # sum of the weights is recomputed per finished chunk (no weight volume is kept), and
        # p_0 = 1 - sum(p_k) since each tile's probabilities sum to 1
        self.rows: dict[int, list[tuple[int, ...]]] = {}
        for s0 in starts:
            self.rows.setdefault(s0[0], []).append(s0)
        # allocated once, deep enough for the tiles of any one batch; finished slices are shifted out
        batches = [starts[b : b + batch] for b in range(0, len(starts), batch)]
        depth = max(max(s0[0] for s0 in bt) - bt[0][0] for bt in batches) + self.depth0
        self.buf_lo = 0
        self.buf = self._zeros((k_out - 1, depth, *grid.extent[1:]))
        self.chunk_slices = max(1, FINALIZE_VOXELS["device" if on_dev else "cpu"] // math.prod(grid.extent[1:]))

    def _dev_array(self, a: np.ndarray):
        return torch.from_numpy(a).to(self.dev) if self.on_dev else a

    def _zeros(self, shape):
        return torch.zeros(shape, dtype=torch.float32, device=self.dev) if self.on_dev else np.zeros(shape, np.float32)

    def add(self, batch_starts, p_batch, m_batch) -> None:
        """Add a batch of tile probabilities (B, K, *tile) and attention maps (B, *map)."""
        buf_lo, depth0 = self.buf_lo, self.depth0
        weighted = p_batch[:, 1:] * self.imp  # weighted for the whole batch at once: fewer kernels on a GPU
        self.relative.update(getattr(m_batch, "relative", {}))  # forward.MapBatch: these maps came raw
        maps = {name: m * self.map_tile_w[name] for name, m in m_batch.items()}
        for i, s0 in enumerate(batch_starts):
            sl = (slice(s0[0] - buf_lo, s0[0] - buf_lo + depth0),
                  *(slice(p, p + t) for p, t in zip(s0[1:], self.tile_shape[1:])))
            self.buf[(slice(None), *sl)] += weighted[i]
            for name, m in maps.items():
                st = self.strides[name]
                msl = tuple(slice(p // s_, p // s_ + d) for p, s_, d in zip(s0, st, m.shape[1:]))
                self.map_acc[name][msl] += m[i]

    def finalize(self, upto: int) -> None:
        """Write out every slice below ``upto`` (all their tiles are in), a few slices at a time."""
        work_spatial, depth0, k_out, buf, buf_lo = self.work_spatial, self.depth0, self.k_out, self.buf, self.buf_lo
        labels, probs, full_probs = self.labels, self.probs, self.full_probs
        upto = min(upto, work_spatial[0])
        if upto <= buf_lo:
            return
        inner = tuple(slice(0, s) for s in work_spatial[1:])
        for a in range(buf_lo, upto, self.chunk_slices):
            b = min(a + self.chunk_slices, upto)
            chunk = buf[(slice(None), slice(a - buf_lo, b - buf_lo), *inner)]
            wsum = self._zeros(tuple(chunk.shape[1:]))
            for z0, row in self.rows.items():
                za, zb = max(a, z0), min(b, z0 + depth0)
                if za >= zb:
                    continue
                for s0 in row:
                    dst = (slice(za - a, zb - a), *(slice(q, min(q + t, n)) for q, t, n in
                                                      zip(s0[1:], self.tile_shape[1:], work_spatial[1:])))
                    src = (slice(za - z0, zb - z0), *(slice(0, d.stop - d.start) for d in dst[1:]))
                    wsum[dst] += self.imp[src]
            if self.on_dev:
                pt = torch.empty((k_out, *chunk.shape[1:]), dtype=torch.float32, device=self.dev)
                torch.div(chunk, wsum, out=pt[1:])
                pt[0] = (1.0 - pt[1:].sum(0)).clamp_(min=0.0)
                if full_probs is not None:
                    full_probs[:, a:b] = pt.cpu().numpy()
                else:
                    labels[a:b] = pt.argmax(0).to(torch.uint8 if self.label_dtype == np.uint8 else torch.int32).cpu().numpy()
                    if probs is not None:
                        probs[:, a:b] = pt.to(torch.float16 if self.prob_dtype == np.float16 else torch.float32).cpu().numpy()
                continue
            p = np.empty((k_out, *chunk.shape[1:]), np.float32)
            np.divide(chunk, wsum, out=p[1:])
            np.subtract(1.0, p[1:].sum(0), out=p[0])
            np.maximum(p[0], 0.0, out=p[0])
            if full_probs is not None:
                full_probs[:, a:b] = p
            else:
                labels[a:b] = argmax_classes(p)
                if probs is not None:
                    probs[:, a:b] = p
        n = upto - buf_lo
        keep = buf.shape[1] - n
        for a in range(0, keep, n):  # shift in place, in non-overlapping pieces
            b = min(a + n, keep)
            buf[:, a:b] = buf[:, a + n : b + n]
        buf[:, max(keep, 0):] = 0.0
        self.buf_lo = upto

    def finish(self) -> None:
        """Finish the remaining slices and free the slab."""
        self.finalize(self.grid.extent[0])
        self.buf = None

    def attention_maps(self, factors) -> list[AttentionMap]:
        """The blended attention maps (float16 in [0, 1]) with their scale and translation in image
        pixels (``factors``: the resampling to the model's spacing, or None). On a device they are
        finished there and come back in float16. A relative map (blended from the model's raw values) is
        scaled here, once over the whole image (every slice of a volume): 1 is its strongest value in the
        image, not in each tile, so the tile grid does not show."""
        maps = []
        for level, (name, acc) in enumerate(self.map_acc.items()):
            st = self.strides[name]
            crop = tuple(slice(0, -(-s // s_)) for s, s_ in zip(self.work_spatial, st))
            tw = self.map_tile_w[name]
            wsum = self._zeros(tuple(acc.shape))  # made now that the slab buffer is gone
            for s0 in self.starts:
                wsum[tuple(slice(p // s_, p // s_ + d) for p, s_, d in zip(s0, st, tw.shape))] += tw
            data = acc[crop] / wsum[crop]
            del wsum
            if name in self.relative:
                data = scale_whole(data, self.relative[name])
            if self.on_dev:  # clamping before the cast gives what casting first gives
                data = data.clamp_(0.0, 1.0).to(torch.float16).cpu().numpy()
            else:
                data = data.astype(np.float16)
                np.clip(data, 0, 1, out=data)
            f = factors or (1.0,) * len(st)
            scale = tuple(float(s_ * fa) for s_, fa in zip(st, f))
            centre = self.centres.get(name) or tuple((s_ - 1.0) / 2.0 for s_ in st)
            translate = tuple((c + 0.5) * fa - 0.5 for c, fa in zip(centre, f))  # ((stride * f - 1) / 2 mid-block)
            maps.append(AttentionMap(name, level, data, scale, translate))
        self.map_acc.clear()
        return maps
