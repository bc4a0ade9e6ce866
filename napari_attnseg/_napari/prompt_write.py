"""Click to fix: one run's result as an edit of the mask, computed over the run's crop only.

A run changes the mask only inside its crop (``result.box``) and where the object's mask before it lay
(the crop covers that too, but the edit does not rely on it), so the change is computed there with
:func:`napari_attnseg.prompts.edit_for` on views of that region and shifted back to the mask's
indices: a click on a 48x512x512 CT costs what its crop costs, not the volume (it was about 0.2 s of
whole-volume work per click on the GUI thread, for a 3D model). And the run's modulated attention shown
as a layer (:func:`show_prompt_attention`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..display import heatmap_style


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
    where = tuple(w + s.start for w, s in zip(where, box))
    if z is None:
        return where, values, result.mask
    return (np.full_like(where[0], z), *where), values, result.mask


def attention_layer_of(viewer, image):
    """The prompt attention layer shown for ``image`` (by its unique id: found after either is renamed)."""
    return next((ly for ly in viewer.layers if type(ly).__name__ == "Image"
                 and (ly.metadata.get("attnseg") or {}).get("prompt_attention") is not None
                 and ly.metadata["attnseg"].get("image") == image.unique_id), None)


def show_prompt_attention(viewer, result, image, z: int | None, keep_selected=None) -> None:
    """The finest level of a run's modulated attention as the layer '<image> prompt attention' (updated in
    place), placed on ``image``; ``z``: a 2D model's run on that slice of a volume. napari selects a layer it
    adds: ``keep_selected`` (the prompts layer, which takes the clicks) is selected again. An earlier click's layer
    for the image is updated after either was renamed (a renamed image got a second layer beside the first)."""
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
    if (layer := attention_layer_of(viewer, image)) is not None:  # (renamed with the image, or by the user)
        given = layer.metadata["attnseg"].get("name")
        if layer.name == given and name not in viewer.layers:  # the name it was given follows the image's
            layer.name = given = name
        name = layer.name  # (a name the user typed stays)
    layer = upsert_layer(viewer, data, {
        "name": name, **heatmap_style(),  # (the Segment run's heatmaps' look: display.py)
        "metadata": {"attnseg": {"prompt_attention": amap.name, "image": image.unique_id, "name": given}},
        **placement_of(image).compose(scale, translate)}, "image")
    layer.visible = True  # hidden when the last object ended
    if keep_selected is not None and selected is keep_selected and keep_selected in viewer.layers:
        viewer.layers.selection.active = keep_selected


def write_step(mask, where, values) -> None:
    """``mask.data_setitem(where, values)`` as an undo step of its own. A click's result arrives from the worker
    whenever it is done, also while the user paints a brush stroke on the mask: napari then stages the stroke's
    history (``_block_history``, set by ``Labels.block_history`` / ``_begin_stroke`` until the stroke ends), and the
    click's voxels joined the stroke's step, so one Ctrl+Z undid both. The click is written unstaged (its own
    entry, and its paint event at once); the stroke's staged atoms stay and are committed when it ends."""
    staged = getattr(mask, "_block_history", False)
    mask._block_history = False
    try:
        mask.data_setitem(where, values)
    finally:
        mask._block_history = staged
