"""Audit of the Segment tab on layers a user really has: odd dtypes, NaN, images smaller than a tile, single-slice
volumes, a 2D image with a 3D model, a scaled and translated layer, and a layer renamed or removed, Run pressed
again, or Cancel pressed while a run goes (driven in a real viewer with the bundled models)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui


@pytest.fixture()
def panel(segment_panel, monkeypatch):
    """The Segment panel with every notification (errors, warnings, infos) collected in ``panel.messages``."""
    from napari_attnseg._napari import job_segment, segment_widget

    viewer, w = segment_panel
    for module in (job_segment, segment_widget):
        for kind in ("notify_error", "notify_warning", "notify_info"):
            monkeypatch.setattr(module, kind, lambda m, k=kind: w.messages.append(f"{k}: {m}"))
    return viewer, w


def _run(qtbot, w, model: str, layer: str) -> bool:
    w.image_combo.value, w.model_combo.value = layer, model
    with qtbot.waitSignal(w.run_done, timeout=120000) as done:
        w.run()
    return done.args[0]


def _on_grid(viewer, name: str) -> None:
    """The mask and probability layers have the image's shape and sit on its pixels; each heatmap lies within the
    image's extent (by at most one of its own pixels)."""
    image = viewer.layers[name]
    for suffix in ("mask", "probability"):
        out = viewer.layers[f"{name} {suffix}"]
        assert out.data.shape == image.data.shape
        np.testing.assert_allclose(out.scale, image.scale)
        np.testing.assert_allclose(out.translate, image.translate)
    lo, hi = np.asarray(image.extent.world)
    for layer in viewer.layers:
        if layer.name.startswith(f"{name} attention "):
            a_lo, a_hi = np.asarray(layer.extent.world)
            step = np.abs(np.asarray(layer.scale))
            assert np.all(a_lo >= lo - step - 1e-6) and np.all(a_hi <= hi + step + 1e-6), layer.name


IMAGES = {
    "int64": lambda r: r.integers(0, 4000, (48, 48)).astype(np.int64),
    "uint32": lambda r: r.integers(0, 4000, (48, 48)).astype(np.uint32),
    "bool": lambda r: r.random((48, 48)) > 0.7,
    "nan": lambda r: np.where(r.random((48, 48)) > 0.9, np.nan, r.random((48, 48))).astype(np.float32),
    "smaller than a tile": lambda r: r.random((20, 20)).astype(np.float32),
}


@pytest.mark.parametrize("kind", list(IMAGES))
def test_odd_2d_layers_segment_on_the_images_grid(panel, qtbot, kind):
    viewer, w = panel
    viewer.add_image(IMAGES[kind](np.random.default_rng(0)), name="img", scale=(0.5, 0.25), translate=(10.0, -4.0))
    assert _run(qtbot, w, "nuclei-2d", "img"), w.messages
    assert not [m for m in w.messages if m.startswith("notify_error")]
    _on_grid(viewer, "img")
    if kind == "nan":
        assert any("NaN" in m for m in w.messages)


def test_a_single_slice_volume_runs_as_one_slice_and_says_so(panel, qtbot):
    """A (1, y, x) stack with a 2D model: the status said 'its 1 slices one by one'."""
    viewer, w = panel
    viewer.add_image(np.random.default_rng(1).random((1, 48, 48)).astype(np.float32), name="one",
                     scale=(2.0, 0.5, 0.5), translate=(3.0, 1.0, 1.0))
    assert _run(qtbot, w, "nuclei-2d", "one"), w.messages
    assert "its 1 slice one by one" in w.status.value, w.status.value
    _on_grid(viewer, "one")


def test_a_3d_model_on_a_single_slice_or_a_2d_image_is_a_message_naming_the_layer(panel, qtbot):
    viewer, w = panel
    viewer.add_image(np.random.default_rng(2).random((1, 48, 48)).astype(np.float32), name="one")
    viewer.add_image(np.random.default_rng(2).random((48, 48)).astype(np.float32), name="flat")
    assert not _run(qtbot, w, "brain-mri-3d", "one")
    assert any("one:" in m and "too thin" in m and "2D model" in m for m in w.messages), w.messages
    assert not _run(qtbot, w, "brain-mri-3d", "flat")
    assert any("'flat' is 2D" in m and "pick a 2D model" in m for m in w.messages), w.messages
    assert [ly.name for ly in viewer.layers] == ["one", "flat"]


def test_labels_layers_are_not_offered_as_the_image(panel):
    viewer, w = panel
    viewer.add_image(np.zeros((8, 8), np.float32), name="img")
    viewer.add_labels(np.zeros((8, 8), np.uint8), name="drawn")
    assert list(w.image_combo.choices) == ["img"]


def _start_long_run(viewer, w):
    """A run of a few hundred tiles (1-2 s on 2 CPU cores), so the test acts while it goes."""
    layer = viewer.add_image(np.random.default_rng(3).random((1024, 1024)).astype(np.float32), name="big",
                             scale=(2.0, 2.0), translate=(5.0, 7.0))
    w.image_combo.value, w.model_combo.value = "big", "nuclei-2d"
    w.tile_spin.value = 64
    assert w.run() is not None, w.messages
    return layer


@pytest.mark.parametrize("action", ["rename", "remove", "run again"])
def test_changes_while_a_run_goes(panel, qtbot, action):
    viewer, w = panel
    done = []
    w.run_done.connect(done.append)
    layer = _start_long_run(viewer, w)
    qtbot.waitUntil(lambda: w.progress_bar.value > 0, timeout=60000)
    if action == "rename":
        layer.name = "renamed"
    elif action == "remove":
        viewer.layers.remove(layer)
    else:
        assert w.run() is None
        assert any("already running" in m for m in w.messages)
    qtbot.waitUntil(lambda: bool(done), timeout=120000)
    qtbot.waitUntil(lambda: bool(w.run_button.enabled), timeout=10000)
    if action == "remove":
        assert done == [False] and len(viewer.layers) == 0 and "was removed" in w.status.value
    else:
        name = "renamed" if action == "rename" else "big"
        assert done == [True] and w.image_combo.value == name
        _on_grid(viewer, name)


def test_cancel_says_the_run_is_stopping_and_run_works_right_after(panel, qtbot, monkeypatch):
    """Cancel left the status at 'Running nuclei-2d on big...' and Cancel enabled until the worker stopped,
    while Run stayed greyed: nothing said why. Now it says it is cancelling; Run works as soon as it stopped."""
    import napari_attnseg._napari.segment_widget as sw

    viewer, w = panel
    done = []
    w.run_done.connect(done.append)
    _start_long_run(viewer, w)
    qtbot.waitUntil(lambda: w.progress_bar.value > 0, timeout=60000)
    w.cancel()
    assert "Cancelling" in w.status.value, w.status.value
    assert not w.cancel_button.enabled
    said = []
    monkeypatch.setattr(sw, "notify_info", said.append)
    assert w.run() is None  # (a script's run() at once: not "press Cancel first", Cancel was pressed)
    assert said == ["The cancelled run is still stopping; press Run again in a moment."], said
    qtbot.waitUntil(lambda: bool(done), timeout=60000)
    assert done == [False] and "Cancelled" in w.status.value and w.run_button.enabled
    assert [ly.name for ly in viewer.layers] == ["big"]
    w.tile_spin.value = 0
    with qtbot.waitSignal(w.run_done, timeout=120000) as again:
        assert w.run() is not None, w.messages
    assert again.args == [True]
    _on_grid(viewer, "big")
