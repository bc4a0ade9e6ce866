"""Click to fix: one run's result as an edit of the mask, computed over the run's crop only.

A run changes the mask only inside its crop (``result.box``) and where the object's mask before it lay
(the crop covers that too, but the edit does not rely on it), so the change is computed there with
:func:`napari_attnseg.prompts.edit_for` on views of that region and shifted back to the mask's
indices: a click on a 48x512x512 CT costs what its crop costs, not the volume (it was about 0.2 s of
whole-volume work per click on the GUI thread, for a 3D model). And the run's modulated attention shown
as a layer (:func:`show_prompt_attention`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..display import heatmap_style
from ..prompts.session import PromptSession


@dataclass
class NewLabelSession(PromptSession):
    """The clicks of a new object started on a labelled region with a label value the mask does not hold (napari's
    selected label after M: a tumour inside the brain model's grey matter). Its runs write it over the voxels of
    ``hosts`` (the values whose regions are far bigger than its first run's object: tissue, not a neighbouring
    object, set by that run), and voxels a later run drops get back the value they had before the object took them.
    A click there had corrected the region under it (an existing label value) and could write no new one."""

    hosts: tuple[int, ...] | None = None
    under: int = 0  # the label value under its first click
    refused: bool = False  # that value is no host (an object like the model's: a nucleus): nothing is written


def _hosts(labels: np.ndarray, value: int, size: int) -> tuple[int, ...]:
    """The label values (not 0 nor ``value``) with more than 4 times ``size`` voxels: regions a new object of ``size``
    voxels may be written over (the test :func:`napari_attnseg.prompts.size.write_report` calls "far bigger")."""
    counts = np.bincount(np.asarray(labels).ravel().astype(np.int64, copy=False)) if np.asarray(labels).size else []
    return tuple(int(v) for v, n in enumerate(counts) if v not in (0, value) and n > 4 * max(1, size))


def _over_regions(sub: np.ndarray, where, values, model: np.ndarray, prev: np.ndarray, value: int, session,
                  box: tuple[slice, ...]):
    """``edit_for``'s edit of a :class:`NewLabelSession`'s run on ``sub`` (the labels in ``box``) with the object also
    written over its hosts' voxels, and the voxels it drops given back their value from before the object."""
    new = sub.copy()
    new[where] = values
    new[model & ~prev & np.isin(sub, session.hosts)] = value
    orig = np.full(sub.shape, -1, np.int64)
    start = np.array([b.start for b in box])
    for state in session.states:  # oldest first: the value a voxel had before the object first took it
        if state.where is None or not len(state.where[0]):
            continue
        idx = np.stack(state.where)[-sub.ndim:] - start[:, None]
        took = ((idx >= 0) & (idx < np.array(sub.shape)[:, None])).all(0) & (state.after == value) \
            & (state.before != value)
        if len(state.where) > sub.ndim:  # (a 2D run on a volume: its slice only)
            took &= state.where[0] == (state.z if state.z is not None else -1)
        sel = tuple(idx[:, took])
        orig[sel] = np.where(orig[sel] < 0, state.before[took], orig[sel])
    back = (new == 0) & (sub == value) & (orig > 0)
    new[back] = orig[back]
    where = np.nonzero(new != sub)
    return where, new[where]


def extent(mask: np.ndarray | None) -> tuple[slice, ...] | None:
    """The bounding box of ``mask``'s True voxels (None: empty). Each axis is reduced over the slab left
    by the previous ones, so a small object in a big volume reads the volume once."""
    if mask is None:
        return None
    mask = np.asarray(mask)
    box: list[slice] = []
    for axis in range(mask.ndim):
        sub = mask[tuple(box)]
        hit = np.flatnonzero(sub.any(axis=tuple(a for a in range(sub.ndim) if a != axis)))
        if not hit.size:
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))  # sub is cut along the earlier axes only
    return tuple(box)


def union(a: tuple[slice, ...], b: tuple[slice, ...] | None) -> tuple[slice, ...]:
    if b is None:
        return a
    return tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b))


