"""Heatmap layers on the image's slices (napari_attnseg.layers, core: no Qt)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_attnseg.inference.prediction import AttentionMap
from napari_attnseg.layers import Placement, attention_layer, on_image_grid


def test_a_map_finer_than_the_slices_is_put_on_them_and_others_keep_their_grid():
    """A 3D model run at 2 mm on 6.5 mm slices gives maps with more z samples than the image has slices;
    shown as they are, napari's slider stepped between slices (42 positions for 25). On the image grid:
    one value per slice, linearly interpolated at the slice's centre; the in-plane axes (coarser) keep
    their own pixels."""
    z = np.arange(10, dtype=np.float32)  # map z pixel i sits at image z = -0.1 + 0.5 i
    data = np.broadcast_to(z[:, None, None], (10, 4, 4)).copy()
    amap = AttentionMap("level1", 1, data, (0.5, 4.0, 4.0), (-0.1, 1.5, 1.5))
    out = on_image_grid(amap, (5, 16, 16))
    assert out.data.shape == (5, 4, 4) and out.scale == (1.0, 4.0, 4.0) and out.translate == (0.0, 1.5, 1.5)
    assert out.data[:, 0, 0] == pytest.approx((np.arange(5) + 0.1) / 0.5)
    heads = AttentionMap("vit", 2, np.stack([data, 2 * data]), (0.5, 4.0, 4.0), (-0.1, 1.5, 1.5))
    assert on_image_grid(heads, (5, 16, 16)).data.shape == (2, 5, 4, 4)
    coarse = AttentionMap("level2", 2, data, (2.0, 4.0, 4.0), (0.5, 1.5, 1.5))
    assert on_image_grid(coarse, (5, 16, 16)) is not coarse and on_image_grid(coarse, (5, 16, 16)).data.shape == data.shape
    layer_data, kwargs, kind = attention_layer(amap, "vol", Placement((6.5, 0.78, 0.78), (0.0, 0.0, 0.0)), {}, True,
                                               (5, 16, 16))
    assert kind == "image" and layer_data.shape == (5, 4, 4)
    assert kwargs["scale"][0] == pytest.approx(6.5) and kwargs["translate"][0] == pytest.approx(0.0)


def test_brain_model_on_thick_slices_keeps_the_slider_on_the_image_slices():
    """The bundled brain model on a 25-slice, 6.5 mm volume: every heatmap layer steps by 6.5 mm in z."""
    from napari_attnseg import load_model, predict
    from napari_attnseg.layers import prediction_layers

    model = load_model("brain-mri-3d")
    vol = np.random.default_rng(0).normal(size=(12, 48, 48)).astype(np.float32)
    spacing = (6.5, 2.0, 2.0)
    pred = predict(model, vol, spacing=spacing, attention=True)
    assert pred.attention and min(a.scale[0] for a in pred.attention) < 1  # the model's grid is finer in z
    layers = prediction_layers(model, pred, "vol", Placement(spacing, (0.0, 0.0, 0.0)))
    maps = [(d, k) for d, k, kind in layers if "attention" in k["name"]]
    assert maps and all(d.shape[0] <= 12 for d, _ in maps)
    assert all(k["scale"][0] >= 6.5 - 1e-6 for _, k in maps)


def test_maps_of_a_resampled_run_end_where_the_image_ends():
    """Resampling 50 voxels of 1.3 mm to the model's 2 mm gives 32 model voxels (ratio 1.5625, not the
    nominal 1.538): placed with the nominal ratio the maps stopped short of the image by up to a voxel.
    Every level starts at the image's first edge and ends at its last (or past it by less than one of the
    level's pixels, when the model grid is not a multiple of the level's stride)."""
    from napari_attnseg import load_model, predict

    model = load_model("brain-mri-3d")
    shape = (30, 50, 50)
    vol = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    pred = predict(model, vol, spacing=(1.3, 1.3, 1.3), attention=True)
    assert pred.attention
    for amap in pred.attention:
        for d, n in enumerate(shape):
            lower = amap.translate[d] - amap.scale[d] / 2
            upper = amap.translate[d] + (amap.data.shape[d] - 0.5) * amap.scale[d]
            assert lower == pytest.approx(-0.5, abs=1e-6), (amap.name, d)
            assert -1e-6 <= upper - (n - 0.5) < amap.scale[d], (amap.name, d, upper)


def test_maps_of_a_run_at_another_object_size_end_where_the_image_ends():
    """The same for the object-diameter path (nuclei-2d asked for objects 40 px wide: the image is shrunk
    by 25.1 / 40 to a whole number of pixels)."""
    from napari_attnseg import load_model, predict
    from napari_attnseg._paths import samples_dir
    from napari_attnseg.data import read_image

    image = read_image(samples_dir() / "nuclei2d_image.tif").data[:204, :153]  # 128 x 96 pixels on the model grid
    pred = predict(load_model("nuclei-2d"), image, diameter=40, attention=True)
    assert pred.attention
    for amap in pred.attention:
        for d, n in enumerate(image.shape):
            lower = amap.translate[d] - amap.scale[d] / 2
            upper = amap.translate[d] + (amap.data.shape[d] - 0.5) * amap.scale[d]
            assert lower == pytest.approx(-0.5, abs=1e-6), (amap.name, d)
            assert -1e-6 <= upper - (n - 0.5) < amap.scale[d], (amap.name, d, upper)


def test_a_few_saturated_pixels_do_not_spoil_the_mask_around_them():
    """17 pixels at 65535 in the nuclei sample (0-235 in a uint16 file): normalised without a bound they
    came out near 300 and the Dice fell from 0.947 to 0.717; outliers are now bounded at +-5 (the image
    itself normalises into about [0, 2.1], untouched), so the mask is that of the clean image."""
    import torch

    from napari_attnseg import load_model, predict
    from napari_attnseg._paths import samples_dir
    from napari_attnseg.data import read_image
    from napari_attnseg.inference.normalize import (
        OUTLIER_LIMIT,
        apply_stats,
        apply_stats_tensor,
        compute_stats,
    )

    img = read_image(samples_dir() / "nuclei2d_image.tif").data.astype(np.uint16)
    ref = read_image(samples_dir() / "nuclei2d_labels.tif").data > 0
    hot = img.copy()
    idx = np.random.default_rng(0).integers(0, 512, (17, 2))
    hot[idx[:, 0], idx[:, 1]] = 65535
    model = load_model("nuclei-2d")
    clean, spoilt = (predict(model, x, precision="fp32").labels > 0 for x in (img, hot))
    dice = 2 * (spoilt & ref).sum() / (spoilt.sum() + ref.sum())
    assert dice > 0.94 and (clean != spoilt).sum() < 2000  # without the bound: Dice 0.717
    stats = compute_stats(hot[None], {"scheme": "percentile", "lower": 1, "upper": 99}, True)
    assert apply_stats(hot[None], stats).max() == OUTLIER_LIMIT
    assert float(apply_stats_tensor(torch.from_numpy(hot[None].astype(np.float32)), stats).max()) == OUTLIER_LIMIT
    ct = compute_stats(np.array([[-3000.0, 0.0, 3000.0]]), {"scheme": "ct", "window": [-1000, 400]}, True)
    assert apply_stats(np.array([[-3000.0, 0.0, 3000.0]]), ct) == pytest.approx(np.array([[0.0, 1000 / 1400, 1.0]]))
