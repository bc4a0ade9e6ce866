"""Click to fix on a big volume: a click's write is computed over the run's crop and written through the
mask's history (one entry, the changed voxels only), and nothing on the GUI thread scales with the volume
(the 48x512x512 lung CT stalled napari 1-4 s per toggle / click / undo)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def _stack(make_napari_viewer, slices: int = 4):
    from napari_attnseg._napari.correct_widget import CorrectWidget
    from napari_attnseg._paths import samples_dir
    from napari_attnseg.data import read_image
    from napari_attnseg.models.registry import bundled_models

    if "nuclei-2d-prompt" not in bundled_models():
        pytest.skip("no bundled promptable model")
    plane = read_image(samples_dir() / "nuclei2d_image.tif").data[:256, 256:]
    ref = read_image(samples_dir() / "nuclei2d_labels.tif").data[:256, 256:]
    viewer = make_napari_viewer()
    viewer.add_image(np.stack([plane] * slices), name="stack")
    mask = viewer.add_labels(np.zeros((slices, *plane.shape), np.uint8), name="stack mask")
    corr = CorrectWidget(viewer)
    corr.prompt.model_combo.value = "nuclei-2d-prompt"
    return viewer, corr, mask, ref


def _deepest(ref):
    from scipy import ndimage as ndi

    ids, counts = np.unique(ref[64:-64, 64:-64], return_counts=True)
    obj = ref == int(ids[1:][np.argmax(counts[1:])])
    return np.unravel_index(np.argmax(ndi.distance_transform_edt(obj)), obj.shape)


def test_a_click_writes_its_crop_through_one_history_entry(make_napari_viewer, qtbot, monkeypatch, notifications):
    """The edit is computed on the run's crop (it was computed on the whole slice, or the whole volume for a 3D
    model), written as one undo entry holding only the changed voxels, the panel's statistics are scheduled
    (not recomputed over the volume at once), toggling does not load the model on the GUI thread, and
    napari's Ctrl+Z on the mask undoes exactly that click."""
    import napari_attnseg.prompts as prompts

    viewer, corr, mask, ref = _stack(make_napari_viewer)
    pm = corr.prompt
    pm.enable_box.value = True
    assert "2D model" in pm.status.value and not pm._loaded, "toggling loaded the model on the GUI thread"
    y, x = _deepest(ref)
    removed = []
    viewer.layers.events.removed.connect(lambda e: removed.append(e.value.name))
    pm.click((1.0, float(y), float(x)))  # a first object, undone: a new object hides the attention, not removes it
    qtbot.waitUntil(lambda: not pm.busy, timeout=60000)
    assert np.asarray(mask.data)[1, y, x] == 1 and viewer.layers["stack prompt attention"].visible
    pm.undo_last_click()
    assert not np.asarray(mask.data).any() and not removed, removed
    assert not viewer.layers["stack prompt attention"].visible
    seen = []
    edit_for = prompts.edit_for

    def spy(labels, result, *args, **kwargs):
        seen.append((labels.shape, result.mask.shape))
        return edit_for(labels, result, *args, **kwargs)

    monkeypatch.setattr(prompts, "edit_for", spy)
    direct = []
    monkeypatch.setattr(corr, "_update_info", lambda *a: direct.append(a))
    paint = []
    mask.events.paint.connect(lambda e: paint.append(e.value))
    stroke = (np.full(3, 0), np.arange(3), np.arange(3))
    mask.data_setitem(stroke, np.full(3, 2, np.uint8))  # someone's earlier edit on another slice
    paint.clear()
    pm.click((2.0, float(y), float(x)))
    qtbot.waitUntil(lambda: not pm.busy, timeout=60000)
    box = tuple(pm.last_result.box)
    crop = tuple(s.stop - s.start for s in box)
    assert seen == [(crop, crop)] and crop != ref.shape, seen
    written = np.asarray(mask.data).copy()
    assert written[2, y, x] == 1 and not written[[1, 3]].any()
    assert len(paint) == 1 and len(paint[0]) == 1, "one history entry of one atom"
    indices, before, after = paint[0][0]
    changed = np.argwhere(written != 0)
    assert len(indices[0]) == len(before) == len(after) == len(changed) - 3, "the entry holds the changed voxels only"
    assert (indices[0] == 2).all() and all(
        (i >= s.start).all() and (i < s.stop).all() for i, s in zip(indices[1:], box))
    assert not direct and corr._stats_timer.isActive(), "the statistics are scheduled, not recomputed at once"
    mask.undo()  # napari's own Ctrl+Z on the mask: exactly the click
    assert (np.asarray(mask.data)[stroke] == 2).all() and np.count_nonzero(mask.data) == 3
    mask.redo()
    assert np.array_equal(np.asarray(mask.data), written)
    assert viewer.layers["stack prompt attention"].visible and not removed
    raised = [n for n in notifications if getattr(n, "exception", None) is not None]
    assert not raised, [str(n.message) for n in raised]


