"""The image on the model's device, one slab at a time, and tiles cut from it there.

A slab is the part of the image under one row of tiles (the tiles that share a start along the
first axis): one tile deep, the whole extent of the other axes. It is read from the host once,
uploaded in the image's own dtype (int16 for a CT: half the bytes of float32), normalised and
edge-padded on the device; a batch of tiles is then a ``torch.stack`` of slices of the slabs, with no
per-tile host work. The same code runs on the CPU (the "upload" is then a view).

On CUDA the host copy is page-locked and the upload and normalisation run on a side stream, so
the engine can ask for the next row's slab (:meth:`SlabSource.prefetch`) while the current batch
runs on the default stream; the default stream waits for that upload only when it cuts tiles from it.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .normalize import apply_stats_tensor

# dtypes that torch copies and converts on every device; others (uint16, uint32, ...) and
# byte-swapped arrays are converted to float32 on the host first, as the NumPy path always did
_TORCH_DTYPES = {np.dtype(t) for t in (np.bool_, np.uint8, np.int8, np.int16, np.int32, np.int64,
                                       np.float16, np.float32, np.float64)}


def host_region(image: Any, region: tuple[slice, ...], chan_axis: bool) -> np.ndarray:
    """One region of the image as a (C, *region) NumPy array in a dtype torch handles (no copy when
    the image is a NumPy array of such a dtype)."""
    data = np.asarray(image[(slice(None), *region)] if chan_axis else image[region])
    if not chan_axis:
        data = data[None]
    if data.dtype not in _TORCH_DTYPES or not data.dtype.isnative:
        data = data.astype(np.float32)
    return data


def fill_edges(slab: torch.Tensor, filled: Sequence[int]) -> torch.Tensor:
    """Edge padding in place: along each axis, the elements past ``filled`` become copies of the
    last filled one (NumPy's ``np.pad(..., mode="edge")`` of ``slab[:filled]``)."""
    for axis, n in enumerate(filled):
        if n < slab.shape[axis]:
            lead = (slice(None),) * axis  # axes already padded
            rest = tuple(slice(0, m) for m in filled[axis + 1 :])
            slab[(*lead, slice(n, None), *rest)] = slab[(*lead, slice(n - 1, n), *rest)]
    return slab


def normalised_slab(x: torch.Tensor, stats: dict[str, Any] | None, shape: Sequence[int]) -> torch.Tensor:
    """``x`` (C, *region) normalised into a new float32 slab of ``shape``, edge-padded past the region."""
    slab = torch.empty(tuple(shape), dtype=torch.float32, device=x.device)
    apply_stats_tensor(x, stats, out=slab[tuple(slice(0, n) for n in x.shape)])
    return fill_edges(slab, x.shape)


class SlabSource:
    """Normalised slabs of ``image`` on ``dev`` and batches of tiles cut from them.

    ``tile`` and ``extent`` (the padded extent of the tile grid) are in image axes; ``stats`` are the
    normalisation statistics (None: the image is already normalised). Tiles must be asked for in
    grid order (first axis slowest): slabs above the current batch are dropped.
    """

    def __init__(self, image: Any, stats: dict[str, Any] | None, chan_axis: bool, tile: Sequence[int],
                 extent: Sequence[int], dev: torch.device):
        self.image, self.stats, self.chan_axis, self.dev = image, stats, chan_axis, dev
        self.tile, self.extent = tuple(tile), tuple(extent)
        self.spatial = tuple(image.shape[1:] if chan_axis else image.shape)
        self.slabs: dict[int, torch.Tensor] = {}  # first-axis start of a tile row -> (C, depth, *extent[1:])
        self.ready: dict[int, Any] = {}  # CUDA: the side-stream event that marks a slab uploaded
        self.stream = torch.cuda.Stream(device=dev) if dev.type == "cuda" else None
        self.uploads = 0  # slabs read from the host
        self.read_s = 0.0  # host time spent reading slabs and starting their upload

    def _load(self, z0: int) -> None:
        t0 = time.perf_counter()
        region = (slice(z0, min(z0 + self.tile[0], self.spatial[0])), *(slice(0, s) for s in self.spatial[1:]))
        data = host_region(self.image, region, self.chan_axis)
        with warnings.catch_warnings():  # read-only inputs (memmaps): only read here, never written
            warnings.simplefilter("ignore", UserWarning)
            host = torch.from_numpy(data)
        if self.dev.type == "mps" and host.dtype == torch.float64:  # MPS has no float64
            host = host.to(torch.float32)
        shape = (host.shape[0], self.tile[0], *self.extent[1:])
        if self.stream is not None:  # CUDA: page-locked copy, uploaded and normalised on the side stream
            pinned = torch.empty(host.shape, dtype=host.dtype, pin_memory=True)  # contiguous: one copy
            host = pinned.copy_(host)
            with torch.cuda.stream(self.stream):
                slab = normalised_slab(host.to(self.dev, non_blocking=True), self.stats, shape)
                event = torch.cuda.Event()
                event.record(self.stream)
            self.ready[z0] = event
        else:
            slab = normalised_slab(host.to(self.dev), self.stats, shape)
        self.slabs[z0] = slab
        self.uploads += 1
        self.read_s += time.perf_counter() - t0

    def prefetch(self, batch_starts: Sequence[tuple[int, ...]]) -> None:
        """On CUDA, start uploading the slabs of a coming batch (it overlaps the batch running now);
        elsewhere nothing (a slab read ahead would only cost memory)."""
        if self.stream is None:
            return
        for z0 in sorted({s[0] for s in batch_starts}):
            if z0 not in self.slabs:
                self._load(z0)

    def tiles(self, batch_starts: Sequence[tuple[int, ...]]) -> torch.Tensor:
        """The normalised tiles (B, C, *tile) at ``batch_starts``, float32 on the device."""
        rows = sorted({s[0] for s in batch_starts})
        for z0 in [z for z in self.slabs if z < rows[0]]:
            del self.slabs[z0]
        for z0 in rows:
            if z0 not in self.slabs:
                self._load(z0)
            event = self.ready.pop(z0, None)
            if event is not None:  # CUDA: the default stream waits for this upload, and the allocator
                current = torch.cuda.current_stream(self.dev)  # keeps the slab until that stream is done
                current.wait_event(event)
                self.slabs[z0].record_stream(current)
        inner = self.tile[1:]
        return torch.stack([self.slabs[s[0]][(slice(None), slice(None), *(slice(p, p + t) for p, t in zip(s[1:], inner)))]
                            for s in batch_starts])

    def close(self) -> None:
        self.slabs.clear()
        self.ready.clear()