def removable_in(session, box: tuple[slice, ...], z: int | None = None) -> np.ndarray:
    """``session.removable(shape, z)[box]`` without building the whole-volume mask: the object's own voxels
    (its mask before the first click, and what its runs wrote) inside ``box``; none on an existing
    object's first run (``z``: a 2D run's first on that slice)."""
    shape = tuple(s.stop - s.start for s in box)
    if session.initial is not None and not session.ran_on(z):
        return np.zeros(shape, bool)
    out = np.zeros(shape, bool) if session.initial is None else np.asarray(session.initial, bool)[box].copy()
    start = np.array([s.start for s in box])
    for state in session.states:
        if state.where is None or not len(state.where[0]):
            continue
        idx = np.stack([w[state.after != 0] for w in state.where]) - start[:, None]
        inside = ((idx >= 0) & (idx < np.array(shape)[:, None])).all(0)
        out[tuple(idx[:, inside])] = True
    return out


def click_edit(labels: np.ndarray, result, value: int, session, z: int | None = None):
    """The edit a run's ``result`` makes to ``labels`` for the object of ``session`` (its clicks so far,
    ``session.current`` its mask before this run), computed over the run's crop: ``(where, values, after)``,
    ``where`` and ``values`` for ``Labels.data_setitem`` (indices into ``labels``), ``after`` the object's
    mask after the run (for ``session.record``). ``z``: a 2D model's run on slice ``z`` of a volume; ``after``
    is then that slice's mask (``session.record(after, ..., z=z)``: no copy of the volume per click)."""
    from ..prompts import edit_for

    plane = labels if z is None else labels[z]
    previous = session.current if z is None else session.current_plane(z)
    box = union(tuple(result.box), extent(previous))  # the crop covers the old mask; never rely on it
    owned = removable_in(session, box if z is None else (slice(z, z + 1), *box), z)
    crop = replace(result, mask=np.asarray(result.mask)[box])
    where, values = edit_for(plane[box], crop, value, None if previous is None else previous[box],
                             owned if z is None else owned[0])
    if isinstance(session, NewLabelSession):
        if session.hosts is None:  # (its first run: the regions it may be written over)
            session.hosts = _hosts(labels, value, int(np.count_nonzero(result.mask)))
            # a click on an object of the model's size (a nucleus, after M) would write a ring of the new label
            # around it: nothing is written, and the status says to select that object's label to correct it
            session.refused = bool(session.under) and session.under not in session.hosts
        if session.refused:
            return tuple(np.zeros(0, np.int64) for _ in labels.shape), np.zeros(0, labels.dtype), \
                np.zeros_like(np.asarray(result.mask), bool)
        prev = np.zeros(crop.mask.shape, bool) if previous is None else np.asarray(previous[box]) > 0
        where, values = _over_regions(np.asarray(plane[box]), where, values, np.asarray(crop.mask, bool), prev, value,
                                      session, box)
    where = tuple(w + s.start for w, s in zip(where, box))
    if z is None:
        return where, values, result.mask
    return (np.full_like(where[0], z), *where), values, result.mask


def attention_layer_of(viewer, image):
    """The prompt attention layer shown for ``image`` (by its unique id: found after either is renamed)."""
    return next((ly for ly in viewer.layers if type(ly).__name__ == "Image"
                 and (ly.metadata.get("attnseg") or {}).get("prompt_attention") is not None
                 and ly.metadata["attnseg"].get("image") == image.unique_id), None)


