"""Click to fix on CT and MRI volumes in a real napari viewer (a crop of the radiomics lung1 CT around its tumour,
slices 32-34, and of brain1): the defects a radiologist's session found, each test failing without its fix."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui

DATA = "/work/shared/data/radiomics"


def _read(name):
    from pathlib import Path

    from napari_attnseg.data import read_image

    if not (Path(DATA) / name).exists():
        pytest.skip(f"{DATA}/{name} is not here")
    return read_image(Path(DATA) / name)


@pytest.fixture()
def lung():
    """lung1 slices 28-37 around the tumour (on 4-6 here): image (HU), tumour mask, spacing, tumour centres."""
    from napari_attnseg.models.registry import bundled_models

    if "nuclei-2d-prompt" not in bundled_models():
        pytest.skip("no bundled promptable model")
    im, lb = _read("lung1_image.nii.gz"), _read("lung1_labels.nii.gz")
    box = (slice(28, 38), slice(290, 430), slice(150, 290))
    tumour = (lb.data[box] > 0).astype(np.uint8)
    centres = {z: tuple(np.argwhere(tumour[z]).mean(0).round().astype(int)) for z in (4, 5, 6)}
    return im.data[box].astype(np.float32), tumour, tuple(im.spacing), centres


def _panel(viewer):
    from napari_attnseg._napari.correct_widget import CorrectWidget

    corr = CorrectWidget(viewer)
    corr.prompt.model_combo.value = "nuclei-2d-prompt"
    return corr


def _wait(qtbot, prompt):
    qtbot.waitUntil(lambda: not prompt.busy and not prompt.pending, timeout=60000)
    qtbot.wait(50)


def _click_world(prompt, image, world, z_world=None):
    """A click at ``world`` (napari's world coordinates) the way the canvas sends it (the prompts layer's callback)."""
    from napari.utils._proxies import ReadOnlyWrapper
    from napari.utils.interactions import mouse_press_callbacks, mouse_release_callbacks

    class Event:
        def __init__(self, kind):
            self.type, self.position, self.modifiers, self.button, self.pos = kind, tuple(world), [], 1, np.zeros(2)

    viewer = prompt.viewer
    viewer.dims.set_point(0, world[0])
    layer = viewer.layers.selection.active
    mouse_press_callbacks(layer, ReadOnlyWrapper(Event("mouse_press")))
    mouse_release_callbacks(layer, Event("mouse_release"))


def test_the_first_click_on_each_slice_keeps_a_big_existing_object(make_napari_viewer, qtbot, lung):
    """After a Segment run that marked a large region (nuclei-2d on the CT: 100,000 voxels a slice, one object over
    the slices), the first click on slice 32 kept the region and said so, but the click on slice 33 removed the whole
    region on that slice (102,439 voxels on lung1): a 2D model's first run on a slice is a first run there too."""
    image, tumour, spacing, centres = lung
    viewer = make_napari_viewer()
    viewer.add_image(image, name="lung1", scale=spacing)
    big = np.zeros(image.shape, np.uint8)
    big[:, 10:130, 10:130] = 1  # a region far bigger than the tumour, on every slice
    mask = viewer.add_labels(big.copy(), name="lung1 mask", scale=spacing)
    corr = _panel(viewer)
    corr.prompt.enable_box.value = True
    for z in (4, 5, 6):
        corr.prompt.click((z, *centres[z]))
        _wait(qtbot, corr.prompt)
        removed = int(np.count_nonzero((big[z] > 0) & (mask.data[z] == 0)))
        assert removed == 0, f"the click on slice {z} removed {removed} voxels of the existing object"
        assert "far bigger" in corr.prompt.status.value and "kept" in corr.prompt.status.value
    assert np.array_equal(mask.data[:4], big[:4]) and np.array_equal(mask.data[7:], big[7:])


