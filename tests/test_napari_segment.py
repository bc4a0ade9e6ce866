"""The segment widget driven in a real napari viewer (run under a virtual display)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from napari_attnseg.display import HEATMAP_COLORMAP_NAME

pytestmark = pytest.mark.gui


@pytest.fixture()
def widget(segment_panel):
    return segment_panel  # (conftest: a viewer and a Segment panel collecting its error messages)


def run_and_wait(qtbot, w, timeout=60000):
    with qtbot.waitSignal(w.run_done, timeout=timeout) as done:
        worker = w.run()
        assert worker is not None, getattr(w, "messages", None)
    assert done.args == [True], getattr(w, "messages", None)
    assert w.run_button.enabled
    return worker


def test_run_on_2d_layer_makes_aligned_layers(widget, qtbot, tiny_checkpoint):
    viewer, w = widget
    img = np.random.default_rng(0).random((70, 90)).astype(np.float32)
    viewer.add_image(img, name="cells", scale=(0.5, 0.25), translate=(10.0, -4.0))
    w.add_model(tiny_checkpoint(2))
    assert w.mode_combo.value == "2d"
    run_and_wait(qtbot, w)
    names = [ly.name for ly in viewer.layers]
    assert "cells mask" in names and "cells probability" in names
    maps = [n for n in names if n.startswith("cells attention ")]
    assert maps == ["cells attention level2", "cells attention level3", "cells attention level4"]
    mask = viewer.layers["cells mask"]
    assert mask.data.shape == img.shape and mask.data.dtype == np.uint8
    assert not viewer.layers["cells probability"].visible
    assert viewer.layers["cells attention level2"].visible and not viewer.layers["cells attention level4"].visible
    att = viewer.layers["cells attention level3"]  # stride 4
    assert att.colormap.name == HEATMAP_COLORMAP_NAME and att.blending == "translucent" and att.opacity == 0.8
    # world coordinates of map pixel (i, j) = centre of the 4x4 image block it covers
    image = viewer.layers["cells"]
    i, j = 3, 5
    block_centre = np.array([i * 4 + 1.5, j * 4 + 1.5])
    np.testing.assert_allclose(att.data_to_world((i, j)), image.data_to_world(block_centre))
    meta = mask.metadata["attnseg"]
    assert meta["model"] == "tiny-2d" and len(meta["checkpoint_sha256"]) == 64 and meta["device"] == "cpu"
    assert list(mask.features["class"]) == ["background", "foreground"]


def test_rerun_updates_in_place_and_protects_edits(widget, qtbot, tiny_checkpoint):
    viewer, w = widget
    viewer.add_image(np.random.default_rng(1).random((40, 40)).astype(np.float32), name="img")
    w.add_model(tiny_checkpoint(2))
    run_and_wait(qtbot, w)
    n_layers = len(viewer.layers)
    first = viewer.layers["img mask"]
    run_and_wait(qtbot, w)
    assert len(viewer.layers) == n_layers and viewer.layers["img mask"] is first
    # the user edits the mask; a new run must not overwrite it without asking
    first.data_setitem((np.array([0]), np.array([0])), np.array([7], np.uint8))
    asked = []
    w.confirm_overwrite = lambda name: asked.append(name) or False
    run_and_wait(qtbot, w)
    assert asked == ["img mask"]
    assert viewer.layers["img mask"].data[0, 0] == 7
    assert "img mask (2)" in viewer.layers


def test_3d_volume_with_3d_model(widget, qtbot, tiny_checkpoint):
    viewer, w = widget
    vol = np.random.default_rng(2).random((20, 36, 30)).astype(np.float32)
    affine = [[-1.0, 0, 0, 5.0], [0, 1.0, 0, -3.0], [0, 0, 3.0, 7.0], [0, 0, 0, 1]]
    viewer.add_image(vol, name="vol", scale=(3.0, 1.0, 1.0), metadata={"affine": affine, "spacing": [3.0, 1.0, 1.0]})
    w.add_model(tiny_checkpoint(3))
    assert w.mode_combo.value == "3d"
    run_and_wait(qtbot, w)
    assert viewer.layers["vol mask"].data.shape == vol.shape
    # saving the mask with the plugin's NIfTI writer restores the source's affine
    assert viewer.layers["vol mask"].metadata["affine"] == affine
    att = viewer.layers["vol attention level2"]
    np.testing.assert_allclose(att.scale, (6.0, 2.0, 2.0))
    # a run without attention leaves no heatmap of the earlier run on screen (they no longer match the mask)
    w.attention_box.value = False
    run_and_wait(qtbot, w)
    assert not [ly.name for ly in viewer.layers if ly.name.startswith("vol attention ")]
    assert "vol mask" in viewer.layers
    # another image under the same name, with no file geometry: the mask keeps neither the old affine
    # (its NIfTI would be written with the old file's orientation) nor the old layer transform
    viewer.layers.remove("vol")
    viewer.add_image(vol[::-1].copy(), name="vol", scale=(3.0, 1.0, 1.0))
    w.attention_box.value = True
    run_and_wait(qtbot, w)
    mask = viewer.layers["vol mask"]
    assert "affine" not in mask.metadata and np.allclose(mask.affine.affine_matrix, np.eye(4))
    assert np.allclose(viewer.layers["vol attention level2"].affine.affine_matrix, np.eye(4))


def test_2d_model_runs_slice_by_slice_on_a_volume(widget, qtbot, tiny_checkpoint):
    viewer, w = widget
    viewer.add_image(np.random.default_rng(3).random((5, 40, 40)).astype(np.float32), name="stack")
    w.add_model(tiny_checkpoint(2))
    assert w.mode_combo.value == "slices"
    run_and_wait(qtbot, w)
    assert viewer.layers["stack attention level2"].data.shape == (5, 20, 20)


def test_cancel_mid_run_leaves_no_layers(widget, qtbot, tiny_checkpoint):
    viewer, w = widget
    # 2500 tiles in 80 batches: about 4.5 s of work on 2 CPU cores, so Cancel lands mid-run
    viewer.add_image(np.random.default_rng(4).random((1200, 1200)).astype(np.float32), name="big")
    w.add_model(tiny_checkpoint(2))
    w.tile_spin.value = 32
    reports = []

    def on_progress(value):  # the user presses Cancel as soon as the progress bar moves
        reports.append(value)
        if len(reports) == 1:
            w.cancel_button.native.click()

    with qtbot.waitSignal(w.run_done, timeout=60000) as done:
        worker = w.run()
        worker.yielded.connect(on_progress)
    assert done.args == [False]
    assert [layer.name for layer in viewer.layers] == ["big"]
    assert "Cancelled" in w.status.value
    assert w.run_button.enabled and not w.cancel_button.enabled
    total = reports[0][1]
    print(f"cancelled after {max(d for d, _ in reports)} of {total} tiles, {len(reports)} progress reports")
    assert max(d for d, _ in reports) < total  # the run stopped, it did not finish and get thrown away


def test_viewer_stays_responsive_during_a_run(widget, qtbot):
    from qtpy.QtCore import QTimer

    viewer, w = widget
    # The bundled model with flip averaging: enough work (seconds here, >= 0.3 s on a fast machine)
    # for the event loop to be sampled many times while the worker computes.
    viewer.add_image(np.random.default_rng(5).random((512, 512)).astype(np.float32), name="slide")
    w.model_combo.value = "nuclei-2d"
    assert w.model_combo.value == "nuclei-2d"
    w.tta_box.value = True
    ticks = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    last_yield = []
    with qtbot.waitSignal(w.run_done, timeout=60000):
        worker = w.run()
        worker.yielded.connect(lambda _: last_yield.append(time.perf_counter()))
    timer.stop()
    during = np.array([t for t in ticks if t <= last_yield[-1]])
    gaps = np.diff(during)
    assert len(during) > 10
    after = np.diff([t for t in ticks if t >= during[-1]])
    print(f"event loop: {len(during)} ticks during the run, longest gap {1000 * gaps.max():.1f} ms, "
          f"median {1000 * np.median(gaps):.1f} ms; longest gap while the result layers were added "
          f"{1000 * after.max():.0f} ms")
    # the longest stall of the event loop while the model ran on the worker thread
    assert gaps.max() < 0.1, f"event loop stalled {gaps.max():.3f} s"


def test_bad_states_show_messages_not_tracebacks(widget, qtbot, tiny_checkpoint, tmp_path, monkeypatch):
    from napari_attnseg._napari import job_segment

    viewer, w = widget
    monkeypatch.setattr(job_segment, "notify_error", w.messages.append)  # (a picture's grey: made on the run's worker)
    assert w.run() is None
    assert "No image layer" in w.messages[-1]
    colours = np.random.default_rng(0).integers(0, 255, (30, 30, 3), dtype=np.uint8)  # three different images
    viewer.add_image(colours, name="photo", rgb=True)
    w.add_model(tiny_checkpoint(2))
    with qtbot.waitSignal(w.run_done, timeout=30000) as done:
        w.run()
    assert done.args == [False] and "RGB" in w.messages[-1]
    qtbot.waitUntil(lambda: w.run_button.enabled, timeout=10000)
    viewer.layers.clear()
    viewer.add_image(np.zeros((2, 3, 30, 30), np.float32), name="4d")
    assert w.run() is None and "4 dimensions" in w.messages[-1]
    viewer.layers.clear()
    viewer.add_image(np.zeros((30, 30), np.float32), name="flat")
    w.add_model(tiny_checkpoint(3))
    assert w.run() is None and "is 3D" in w.messages[-1]
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"not a model")
    from napari_attnseg.errors import CheckpointError

    with pytest.raises(CheckpointError):
        w.add_model(bad)


def test_attention_follows_an_affine_image_layer(widget, qtbot, tiny_checkpoint):
    viewer, w = widget
    theta = np.deg2rad(30)
    rot = np.array([[np.cos(theta), -np.sin(theta), 2.0], [np.sin(theta), np.cos(theta), -1.0], [0, 0, 1]])
    layer = viewer.add_image(np.random.default_rng(6).random((48, 40)).astype(np.float32), name="tilted",
                             scale=(0.7, 0.4), translate=(3.0, 5.0), affine=rot)
    w.add_model(tiny_checkpoint(2))
    run_and_wait(qtbot, w)
    mask = viewer.layers["tilted mask"]
    np.testing.assert_allclose(mask.data_to_world((7, 9)), layer.data_to_world((7, 9)))
    att = viewer.layers["tilted attention level4"]  # stride 8: pixel (1, 2) covers image rows 8-15, cols 16-23
    np.testing.assert_allclose(att.data_to_world((1, 2)), layer.data_to_world((8 + 3.5, 16 + 3.5)))


def test_where_does_this_pixel_look_on_msga(widget, qtbot, tiny_checkpoint):
    from types import SimpleNamespace

    viewer, w = widget
    image = viewer.add_image(np.random.default_rng(7).random((64, 64)).astype(np.float32), name="cells",
                             scale=(0.5, 0.5), translate=(2.0, 1.0))
    w.add_model(tiny_checkpoint(2))
    assert not w.pixel_box.enabled  # attention_unet has no position attention
    w.add_model(tiny_checkpoint(2, arch="msga", name="pam", width=4, channels=8, latent=4))
    assert w.pixel_box.enabled
    w.pixel_box.value = True
    assert w._on_click in image.mouse_drag_callbacks
    # a click at data pixel (20, 30), given as the world position napari passes to the callback
    w._on_click(image, SimpleNamespace(position=image.data_to_world((20, 30))))
    heat = viewer.layers["cells pixel attention"]
    assert heat.data.shape == (16, 16) and heat.colormap.name == HEATMAP_COLORMAP_NAME
    assert heat.metadata["attnseg"]["point"] == pytest.approx([20.0, 30.0])
    # map pixel (i, j) at stride 4 sits on the input pixel its backbone's two 3x3 stride-2 convolutions centre it on:
    # (4i, 4j), not the middle of a 4x4 block (tests/test_audit_archs.py measures it from the receptive field)
    np.testing.assert_allclose(heat.data_to_world((2, 3)), image.data_to_world((8, 12)))
    # a click outside the image is a message, not a traceback
    w._on_click(image, SimpleNamespace(position=image.data_to_world((500, 5))))
    assert "outside the image" in w.messages[-1]
    # switching to a model without position attention switches the tool off and detaches it
    w.model_combo.value = "tiny-2d"
    assert not w.pixel_box.value and w._on_click not in image.mouse_drag_callbacks


def test_checkpoint_that_fails_to_load_is_a_notification(widget, tmp_path, monkeypatch):
    from napari_attnseg._napari import segment_widget as sw

    viewer, w = widget
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"not a model")
    monkeypatch.setattr(sw.QFileDialog, "getOpenFileName", lambda *a, **k: (str(bad), ""))
    before = len(w.model_combo.choices)
    w._load_checkpoint_dialog()
    assert "broken.safetensors" in w.messages[-1] and len(w.model_combo.choices) == before


def test_flip_averaging_option_reaches_the_engine(widget, qtbot, tiny_checkpoint):
    """The Advanced fold's flip averaging runs the engine with tta and the mask matches the core's."""
    from napari_attnseg import load_model, predict

    viewer, w = widget
    img = np.random.default_rng(1).random((48, 64)).astype(np.float32)
    viewer.add_image(img, name="cells")
    path = tiny_checkpoint(2)
    w.add_model(path)
    w.tta_box.value = True
    run_and_wait(qtbot, w)
    mask = viewer.layers["cells mask"]
    assert mask.metadata["attnseg"]["params"]["tta"] is True
    ref = predict(load_model(path), img, tta=True, device="cpu")
    np.testing.assert_array_equal(mask.data, np.asarray(ref.labels))


def test_object_diameter_field_rescales_for_models_that_know_their_object_size(widget, qtbot, tiny_checkpoint):
    """The field shows only for a model whose card has object_diameter; a bad value is a message; a
    given diameter reaches the engine, which rescales (here 2x: nuclei drawn twice as wide)."""
    from napari_attnseg._paths import samples_dir
    from napari_attnseg.data import read_image

    viewer, w = widget
    path = samples_dir() / "nuclei2d_image.tif"
    if "nuclei-2d" not in w.model_names() or not path.exists():
        pytest.skip("no bundled nuclei model or sample")
    crop = read_image(path).data[:96, :96]
    viewer.add_image(np.kron(crop, np.ones((2, 2), crop.dtype)), name="big nuclei")
    w.add_model(tiny_checkpoint(2))
    assert not w.diameter_edit.visible and not w.diameter_edit.native.isVisibleTo(w)
    w.model_combo.value = "nuclei-2d"
    assert w.diameter_edit.native.isVisibleTo(w) and "25" in w.diameter_edit.native.placeholderText()
    w.diameter_edit.value = "wide"
    assert w.run() is None and "Object diameter" in w.messages[-1]
    w.diameter_edit.value = "50"
    run_and_wait(qtbot, w)
    pred = w.last_prediction
    assert pred.params["diameter_used"] == 50 and pred.params["scale"] == pytest.approx(25.12 / 50, rel=0.01)
    assert pred.labels.shape == (192, 192) and "px wide" in w.status.value
    # "Estimate the size and run": the estimate goes to the status; "auto" stays, so another image is estimated
    with qtbot.waitSignal(w.run_done, timeout=120000):
        w.estimate_and_run()
    used, est = w.last_prediction.params["diameter_used"], w.last_prediction.params["diameter_measured"]
    assert 35 < used < 70 and w.diameter_edit.value == "auto" and f"estimated {est:.1f} px" in w.status.value


def test_pixel_attention_on_a_slice_outside_the_volume_is_a_message(widget, tiny_checkpoint):
    """With a longer volume open, the slider can be beyond this layer's slices: a message, not an
    IndexError (or, for a negative index, a slice counted from the other end)."""
    viewer, w = widget
    vol = viewer.add_image(np.random.default_rng(7).random((6, 64, 64)).astype(np.float32), name="vol")
    w.add_model(tiny_checkpoint(2, arch="msga", name="pam", width=4, channels=8, latent=4))
    for z in (9, -2):
        assert w.show_pixel_attention(vol, (z, 20, 30)) is None
        assert f"Slice {z} is outside vol" in w.messages[-1]
    assert w.show_pixel_attention(vol, (3, 20, 30)) is not None


def test_results_turn_with_a_rotated_and_sheared_image(widget, qtbot, tiny_checkpoint):
    """An image layer with rotate and shear (and scale, translate): mask pixels and heatmap pixels land
    where the image's pixels are (before, the results were drawn unrotated)."""
    viewer, w = widget
    img = np.random.default_rng(5).random((64, 48)).astype(np.float32)
    image = viewer.add_image(img, name="turned", rotate=30, shear=[0.4], scale=(2.0, 3.0), translate=(5.0, -7.0))
    w.add_model(tiny_checkpoint(2))
    run_and_wait(qtbot, w)
    mask = viewer.layers["turned mask"]
    for p in [(0, 0), (10, 40), (63, 47)]:
        np.testing.assert_allclose(mask.data_to_world(p), image.data_to_world(p), atol=1e-6)
    att = viewer.layers["turned attention level3"]  # stride 4: map pixel (i, j) is the 4x4 block's centre
    np.testing.assert_allclose(att.data_to_world((3, 5)), image.data_to_world((3 * 4 + 1.5, 5 * 4 + 1.5)), atol=1e-6)


