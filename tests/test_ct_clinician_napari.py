"""A radiologist's first session on a chest CT the bundled models were never trained on: Click to fix before any
Segment run, in a real viewer."""
from __future__ import annotations

import numpy as np
import pytest


def test_click_to_fix_without_a_segment_run_adds_a_mask_and_the_click_writes_into_it(make_napari_viewer, qtbot):
    """Ticking Click to fix on an image that has no mask yet said "Click an object to segment it" and then
    refused every click with "No Labels layer": an empty '<image> mask' on the image's grid is added instead."""
    from napari_attnseg._napari.correct_widget import CorrectWidget
    from napari_attnseg._paths import samples_dir
    from napari_attnseg.data import read_image
    from napari_attnseg.models.registry import bundled_models

    if "nuclei-2d-prompt" not in bundled_models():
        pytest.skip("no bundled promptable model")
    from scipy import ndimage as ndi

    image = read_image(samples_dir() / "nuclei2d_image.tif").data[:192, :192]
    ref = read_image(samples_dir() / "nuclei2d_labels.tif").data[:192, :192]
    viewer = make_napari_viewer()
    layer = viewer.add_image(image, name="scan", scale=(0.5, 0.5), translate=(10.0, -4.0))
    corr = CorrectWidget(viewer)
    assert corr.labels_combo.value is None
    corr.prompt.model_combo.value = "nuclei-2d-prompt"
    corr.prompt.enable_box.value = True
    assert "scan mask" in viewer.layers, [ly.name for ly in viewer.layers]
    mask = viewer.layers["scan mask"]
    assert corr.labels_combo.value == "scan mask" and not np.asarray(mask.data).any()
    assert tuple(mask.scale) == tuple(layer.scale) and tuple(mask.translate) == tuple(layer.translate)
    assert mask.metadata["attnseg_source_uid"] == layer.unique_id
    assert viewer.layers.selection.active is corr.prompt.points_layer  # the clicks still go to the prompts layer

    biggest = np.bincount(ref.ravel())[1:].argmax() + 1
    depth = ndi.distance_transform_edt(ref == biggest)
    y, x = np.unravel_index(depth.argmax(), depth.shape)
    corr.prompt.click((float(y), float(x)))
    qtbot.waitUntil(lambda: not corr.prompt.busy, timeout=60000)
    assert np.asarray(mask.data)[y, x] > 0

    # ticking the mode again (or on an image with a mask) adds no second mask
    corr.prompt.enable_box.value = False
    corr.prompt.enable_box.value = True
    assert [ly.name for ly in viewer.layers].count("scan mask") == 1
    assert "scan mask (2)" not in viewer.layers


def test_the_prompts_layer_takes_the_images_units(make_napari_viewer):
    """A z-stack in micron: the '<image> prompts' layer was made in pixels, so napari warned 'Inconsistent units
    across layers; units will not be used for rendering' and dropped the units; it now has the image's placement."""
    import warnings

    from napari_attnseg._napari.correct_widget import CorrectWidget
    from napari_attnseg.models.registry import bundled_models

    if "nuclei-2d-prompt" not in bundled_models():
        pytest.skip("no bundled promptable model")
    viewer = make_napari_viewer()
    stack = np.random.default_rng(0).normal(100, 10, (6, 96, 96)).astype(np.float32)
    layer = viewer.add_image(stack, name="zstack", scale=(2.0, 0.5, 0.5), units=("micron",) * 3)
    corr = CorrectWidget(viewer)
    corr.prompt.model_combo.value = "nuclei-2d-prompt"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        corr.prompt.enable_box.value = True
    points = corr.prompt.points_layer
    assert tuple(points.units) == tuple(layer.units) and tuple(points.scale) == tuple(layer.scale)
    assert not [w for w in caught if "Inconsistent units" in str(w.message)]


def test_a_tiff_export_of_a_z_stack_keeps_its_unit(make_napari_viewer, qtbot, tmp_path):
    """The Correct tab's TIFF export of a z-stack in micron kept the spacing but dropped the unit (the files had
    no unit, read back as None); the layer's units now go with it."""
    from napari_attnseg._napari.correct_widget import CorrectWidget
    from napari_attnseg.data import read_image

    viewer = make_napari_viewer()
    stack = np.random.default_rng(0).normal(100, 10, (6, 48, 48)).astype(np.float32)
    mask = np.zeros(stack.shape, np.uint8)
    mask[1:5, 10:20, 10:20] = 1
    viewer.add_image(stack, name="zstack", scale=(2.0, 0.5, 0.5), units=("micron",) * 3)
    viewer.add_labels(mask, name="zstack mask", scale=(2.0, 0.5, 0.5), units=("micron",) * 3)
    corr = CorrectWidget(viewer)
    corr.labels_combo.value, corr.image_combo.value = "zstack mask", "zstack"
    corr.dataset_edit.value = str(tmp_path / "ds")
    corr.format_combo.value = "tiff"
    corr.mark_slices(range(6))
    assert corr.export() is not None
    qtbot.waitUntil(lambda: corr.export_button.enabled, timeout=30000)
    for sub in ("images", "labels"):
        written = read_image(next((tmp_path / "ds" / sub).iterdir()))
        assert written.spacing == pytest.approx((2.0, 0.5, 0.5)) and written.meta.get("unit") == "micron", sub
