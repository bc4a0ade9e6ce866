"""normalise -> tile -> run -> blend -> Prediction, streamed slab by slab along the first axis.

Outputs are finalised as soon as no remaining tile can touch them, so besides the outputs
themselves only a slab one tile deep is held in float32; with ``out=`` the outputs are memory-mapped
files, which makes volumes larger than memory possible.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..devices import resolve_device
from ..errors import Cancelled, InputError
from .normalize import apply_stats, compute_stats
from .precision import autocast_context, choose_precision, inference_copy
from .prediction import AttentionMap, CancelToken, Prediction
from .resample import needs_resampling, zoom_image, zoom_probabilities
from .tiling import TileGrid, block_mean, round_up

log = logging.getLogger(__name__)

MODES = ("2d", "3d", "slices")
_BLEND_ON_DEVICE: bool | None = None  # None: on the device unless it is the CPU (tests force the torch path)
# voxels normalised at a time when slices are finished: keeps temporaries small on big volumes
# (4 slices of a 512x512 CT) without a Python loop per row of a 2D image; more on a GPU
FINALIZE_VOXELS = {"cpu": 2**20, "device": 2**24}
DEFAULT_TILE = {2: 256, 3: 96}


# ----------------------------------------------------------------------------------------------
# input checking
# ----------------------------------------------------------------------------------------------
def _describe(image) -> str:
    return f"array of shape {tuple(image.shape)} and dtype {image.dtype}"


def check_input(model, image, mode: str | None) -> tuple[str, bool]:
    """Validate the image for the model; return the mode and whether it has a channel axis."""
    if not hasattr(image, "shape") or not hasattr(image, "dtype"):
        image = np.asarray(image)
    dtype = np.dtype(image.dtype)
    if not (np.issubdtype(dtype, np.number) or dtype == np.bool_) or np.issubdtype(dtype, np.complexfloating):
        raise InputError(f"The image must be numeric; got an {_describe(image)}. Convert it to a numeric type.")
    if image.size == 0 or 0 in image.shape:
        raise InputError(f"The image is empty ({_describe(image)}).")
    dims = model.spatial_dims
    cin = model.in_channels
    has_channels = cin > 1
    spatial_ndim = image.ndim - (1 if has_channels else 0)
    if has_channels and image.shape[0] != cin:
        raise InputError(
            f"The model takes {cin} channels as the first axis; got an {_describe(image)}. "
            "Stack the channels first, e.g. (C, y, x) or (C, z, y, x)."
        )
    if spatial_ndim not in (2, 3):
        hint = " Is it an RGB image? Convert it to grayscale first." if image.shape[-1] in (3, 4) else ""
        raise InputError(
            f"The model expects a 2D image or a 3D volume{' with a channel axis first' if has_channels else ''}; "
            f"got an {_describe(image)}.{hint}"
        )
    if dims == 3 and spatial_ndim == 2:
        raise InputError(
            f"This is a 3D model: it needs a volume (z, y, x); got a 2D image ({_describe(image)}). "
            "Choose a 2D model for 2D images."
        )
    if mode is None:
        mode = "3d" if (dims == 3 and spatial_ndim == 3) else ("slices" if spatial_ndim == 3 else "2d")
    mode = mode.lower()
    if mode not in MODES:
        raise InputError(f"mode must be one of {', '.join(MODES)}; got {mode!r}.")
    if mode == "3d" and (dims != 3 or spatial_ndim != 3):
        raise InputError(f"mode '3d' needs a 3D model and a volume; the model is {dims}D and the image has {spatial_ndim} spatial axes.")
    if mode == "2d" and (dims != 2 or spatial_ndim != 2):
        raise InputError(
            f"mode '2d' needs a 2D model and a 2D image; the model is {dims}D and the image has {spatial_ndim} spatial axes"
            + (" (use mode 'slices' to run a 2D model slice by slice)." if spatial_ndim == 3 and dims == 2 else ".")
        )
    if mode == "slices" and (dims != 2 or spatial_ndim != 3):
        raise InputError(f"mode 'slices' runs a 2D model over a volume; the model is {dims}D and the image has {spatial_ndim} spatial axes.")
    return mode, has_channels


# ----------------------------------------------------------------------------------------------
# output stores
# ----------------------------------------------------------------------------------------------
class _Outputs:
    """Output arrays in memory, or memory-mapped .npy files in a folder that appears only when done."""

    def __init__(self, out: str | os.PathLike | None):
        self.final = Path(out) if out is not None else None
        self.tmp = None
        if self.final is not None:
            if self.final.exists() and any(self.final.iterdir()):
                raise InputError(f"Output folder {self.final} exists and is not empty; choose a new folder.")
            self.final.parent.mkdir(parents=True, exist_ok=True)
            self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.", dir=self.final.parent))

    def array(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        if self.tmp is None:
            return np.zeros(shape, dtype)
        return np.lib.format.open_memmap(self.tmp / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)

    def commit(self) -> None:
        if self.tmp is not None:
            if self.final.exists():
                self.final.rmdir()
            os.replace(self.tmp, self.final)

    def discard(self) -> None:
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# the engine
# ----------------------------------------------------------------------------------------------
def _model_tile(model, mode: str, spatial: tuple[int, ...], tile, card) -> tuple[int, ...]:
    nd = len(spatial)
    model_nd = model.spatial_dims
    if tile is None:
        tile = getattr(card, "tile", None) or [DEFAULT_TILE[model_nd]] * model_nd
    tile = [int(tile)] * model_nd if np.isscalar(tile) else [int(t) for t in tile]
    if len(tile) != model_nd:
        raise InputError(f"tile must have {model_nd} sizes for a {model_nd}D model; got {tile}.")
    if any(t < 1 for t in tile):
        raise InputError(f"tile sizes must be positive; got {tile}.")
    div = max(model.size_divisor, max((max(s) for s in model.attention_strides.values()), default=1))
    plane = spatial[-model_nd:]
    tile = [round_up(min(t, s), div) if s < t else round_up(t, div) for t, s in zip(tile, plane)]
    return tuple([1] * (nd - model_nd) + tile)


def _batch_size(tile: Sequence[int], device: torch.device, batch_size: int | None) -> int:
    if batch_size:
        return int(batch_size)
    # voxels per forward pass. On CPUs small batches are faster and lighter: measured on 2 cores,
    # 1024x1024 with 256^2 tiles 0.54 s at 16 tiles per batch vs 0.38-0.40 s at 2; a 256x512x512 CT
    # peak RSS 795 MB at 8 tiles of 32x64x64, 716 MB at 2.
    budget = {"cuda": 2**23, "mps": 2**21}.get(device.type, 2**17)
    return max(1, min(32, budget // math.prod(tile)))


def iter_predict(model, image, **kwargs) -> Generator[tuple[int, int], None, Prediction]:
    """Like :func:`predict`, as a generator that yields ``(done, total)`` tiles and returns the Prediction.

    A CUDA out-of-memory error restarts the prediction with half the tiles per batch, then with
    smaller tiles, and says so in ``Prediction.warnings`` instead of failing.
    """
    # -- object diameter (issue 19): rescale to the card's object size and back; see diameter.py --
    if kwargs.get("diameter") is not None:
        from .diameter import iter_predict_diameter
        return (yield from iter_predict_diameter(iter_predict, model, image, **kwargs))
    kwargs.pop("diameter", None)
    # -- end object diameter --
    notes: list[str] = []
    while True:
        try:
            pred = yield from _iter_predict(model, image, **kwargs)
            pred.warnings[:0] = notes
            return pred
        except torch.cuda.OutOfMemoryError:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            batch = kwargs.get("batch_size") or 0
            tile = kwargs.get("tile")
            if batch != 1:
                kwargs["batch_size"] = max(1, batch // 2) if batch else 4
                notes.append(f"Out of GPU memory: retried with {kwargs['batch_size']} tiles per batch.")
            else:
                current = tile if tile is not None else (getattr(getattr(model, "card", None), "tile", None)
                                                          or [DEFAULT_TILE[model.spatial_dims]] * model.spatial_dims)
                current = [int(current)] * model.spatial_dims if np.isscalar(current) else list(current)
                smaller = [max(model.size_divisor, t // 2) for t in current]
                if smaller == current:
                    raise InputError("Out of GPU memory even with the smallest tiles; use device 'cpu'.") from None
                kwargs["tile"] = smaller
                notes.append(f"Out of GPU memory: retried with tiles of {smaller}.")
            log.warning(notes[-1])


def _iter_predict(
    model,
    image,
    *,
    mode: str | None = None,
    tile: int | Sequence[int] | None = None,
    overlap: float | None = None,
    attention: bool = False,
    device: str | torch.device = "auto",
    precision: str = "auto",
    progress: Callable[[int, int], Any] | None = None,
    cancel: CancelToken | None = None,
    tta: bool = False,
    spacing: Sequence[float] | None = None,
    out: str | os.PathLike | None = None,
    batch_size: int | None = None,
    return_probabilities: bool = True,
    probability_dtype: str = "float16",
    normalization: dict[str, Any] | None = None,
) -> Generator[tuple[int, int], None, Prediction]:
    t_start = time.perf_counter()
    mode, has_channels = check_input(model, image, mode)
    try:
        prob_dtype = np.dtype(probability_dtype)
    except TypeError:
        prob_dtype = None
    if prob_dtype not in (np.float16, np.float32):
        raise InputError(f"probability_dtype must be float16 or float32; got {probability_dtype!r}.")
    card = getattr(model, "card", None)
    warnings: list[str] = []
    dev = resolve_device(device)
    prec = choose_precision(dev, precision)
    overlap = float(getattr(card, "overlap", 0.25) if overlap is None else overlap)
    if not 0.0 <= overlap < 1.0:
        raise InputError(f"overlap must be in [0, 1); got {overlap}.")

    spatial = tuple(image.shape[1:] if has_channels else image.shape)
    stats = compute_stats(image, normalization or getattr(card, "normalization", None), has_channels)
    if stats["constant"]:
        warnings.append("The image is constant: the model has nothing to segment; check the layer or the file.")
    n_bad = _count_nonfinite(image)
    if n_bad:
        warnings.append(f"The image has {n_bad} NaN or infinite values; they were treated as the image minimum.")

    # spacing: resample to the model's training spacing when the card has one and the image differs
    factors = None
    model_spacing = getattr(card, "spacing", None)
    work = image
    if spacing is not None and model_spacing is not None:
        factors = needs_resampling(spacing, model_spacing, mode)
        if factors is not None:
            work = zoom_image(image, stats, factors, has_channels)
            stats = None  # already normalised
    work_spatial = tuple(work.shape[1:] if (has_channels or factors is not None) else work.shape)
    chan_axis = has_channels or factors is not None

    tile_shape = _model_tile(model, mode, work_spatial, tile, card)
    strides = {name: (1,) * (len(work_spatial) - model.spatial_dims) + tuple(s) for name, s in model.attention_strides.items()}
    align = [max([1] + [s[a] for s in strides.values()]) if tile_shape[a] > 1 else 1 for a in range(len(work_spatial))]
    ov = [0.0 if t == 1 else overlap for t in tile_shape]
    grid = TileGrid(work_spatial, tile_shape, ov, align)
    copies = contextlib.ExitStack()
    net = copies.enter_context(inference_copy(model, dev, cancel))
    bs = _batch_size(tile_shape, dev, batch_size)
    n_classes = model.out_channels
    k_out = max(n_classes, 2)

    store = _Outputs(out)
    try:
        label_dtype = np.uint8 if k_out <= 255 else np.uint16
        labels = store.array("labels", work_spatial, label_dtype) if factors is None else None
        probs = None
        if return_probabilities and factors is None:
            probs = store.array("probabilities", (k_out, *work_spatial), prob_dtype)
        keep_full_probs = factors is not None  # resampled: keep float32 on the model grid, zoom back at the end
        full_probs = np.zeros((k_out, *work_spatial), np.float32) if keep_full_probs else None

        # On a GPU the blending happens there too (the slab, weights and map sums are device tensors,
        # only finished labels and maps come back); on the CPU it is NumPy on the same memory.
        on_dev = dev.type != "cpu" if _BLEND_ON_DEVICE is None else _BLEND_ON_DEVICE

        def dev_array(a: np.ndarray):
            return torch.from_numpy(a).to(dev) if on_dev else a

        def zeros(shape):
            return torch.zeros(shape, dtype=torch.float32, device=dev) if on_dev else np.zeros(shape, np.float32)

        imp = dev_array(grid.importance)
        map_acc: dict[str, Any] = {}
        map_tile_w: dict[str, Any] = {}
        if attention:
            for name, s in strides.items():
                map_acc[name] = zeros(tuple(e // st for e, st in zip(grid.extent, s)))
                map_tile_w[name] = dev_array(block_mean(grid.importance, s))

        starts = grid.starts()
        total = len(starts) * (2 ** model.spatial_dims if tta else 1)
        depth0 = tile_shape[0]
        # the slab being blended holds, for classes k >= 1, the sum over tiles of weight * p_k; the
        # sum of the weights is recomputed per finished chunk (no weight volume is kept), and
        # p_0 = 1 - sum(p_k) since each tile's probabilities sum to 1
        rows: dict[int, list[tuple[int, ...]]] = {}
        for s0 in starts:
            rows.setdefault(s0[0], []).append(s0)
        # allocated once, deep enough for the tiles of any one batch; finished slices are shifted out
        batches = [starts[b : b + bs] for b in range(0, len(starts), bs)]
        depth = max(max(s0[0] for s0 in bt) - bt[0][0] for bt in batches) + depth0
        buf_lo = 0
        buf = zeros((k_out - 1, depth, *grid.extent[1:]))
        chunk_slices = max(1, FINALIZE_VOXELS["device" if on_dev else "cpu"] // math.prod(grid.extent[1:]))
        done = 0
        t_model = 0.0
        yield 0, total

        def finalize(upto: int) -> None:
            """Write out every slice below ``upto`` (all their tiles are in), a few slices at a time."""
            nonlocal buf, buf_lo
            upto = min(upto, work_spatial[0])
            if upto <= buf_lo:
                return
            inner = tuple(slice(0, s) for s in work_spatial[1:])
            for a in range(buf_lo, upto, chunk_slices):
                b = min(a + chunk_slices, upto)
                chunk = buf[(slice(None), slice(a - buf_lo, b - buf_lo), *inner)]
                wsum = zeros(tuple(chunk.shape[1:]))
                for z0, row in rows.items():
                    za, zb = max(a, z0), min(b, z0 + depth0)
                    if za >= zb:
                        continue
                    for s0 in row:
                        dst = (slice(za - a, zb - a), *(slice(q, min(q + t, n)) for q, t, n in
                                                          zip(s0[1:], tile_shape[1:], work_spatial[1:])))
                        src = (slice(za - z0, zb - z0), *(slice(0, d.stop - d.start) for d in dst[1:]))
                        wsum[dst] += imp[src]
                if on_dev:
                    pt = torch.empty((k_out, *chunk.shape[1:]), dtype=torch.float32, device=dev)
                    torch.div(chunk, wsum, out=pt[1:])
                    pt[0] = (1.0 - pt[1:].sum(0)).clamp_(min=0.0)
                    if full_probs is not None:
                        full_probs[:, a:b] = pt.cpu().numpy()
                    else:
                        labels[a:b] = pt.argmax(0).to(torch.uint8 if label_dtype == np.uint8 else torch.int32).cpu().numpy()
                        if probs is not None:
                            probs[:, a:b] = pt.to(torch.float16 if prob_dtype == np.float16 else torch.float32).cpu().numpy()
                    continue
                p = np.empty((k_out, *chunk.shape[1:]), np.float32)
                np.divide(chunk, wsum, out=p[1:])
                np.subtract(1.0, p[1:].sum(0), out=p[0])
                np.maximum(p[0], 0.0, out=p[0])
                if full_probs is not None:
                    full_probs[:, a:b] = p
                else:
                    labels[a:b] = p.argmax(0)
                    if probs is not None:
                        probs[:, a:b] = p
            n = upto - buf_lo
            keep = buf.shape[1] - n
            for a in range(0, keep, n):  # shift in place, in non-overlapping pieces
                b = min(a + n, keep)
                buf[:, a:b] = buf[:, a + n : b + n]
            buf[:, max(keep, 0):] = 0.0
            buf_lo = upto

        for b0 in range(0, len(starts), bs):
            if cancel is not None and cancel.cancelled:
                raise Cancelled("Prediction cancelled; no output was written.")
            batch_starts = starts[b0 : b0 + bs]
            x = np.stack([_read_tile(work, s0, tile_shape, chan_axis, stats) for s0 in batch_starts])
            t0 = time.perf_counter()
            p_batch, m_batch = _run_batch(net, x, mode, dev, prec, attention, tta, n_classes, cancel,
                                          to_numpy=not on_dev)
            t_model += time.perf_counter() - t0
            for i, s0 in enumerate(batch_starts):
                sl = (slice(s0[0] - buf_lo, s0[0] - buf_lo + depth0),
                      *(slice(p, p + t) for p, t in zip(s0[1:], tile_shape[1:])))
                buf[(slice(None), *sl)] += p_batch[i, 1:] * imp
                for name, m in m_batch.items():
                    st = strides[name]
                    msl = tuple(slice(p // s_, p // s_ + d) for p, s_, d in zip(s0, st, m.shape[1:]))
                    map_acc[name][msl] += m[i] * map_tile_w[name]
            done += len(batch_starts) * (2 ** model.spatial_dims if tta else 1)
            nxt = starts[b0 + bs][0] if b0 + bs < len(starts) else grid.extent[0]
            finalize(nxt)
            if progress is not None:
                progress(done, total)
            yield done, total
        finalize(grid.extent[0])
        del buf

        attention_maps = []
        for level, (name, acc) in enumerate(map_acc.items()):
            acc = acc.cpu().numpy() if on_dev else acc
            st = strides[name]
            size = tuple(-(-s // s_) for s, s_ in zip(work_spatial, st))
            crop = tuple(slice(0, n) for n in size)
            wsum = np.zeros(acc.shape, np.float32)  # made now that the slab buffer is gone
            tw = map_tile_w[name].cpu().numpy() if on_dev else map_tile_w[name]
            for s0 in starts:
                wsum[tuple(slice(p // s_, p // s_ + d) for p, s_, d in zip(s0, st, tw.shape))] += tw
            data = (acc[crop] / wsum[crop]).astype(np.float16)
            del wsum
            np.clip(data, 0, 1, out=data)
            f = factors or (1.0,) * len(st)
            scale = tuple(float(s_ * fa) for s_, fa in zip(st, f))
            translate = tuple((sc - 1.0) / 2.0 for sc in scale)
            attention_maps.append(AttentionMap(name, level, data, scale, translate))
        map_acc.clear()

        if factors is not None:
            back = zoom_probabilities(full_probs, spatial)
            labels = store.array("labels", spatial, label_dtype)
            labels[...] = back.argmax(0)
            if return_probabilities:
                probs = store.array("probabilities", (k_out, *spatial), prob_dtype)
                probs[...] = back
        store.commit()
    except BaseException:
        store.discard()
        raise
    finally:
        copies.close()

    if store.final is not None:  # reopen from the final place
        labels = np.load(store.final / "labels.npy", mmap_mode="r+")
        probs = np.load(store.final / "probabilities.npy", mmap_mode="r+") if return_probabilities else None
    classes = list(getattr(card, "classes", None) or (["background"] + [f"class {i}" for i in range(1, k_out)]))
    for w in warnings:
        log.warning(w)
    return Prediction(
        labels=labels,
        probabilities=probs,
        attention=attention_maps,
        classes=classes,
        device=str(dev),
        precision=prec,
        timings={"total_s": time.perf_counter() - t_start, "model_s": t_model},
        params={"mode": mode, "tile": list(tile_shape), "overlap": overlap, "tta": tta, "batch_size": bs,
                "tiles": len(starts), "resampled": factors is not None, "spacing": list(spacing) if spacing else None},
        warnings=warnings,
    )


def predict(model, image, **kwargs) -> Prediction:
    """Segment ``image`` with ``model``; see the README for every option.

    Args:
        model: a model from :func:`napari_attnseg.load_model` (or ``create_model``).
        image: numpy, dask or zarr array: (y, x), (z, y, x), or channels first when the model has
            several input channels.
        mode: ``2d``, ``3d`` or ``slices`` (a 2D model over the first axis of a volume); default from
            the model and the image.
        tile, overlap: sliding window (defaults from the model card; overlap 0.25).
        attention: also return the attention maps of every level.
        device: ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda``, ``mps``.
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16``.
        progress: called with ``(done, total)`` tiles.
        cancel: a :class:`CancelToken`; cancelling raises :class:`~napari_attnseg.errors.Cancelled`.
        tta: average over flips.
        spacing: the image's voxel spacing (array axis order), for models trained at another spacing.
        diameter: the typical object diameter in pixels of this image, or ``"auto"`` to estimate it
            from a first pass; the image is rescaled to the card's ``object_diameter`` and back.
        out: a new folder where ``labels.npy`` and ``probabilities.npy`` are memory-mapped (big volumes).
        return_probabilities: keep the per-class probabilities (``False`` saves memory).
        probability_dtype: ``float16`` (default, half the memory) or ``float32``.
        normalization: overrides the card's intensity normalisation (e.g. ``{"scheme": "none"}``).
    """
    gen = iter_predict(model, image, **kwargs)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def _count_nonfinite(image) -> int:
    if not np.issubdtype(np.dtype(image.dtype), np.floating):
        return 0
    total = 0
    first = image.shape[0]
    step = max(1, first // 64)
    for i in range(0, first, step):
        chunk = np.asarray(image[i : i + step])
        total += int(chunk.size - np.count_nonzero(np.isfinite(chunk)))
    return total


def _read_tile(image, start, tile, chan_axis: bool, stats) -> np.ndarray:
    """Read one tile (C, *tile) from the image, normalised, edge-padded where it passes the end."""
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


def _run_batch(net, x: np.ndarray, mode: str, dev, prec: str, attention: bool, tta: bool, n_classes: int, cancel,
               to_numpy: bool = True):
    """Run the model on a batch of tiles; returns probabilities (B, K, *tile) and maps (B, *map), as
    NumPy arrays, or as float32 tensors on ``dev`` with ``to_numpy=False``."""
    xt = torch.from_numpy(x).to(dev, non_blocking=True)
    squeeze = mode == "slices"
    if squeeze:
        xt = xt[:, :, 0]
    nd = xt.dim() - 2
    flips = [()] + ([tuple(c) for r in range(1, nd + 1) for c in _combinations(range(2, 2 + nd), r)] if tta else [])
    prob_sum = None
    map_sum: dict[str, torch.Tensor] = {}
    with torch.inference_mode(), autocast_context(dev, prec):
        for f in flips:
            if cancel is not None and cancel.cancelled:
                raise Cancelled("Prediction cancelled; no output was written.")
            inp = torch.flip(xt, f) if f else xt
            inp = inp.contiguous(memory_format=torch.channels_last if nd == 2 else torch.channels_last_3d)
            if attention:
                logits, maps = net(inp, return_attention=True)
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
                    m = torch.flip(m, f)
                m = m.mean(1)  # several gates (heads) per level are shown as their mean
                map_sum[name] = map_sum.get(name, 0) + m
    n = len(flips)
    if not to_numpy:
        probs, maps_t = prob_sum / n, {k: v / n for k, v in map_sum.items()}
        if squeeze:
            probs = probs[:, :, None]
            maps_t = {k: v[:, None] for k, v in maps_t.items()}
        return probs.contiguous(), maps_t
    probs = (prob_sum / n).cpu().numpy()
    maps_np = {k: (v / n).cpu().numpy() for k, v in map_sum.items()}
    if squeeze:
        probs = probs[:, :, None]
        maps_np = {k: v[:, None] for k, v in maps_np.items()}
    return probs, maps_np


def _combinations(items, r):
    import itertools

    return itertools.combinations(items, r)