def test_closing_the_viewer_cancels_a_segment_run(make_napari_viewer, qtbot, tiny_checkpoint, monkeypatch,
                                                  notifications):
    """Closing napari while the Segment panel runs cancels the run, and the worker's late callbacks do not
    touch the deleted panel (no RuntimeError about deleted Qt objects)."""
    from qtpy.QtCore import QEvent
    from qtpy.QtWidgets import QApplication

    from napari_attnseg._napari._common import is_deleted
    from napari_attnseg._napari.segment_widget import SegmentWidget
    from napari_attnseg.inference import engine

    real = engine._run_batch

    def slow(*args, **kwargs):
        time.sleep(0.2)
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "_run_batch", slow)
    viewer = make_napari_viewer()
    w = SegmentWidget(viewer)
    viewer.window.add_dock_widget(w, name="Segment")
    viewer.add_image(np.random.default_rng(0).random((256, 256)).astype(np.float32), name="img")
    w.add_model(tiny_checkpoint(2))
    w.tile_spin.value = 32
    worker = w.run()
    ended = []
    worker.finished.connect(lambda: ended.append(True))
    token = w._token
    qtbot.waitUntil(lambda: w.progress_bar.value > 0, timeout=30000)
    viewer.close()
    QApplication.sendPostedEvents(None, QEvent.DeferredDelete)  # what the event loop does after the close
    assert is_deleted(w) and token.cancelled
    qtbot.waitUntil(lambda: bool(ended), timeout=30000)
    assert not any(getattr(n, "exception", None) for n in notifications)


