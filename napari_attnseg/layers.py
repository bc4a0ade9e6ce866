"""Prediction -> napari layer data tuples (pure numpy; the napari layer only adds them to a viewer).

Every layer is placed on the source image's world grid: the image layer's ``scale``, ``translate``
and ``affine`` are composed with each attention map's own ``scale``/``translate`` (image pixel units).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .display import HEATMAP_COLORMAP_NAME, heatmap_style
from .inference.prediction import AttentionMap, Prediction


@dataclass
class Placement:
    """Where the source image sits in the world (the napari image layer's transform), with its axes' units
    and labels (None: napari's defaults), which the result layers share so napari keeps showing the units."""

    scale: tuple[float, ...]
    translate: tuple[float, ...]
    affine: np.ndarray | None = None
    units: tuple[str, ...] | None = None
    axis_labels: tuple[str, ...] | None = None

    def compose(self, scale: Sequence[float], translate: Sequence[float]) -> dict[str, Any]:
        s = tuple(float(a) * float(b) for a, b in zip(self.scale, scale))
        t = tuple(float(t0) + float(tt) * float(sc) for t0, tt, sc in zip(self.translate, translate, self.scale))
        kw: dict[str, Any] = {"scale": s, "translate": t}
        if self.affine is not None:
            kw["affine"] = self.affine
        for key in ("units", "axis_labels"):
            if (values := getattr(self, key)) is not None and len(values) == len(s):
                kw[key] = tuple(values)
        return kw


def data_hash(data: np.ndarray) -> str:
    """A quick digest of a label array, to notice edits made since the last run."""
    a = np.ascontiguousarray(np.asarray(data))
    return hashlib.sha1(a.tobytes()).hexdigest()


def provenance(model, pred: Prediction, source: str) -> dict[str, Any]:
    card = getattr(model, "card", None)
    return {
        "source_layer": source,
        "model": getattr(card, "name", "") or getattr(model, "arch", ""),
        "arch": getattr(model, "arch", ""),
        "checkpoint": getattr(model, "checkpoint_path", None),
        "checkpoint_sha256": getattr(card, "weights_sha256", None),
        "device": pred.device,
        "precision": pred.precision,
        "params": dict(pred.params),
        "timings": dict(pred.timings),
        "warnings": [str(w) for w in getattr(pred, "warnings", None) or []],  # (e.g. a CT given to a microscopy model)
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def mask_layer(pred: Prediction, name: str, where: Placement, meta: dict) -> tuple:
    labels = np.asarray(pred.labels)
    features = {"class": list(pred.classes)}
    kwargs = {"name": f"{name} mask", "features": features, "metadata": {"attnseg": meta, "attnseg_hash": data_hash(labels),
                                                                        "class_names": list(pred.classes)},
              "opacity": 0.5, **where.compose((1,) * labels.ndim, (0,) * labels.ndim)}
    return labels, kwargs, "labels"


def probability_layer(pred: Prediction, name: str, where: Placement, meta: dict) -> tuple | None:
    if pred.probabilities is None:
        return None
    fg = np.asarray(pred.probabilities[1:]).max(0) if pred.probabilities.shape[0] > 2 else np.asarray(pred.probabilities[1])
    kwargs = {"name": f"{name} probability", "colormap": "magma", "contrast_limits": (0.0, 1.0), "visible": False,
              "metadata": {"attnseg": meta}, **where.compose((1,) * fg.ndim, (0,) * fg.ndim)}
    # the prediction's own dtype (float16 by default; with two classes a view of its probabilities): a float32 copy
    # added 4 bytes a pixel, 256 MB on an 8192 x 8192 mosaic
    return (fg if fg.dtype in (np.float16, np.float32) else fg.astype(np.float32)), kwargs, "image"


def _overhangs(s: float, t: float, m: int, n: int) -> bool:
    """True when a map axis of ``m`` pixels (centred on ``t + i * s``) ends in a partial block centred outside
    the image's pixels ``0..n-1``: before the first (a flipped or reoriented volume: -0.5) or a whole step past
    the last. napari's slider spans every layer's pixel centres, so such a map shifted it between the image's
    slices (with a map at -0.5 the slider stood on 0.5, 1.5, ... and only every other slice could be reached)
    or gave it positions past the volume. A map that does not fit the image at all is left as it is."""
    first, last = t, t + (m - 1) * s
    return (-s < first < -1e-6) or (n - 0.5 + 1e-6 < last < n - 1 + s)


def _edge_split(s: float, t: float, m: int, n: int) -> tuple[int, int, int] | None:
    """How to keep an overhanging in-plane axis (:func:`_overhangs`) near its own resolution instead of the
    image's pixels: each of its ``m`` blocks cut in ``r`` equal parts (``r`` the smallest that works, at most one
    image pixel a part), keeping the ``count`` parts from part ``first`` on, those centred on the image's pixels
    ``0..n-0.5``, whose outer edges lie within half a pixel of the image's. The blocks' inner edges stay where
    they are. None: no such ``r``. (Put on the image's pixels, a flipped CT's levels 3 and 4 took 30 x 512 x 512
    and 15 x 512 x 512 float32 values, 47 MB, for 30 x 37 x 37 and 15 x 19 x 19.)"""
    for r in range(1, max(1, int(np.floor(s))) + 1):
        g = s / r
        centres = t - s / 2 + (np.arange(m * r) + 0.5) * g
        keep = np.flatnonzero((centres >= -1e-6) & (centres <= n - 0.5 + 1e-6))
        if keep.size and centres[keep[0]] - g / 2 <= 1e-6 and centres[keep[-1]] + g / 2 >= n - 1 - 1e-6:
            return r, int(keep[0]), int(keep.size)
    return None


def on_image_grid(amap: AttentionMap, shape: tuple[int, ...]) -> AttentionMap:
    """``amap`` resampled onto the image's pixels along every axis where its pixels are finer than the image's
    (``scale < 1``: a model run at 2 mm on 6.5 mm slices; linear) or where its edge pixel, a partial block of
    the level's grid, is centred outside the image (:func:`_overhangs`; nearest: each image pixel shows the
    map pixel that covers it; on the in-plane axes, the last two, its blocks are cut in parts instead, those
    outside the image dropped, :func:`_edge_split`, which keeps a 512 x 512 CT's coarse level near its own
    size). Shown as they are, such maps give napari's slider steps that are not
    the image's slices (42 positions for 25 slices, most between two slices, the last past the volume), so
    "slice n" on the slider stops being image slice n. Other axes keep the level's own resolution.
    ``shape``: the image's spatial shape."""
    data = np.asarray(amap.data, np.float32)
    lead = data.ndim - len(amap.scale)  # a heads axis in front
    scale, translate = list(amap.scale), list(amap.translate)
    for d, (s, t) in enumerate(zip(amap.scale, amap.translate)):
        if d >= len(shape):
            continue
        axis, n = lead + d, data.shape[lead + d]
        if s < 1.0 - 1e-6:
            u = np.clip((np.arange(shape[d]) - t) / s, 0, n - 1)
            lo = np.floor(u).astype(int)
            hi = np.minimum(lo + 1, n - 1)
            w = (u - lo).astype(np.float32).reshape([-1 if a == axis else 1 for a in range(data.ndim)])
            data = np.take(data, lo, axis) * (1 - w) + np.take(data, hi, axis) * w
        elif not _overhangs(float(s), float(t), n, int(shape[d])):
            continue
        elif d >= len(shape) - 2 and (split := _edge_split(float(s), float(t), n, int(shape[d]))) is not None:
            r, first, count = split  # an in-plane axis: each block cut in r, the parts outside the image dropped
            data = np.take(data, (first + np.arange(count)) // r, axis)
            scale[d], translate[d] = s / r, t - s / 2 + (first + 0.5) * s / r
            continue
        else:
            data = np.take(data, np.clip(np.floor((np.arange(shape[d]) - t) / s + 0.5).astype(int), 0, n - 1), axis)
        scale[d], translate[d] = 1.0, 0.0
    return AttentionMap(amap.name, amap.level, data, tuple(scale), tuple(translate))


RELATIVE_MAPS = ("vit tokens",)  # scaled so that 1 is the strongest in the image (msga: every map)


SCALE_NOTE = "Colour scale 0-1 (inferno, transparent at 0)"  # the default display, as the help says it
FLAT_SPAN = 0.2  # a map whose values span less reads as an even veil on the 0-1 scale


def attention_help(amap: AttentionMap, sizes: list[float], count: int, arch: str = "",
                   where: Placement | None = None, values: np.ndarray | None = None) -> str:
    """What a heatmap shows, in words (napari's status bar shows it while the layer is selected): where its
    resolution stands among the run's maps (``sizes``: every map's pixel size, the product of its scale), how
    many image pixels one value covers (and, when the image has a pixel size, ``where``, how much of the world:
    "0.617 x 5.12 x 5.12 image pixels" alone read badly on a 6.5 mm-slice MRI), what 0 and 1 mean, and the range
    of ``values``, the map as the layer shows it (None: ``amap``'s own; a block centred outside the image, left out
    of the layer, gave brain1's coarsest level "here 0.41-0.92" over values 0.41-0.88). A map whose values span
    less than :data:`FLAT_SPAN` shows as an even veil on the fixed 0-1 scale: the note says so and how to see
    its pattern."""
    size = " x ".join(f"{s:.3g}" for s in amap.scale) + " image pixels"
    if where is not None and any(abs(abs(float(w)) - 1.0) > 1e-9 for w in where.scale):
        units = {u for u in (where.units or ()) if u and u != "pixel"}
        unit = f" {units.pop()}" if len(units) == 1 else ""
        world = " x ".join(f"{float(a) * abs(float(w)):.3g}" for a, w in zip(amap.scale, where.scale))  # (flipped)
        finer = "; shown on the image's slices where finer" if min(amap.scale) < 1 else ""
        size += f" ({world}{unit}{finer})"
    own, lo, hi = float(np.prod(amap.scale)), min(sizes), max(sizes)
    if hi <= lo * (1 + 1e-6):
        which = "one"  # every map of the run has this resolution (msga)
    else:
        which = "the finest" if own <= lo * (1 + 1e-6) else "the coarsest" if own >= hi * (1 - 1e-6) else "between the finest and the coarsest"
    relative = arch == "msga" or amap.name in RELATIVE_MAPS
    meaning = ("1 = the strongest attention in the image, 0 = the weakest" if relative else
               "1 = the model passes these features on fully, 0 = it suppresses them")
    data = np.asarray(amap.data if values is None else values, np.float32)
    lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
    # the range (and a flat map's advice) before what 0 and 1 mean: napari's status bar cuts the note at its width
    here = f"; values here {lo:.2f}-{hi:.2f}" if data.size else ""
    flat = ""
    if data.size and hi - lo < FLAT_SPAN:  # (digits enough to tell its ends apart: "0.52-0.52" was no advice)
        digits = next((d for d in (2, 3, 4) if f"{lo:.{d}f}" != f"{hi:.{d}f}"), None)
        flat = (f" Its values vary little, so it shows as an even veil: to see its pattern set its contrast limits to "
                f"{lo:.{digits}f}-{hi:.{digits}f} (layer controls; levels are then no longer comparable)." if digits else
                f" It is one value ({lo:.2f}) everywhere: the model attends evenly here, there is no pattern to see "
                "(a barely trained model's maps are often so).")
    return (f"attention {amap.name}: {which} of {count} map{'s' if count != 1 else ''}, one value per {size}. "
            f"{SCALE_NOTE}{here}.{flat} {meaning[0].upper()}{meaning[1:]}.")


def heatmap_help(note: str, contrast_limits: Sequence[float], colormap: str) -> str:
    """A heatmap's ``note`` (:func:`attention_help`) for the layer as it is displayed now: with contrast limits or a
    colormap the user set, the colour-scale words say those (the note said "Colour scale 0-1 (inferno...)" after
    they were changed, and a re-run, which keeps them, wrote it again)."""
    lo, hi = (float(c) for c in contrast_limits)
    if colormap == HEATMAP_COLORMAP_NAME and abs(lo) < 1e-6 and abs(hi - 1.0) < 1e-6:
        return note
    cmap = "inferno, transparent at 0" if colormap == HEATMAP_COLORMAP_NAME else colormap
    return note.replace(SCALE_NOTE, f"Colour scale set to {lo:.2f}-{hi:.2f} ({cmap}, your setting)")


def attention_layer(amap: AttentionMap, name: str, where: Placement, meta: dict, visible: bool,
                    shape: tuple[int, ...] | None = None, note: str | None = None,
                    grid: AttentionMap | None = None) -> tuple:
    """A heatmap layer of one level (``shape``: the image's spatial shape, to put maps finer than the
    image's pixels, or with an edge pixel outside them, on its grid, :func:`on_image_grid`, or ``grid``, that
    done already; ``note``: what it shows, in words, kept as ``metadata["attnseg"]["help"]``). The metadata keep
    the map's own resolution (``map_scale``, ``map_translate``: image pixels)."""
    native = amap
    if grid is not None:
        amap = grid
    elif shape is not None:
        amap = on_image_grid(amap, tuple(shape))
    info = {**meta, "level": amap.level, "map_scale": native.scale, "map_translate": native.translate}
    if note:
        info["help"] = note
    kwargs = {
        "name": f"{name} attention {amap.name}", **heatmap_style(), "visible": visible,
        "metadata": {"attnseg": info},
        **where.compose(amap.scale, amap.translate),
    }
    # float32 on purpose: napari converts any other float to float32 for the shown texture and keeps both (a shown
    # float16 6000 x 6000 run's heatmaps took 106 MB in napari, float32 ones 93 MB)
    return np.asarray(amap.data, np.float32), kwargs, "image"


def prediction_layers(model, pred: Prediction, name: str, where: Placement, meta: dict | None = None) -> list[tuple]:
    """The mask, the (hidden) probability and one heatmap per attention level, finest visible."""
    meta = provenance(model, pred, name) if meta is None else meta
    layers = [mask_layer(pred, name, where, meta)]
    prob = probability_layer(pred, name, where, meta)
    if prob is not None:
        layers.append(prob)
    finest = min((float(np.prod(a.scale)) for a in pred.attention), default=None)
    sizes = [float(np.prod(a.scale)) for a in pred.attention]
    arch = str(meta.get("arch") or getattr(model, "arch", "") or "")
    shown = False
    for amap in pred.attention:
        visible = not shown and float(np.prod(amap.scale)) == finest
        shown |= visible
        grid = on_image_grid(amap, np.shape(pred.labels))  # (the help gives the range of the values shown)
        note = attention_help(amap, sizes, len(pred.attention), arch, where, grid.data)
        layers.append(attention_layer(amap, name, where, meta, visible, note=note, grid=grid))
    return layers
