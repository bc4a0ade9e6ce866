"""Click to fix polished after an audit of the Correct tab's click mode, in a real viewer with napari's own mouse
dispatch: a click's result that arrived during a brush stroke joined that stroke's undo step (one Ctrl+Z undid
both); the *Class* list was built only when a mask was chosen (a class added by painting or clicking could not
be picked for the helpers); a renamed prompts layer was left empty beside a new one, and a renamed image got a
second prompt attention layer."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui


class _Event:
    def __init__(self, position, kind="mouse_press", modifiers=(), button=1):
        self.type, self.position, self.modifiers, self.button = kind, tuple(position), list(modifiers), button
        self.pos = np.zeros(2)
        self.view_direction, self.dims_displayed, self.is_dragging = None, [0, 1], kind == "mouse_move"


def _press_release(viewer, position, **kw) -> None:
    """One click the way napari dispatches it: the viewer's drag callbacks, then the selected layer's."""
    from napari.utils._proxies import ReadOnlyWrapper
    from napari.utils.interactions import mouse_press_callbacks, mouse_release_callbacks

    active = viewer.layers.selection.active
    for obj in (viewer, active):
        mouse_press_callbacks(obj, ReadOnlyWrapper(_Event(position, **kw)))
        mouse_release_callbacks(obj, _Event(position, kind="mouse_release", **kw))


@pytest.fixture
def clicking(nuclei_click_panel):
    return nuclei_click_panel


def _centres(ref, n):
    from scipy import ndimage as ndi

    ids = [i for i in np.unique(ref[30:-30, 30:-30]) if i][:n]
    return [tuple(float(c) for c in ndi.center_of_mass(ref == i)) for i in ids]


def _pixel(point):
    return tuple(int(round(c)) for c in point)


# -- 1. a click's result arriving during a brush stroke ------------------------------------------------------------
def test_a_click_written_during_a_brush_stroke_is_its_own_undo_step(clicking, qtbot):
    """The run's result arrives (from the worker) while the user paints on the mask: napari stages the stroke's
    history, and the click's voxels joined the stroke's step: one Ctrl+Z undid both. Now the click is its own
    step: Ctrl+Z undoes the stroke, the click's object stays, and a second Ctrl+Z undoes the click."""
    from napari.utils._proxies import ReadOnlyWrapper
    from napari.utils.interactions import mouse_move_callbacks, mouse_press_callbacks, mouse_release_callbacks

    viewer, corr, mask, ref = clicking
    pm = corr.prompt
    target = _centres(ref, 1)[0]
    _press_release(viewer, target)  # the run starts in a worker; its result is delivered by the event loop
    assert pm.busy
    # a brush stroke in a corner, begun before the result arrives
    viewer.layers.selection.active = mask
    mask.mode, mask.selected_label, mask.brush_size = "paint", 3, 5
    press = ReadOnlyWrapper(_Event((5.0, 5.0)))
    mouse_press_callbacks(mask, press)
    assert mask._block_history, "napari groups a stroke's history"
    qtbot.waitUntil(lambda: not pm.busy, timeout=60000)  # the result arrives mid-stroke
    clicked = np.asarray(mask.data).copy()
    assert clicked[_pixel(target)] > 0
    assert mask._block_history, "the stroke goes on as napari left it"
    mouse_move_callbacks(mask, _Event((5.0, 12.0), kind="mouse_move"))
    mouse_release_callbacks(mask, _Event((5.0, 12.0), kind="mouse_release"))
    assert not mask._block_history and (np.asarray(mask.data)[5, 5:13] == 3).all()
    assert len(mask._undo_history) == 2, "the click joined the stroke's undo step"
    mask.undo()  # napari's Ctrl+Z on the mask: the stroke only
    now = np.asarray(mask.data)
    assert now[_pixel(target)] == clicked[_pixel(target)], "Ctrl+Z of the stroke undid the click too"
    assert not (now == 3).any()
    mask.undo()  # then the click
    assert not np.asarray(mask.data).any()


