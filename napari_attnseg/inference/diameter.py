"""Object size: segment at the scale the model was trained on (issue 19, part 1).

A microscopy model learns objects of one size. The card records it (``ModelCard.object_diameter``:
the typical object diameter in pixels of the training data, measured by :func:`measure_diameter` on
the training masks). ``predict(..., diameter=D)`` says the objects of *this* image are about ``D``
pixels wide: the image is rescaled by ``card_diameter / D`` (normalised at its own scale first, then
zoomed with :func:`.resample.zoom_image`, the MRI spacing path's resampler), segmented, and the
probabilities are zoomed back with :func:`.resample.zoom_back_into` before the argmax, so labels,
probabilities and attention maps are all on the input grid.

``diameter="auto"`` estimates ``D``: a first pass at the image's own scale, the median equivalent
diameter of the predicted objects, a pass at the scale that gives, and one more if the second pass's
estimate asks for a scale more than :data:`AUTO_TOLERANCE` away (small objects merge at too small a
scale, so the first estimate is biased; the second is measured near the model's own scale). Real
objects keep their size in image pixels when the scale changes: a pass whose estimate differs by more
than :data:`CONSISTENT` from the estimate that chose its scale saw something else (objects much
bigger than the model's fall apart into small pieces, which reads as "too small") and is rejected;
the next step then goes the other way, by the same factor, and a fourth pass is allowed. Of the
passes not rejected, the one whose objects measure closest to the card's diameter on the grid the
model saw is kept. Each pass measures with :func:`.object_size.measure_diameter`, whose speck filter is
relative to the objects that carry the foreground, so a crowd of specks (texture in objects much bigger
than the model's) cannot set the estimate, nor confirm one. A pass whose objects are all cut by the
edge has no size and is rejected. A failed estimate is not applied: nothing found, no usable pass, or
a first-pass estimate far from the model's size that no pass at another scale confirmed: a warning
says so, and the image is segmented at its own scale (scale 1, the model's native size). Passes whose
rescaled plane would exceed :data:`PROBE_PIXELS` measure on a central crop that
fits it, and the whole image is then segmented once at the scale kept; enlargements stop at
:data:`MAX_PLANE_PIXELS`. A kept pass with fewer than :data:`MIN_INTERIOR` whole objects, or whose
objects still measure more than 1.5x off, adds an "uncertain estimate" warning.

The engine only hands over to :func:`iter_predict_diameter` when ``diameter`` is given.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .normalize import compute_stats
from .object_size import MIN_INTERIOR
from .object_size import SPECK as SPECK  # re-exported: the measure lives in .object_size
from .object_size import measure_diameter as measure_diameter
from .prediction import AttentionMap, Prediction
from .resample import zoom_back_into, zoom_image

AUTO = "auto"
TOLERANCE = 0.05  # relative scale change below which the image is segmented as it is
AUTO_TOLERANCE = 0.10  # "auto": rerun when an estimate moved by more than this
MAX_PASSES = 4  # "auto": 3 passes, 4 when a step had to be taken the other way
ZOOM_RANGE = (0.125, 8.0)
MAX_PLANE_PIXELS = 4096 * 4096  # enlargements stop at this plane size (or the image's own)
CONSISTENT = 1.5  # "auto": a pass whose estimate differs more than this from the one that chose its scale is rejected
PROBE_PIXELS = 1024 * 1024  # "auto": a pass whose rescaled plane is bigger measures on a central crop of this  # rescaling outside this is clamped, with a warning


# ----------------------------------------------------------------------------------------------
# values
# ----------------------------------------------------------------------------------------------
def check_diameter(diameter: Any) -> float | str | None:
    """``None``, ``"auto"`` or a positive finite number of pixels (numbers as text are accepted)."""
    if diameter is None:
        return None
    if isinstance(diameter, str):
        text = diameter.strip().lower()
        if text == AUTO:
            return AUTO
        try:
            value = float(text)
        except ValueError:
            raise InputError(
                f"diameter must be the typical object diameter in pixels (a positive number) or 'auto'; "
                f"got {diameter!r}."
            ) from None
    elif isinstance(diameter, (bool, np.bool_)) or not isinstance(diameter, (int, float, np.integer, np.floating)):
        raise InputError(
            f"diameter must be the typical object diameter in pixels (a positive number) or 'auto'; "
            f"got {diameter!r} of type {type(diameter).__name__}."
        )
    else:
        value = float(diameter)
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"diameter must be a positive number of pixels or 'auto'; got {diameter!r}.")
    return value


def card_diameter(model) -> float:
    card = getattr(model, "card", None)
    d = getattr(card, "object_diameter", None)
    if not d:
        name = getattr(card, "name", "") or "this model"
        raise InputError(
            f"The card of {name} records no object diameter (object_diameter), so --diameter cannot be used with it: "
            "leave --diameter out (Python: diameter=None), or choose a model whose card records one (the bundled "
            "nuclei-2d does)."
        )
    return float(d)


# ----------------------------------------------------------------------------------------------
# prediction
# ----------------------------------------------------------------------------------------------
def iter_predict_diameter(run: Callable[..., Generator], model, image, *, diameter, **kwargs
                          ) -> Generator[tuple[int, int], None, Prediction]:
    """``iter_predict`` with ``diameter`` (pixels, or ``"auto"``); ``run`` is the engine's ``iter_predict``."""
    from .engine import check_input

    value = check_diameter(diameter)
    if value is None:
        return (yield from run(model, image, **kwargs))
    target = card_diameter(model)
    mode, has_channels = check_input(model, image, kwargs.get("mode"))
    kwargs["mode"] = mode
    notes: list[str] = []
    spacing = kwargs.pop("spacing", None)
    card_spacing = getattr(getattr(model, "card", None), "spacing", None)
    if spacing is not None and card_spacing is not None and any(
            abs(float(a) / float(b) - 1.0) > 0.02 for a, b in zip(spacing[-len(card_spacing):], card_spacing)):
        notes.append(f"The image's spacing {list(spacing)} was not used: the object diameter sets the scale.")
    out = kwargs.pop("out", None)
    final = _check_out(out)
    want_probs = kwargs.pop("return_probabilities", True)
    prob_dtype = kwargs.pop("probability_dtype", "float16")
    if np.dtype(prob_dtype) not in (np.float16, np.float32):
        raise InputError(f"probability_dtype must be float16 or float32; got {prob_dtype!r}.")
    slices = mode == "slices"
    spatial = tuple(image.shape[1:] if has_channels else image.shape)
    passes: list[dict[str, Any]] = []
    offset = 0
    seconds: list[float] = []

    def one_pass(zoom: float, region=None):
        nonlocal offset
        t0 = time.perf_counter()
        gen = _predict_at(run, model, image, zoom, has_channels, slices, kwargs, region)
        last = 0
        while True:
            try:
                done, total = next(gen)
            except StopIteration as stop:
                offset += last
                seconds.append(time.perf_counter() - t0)
                return stop.value
            last = total
            yield offset + done, offset + total

    if value == AUTO:
        best: tuple | None = None  # (|log(measured / model diameter)| on the model's grid, pred, zoom, estimate, pass)
        expected = None  # the estimate (image pixels) that chose the scale of the next pass
        first = None  # the first pass's prediction (the image at its own scale; None for a crop)
        mirrored = False
        zoom_next, limited = 1.0, None
        for i in range(MAX_PASSES):
            region = _probe_region(spatial, zoom_next)
            trial, grid_labels, z = yield from one_pass(zoom_next, region)
            d_grid, n, whole = measure_diameter(grid_labels, slices, whole=True)
            est_i = None if d_grid is None else d_grid / z
            # objects keep their size in image pixels when the scale changes; pieces of objects too big for
            # the model (or objects merged at too small a scale) do not. Objects all cut by the edge have no size.
            ok = est_i is not None and whole > 0 and (
                expected is None or abs(math.log(est_i / expected)) <= math.log(CONSISTENT))
            passes.append({"zoom": z, "estimate": est_i, "objects": n, "whole_objects": whole, "consistent": ok,
                           "crop": None if region is None else [[r.start, r.stop] for r in region[-2:]],
                           "limited": limited})
            if d_grid is None and i:
                notes.append(f"diameter 'auto': the pass at scale {z:.3g} found no object.")
            err = math.inf if d_grid is None else abs(math.log(d_grid / target))
            improved = ok and (best is None or err < best[0])
            if improved:
                best = (err, trial, z, est_i, passes[-1])
            if i == 0:
                first = trial  # the fallback: the image at its own scale (None when it was a crop)
            if best is None or i == MAX_PASSES - 1 or (i == MAX_PASSES - 2 and not mirrored):
                break  # a fourth pass only after a step the other way
            if ok:
                if not improved:
                    break
                zoom_next, clamped = _zoom_for(target, best[3])
                expected = best[3]
            else:
                if mirrored:
                    break
                # the objects seen at this scale are not the ones measured before: objects too big for the
                # model fall apart into small pieces, which reads as "too small"; step the other way
                zoom_next, clamped = _clamp(best[2] ** 2 / z)
                expected, mirrored = None, True
            zoom_next, capped = _cap(zoom_next, spatial)
            if any(abs(zoom_next / p["zoom"] - 1.0) <= AUTO_TOLERANCE for p in passes):
                break
            limited = " ".join(w for w in (clamped, capped) if w) or None
        failed = _failure(best, passes)
        if failed:  # a failed estimate is not applied: the model's native scale
            best = (math.inf, first, 1.0, None, passes[0])
        err, pred, zoom, est, chosen = best
        if chosen["limited"] and not failed:
            notes.append(chosen["limited"])
        if pred is None:  # the pass kept was a probe on a crop (or none was kept): the whole image at its scale
            pred, _, zoom = yield from one_pass(zoom)
        used = None if est is None else target / zoom
        if failed:
            notes.append(f"diameter 'auto': {failed}, so the object size could not be estimated; the image was "
                         "segmented at its own scale (scale 1, the model's native size). Give the typical object "
                         "diameter in pixels instead.")
        else:
            notes.append(f"diameter 'auto': estimated {est:.1f} px from {chosen['objects']} objects "
                         f"({len(passes)} pass{'es' if len(passes) > 1 else ''}); segmented at scale {zoom:.3g} "
                         f"(the model's objects are {target:.1f} px).")
            if chosen["whole_objects"] < MIN_INTERIOR:
                notes.append(f"diameter 'auto': uncertain estimate: only {chosen['whole_objects']} whole objects "
                             "(not cut by the image's edge) were found; give the diameter if the result looks wrong.")
            elif err > math.log(1.5):
                notes.append(f"diameter 'auto': uncertain estimate: at the chosen scale the objects measure "
                             f"{est * zoom:.1f} px where the model's measure {target:.1f} px; check the result, "
                             "or give the diameter.")
    else:
        zoom, clamped = _zoom_for(target, value)
        zoom, capped = _cap(zoom, spatial)
        notes.extend(w for w in (clamped, capped) if w)
        pred, _, zoom = yield from one_pass(zoom)
        used = est = value
        if zoom != 1.0:
            notes.append(f"Rescaled by {zoom:.3g} for an object diameter of {value:g} px "
                         f"(the model's objects are {target:.1f} px), and back.")

    labels, probs = pred.labels, pred.probabilities
    if not want_probs:
        probs = None
    elif probs is not None and probs.dtype != np.dtype(prob_dtype):
        probs = probs.astype(prob_dtype)
    if final is not None:
        labels, probs = _write_out(final, labels, probs)
    pred.labels, pred.probabilities = labels, probs
    pred.params.update({
        "diameter": value,  # as given: pixels or "auto"
        "diameter_used": used,  # the diameter (image pixels) that set the scale; None: none found
        "diameter_measured": est if value == AUTO else None,  # "auto": the estimate of the pass kept
        "model_diameter": target, "scale": zoom, "spacing": list(spacing) if spacing is not None else None,
        "diameter_passes": passes or None,
    })
    pred.timings["total_s"] = sum(seconds)
    pred.timings["passes_s"] = list(seconds)
    pred.warnings = notes + [w for w in pred.warnings if w not in notes]
    return pred