def test_the_mask_the_mode_adds_for_an_image_is_chosen(make_napari_viewer, qtbot, lung):
    """With lung1 and brain1 (and its mask) open, ticking the mode on lung1 added 'lung1 mask' but left brain1's mask
    chosen: the first click was refused ("differ in shape; pick the mask that belongs to the image")."""
    image, tumour, spacing, centres = lung
    brain = _read("brain1_image.nii.gz")
    viewer = make_napari_viewer()
    lung_layer = viewer.add_image(image, name="lung1", scale=spacing, translate=(-777.5, -160.0, -60.0))
    brain_layer = viewer.add_image(brain.data[8:20, 60:180, 140:230].astype(np.float32), name="brain1",
                                   scale=tuple(brain.spacing), translate=(-30.0, -50.0, 20.0))
    viewer.add_labels(np.zeros(brain_layer.data.shape, np.uint8), name="brain1 mask", scale=brain_layer.scale,
                      translate=brain_layer.translate)
    corr = _panel(viewer)
    corr.image_combo.value = "lung1"
    corr.prompt.enable_box.value = True
    assert corr.labels_combo.value == "lung1 mask", "the mask the mode made for the image is the one chosen"
    _click_world(corr.prompt, lung_layer, lung_layer.data_to_world((5, *centres[5])))
    _wait(qtbot, corr.prompt)
    assert np.count_nonzero(viewer.layers["lung1 mask"].data[5]) > 0, corr.prompt.status.value


def test_choosing_another_image_with_the_mode_on_draws_its_clicks_where_they_were_made(make_napari_viewer, qtbot, lung):
    """brain1 chosen in the Image field with the mode on lung1: its clicks were drawn on lung1's prompts layer, placed
    on lung1's grid, hundreds of mm from where the user clicked."""
    image, tumour, spacing, centres = lung
    brain = _read("brain1_image.nii.gz")
    viewer = make_napari_viewer()
    viewer.add_image(image, name="lung1", scale=spacing, translate=(-777.5, -160.0, -60.0))
    viewer.add_labels(np.zeros(image.shape, np.uint8), name="lung1 mask", scale=spacing, translate=(-777.5, -160.0, -60.0))
    brain_layer = viewer.add_image(brain.data[8:20, 60:180, 140:230].astype(np.float32), name="brain1",
                                   scale=tuple(brain.spacing), translate=(-30.0, -50.0, 20.0))
    brain_mask = viewer.add_labels(np.zeros(brain_layer.data.shape, np.uint8), name="brain1 mask",
                                   scale=brain_layer.scale, translate=brain_layer.translate)
    corr = _panel(viewer)
    corr.labels_combo.value = "lung1 mask"
    corr.image_combo.value = "lung1"
    corr.prompt.enable_box.value = True
    corr.image_combo.value = "brain1"
    corr.labels_combo.value = "brain1 mask"
    world = np.asarray(brain_layer.data_to_world((6, 60, 45)))
    _click_world(corr.prompt, brain_layer, world)
    _wait(qtbot, corr.prompt)
    points = corr.prompt.points_layer
    assert len(points.data) == 1 and np.allclose(points.data_to_world(points.data[-1]), world), \
        "the click is drawn where it was made"
    assert np.count_nonzero(brain_mask.data) > 0 and not np.any(viewer.layers["lung1 mask"].data)
    assert viewer.layers.selection.active is points