def test_undo_last_click_during_a_brush_stroke_is_its_own_undo_step(clicking, qtbot):
    """*Undo last click* pressed while a stroke is staged (a Ctrl+Z of the prompts layer would be the same) reverts
    the click in a step of its own, not inside the stroke's."""
    viewer, corr, mask, ref = clicking
    pm = corr.prompt
    target = _centres(ref, 1)[0]
    _press_release(viewer, target)
    qtbot.waitUntil(lambda: not pm.busy, timeout=60000)
    assert np.asarray(mask.data)[_pixel(target)] > 0
    with mask.block_history():  # a stroke (napari's draw runs inside this context)
        mask.paint((5, 5), 3)
        pm.undo_last_click()
        assert not np.asarray(mask.data)[_pixel(target)]
        mask.paint((5, 12), 3)
    assert len(mask._undo_history) == 3  # the click, its undo, the stroke
    mask.undo()
    assert not (np.asarray(mask.data) == 3).any() and not np.asarray(mask.data)[_pixel(target)]


# -- 2. the Class list follows the mask's values -----------------------------------------------------------------
def _class_values(corr):
    return [v for v in corr.class_combo.choices if v]


def test_the_class_list_follows_values_painted_clicked_or_replaced(make_napari_viewer, qtbot):
    """A mask holding label 1 only (or nothing): paint label 2, and the helpers can pick class 2; a click that
    starts an object of label 3 (napari's selected label) lists 3; replaced data lists what they hold. The class
    chosen stays chosen, and the classes named by the mask's card keep their names."""
    from napari_attnseg._napari.correct_widget import CorrectWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64), np.float32), name="img")
    data = np.zeros((64, 64), np.uint8)
    data[10:20, 10:20] = 1
    mask = viewer.add_labels(data, name="img mask", metadata={"class_names": ["background", "nucleus"]})
    corr = CorrectWidget(viewer)
    assert _class_values(corr) == [1]
    corr.class_combo.value = 1
    mask.paint((40, 40), 2)  # napari's brush
    assert _class_values(corr) == [1, 2], "a painted class could not be picked"
    assert corr.class_combo.value == 1
    assert "1: nucleus" in [corr.class_combo.native.itemText(i) for i in range(corr.class_combo.native.count())]
    corr.class_combo.value = 2
    corr.fill_holes()  # the helpers run on the new class
    mask.data_setitem((np.array([50]), np.array([50])), 5)  # a helper's or a click's write
    assert _class_values(corr) == [1, 2, 3, 4, 5] and corr.class_combo.value == 2
    mask.data = np.full((64, 64), 7, np.uint8)  # replaced (a run into the same layer, a script)
    qtbot.waitUntil(lambda: 7 in _class_values(corr), timeout=2000)
    # an empty mask, then a click's write of label 1
    empty = viewer.add_labels(np.zeros((64, 64), np.uint8), name="empty mask")
    corr.labels_combo.value = empty.name
    assert _class_values(corr) == []
    empty.data_setitem((np.array([3]), np.array([3])), 1)
    assert _class_values(corr) == [1]
    mask.paint((5, 5), 9)  # the mask no longer chosen: its edits leave the list alone
    assert _class_values(corr) == [1]


def test_a_click_on_background_adds_its_class_to_the_list(clicking, qtbot):
    viewer, corr, mask, ref = clicking
    pm = corr.prompt
    assert _class_values(corr) == []
    mask.selected_label = 2  # an instance mask: the next id
    _press_release(viewer, _centres(ref, 1)[0])
    qtbot.waitUntil(lambda: not pm.busy, timeout=60000)
    assert np.asarray(mask.data).max() == 2
    assert _class_values(corr) == [1, 2]