def _failure(best: tuple | None, passes: list[dict[str, Any]]) -> str | None:
    """Why no estimate of "auto" can be applied, or None: nothing found, objects all cut by the edge, or
    a first-pass estimate far from the model's size that no pass at another scale confirmed."""
    first = passes[0]
    if best is None:
        if first["estimate"] is None:
            return "the first pass found no object"
        if not first["whole_objects"]:
            if first["objects"] == 1:  # (the audit's uneven bright background: 47 % of the image, one region)
                return ("the first pass's foreground was one region cut by the image's edge (a bright or uneven "
                        "background taken for objects?)")
            return f"the {first['objects']} objects found were all cut by the image's edge"
        return "no pass found objects of a consistent size"
    err, _, zoom, est, _ = best
    if zoom == 1.0 and len(passes) > 1 and err > math.log(1.5):
        return f"the {est:.1f} px of the first pass was not confirmed at the scale it asked for"
    return None


def _probe_region(spatial: tuple[int, ...], zoom: float) -> tuple[slice, ...] | None:
    """"auto" measures on a central crop when the rescaled plane would exceed :data:`PROBE_PIXELS`."""
    plane = spatial[-2:]
    if plane[0] * plane[1] * zoom * zoom <= PROBE_PIXELS:
        return None
    side = math.sqrt(PROBE_PIXELS) / zoom
    region = [slice(None)] * len(spatial)
    for a in (len(spatial) - 2, len(spatial) - 1):
        n = spatial[a]
        c = max(1, min(n, int(side)))
        region[a] = slice((n - c) // 2, (n - c) // 2 + c)
    return tuple(region)


def _cap(zoom: float, spatial: tuple[int, ...]) -> tuple[float, str | None]:
    """Limit an enlargement so the rescaled plane stays within :data:`MAX_PLANE_PIXELS` (or the image's own size)."""
    plane = spatial[-2:]
    limit = max(MAX_PLANE_PIXELS, plane[0] * plane[1])
    top = math.sqrt(limit / (plane[0] * plane[1]))
    if zoom <= top:
        return zoom, None
    return top, (f"Rescaling by {zoom:.3g} would make a {plane[0] * zoom:.0f} x {plane[1] * zoom:.0f} image; "
                 f"limited to {top:.3g}. Segment a crop, or downsample the image yourself, for smaller objects.")


def _zoom_for(target: float, diameter: float) -> tuple[float, str | None]:
    return _clamp(target / diameter)


def _clamp(zoom: float) -> tuple[float, str | None]:
    """The scale to use (1 when within :data:`TOLERANCE`), and a note when it was limited to :data:`ZOOM_RANGE`."""
    if abs(zoom - 1.0) < TOLERANCE:
        return 1.0, None
    lo, hi = ZOOM_RANGE
    if zoom < lo or zoom > hi:
        clamped = min(max(zoom, lo), hi)
        return clamped, f"The object diameter asks for rescaling the image by {zoom:.3g}; limited to {clamped:.3g}."
    return zoom, None


def _predict_at(run, model, image, zoom: float, has_channels: bool, slices: bool, kwargs: dict, region=None):
    """One prediction with the image rescaled by ``zoom``; returns ``(prediction on the input grid,
    labels on the grid the model saw, zoom)``. With ``region`` (a probe of "auto") only that part of
    the image, normalised with the whole image's statistics, is segmented and the prediction is None."""
    if zoom == 1.0 and region is None:
        pred = yield from run(model, image, **kwargs)
        return pred, np.asarray(pred.labels), 1.0
    card = getattr(model, "card", None)
    stats = compute_stats(image, kwargs.get("normalization") or getattr(card, "normalization", None), has_channels)
    if region is not None:
        image = image[(slice(None), *region) if has_channels else region]
    spatial = tuple(image.shape[1:] if has_channels else image.shape)
    zooms = tuple(1.0 if (slices and a == 0) else zoom for a in range(len(spatial)))
    work = zoom_image(image, stats, [1.0 / z for z in zooms], has_channels)
    inner = dict(kwargs, normalization={"scheme": "none"}, return_probabilities=region is None,
                 probability_dtype="float32", attention=bool(kwargs.get("attention")) and region is None)
    pred = yield from run(model, work if has_channels else work[0], **inner)
    grid_labels = np.asarray(pred.labels)
    if region is not None:
        return None, grid_labels, zoom
    pred.labels = np.empty(spatial, grid_labels.dtype)
    pred.probabilities, on_grid = np.empty((pred.probabilities.shape[0], *spatial), np.float32), pred.probabilities
    zoom_back_into(np.asarray(on_grid, np.float32), spatial, pred.labels, pred.probabilities)
    applied = tuple(m / n for m, n in zip(grid_labels.shape, spatial))  # the zoom the resampling made, not `zooms`
    pred.attention = [
        AttentionMap(m.name, m.level, m.data,
                     tuple(s / z for s, z in zip(m.scale, applied[-len(m.scale):])),
                     tuple((t + 0.5) / z - 0.5 for t, z in zip(m.translate, applied[-len(m.translate):])))
        for m in pred.attention
    ]
    pred.params["rescaled_shape"] = list(grid_labels.shape)
    return pred, grid_labels, zoom


def _check_out(out) -> Path | None:
    if out is None:
        return None
    final = Path(out)
    if final.exists() and any(final.iterdir()):
        raise InputError(f"Output folder {final} exists and is not empty; choose a new folder.")
    return final


def _write_out(final: Path, labels: np.ndarray, probs: np.ndarray | None):
    """Write ``labels.npy`` (and ``probabilities.npy``) into ``final`` as the engine does; reopen them memory-mapped."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        np.save(tmp / "labels.npy", np.asarray(labels))
        if probs is not None:
            np.save(tmp / "probabilities.npy", np.asarray(probs))
        if final.exists():
            final.rmdir()
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return (np.load(final / "labels.npy", mmap_mode="r+"),
            np.load(final / "probabilities.npy", mmap_mode="r+") if probs is not None else None)