def test_the_panel_says_before_a_run_when_the_image_is_unlike_the_models_training_data(widget):
    """A CT in Hounsfield units with a microscopy model chosen: the model line says so before Run (the
    loop audit's clinician kept the default model on a CT and learnt it only from the result)."""
    viewer, w = widget
    rng = np.random.default_rng(0)
    ct = np.full((4, 64, 64), -1000.0, np.float32)
    ct[:, 8:56, 8:56] = rng.normal(40, 20, (4, 48, 48))
    viewer.add_image(ct, name="ct")
    w.model_combo.value = "nuclei-2d"
    assert "Before you run" in w.model_info.value and "Hounsfield" in w.model_info.value
    viewer.add_image(rng.random((64, 64)).astype(np.float32) * 50, name="cells")
    w.image_combo.value = "cells"
    assert "Before you run" not in w.model_info.value


def test_a_2d_image_gets_a_model_that_can_segment_it(make_napari_viewer, qtbot):
    """The model list starts with a 3D model (brain-mri-3d): a 2D image (the nuclei sample, opened before or
    after the panel) moves the choice to the first 2D automatic model, not the click model; a model the user
    picks that can run stays, and each image gets back the model last shown for it."""
    from napari_attnseg._napari.segment_widget import SegmentWidget
    from napari_attnseg._paths import samples_dir
    from napari_attnseg.data import read_image

    viewer = make_napari_viewer()
    w = SegmentWidget(viewer)
    assert w.model_combo.value == "brain-mri-3d"
    nuclei = read_image(samples_dir() / "nuclei2d_image.tif").data
    viewer.add_image(nuclei, name="nuclei")
    assert w.model_combo.value == "nuclei-2d"
    w.model_combo.value = "nuclei-2d-prompt"  # chosen by the user, and it can run: kept
    viewer.add_image(np.zeros((8, 32, 32), np.float32), name="volume")
    w.image_combo.value = "volume"
    assert w.model_combo.value == "nuclei-2d-prompt"
    w.model_combo.value = "brain-mri-3d"  # the user's choice for the volume
    w.image_combo.value = "nuclei"  # then the 2D image again: the model the user chose for it comes back
    assert w.model_combo.value == "nuclei-2d-prompt"
    w.image_combo.value = "volume"
    assert w.model_combo.value == "brain-mri-3d"
    other = make_napari_viewer()
    other.add_image(nuclei, name="nuclei")
    assert SegmentWidget(other).model_combo.value == "nuclei-2d"  # image first, then the panel
    # a microscopy z-stack or time-lapse (no scan geometry) opened first: the nuclei model, not the brain MRI one
    # (audit: brain-mri-3d took a nuclei stack, Dice 0.27-0.61 per plane against 0.94, with skull warnings)
    third = make_napari_viewer()
    third.add_image(np.stack([nuclei[:128, :128]] * 4), name="z-stack")
    assert SegmentWidget(third).model_combo.value == "nuclei-2d"