def show_prompt_attention(viewer, result, image, z: int | None, keep_selected=None, below=None) -> None:
    """The finest level of a run's modulated attention as the layer '<image> prompt attention' (updated in
    place), placed on ``image``; ``z``: a 2D model's run on that slice of a volume. napari selects a layer it
    adds: ``keep_selected`` (the prompts layer, which takes the clicks) is selected again; added, it goes below
    ``below`` (the mask the clicks write: at opacity 0.8 it tinted the object there, as a Segment run's heatmaps
    did). An earlier click's layer for the image is updated after either was renamed (a renamed image got a second
    layer beside the first)."""
    from ._common import placement_of, upsert_layer

    if not result.attention:
        return
    amap = min(result.attention, key=lambda a: float(np.prod(a.scale)))  # the finest level
    data = np.asarray(amap.data, np.float32)
    data = data.max(0) if data.ndim > len(amap.scale) else data  # heads: the strongest
    scale, translate = tuple(amap.scale), tuple(amap.translate)
    if z is not None:
        data, scale, translate = data[None], (1.0, *scale), (float(z), *translate)
    selected = viewer.layers.selection.active
    name = given = f"{image.name} prompt attention"
    added = (layer := attention_layer_of(viewer, image)) is None
    if layer is not None:  # (renamed with the image, or by the user)
        given = layer.metadata["attnseg"].get("name")
        if layer.name == given and name not in viewer.layers:  # the name it was given follows the image's
            layer.name = given = name
        name = layer.name  # (a name the user typed stays)
    from ..layers import SCALE_NOTE
    from .prompt_view import follow
    from .result_layers import keep_help

    lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
    note = (f"prompt attention {amap.name}: the click model's finest attention gates around the object, as your clicks "
            f"moved them (opened near positive clicks, closed near negative ones; one value per "
            f"{' x '.join(f'{v:.3g}' for v in amap.scale)} image pixels). {SCALE_NOTE}; values here {lo:.2f}-{hi:.2f}. "
            "1 = the model passes these features on fully, 0 = it suppresses them.")
    layer = upsert_layer(viewer, data, {
        "name": name, **heatmap_style(),  # (the Segment run's heatmaps' look: display.py)
        "metadata": {"attnseg": {"prompt_attention": amap.name, "image": image.unique_id, "name": given, "help": note}},
        **placement_of(image).compose(scale, translate)}, "image")
    keep_help(viewer, layer)  # the status bar's note while the layer is selected (it said "use <2> for transform")
    follow(layer, image, scale, translate)  # (a placement set on the image later: it kept the old one until a click)
    layer.visible = True  # hidden when the last object ended
    if added and below is not None and below in viewer.layers \
            and (at := viewer.layers.index(layer)) > (under := viewer.layers.index(below)):
        viewer.layers.move(at, under)
    if added and keep_selected is not None and keep_selected in viewer.layers:  # the clicks drawn above it: added on
        at, points = viewer.layers.index(layer), viewer.layers.index(keep_selected)  # top, it hid them (it peaks
        if at > points:  # at the click: 0.8 opacity of its brightest colour over the marker)
            viewer.layers.move(at, points)
    if keep_selected is not None and selected is keep_selected and keep_selected in viewer.layers:
        viewer.layers.selection.active = keep_selected


def write_step(mask, where, values):
    """``mask.data_setitem(where, values)`` as an undo step of its own. A click's result arrives from the worker
    whenever it is done, also while the user paints a brush stroke on the mask: napari then stages the stroke's
    history (``_block_history``, set by ``Labels.block_history`` / ``_begin_stroke`` until the stroke ends), and the
    click's voxels joined the stroke's step, so one Ctrl+Z undid both. The click is written unstaged (its own
    entry, and its paint event at once); the stroke's staged atoms stay and are committed when it ends. Returns the
    history entry written (None: nothing changed), for :func:`take_back`."""
    staged = getattr(mask, "_block_history", False)
    history = getattr(mask, "_undo_history", None)
    n = None if history is None else len(history)
    mask._block_history = False
    try:
        mask.data_setitem(where, values)
    finally:
        mask._block_history = staged
    return history[-1] if history is not None and len(history) > n else None


def take_back(mask, step, where, values) -> None:
    """*Undo last click*: the click's change reverted (``where``, ``values``: :func:`napari_attnseg.prompts.session.revert`).
    When the click's history entry ``step`` is still the newest of the mask (no brush stroke or other edit since, no
    stroke staged), the entry is taken off the history and nothing is added: a revert written as an entry of its own
    made napari's Ctrl+Z on the mask then restore the click just undone (its point gone), and a second Ctrl+Z revert
    it again (the change twice in the history). Else the revert is an entry of its own (a later stroke stays)."""
    history = getattr(mask, "_undo_history", None)
    if step is None or not history or history[-1] is not step or getattr(mask, "_block_history", False):
        if where[0].size:
            write_step(mask, where, values)
        return
    history.pop()
    if not where[0].size:
        return
    before = np.array(mask.data[where], copy=True)
    mask.data[where] = values
    mask.events.paint(value=[(where, before, values)])  # (the panel's statistics and class list count the change)
    mask.refresh()


def reverted_runs(session, labels) -> int:
    """How many of ``session``'s newest runs napari's Ctrl+Z on the mask undid
    (:meth:`~napari_attnseg.prompts.session.PromptSession.reverted_runs`)."""
    return session.reverted_runs(labels)