def test_click_edit_over_the_crop_equals_the_whole_volume_edit():
    """The crop-bounded edit (napari prompt mode) is the core's whole-volume ``edit_for`` with the session's
    ``removable``, for 3D runs and 2D runs on a slice, on an object being corrected and a new one, even when
    the old mask reaches outside the new crop."""
    from napari_attnseg._napari.prompt_write import click_edit, extent, removable_in
    from napari_attnseg.prompts import PromptSession, edit_for
    from napari_attnseg.prompts.segment import PromptResult

    rng = np.random.default_rng(0)
    shape = (6, 40, 50)
    labels = (rng.random(shape) < 0.05).astype(np.uint8) * 3  # another class here and there
    labels[2:4, 5:15, 5:20] = 1  # an existing object of class 1
    initial = labels == 1

    def result(box, z=None):
        sub = shape if z is None else shape[1:]
        m = np.zeros(sub, bool)
        m[box] = rng.random(tuple(s.stop - s.start for s in box)) < 0.6
        return PromptResult(m, box, np.zeros(1, np.float32), [], np.zeros((1, len(sub))), np.ones(1, int))

    for start in (None, initial):
        session = PromptSession(initial=start)
        for box, z in [((slice(1, 5), slice(10, 30), slice(10, 40)), None), ((slice(12, 32), slice(0, 20)), 3),
                       ((slice(0, 6), slice(20, 40), slice(25, 50)), None)]:
            session.add((2.0, 20.0, 20.0))
            res = result(box, z)
            before = session.current
            removable = session.removable(shape)
            cur = labels if z is None else labels[z]
            prev = before if (before is None or z is None) else before[z]
            where, values = edit_for(cur, res, 1, prev, removable if z is None else removable[z])
            if z is not None:
                where = (np.full_like(where[0], z), *where)
            got_where, got_values, after = click_edit(labels, res, 1, session, z)
            want = np.zeros(shape, np.int16) - 1
            want[where] = values
            got = np.zeros(shape, np.int16) - 1
            got[got_where] = got_values
            assert np.array_equal(got, want) and len(got_where[0]) == len(where[0])
            big = (slice(0, 6), slice(0, 40), slice(0, 50))
            assert np.array_equal(removable_in(session, big), removable)
            assert after.shape == res.mask.shape  # a 2D run on a slice keeps that slice's mask, not a volume
            session.record(after, edit=(got_where, got_values), labels=labels, z=z)
            want_now = before.copy() if z is not None and before is not None else np.zeros(shape, bool)
            if z is None:
                want_now = res.mask
            else:
                want_now[z] = res.mask
            assert np.array_equal(session.current, want_now)
            labels = labels.copy()
            labels[got_where] = got_values
    assert extent(np.zeros(shape, bool)) is None
    assert extent(initial) == (slice(2, 4), slice(5, 15), slice(5, 20))


def test_the_status_says_when_a_click_moved_the_edge_the_model_ignored(make_napari_viewer, qtbot, monkeypatch,
                                                                       notifications):
    """A run in which clicks the model alone ignored were obeyed (``params['honoured_clicks']``) says so in the
    prompt mode's status, so the clinician knows the edge moved by that rule, not by the model."""
    import napari_attnseg.prompts as prompts

    viewer, corr, mask, ref = _stack(make_napari_viewer, slices=2)
    pm = corr.prompt
    pm.enable_box.value = True
    run = prompts.segment_with_prompts

    def obeyed(*args, **kwargs):
        res = run(*args, **kwargs)
        res.params["honoured_clicks"] = 2
        return res

    monkeypatch.setattr(prompts, "segment_with_prompts", obeyed)
    y, x = _deepest(ref)
    pm.click((0.0, float(y), float(x)))
    qtbot.waitUntil(lambda: not pm.busy, timeout=60000)
    assert "2 click(s) moved the edge along the model's contour" in pm.status.value, pm.status.value
    monkeypatch.setattr(prompts, "segment_with_prompts", run)
    pm.click((0.0, float(y), float(x) + 1.0))
    qtbot.waitUntil(lambda: not pm.busy, timeout=60000)
    assert "moved the edge" not in pm.status.value
