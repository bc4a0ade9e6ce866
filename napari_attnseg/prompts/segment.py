"""``segment_with_prompts``: one object from clicks, run on a crop around it (issue 18)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..checkpoint import PROMPT_INITS
from ..errors import InputError
from ..inference.prediction import AttentionMap
from .convert import is_promptable, prompts
from .encode import click_channels, radius_per_axis
from .refine import HONOUR_REACH, _inside, _keep_clicked, honour_clicks, merge_local  # noqa: F401 (their home before)

MIN_CROP = {2: 96, 3: 48}  # pixels per axis at least (3D: per axis of the volume)
MARGIN = {2: 32, 3: 16}  # context around the clicks and the previous mask
# pixels per axis at most: a click on a region as big as the image (a whole-tissue or inverted-image component)
# had the model run on all of it in one pass (audit: 4000 x 4000 px, 80 s and 10 GB); the crop is then centred on
# the newest click, and only it can change
MAX_CROP = {2: 1024, 3: 192}


@dataclass
class PromptResult:
    """One object segmented from clicks.

    Attributes:
        mask: bool, the image's spatial shape: the object (nothing outside ``box``).
        box: the crop the model ran on (slices of the image's spatial axes).
        probability: float32 object probability over ``box``.
        attention: the modulated attention maps over the crop, placed like ``Prediction.attention``
            (``translate``/``scale`` in image pixels, so they overlay the image directly).
        points, labels: the clicks used (labels 1 positive, 0 negative), newest last.
        timings: seconds (``total``, ``model``).
        warnings: what the user should know, e.g. a CT given to a model not trained on CT.
    """

    mask: np.ndarray
    box: tuple[slice, ...]
    probability: np.ndarray
    attention: list[AttentionMap]
    points: np.ndarray
    labels: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def crop_box(shape: Sequence[int], points: np.ndarray, labels: np.ndarray, previous: np.ndarray | None,
             divisor: int, grow: float = 1.0) -> tuple[slice, ...]:
    """The box the model sees: the positive clicks and the previous mask's extent, a margin around
    them, at least ``MIN_CROP`` pixels, sizes rounded up to ``divisor``, clamped to the image. Along an axis
    where that is over ``MAX_CROP`` pixels, ``MAX_CROP`` (rounded down to ``divisor``) around the newest click."""
    nd = len(shape)
    pts = points[labels == 1] if (labels == 1).any() else points
    lo, hi = pts.min(0), pts.max(0)
    newest = points[-1]  # (a capped crop is centred on the newest click)
    if previous is not None and previous.any():
        idx = np.nonzero(previous)
        lo = np.minimum(lo, [i.min() for i in idx])
        hi = np.maximum(hi, [i.max() for i in idx])
    out = []
    for d in range(nd):
        size = (hi[d] - lo[d] + 1 + 2 * MARGIN[nd]) * grow
        size = max(size, MIN_CROP[nd] * grow)
        size = int(np.ceil(size / divisor) * divisor)
        centre = (lo[d] + hi[d]) / 2
        cap = max(MAX_CROP[nd] // divisor * divisor, divisor)
        if size > cap:
            size, centre = cap, newest[d]
        size = min(size, shape[d])
        start = int(round(centre - size / 2))
        start = min(max(start, 0), shape[d] - size)
        out.append(slice(start, start + size))
    return tuple(out)


@torch.no_grad()
def predict_crop(model, image: np.ndarray, points: np.ndarray, labels: np.ndarray, previous: np.ndarray | None,
                 box: tuple[slice, ...], radius: np.ndarray, attention: bool = False, device=None, stats=None):
    """Object probability over ``box`` (float32) and the attention maps (dict name -> array) of a
    promptable model; ``image`` (C, *spatial), normalised already or by ``stats`` (only the crop is),
    coordinates in image pixels."""
    start = np.array([s.start for s in box], float)
    crop = image[(slice(None), *box)]
    if stats is not None:
        from ..inference.normalize import apply_stats

        crop = apply_stats(crop, stats)
    prev = previous[box] if previous is not None else None
    local = points - start
    chans = click_channels(crop.shape[1:], local, labels, radius, prev)
    x = torch.from_numpy(np.concatenate([crop.astype(np.float32), chans], 0)[None])
    dev = device or next(model.parameters()).device
    x = x.to(dev)
    with prompts(model, local, labels):
        out = model(x, return_attention=True) if attention else model(x)
    logits, maps = out if attention else (out, {})
    prob = 1.0 - torch.softmax(logits.float(), 1)[0, 0]  # any class but background = the object
    return prob.cpu().numpy(), {k: v[0].float().mean(0).cpu().numpy() for k, v in maps.items()}  # heads averaged


def cut_by_box(mask: np.ndarray, box: tuple[slice, ...], shape: Sequence[int]) -> bool:
    """``mask`` (over ``box``) reaches a side of the box that is not the image's side: a bigger box would
    see more of the object."""
    return any((np.take(mask, 0, axis=d).any() and s.start > 0) or (np.take(mask, -1, axis=d).any() and s.stop < shape[d])
               for d, s in enumerate(box))


def segment_with_prompts(
    model: torch.nn.Module,
    image: np.ndarray,
    points: np.ndarray | Sequence[Sequence[float]],
    labels: np.ndarray | Sequence[int],
    *,
    previous: np.ndarray | None = None,
    spacing: Sequence[float] | None = None,
    attention: bool = True,
    threshold: float = 0.5,
    normalized: bool = False,
    device: str | torch.device | None = None,
    prompt_init: str | None = "card",
    merge: str = "local",
    new_clicks: int = 1,
    diameter: float | None = None,
) -> PromptResult:
    """Segment the object under the clicks.

    Args:
        model: a promptable model (``load_model("nuclei-2d-prompt")``, or one fine-tuned with ``--prompts``), or
            its bundled name or ``.safetensors`` path (loaded on ``device``).
        image: (*spatial) or (C, *spatial) when the model takes C > 1 channels; (y, x) / (z, y, x).
        points: (N, ndim) array-index coordinates (z, y, x) / (y, x), in order: the last is the newest.
        labels: (N,) 1 = positive, 0 = negative; at least one positive.
        previous: bool/int mask of the image's spatial shape: this object's current mask (the component of
            the mask being corrected under the first click, or the previous result); None = empty.
        spacing: the image's pixel spacing (array axis order); sizes the click disks in physical units
            (``radius`` pixels at the model's spacing). The image is not resampled.
        attention: also return the modulated attention maps over the crop.
        threshold: on the object probability.
        normalized: the image is already normalised (skip the card's normalisation).
        prompt_init: the previous mask of a new object (``previous`` None or empty inside the crop):
            "card" (default) as the model card's ``prompt_init`` says, "threshold" the Otsu component under
            the clicks on the crop when it does not touch the crop's sides (:func:`~.initial.threshold_guess`
            with ``enclosed=True``, first image channel), None empty.
            ``params["prompt_init"]`` says what was used ("threshold" or None).
        merge: how a correction (a click after the first, with a non-empty ``previous``) is applied:
            "local" (default) changes ``previous`` only in the connected regions of change that reach the
            newest click (:func:`merge_local`, FocalClick's progressive merge); "replace" takes the model's
            whole new mask. The first click always takes the model's mask. ``params["merge"]`` says which was used.
            Either way every click's own pixel ends with the label it asked for: a click the model ignored
            moves the boundary through it along the model's probability contour, within about one object
            diameter (the card's ``object_diameter``) of it (:func:`honour_clicks`; ``params["honoured_clicks"]``).
        new_clicks: how many of the newest clicks this run is the first to use (default 1; more when clicks
            queued while a run was busy): the local merge keeps the changes that reach any of them.
        diameter: the typical diameter in pixels of the objects in this image, when they are not the size
            the model learnt (its card's ``object_diameter``): the region around the clicks is rescaled
            to that size for the model and the result mapped back (:mod:`.scaled`). None: as it is.
    Returns a :class:`PromptResult`; nothing is modified in place.
    """
    t0 = time.perf_counter()
    if isinstance(model, (str, os.PathLike)):  # a bundled name or a checkpoint path, as predict takes
        from ..checkpoint import load_model

        model = load_model(model, device=device or "auto")
    if not is_promptable(model):
        name = getattr(getattr(model, "card", None), "name", "") or getattr(model, "arch", type(model).__name__)
        raise InputError(f"The model {name!r} is not promptable; use a prompt model (e.g. nuclei-2d-prompt) or "
                         "fine-tune one with `attnseg finetune DATASET --model M --prompts --out DIR`.")
    dims = int(model.spatial_dims)
    img = np.asarray(image)
    cin = int(model.in_channels)
    if img.ndim == dims and cin == 1:
        img = img[None]
    if img.ndim != dims + 1 or img.shape[0] != cin:
        raise InputError(f"The model segments {dims}D images with {cin} channel(s); got an image of shape "
                         f"{np.asarray(image).shape}.")
    shape = img.shape[1:]
    pts = np.asarray(points, dtype=float)
    if pts.ndim == 1 and pts.size == dims:
        pts = pts[None]
    if pts.ndim != 2 or pts.shape[1] != dims or len(pts) == 0:
        raise InputError(f"points must be an (N, {dims}) array of array-index coordinates for this {dims}D image; "
                         f"got shape {pts.shape}.")
    labs = np.asarray(labels).reshape(-1)
    if len(labs) != len(pts):
        raise InputError(f"There are {len(pts)} point(s) but {len(labs)} label(s) ({labs.tolist()}); give one label "
                         "per point, 1 (positive) or 0 (negative).")
    if not np.isin(labs, (0, 1)).all():
        raise InputError(f"labels must be {len(pts)} values, each 1 (positive) or 0 (negative); got {labs.tolist()}.")
    labs = labs.astype(int)
    if not np.isfinite(pts).all():
        raise InputError("A click has a non-finite coordinate.")
    outside = [i for i, p in enumerate(pts) if ((p < -0.5) | (p > np.array(shape) - 0.5)).any()]
    if outside:
        i = outside[0]
        raise InputError(f"Click {i + 1} at {tuple(round(float(v), 1) for v in pts[i])} is outside the image "
                         f"(shape {tuple(shape)}); click on the image.")
    if not (labs == 1).any():
        raise InputError("Start an object with a positive click; negative clicks only refine it.")
    pts = np.clip(pts, 0, np.array(shape) - 1)
    prev = None
    if previous is not None:
        prev = np.asarray(previous)
        if prev.shape != tuple(shape):
            raise InputError(f"previous has shape {prev.shape} but the image's spatial shape is {tuple(shape)}.")
        prev = prev > 0
    if spacing is not None:
        from ..inference.checks import check_spacing

        spacing = check_spacing(spacing, dims, dims + 1)  # per spatial axis, or per array axis (channel first)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.number)) or not 0 < threshold < 1:
        raise InputError(f"threshold is an object probability strictly between 0 and 1 (default 0.5); got {threshold!r}.")
    if device is not None:
        from ..devices import resolve_device

        device = resolve_device(device)
    card = getattr(model, "card", None)
    stats = None
    if not normalized:  # statistics of the whole image (as at training), applied to the crop only
        from ..inference.normalize import compute_stats

        spec = card.normalization if card is not None else {"scheme": "percentile", "lower": 1.0, "upper": 99.0}
        stats = compute_stats(img, spec, True)
    if merge not in ("local", "replace"):
        raise InputError(f"merge is 'local' or 'replace'; got {merge!r}.")
    init = getattr(card, "prompt_init", None) if prompt_init == "card" else prompt_init
    if init not in PROMPT_INITS:
        raise InputError(f"prompt_init is 'card', 'threshold' or None; got {init!r}.")
    from .scaled import segment_rescaled, zoom_for

    zoom, note = zoom_for(card, diameter)
    if zoom is not None:
        res = segment_rescaled(segment_with_prompts, model, img, pts, labs, prev, zoom, stats, dict(
            attention=attention, threshold=threshold, device=device, prompt_init=prompt_init, merge=merge,
            new_clicks=new_clicks))
        res.timings["total"] = time.perf_counter() - t0
        res.params["diameter"] = float(diameter)
        res.warnings += ([note] if note else []) + _domain(card, img, cin, normalized, stats)
        return res
    opts = getattr(model, "prompt_options", {})
    radius = radius_per_axis(opts.get("radius", 5.0), dims, spacing, getattr(card, "spacing", None))
    divisor = int(getattr(model, "size_divisor", 1))
    t_model = 0.0
    grow = 1.0
    used = None
    for _ in range(3):  # grow the crop while the object touches a side of it that is not the image's
        box = crop_box(shape, pts, labs, prev if used is None else None, divisor, grow)
        if init == "threshold" and (used is not None or prev is None or not prev[box].any()):
            from .initial import threshold_guess  # a new object: start from the threshold guess on this crop

            used = np.zeros(shape, bool)
            used[box] = threshold_guess(img[(0, *box)], pts - np.array([s.start for s in box]), labs,
                                        enclosed=True)
        t1 = time.perf_counter()
        prob, maps = predict_crop(model, img, pts, labs, prev if used is None else used, box, radius, attention,
                                  device, stats)
        t_model += time.perf_counter() - t1
        start = np.array([s.start for s in box])
        local = _keep_clicked(prob > threshold, pts - start, labs)
        if not cut_by_box(local, box, shape):
            break
        grow *= 2
    merged = merge == "local" and len(pts) > 1 and prev is not None and bool(prev[box].any())
    if merged:  # (the box holds the previous mask, or MAX_CROP of it around the newest click)
        fresh = pts[-max(1, min(int(new_clicks), len(pts))):] - start  # the clicks this run is the first to use
        local = _keep_clicked(merge_local(prev[box], local, fresh, radius), pts - start, labs)
    diam = getattr(card, "object_diameter", None)
    reach = radius * (float(diam) / float(opts.get("radius", 5.0)) if diam else HONOUR_REACH)
    local, honoured = honour_clicks(local, prob, pts - start, labs, reach)
    mask = np.zeros(shape, bool)
    mask[box] = local
    maps_out = []
    strides = getattr(model, "attention_strides", {})
    from ..inference.forward import map_centre

    for level, (name, data) in enumerate(maps.items()):
        st = tuple(float(s) for s in strides.get(name, (1,) * dims))
        centre = map_centre(model, name) if name in strides else (0.0,) * dims  # (msga's grid: pixel i on 4i, not 4i+1.5)
        maps_out.append(AttentionMap(name, level, data, st, tuple(b + c for b, c in zip(start, centre))))
    domain = _domain(card, img, cin, normalized, stats)
    return PromptResult(mask, box, prob.astype(np.float32), maps_out, pts, labs,
                        {"total": time.perf_counter() - t0, "model": t_model},
                        {"radius": radius.tolist(), "threshold": threshold,
                         "prompt_init": "threshold" if used is not None else None,
                         "merge": "local" if merged else "replace", "honoured_clicks": honoured}, domain)


def _domain(card, img: np.ndarray, cin: int, normalized: bool, stats: dict | None = None) -> list[str]:
    """What ``predict`` warns about the image too: unlike the model's training data, constant, NaN/Inf values."""
    from ..inference.checks import count_nonfinite, domain_warning

    if normalized:
        return []
    found = [domain_warning(card, img[0] if cin == 1 else img, cin > 1)]
    if stats is not None and stats.get("constant"):
        found.append("The image is constant: the model has nothing to segment; check the layer or the file.")
    if n_bad := count_nonfinite(img):
        found.append(f"The image has {n_bad} NaN or infinite values; they were treated as the image minimum.")
    return [w for w in found if w]


def object_at(labels: np.ndarray, point: Sequence[float]) -> np.ndarray | None:
    """The connected component of ``labels`` (same value) under ``point``, as a bool mask: the
    ``previous`` of a session that corrects an existing object. None on background. (Labelled in a box
    around the point that grows until the object lies inside it: :func:`~.session.component_at`.)"""
    from .session import component_at

    return component_at(labels, point)


def edit_for(labels: np.ndarray, result: PromptResult, value: int, previous: np.ndarray | None = None,
             owned: np.ndarray | None = None):
    """The change that writes ``result`` into ``labels`` as ``value``: ``(indices, values)`` for
    ``layer.data_setitem(indices, values)`` (napari's undoable edit).

    Only the object's change since ``previous`` (its mask after the last run; None: a new object) is
    written, and nothing a person made elsewhere is lost:
    - voxels the new mask adds are written where the labels are background (0); voxels of another class
      or object are never overwritten, and a voxel of ``previous`` erased by hand since stays erased;
    - voxels of ``previous`` the new mask drops go back to 0 where they still hold ``value`` and, with
      ``owned`` (the object's own voxels: those it started with and those its runs wrote), only there,
      so a neighbour of the same class that the object's mask overlapped is kept."""
    if labels.shape != result.mask.shape:
        raise InputError(f"The labels have shape {labels.shape} but the result {result.mask.shape}.")
    prev = np.zeros(labels.shape, bool) if previous is None else np.asarray(previous) > 0
    add = result.mask & ~prev & (labels == 0)
    drop = prev & ~result.mask & (labels == value)
    if owned is not None:
        drop &= np.asarray(owned) > 0
    where = np.nonzero(add | drop)
    values = np.where(add[where], value, 0).astype(labels.dtype)
    return where, values
