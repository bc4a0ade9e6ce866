"""Click to fix as napari delivers the clicks: through the viewer's and the layers' mouse callbacks (napari's
own dispatch, ``mouse_press_callbacks`` / ``mouse_release_callbacks``), with whatever layer napari selected.

An audit with real mouse events found: the first click adds '<image> prompt attention', napari selects it,
and every later click and Ctrl+Z went nowhere without a word; a click on a 3D rendering was written into a
slice nobody saw (or refused as 'outside'); napari's Ctrl+Z on the mask undid a click's voxels but the click
stayed, and the next click wrote them back."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui


class _Event:
    def __init__(self, position, kind="mouse_press", modifiers=(), button=1):
        self.type, self.position, self.modifiers, self.button = kind, tuple(position), list(modifiers), button
        self.pos = np.zeros(2)


def _press_release(viewer, position, **kw) -> None:
    """One click the way napari dispatches it: the viewer's drag callbacks, then the selected layer's."""
    from napari.utils._proxies import ReadOnlyWrapper
    from napari.utils.interactions import mouse_press_callbacks, mouse_release_callbacks

    active = viewer.layers.selection.active
    for obj in (viewer, active):
        press = ReadOnlyWrapper(_Event(position, **kw))
        mouse_press_callbacks(obj, press)
        mouse_release_callbacks(obj, _Event(position, kind="mouse_release", **kw))


@pytest.fixture
def clicking(nuclei_click_panel):
    viewer, corr, mask, ref = nuclei_click_panel
    return viewer, corr.prompt, mask, ref


def _centres(ref, n):
    from scipy import ndimage as ndi

    ids = [i for i in np.unique(ref[30:-30, 30:-30]) if i][:n]
    return [tuple(float(c) for c in ndi.center_of_mass(ref == i)) for i in ids]


def test_clicks_go_on_after_napari_selects_the_attention_layer_or_the_image(clicking, qtbot):
    viewer, pm, mask, ref = clicking
    first, second = _centres(ref, 2)
    assert viewer.layers.selection.active is pm.points_layer
    _press_release(viewer, first)
    qtbot.waitUntil(lambda: not pm.busy, timeout=60000)
    assert len(pm.clicks) == 1 and "cells prompt attention" in viewer.layers
    assert viewer.layers.selection.active is pm.points_layer, "the added attention layer took the selection"
    _press_release(viewer, first, modifiers=("Shift",))  # a refining (negative) click still arrives
    qtbot.waitUntil(lambda: not pm.busy, timeout=60000)
    assert [lab for _, lab in pm.clicks] == [1, 0]
    # the user (or a Segment run) selects the image layer: clicks on it are clicks too, never two at once
    pm.new_object()
    viewer.layers.selection.active = viewer.layers["cells"]
    _press_release(viewer, second)
    qtbot.waitUntil(lambda: not pm.busy, timeout=60000)
    assert len(pm.clicks) == 1 and mask.data[tuple(int(round(c)) for c in second)] > 0
    # a Labels layer being painted keeps its tools: no click
    viewer.layers.selection.active = mask
    mask.mode = "paint"
    _press_release(viewer, first)
    assert len(pm.clicks) == 1
    # the mode off: nothing listens any more
    pm.enable_box.value = False
    assert pm.status.value == "Click to fix is off."
    viewer.layers.selection.active = viewer.layers["cells"]
    _press_release(viewer, first)
    assert len(pm.clicks) == 0


def test_a_click_on_a_3d_rendering_is_refused_with_the_way_back(clicking):
    viewer, pm, mask, ref = clicking
    viewer.dims.ndisplay = 3
    _press_release(viewer, _centres(ref, 1)[0])
    assert not pm.clicks and "2D view" in pm.status.value and not mask.data.any()


def test_ctrl_z_on_the_mask_removes_the_click_it_undid(clicking, qtbot):
    viewer, pm, mask, ref = clicking
    first, second = _centres(ref, 2)
    _press_release(viewer, first)
    qtbot.waitUntil(lambda: not pm.busy, timeout=60000)
    written = np.asarray(mask.data).copy()
    assert written.any()
    mask.undo()  # napari's Ctrl+Z with the mask layer selected
    assert not np.asarray(mask.data).any() and len(pm.clicks) == 1
    _press_release(viewer, second)  # the next click starts afresh instead of refining the undone object
    qtbot.waitUntil(lambda: not pm.busy, timeout=60000)
    assert len(pm.clicks) == 1 and pm.clicks[0][0] == pytest.approx(second)
    now = np.asarray(mask.data)
    assert now[tuple(int(round(c)) for c in second)] > 0
    assert not now[tuple(int(round(c)) for c in first)], "the undone object was written back"