def test_an_image_opened_again_keeps_the_mode_ticked(make_napari_viewer, qtbot, lung):
    """The image deleted while the mode was on, then opened again (a new layer of the same name): a click said nothing
    and did nothing; ticking the mode again re-added '<image> prompts', whose removal unticked the box while the
    clicks were still taken."""
    image, tumour, spacing, centres = lung
    viewer = make_napari_viewer()
    layer = viewer.add_image(image, name="lung1", scale=spacing)
    mask = viewer.add_labels(np.zeros(image.shape, np.uint8), name="lung1 mask", scale=spacing)
    corr = _panel(viewer)
    corr.prompt.enable_box.value = True
    viewer.layers.remove(layer)
    world = np.asarray((5, *centres[5])) * np.asarray(spacing)
    viewer.layers.selection.active = corr.prompt.points_layer
    _click_world(corr.prompt, None, world)
    assert "No image to click on" in corr.prompt.status.value and not corr.prompt.clicks
    viewer.add_image(image, name="lung1", scale=spacing)
    corr.prompt.enable_box.value = False
    corr.prompt.enable_box.value = True
    assert corr.prompt.enable_box.value, corr.prompt.status.value
    assert "Click an object" in corr.prompt.status.value
    _click_world(corr.prompt, None, world)
    _wait(qtbot, corr.prompt)
    assert np.count_nonzero(mask.data[5]) > 0, corr.prompt.status.value


def test_new_object_while_a_click_waits_still_writes_that_click(make_napari_viewer, qtbot, lung):
    """Two quick clicks on slices 4 and 6, then *New object* before the first run ended: the second click, queued
    behind the first run, was dropped (its point vanished, nothing written on slice 6) while the status said
    "The previous object was written"."""
    image, tumour, spacing, centres = lung
    viewer = make_napari_viewer()
    viewer.add_image(image, name="lung1", scale=spacing)
    mask = viewer.add_labels(np.zeros(image.shape, np.uint8), name="lung1 mask", scale=spacing)
    corr = _panel(viewer)
    corr.prompt.enable_box.value = True
    corr.prompt.click((4, *centres[4]))
    corr.prompt.click((6, *centres[6]))
    assert corr.prompt.busy and corr.prompt.pending
    corr.prompt.new_button.changed.emit(True)
    qtbot.waitUntil(lambda: not corr.prompt.busy, timeout=60000)
    qtbot.waitUntil(lambda: np.count_nonzero(mask.data[6]) > 0 or not corr.prompt.busy, timeout=60000)
    _wait(qtbot, corr.prompt)
    assert np.count_nonzero(mask.data[4]) > 0 and np.count_nonzero(mask.data[6]) > 0, corr.prompt.status.value
    assert not corr.prompt.clicks and not corr.prompt.pending


def test_a_click_after_the_mask_was_deleted_gets_a_new_mask(make_napari_viewer, qtbot, lung):
    """The mask deleted with the mode on: every click was refused with "No Labels layer: run a model first"; an image
    without a mask gets an empty '<image> mask' (README), also then, and the prompts layer keeps the clicks."""
    image, tumour, spacing, centres = lung
    viewer = make_napari_viewer()
    viewer.add_image(image, name="lung1", scale=spacing)
    corr = _panel(viewer)
    corr.prompt.enable_box.value = True
    viewer.layers.remove(viewer.layers["lung1 mask"])
    viewer.layers.selection.active = corr.prompt.points_layer
    corr.prompt.click((5, *centres[5]))
    _wait(qtbot, corr.prompt)
    assert "lung1 mask" in viewer.layers and np.count_nonzero(viewer.layers["lung1 mask"].data[5]) > 0
    assert viewer.layers.selection.active is corr.prompt.points_layer


def test_upsert_keeps_a_3d_points_layer_in_place(make_napari_viewer):
    """upsert_layer read a Points layer's (N, 3) data as 2D: the layer was removed and added again (a removal the
    prompt mode took for the user deleting its layer)."""
    from napari_attnseg._napari._common import upsert_layer

    viewer = make_napari_viewer()
    first = viewer.add_points(np.array([[1.0, 2.0, 3.0]]), name="p", ndim=3)
    again = upsert_layer(viewer, np.array([[4.0, 5.0, 6.0], [1.0, 1.0, 1.0]]), {"name": "p"}, "points")
    assert again is first and len(viewer.layers) == 1 and len(first.data) == 2