def test_a_brain_mri_gets_the_brain_model_back_and_a_microscopy_model_is_flagged(make_napari_viewer, qtbot):
    """Audit: after a nuclei image was selected, going back to a brain MRI (a NIfTI placed in the body) kept
    nuclei-2d, with no word, and it marked 84 % of the head. Now the MRI gets the model trained on scans back;
    a user who picks nuclei-2d for it keeps that choice (layers added by a run do not undo it) and is told
    before running that a microscopy model on a scan means little. A chest CT gets nuclei-2d, not the brain model."""
    from napari_attnseg._napari.segment_widget import SegmentWidget
    from napari_attnseg._paths import samples_dir

    viewer = make_napari_viewer()
    w = SegmentWidget(viewer)
    w.model_combo.value = "nuclei-2d"  # the list's first 2D model, as after working on a nuclei image
    viewer.open(str(samples_dir() / "mni152_t1.nii.gz"), plugin="napari-attnseg")
    assert w.image_combo.value == "mni152_t1" and w.model_combo.value == "brain-mri-3d"
    viewer.add_image(np.random.default_rng(0).random((64, 64)).astype(np.float32), name="cells")
    w.image_combo.value = "cells"
    assert w.model_combo.value == "nuclei-2d"
    w.image_combo.value = "mni152_t1"
    assert w.model_combo.value == "brain-mri-3d" and "Before you run" not in w.model_info.value
    w.model_combo.value = "nuclei-2d"  # the user's own choice for the MRI
    assert "Before you run" in w.model_info.value and "microscopy" in w.model_info.value
    viewer.add_labels(np.zeros((4, 8, 8), np.uint8), name="other")  # layer events re-check the choice
    w.image_combo.value = "cells"
    w.image_combo.value = "mni152_t1"
    assert w.model_combo.value == "nuclei-2d"
    # a CT in Hounsfield units with no CT model listed: the 2D model the CT walkthrough fine-tunes, not the brain
    # model (which called 63 % of a chest CT grey or white matter) and not the click model
    w.model_combo.value = "brain-mri-3d"
    ct = np.full((6, 64, 64), -1000.0, np.float32)
    ct[:, 8:56, 8:56] = np.random.default_rng(1).normal(40, 20, (6, 48, 48))
    viewer.add_image(ct, name="ct")
    w.image_combo.value = "ct"
    assert w.model_combo.value == "nuclei-2d" and "Hounsfield" in w.model_info.value
