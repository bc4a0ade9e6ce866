"""Attention heatmaps audit: placement on napari's slider, what a heatmap says it shows, the pixel tool's
contrast, and a model without attention (real napari viewer under a virtual display, real bundled model)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from napari_attnseg.inference.prediction import AttentionMap
from napari_attnseg.layers import Placement, attention_layer, on_image_grid

pytestmark = pytest.mark.gui

PLUGIN = "napari-attnseg"


def _slider_slices(viewer, image) -> list[float]:
    """The image's data z under every position of napari's first slider."""
    out = []
    for k in range(viewer.dims.nsteps[0]):
        viewer.dims.set_current_step(0, k)
        out.append(float(image.world_to_data(viewer.dims.point)[0]))
    return out


def test_coarse_maps_with_a_partial_edge_block_leave_the_slider_on_the_image_slices(make_napari_viewer):
    """A level whose last block is partial has its edge pixel centred off the image: past the end (stride 8 on
    25 slices: the slider got 28 positions, the last three past the volume) or, on a flipped volume, half a
    slice before the first (the slider stood on -0.5, 0.5, 1.5, ...: napari showed slices 0, 0, 2, 2, 4, ...,
    odd slices unreachable). Such an axis is put on the image's slices (nearest: the block that covers each)."""
    viewer = make_napari_viewer()
    vol = np.arange(25, dtype=np.float32)[:, None, None] * np.ones((25, 16, 16), np.float32)
    image = viewer.add_image(vol, name="vol", scale=(6.5, 0.8, 0.8), translate=(-78.0, 10.0, 5.0))
    where = Placement(tuple(image.scale), tuple(image.translate))
    z = np.arange(4, dtype=np.float32)
    past = AttentionMap("level4", 2, np.broadcast_to(z[:, None, None], (4, 2, 2)).copy(), (8.0, 8.0, 8.0), (3.5, 3.5, 3.5))
    z13 = np.arange(13, dtype=np.float32)
    before = AttentionMap("level2", 0, np.broadcast_to(z13[:, None, None], (13, 8, 8)).copy(), (2.0, 2.0, 2.0),
                          (-0.5, 0.5, 0.5))
    for amap in (past, before):
        data, kwargs, kind = attention_layer(amap, "vol", where, {}, True, vol.shape)
        viewer.add_image(data, **kwargs)
    assert viewer.dims.nsteps[0] == 25  # without the fix: 28
    assert _slider_slices(viewer, image) == pytest.approx(list(range(25)))  # without: -0.5, 0.5, ... (flipped map)
    shown = viewer.layers["vol attention level4"]
    assert shown.data.shape == (25, 2, 2)  # in-plane: 16 px at stride 8 fit exactly, kept at the level's own grid
    # each slice shows the block that covers it (slices 0-7 block 0, ..., 24 block 3), in the same place
    np.testing.assert_array_equal(shown.data[:, 0, 0], np.minimum(np.arange(25) // 8, 3))
    np.testing.assert_allclose(shown.data_to_world((3, 1, 1)), image.data_to_world((3, 8 + 3.5, 8 + 3.5)))
    assert shown.metadata["attnseg"]["map_scale"] == (8.0, 8.0, 8.0)  # the level's own resolution is kept
    flipped = viewer.layers["vol attention level2"]
    assert flipped.data.shape == (25, 8, 8)
    np.testing.assert_array_equal(flipped.data[:, 0, 0], np.floor((np.arange(25) + 0.5) / 2 + 0.5))
    # a map that fits its grid is left alone
    fits = AttentionMap("level3", 1, np.zeros((7, 4, 4), np.float32), (4.0, 4.0, 4.0), (1.5, 1.5, 1.5))
    assert on_image_grid(fits, (28, 16, 16)).data.shape == (7, 4, 4)


def _mni_crop_stored_inferior_first(path):
    """28 axial slices of the bundled MNI T1, stored inferior-first (RAI): the brain model (trained SAR) turns
    them, and its level-3 map (14 model slices, stride 4) comes back starting half a slice before slice 0."""
    from napari_attnseg._paths import samples_dir

    t1 = nib.load(str(samples_dir() / "mni152_t1.nii.gz"))
    data = np.asarray(t1.dataobj)
    ci, cj, ck = (s // 2 for s in data.shape)
    crop = np.ascontiguousarray(data[ci - 24 : ci + 24, cj - 24 : cj + 24, ck - 14 : ck + 14][:, :, ::-1])
    affine = t1.affine.copy()
    affine[:3, 3] = t1.affine[:3, :3] @ [ci - 24, cj - 24, ck + 13] + t1.affine[:3, 3]
    affine[:3, 2] = -t1.affine[:3, 2]
    img = nib.Nifti1Image(crop, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, str(path))
    return path


def test_brain_model_on_an_inferior_first_volume_keeps_every_slice_reachable_live_and_reopened(
        make_napari_viewer, qtbot, tmp_path):
    """End to end: a T1 stored inferior-first, segmented in the panel with the bundled brain model, and the same
    file through `attnseg predict --attention`, its record reopened (File > Open): the slider's positions are the
    image's slices in both, and the reopened maps lie where the live ones do, with the same values."""
    from napari_attnseg._napari.segment_widget import SegmentWidget
    from napari_attnseg.cli import main

    src = _mni_crop_stored_inferior_first(tmp_path / "t1_rai.nii.gz")
    viewer = make_napari_viewer()
    image = viewer.open(str(src), plugin=PLUGIN)[0]
    w = SegmentWidget(viewer)
    w.model_combo.value = "brain-mri-3d"
    w.mode_combo.value = "3d"
    w.precision_combo.value = "fp32"
    with qtbot.waitSignal(w.run_done, timeout=120000) as done:
        assert w.run() is not None
    assert done.args == [True]
    level3 = viewer.layers[f"{image.name} attention level3"]
    assert level3.metadata["attnseg"]["map_translate"][0] == pytest.approx(-0.5)  # the case this test is about
    assert viewer.dims.nsteps[0] == image.data.shape[0]
    assert _slider_slices(viewer, image) == pytest.approx(list(range(image.data.shape[0])))

    out = tmp_path / "pred"
    assert main(["predict", str(src), "--model", "brain-mri-3d", "--out", str(out), "--attention",
                 "--precision", "fp32"]) == 0
    record = out / "t1_rai_predict.json"
    assert any(m["translate"][0] == pytest.approx(-0.5) for m in json.loads(record.read_text())["attention"])
    other = make_napari_viewer()
    reopened = {ly.name: ly for ly in other.open(str(record), plugin=PLUGIN)}
    again = reopened[image.name]
    assert other.dims.nsteps[0] == image.data.shape[0]
    assert _slider_slices(other, again) == pytest.approx(list(range(image.data.shape[0])))
    for live in (ly for ly in viewer.layers if " attention " in ly.name):
        rec = reopened[live.name]
        assert rec.data.shape == live.data.shape
        np.testing.assert_allclose(np.asarray(rec.data), np.asarray(live.data), atol=2e-3)  # float16 in memory
        for p in [(0, 0, 0), tuple(np.array(live.data.shape) - 1)]:
            np.testing.assert_allclose(rec.data_to_world(p), live.data_to_world(p), atol=1e-6)


def test_a_heatmap_says_which_level_it_is_and_what_its_values_mean(make_napari_viewer, qtbot, tiny_checkpoint):
    """napari's status bar shows the selected layer's help: the heatmaps name their level (finest, coarsest),
    the pixels one value covers and what 0 and 1 mean (without it: nothing, and 'level2' did not say finest)."""
    from napari_attnseg._napari.segment_widget import SegmentWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).random((64, 64)).astype(np.float32), name="cells")
    w = SegmentWidget(viewer)
    w.add_model(tiny_checkpoint(2))
    with qtbot.waitSignal(w.run_done, timeout=60000):
        w.run()
    finest, coarsest = viewer.layers["cells attention level2"], viewer.layers["cells attention level4"]
    viewer.layers.selection.active = finest
    assert viewer.help.startswith("attention level2: the finest of 3 maps, one value per 2 x 2 image pixels")
    assert "1 = the model passes these features on fully, 0 = it suppresses them" in viewer.help
    lo, hi = float(finest.data.min()), float(finest.data.max())
    assert f"here {lo:.2f}-{hi:.2f}" in viewer.help
    viewer.layers.selection.active = coarsest
    assert viewer.help.startswith("attention level4: the coarsest of 3 maps, one value per 8 x 8 image pixels")


def test_pixel_attention_is_shown_on_its_own_range(make_napari_viewer, tiny_checkpoint):
    """The position-attention row is scaled to its maximum: an msga model's row spans about 0.97-1, one bright
    sheet on the fixed 0-1 scale. It is shown on its own range, and says so."""
    from napari_attnseg._napari.segment_widget import SegmentWidget

    viewer = make_napari_viewer()
    image = viewer.add_image(np.random.default_rng(7).random((64, 64)).astype(np.float32), name="cells")
    w = SegmentWidget(viewer)
    w.add_model(tiny_checkpoint(2, arch="msga", name="pam", width=4, channels=8, latent=4))
    for point in ((20.0, 30.0), (50.0, 10.0)):  # the second click updates the layer in place
        heat = w.show_pixel_attention(image, point)
        lo, hi = float(heat.data.min()), float(heat.data.max())
        assert lo < hi
        assert tuple(heat.contrast_limits) == pytest.approx((lo, hi))  # was (0, 1)
    viewer.layers.selection.active = heat
    assert "pixel attention of the pixel at 50, 10" in viewer.help


def test_a_model_without_attention_says_so(make_napari_viewer, qtbot, tiny_checkpoint, notifications):
    """A U-Net has no attention gates: with Show attention on, the run says there are no heatmaps and why
    (it said nothing; the heatmaps are the panel's point)."""
    from napari_attnseg._napari.segment_widget import SegmentWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).random((64, 64)).astype(np.float32), name="cells")
    w = SegmentWidget(viewer)
    w.add_model(tiny_checkpoint(2, arch="unet", name="plain"))
    assert w.attention_box.value
    with qtbot.waitSignal(w.run_done, timeout=60000):
        w.run()
    assert not [ly for ly in viewer.layers if " attention " in ly.name]
    said = [str(n.message) for n in notifications]
    assert any("plain-2d (unet) has no attention gates, so cells gets no attention heatmaps" in m for m in said), said
    notifications.clear()
    w.attention_box.value = False  # not asked for: nothing to say
    with qtbot.waitSignal(w.run_done, timeout=60000):
        w.run()
    assert not any("no attention gates" in str(n.message) for n in notifications)
