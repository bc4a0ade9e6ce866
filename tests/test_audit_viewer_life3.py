"""napari users who place an image by hand after the plugin placed its results (audit "viewer life", third part): the
'<image> prompt attention' heatmap kept the image's old placement until the next click; a Segment run's mask,
probability and heatmaps kept the placement the image had when it ran (the image's pixel size typed afterwards: the
results drawn at twice its size, and every click into that mask refused because it lay elsewhere)."""

from __future__ import annotations

import numpy as np
import pytest
from test_audit_viewer_life2 import _centre, _wait
from test_napari_prompt_events import _press_release

pytestmark = pytest.mark.gui


def _on_grid(layer, image, points) -> np.ndarray:
    """The image pixels ``layer``'s pixels ``points`` are drawn on."""
    return np.array([image.world_to_data(layer.data_to_world(p)) for p in points])


def test_the_prompt_attention_follows_a_placement_set_on_the_image_later(nuclei_click_panel, qtbot):
    """A click shows '<image> prompt attention'; ``image.scale = (0.5, 0.5)`` afterwards: the heatmap stayed at scale
    1 (drawn at twice the image's size) until the next click."""
    viewer, corr, mask, ref = nuclei_click_panel
    image, pm = viewer.layers["cells"], corr.prompt
    viewer.layers.selection.active = pm.points_layer
    _press_release(viewer, tuple(image.data_to_world(_centre(ref))))
    _wait(qtbot, pm)
    att = viewer.layers["cells prompt attention"]
    corners = [(0.0, 0.0), tuple(float(n - 1) for n in att.data.shape)]
    before = _on_grid(att, image, corners)
    image.scale, image.translate = (0.5, 0.5), (10.0, -4.0)
    np.testing.assert_allclose(_on_grid(att, image, corners), before, atol=1e-6)
    image.rotate = 30
    np.testing.assert_allclose(_on_grid(att, image, corners), before, atol=1e-6)
    image.affine = np.diag([2.0, 1.0, 1.0])
    np.testing.assert_allclose(_on_grid(att, image, corners), before, atol=1e-6)
    image.affine = np.eye(3)  # (taken off again: the heatmap loses it too)
    np.testing.assert_allclose(_on_grid(att, image, corners), before, atol=1e-6)


def test_a_segment_runs_results_follow_a_placement_set_on_the_image_later_and_clicks_go_in(dock, qtbot):
    """Segment, then type the image's pixel size (``image.scale``) and move it: the mask, probability and heatmaps
    stayed where the image was, and a click into the mask was refused ("lie at different places")."""
    from napari_attnseg._paths import samples_dir
    from napari_attnseg.data import read_image
    from napari_attnseg.models.registry import bundled_models

    if not {"nuclei-2d", "nuclei-2d-prompt"} <= set(bundled_models()):
        pytest.skip("no bundled nuclei models")
    viewer, d = dock
    ref = read_image(samples_dir() / "nuclei2d_labels.tif").data[:192, :192]
    image = viewer.add_image(read_image(samples_dir() / "nuclei2d_image.tif").data[:192, :192], name="cells")
    d.segment.model_combo.value = "nuclei-2d"
    with qtbot.waitSignal(d.segment.run_done, timeout=120000) as done:
        d.segment.run_button.native.click()
    assert done.args == [True], d.segment.status.value
    results = [ly for ly in viewer.layers if ly is not image and ly.name.startswith("cells ")]
    names = {ly.name for ly in results}
    assert {"cells mask", "cells probability"} <= names and any("attention" in n for n in names), names
    corners = {ly.name: [(0.0, 0.0), tuple(float(n - 1) for n in ly.data.shape)] for ly in results}
    before = {ly.name: _on_grid(ly, image, corners[ly.name]) for ly in results}
    image.scale, image.translate = (0.5, 0.5), (10.0, -4.0)
    for ly in results:
        np.testing.assert_allclose(_on_grid(ly, image, corners[ly.name]), before[ly.name], atol=1e-6, err_msg=ly.name)
    pm = d.correct.prompt
    assert d.correct.labels_combo.value == "cells mask" and d.correct.image_combo.value == "cells"
    pm.model_combo.value = "nuclei-2d-prompt"
    pm.enable_box.value = True
    viewer.layers.selection.active = pm.points_layer
    _press_release(viewer, tuple(image.data_to_world(_centre(ref))))
    _wait(qtbot, pm)
    assert "different places" not in pm.status.value and len(pm.clicks) == 1, pm.status.value