# -- 3. the prompts and prompt attention layers after a rename -----------------------------------------------------
def test_a_renamed_prompts_layer_is_reused(clicking, qtbot):
    """Renaming '<image> prompts' and ticking the mode off and on added a second '<image> prompts' and left the
    renamed one empty: the renamed layer takes the clicks again."""
    from napari.layers import Points

    viewer, corr, mask, ref = clicking
    pm = corr.prompt
    first = pm.points_layer
    first.name = "my clicks"
    pm.enable_box.value = False
    pm.enable_box.value = True
    assert pm.points_layer is first and "cells prompts" not in viewer.layers
    assert [ly.name for ly in viewer.layers if isinstance(ly, Points)] == ["my clicks"]
    assert "my clicks" in pm.status.value
    _press_release(viewer, _centres(ref, 1)[0])
    qtbot.waitUntil(lambda: not pm.busy, timeout=60000)
    assert len(first.data) == 1 and np.asarray(mask.data).any()
    # the image renamed while the mode is off: the same layer again, under the image's new name
    pm.enable_box.value = False
    first.name = "cells prompts"
    viewer.layers["cells"].name = "nuclei"
    pm.enable_box.value = True
    assert pm.points_layer is first and first.name == "nuclei prompts"
    assert [ly.name for ly in viewer.layers if isinstance(ly, Points)] == ["nuclei prompts"]


def test_a_users_points_layer_is_neither_taken_nor_emptied(clicking):
    """Another Points layer is not taken for the clicks, and one of the user's that holds points under the name
    '<image> prompts' (a file of clicks opened, the mode's layer removed) keeps them: the mode adds its own."""
    from napari.layers import Points

    viewer, corr, mask, ref = clicking
    pm = corr.prompt
    other = viewer.add_points(np.empty((0, 2)), name="notes")
    pm.enable_box.value = False
    pm.enable_box.value = True
    assert pm.points_layer is not other and pm.points_layer.name == "cells prompts"
    assert len([ly for ly in viewer.layers if isinstance(ly, Points)]) == 2
    viewer.layers.remove(pm.points_layer)  # the mode goes off
    assert not pm.enable_box.value
    mine = viewer.add_points(np.array([[10.0, 10.0], [20.0, 20.0]]), name="cells prompts")
    pm.enable_box.value = True
    assert len(mine.data) == 2, "the user's points were cleared"
    assert pm.points_layer is not mine and pm.points_layer in viewer.layers and not len(pm.points_layer.data)


def test_the_prompt_attention_layer_follows_an_image_rename(clicking, qtbot):
    """After the image is renamed, the next click's attention went to a new '<new name> prompt attention' beside
    the old one; now the one layer is updated and renamed with the image (a name the user gave it is kept)."""
    viewer, corr, mask, ref = clicking
    pm = corr.prompt
    first, second = _centres(ref, 2)
    _press_release(viewer, first)
    qtbot.waitUntil(lambda: not pm.busy, timeout=60000)
    layer = viewer.layers["cells prompt attention"]
    viewer.layers["cells"].name = "nuclei"
    assert corr.image_combo.value == "nuclei"
    pm.new_object()
    _press_release(viewer, second)
    qtbot.waitUntil(lambda: not pm.busy, timeout=60000)
    attention = [ly.name for ly in viewer.layers if "prompt attention" in ly.name]
    assert attention == ["nuclei prompt attention"] and viewer.layers["nuclei prompt attention"] is layer
    assert layer.visible
    layer.name = "my attention"  # the user's name stays
    pm.new_object()
    _press_release(viewer, first)
    qtbot.waitUntil(lambda: not pm.busy, timeout=60000)
    assert [ly.name for ly in viewer.layers if "attention" in ly.name] == ["my attention"]


# -- checked along: the mask deleted while a click runs ------------------------------------------------------------
def test_deleting_the_mask_while_a_click_runs_says_so(clicking, qtbot):
    """The run's result is dropped (nothing to write into) and the status says the mask was deleted (it said the
    earlier clicks stay in their mask)."""
    viewer, corr, mask, ref = clicking
    pm = corr.prompt
    _press_release(viewer, _centres(ref, 1)[0])
    assert pm.busy
    viewer.layers.remove(mask)
    assert "'cells mask' was deleted" in pm.status.value and not pm.clicks
    qtbot.waitUntil(lambda: not pm.busy, timeout=60000)
    assert not np.asarray(mask.data).any() and "was deleted" in pm.status.value
    assert pm.enable_box.value  # a mask added next takes the clicks
