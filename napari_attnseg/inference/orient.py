"""Run a model on a volume turned to the orientation it was trained in, and turn the results back.

A model card may say which way its training volumes' array axes ran (``orientation``, e.g.
``["S", "A", "R"]``: axial slices along the first axis). A volume stored otherwise (a sagittally
acquired T1, an LPS-stored CT) is permuted and flipped to that orientation (no resampling), segmented,
and the labels, probabilities and attention maps are permuted back onto the stored grid, voxel for voxel.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path

import numpy as np

from ..data.orientation import reorientation
from ..errors import InputError
from .checks import check_input
from .prediction import AttentionMap, Prediction


def needed(model, image, options: dict):
    """The :class:`~napari_attnseg.data.orientation.Reorientation` this run needs, or None."""
    target = getattr(getattr(model, "card", None), "orientation", None)
    source = options.get("orientation")
    if not target or not source:
        return None
    _, has_channels = check_input(model, image, options.get("mode"))
    if np.ndim(image) - (1 if has_channels else 0) != 3:
        return None
    try:
        return reorientation(source, target)
    except ValueError as exc:  # a malformed orientation: the caller's mistake, said as such
        raise InputError(f"orientation: {exc}") from None


def with_orientation(run, model, image, options: dict, turn) -> Generator[tuple[int, int], None, Prediction]:
    """``run(model, image, options)`` (a generator) on the image turned by ``turn``; the results turned
    back. Says what it did in ``params["reoriented"]``."""
    moved = turn.apply(np.asarray(image))
    stored_spacing = None if options.get("spacing") is None else [float(s) for s in options["spacing"]]
    options = {**options, "spacing": turn.spacing(options.get("spacing"))}
    pred = yield from run(model, moved, options)
    spatial = moved.shape[-3:]
    pred.labels = turn.undo(np.asarray(pred.labels))
    if pred.probabilities is not None:
        pred.probabilities = turn.undo(np.asarray(pred.probabilities))
    maps = []
    for m in pred.attention:
        data, scale, translate = turn.undo_map(np.asarray(m.data), m.scale, m.translate, spatial)
        maps.append(AttentionMap(m.name, m.level, data, scale, translate))
    pred.attention = maps
    if options.get("out") is not None:  # the memory-mapped outputs go back on the stored grid too
        pred.labels, pred.probabilities = _rewrite(Path(options["out"]), pred.labels, pred.probabilities)
    pred.params["reoriented"] = turn.describe()
    pred.params["model_shape"] = [int(n) for n in spatial]  # the grid the model ran on (its slices, in 2D mode)
    if pred.params.get("spacing") is not None:  # the image's spacing as stored (the record's own order), not the model's
        pred.params["spacing"] = stored_spacing
    return pred


def _rewrite(folder: Path, *arrays):
    out = []
    for name, a in zip(("labels", "probabilities"), arrays):
        if a is None:
            out.append(None)
            continue
        tmp = folder / f".{name}.npy"
        mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=a.dtype, shape=a.shape)
        mm[...] = a
        mm.flush()
        del mm
        os.replace(tmp, folder / f"{name}.npy")
        out.append(np.load(folder / f"{name}.npy", mmap_mode="r+"))
    return out
