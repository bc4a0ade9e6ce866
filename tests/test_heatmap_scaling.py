"""Attention heatmaps over images larger than a tile, and how they are shown.

msga's maps and TransFuse's "vit tokens" only mean something relative to each other. They used to be scaled to
[0, 1] per tile, so on an image of several tiles every tile reached 0 and 1 and the blended heatmap showed the
tile grid. The engine now blends the raw maps (``return_attention="raw"``) and scales each once per image;
direct calls (``return_attention=True``) still scale per call. The heatmap layers are drawn translucent with a
colormap transparent at 0, so they stay readable over bright tissue and in 3D (additive inferno washed out)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_attnseg.inference import engine
from napari_attnseg.inference.blend import scale_whole
from napari_attnseg.inference.engine import predict
from napari_attnseg.models.attention_unet import AttentionUNet
from napari_attnseg.models.base import RAW_ATTENTION, scale_relative
from napari_attnseg.models.msga import MultiScaleGuidedAttention
from napari_attnseg.models.transfuse import TransFuse

TILE = 128


def blobs(n: int, seed: int = 0) -> np.ndarray:
    """A normalised image (about 0..1) of bright round objects, brighter towards the right: the tiles of a 2x2
    grid see different contents, so their maps have different ranges."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:n, 0:n]
    img = np.zeros((n, n), np.float32)
    for cy, cx, r in rng.uniform((0, 0, 4), (n, n, 12), (30, 3)):
        img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)).astype(np.float32)
    img *= np.linspace(0.3, 1.0, n, dtype=np.float32)
    img += 0.02 * rng.standard_normal((n, n)).astype(np.float32)
    return np.clip(img, 0.0, 1.0)  # (the engine's "none" normalisation keeps 0..1)


def calibrated(model, img):
    """Random weights, batch-norm statistics taken from the image (at initialisation msga's maps are flat)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.momentum = None  # a plain average over the batch
        model.train()
        model(torch.from_numpy(img)[None, None])
    return model.eval()


def raw_tile_maps(model, img):
    """Each tile's raw maps of a 2x2 grid without overlap, taken inside the model with hooks, so they do not
    depend on how ``forward`` scales its maps: msga's mean |guided attention| per scale and step, TransFuse's
    attention received per token (up to a factor, the same for every tile)."""
    maps: dict[str, np.ndarray] = {}
    caught: dict[str, torch.Tensor] = {}
    hooks = []
    if isinstance(model, MultiScaleGuidedAttention):
        for s in range(4):
            for k, mods in ((1, model.step1), (2, model.step2)):
                hooks.append(mods[s].register_forward_hook(
                    lambda m, i, out, key=f"scale{s + 1} step{k}": caught.__setitem__(key, out[0].abs().mean(1)[0])))
    else:
        def tokens(m, args):
            caught["vit tokens"] = m.attention_weights(args[0]).mean(1).mean(1)[0].view(TILE // 16, TILE // 16)
        hooks.append(model.blocks[-1].register_forward_pre_hook(tokens))
    n = img.shape[0]
    try:
        for y in range(0, n, TILE):
            for x in range(0, n, TILE):
                with torch.no_grad():
                    model(torch.from_numpy(img[y:y + TILE, x:x + TILE].copy())[None, None])
                for key, m in caught.items():
                    st = model.attention_strides[key][0]
                    full = maps.setdefault(key, np.zeros((n // st, n // st), np.float32))
                    full[y // st:(y + TILE) // st, x // st:(x + TILE) // st] = m.numpy()
    finally:
        for h in hooks:
            h.remove()
    return maps


@pytest.mark.parametrize("arch", ["msga", "transfuse"])
@pytest.mark.parametrize("on_device", [False, True])
def test_relative_maps_are_scaled_once_per_image_not_per_tile(arch, on_device, monkeypatch):
    monkeypatch.setattr(engine, "_BLEND_ON_DEVICE", on_device)  # the NumPy and the torch finishing paths
    img = blobs(2 * TILE)
    model = MultiScaleGuidedAttention(width=4, channels=8, latent=4) if arch == "msga" else \
        TransFuse(width=4, embed_dim=16, depth=1, heads=2)
    calibrated(model, img)
    pred = predict(model, img, tile=TILE, overlap=0.0, attention=True, device="cpu", mode="2d", precision="fp32",
                   normalization={"scheme": "none"})  # (bf16, "auto" on some CPUs, would differ from the reference)
    assert pred.params["tiles"] == 4
    raw = raw_tile_maps(model, img)
    relative = model.relative_attention
    assert set(raw) == set(relative) and relative  # (msga: all eight maps; TransFuse: "vit tokens")
    for amap in pred.attention:
        if amap.name not in relative:
            continue
        got = amap.data.astype(np.float32)
        want = scale_whole(raw[amap.name].copy(), relative[amap.name])  # the image's raw map, scaled once
        assert float(got.max()) == pytest.approx(1.0, abs=1e-3)
        # per tile, each quarter was stretched to its own range: off by 0.05-0.6 here
        np.testing.assert_allclose(got, want, atol=2e-3, err_msg=amap.name)
        # no seam: the jump across the middle (a tile border) is like the jumps beside it
        h = got.shape[0] // 2
        border = np.abs(got[:, h] - got[:, h - 1]).mean() + np.abs(got[h] - got[h - 1]).mean()
        beside = np.abs(want[:, h] - want[:, h - 1]).mean() + np.abs(want[h] - want[h - 1]).mean()
        assert border == pytest.approx(beside, abs=5e-3)


def test_direct_calls_scale_per_call_and_raw_maps_are_unscaled():
    x = torch.from_numpy(np.stack([blobs(64, 1), 3 * blobs(64, 2)])[:, None])
    for model in (calibrated(MultiScaleGuidedAttention(width=4, channels=8, latent=4), x[0, 0].numpy()),
                  calibrated(TransFuse(width=4, embed_dim=16, depth=1, heads=2), x[0, 0].numpy())):
        with torch.no_grad():
            logits, scaled = model(x, return_attention=True)
            logits_raw, raw = model(x, return_attention=RAW_ATTENTION)
        torch.testing.assert_close(logits, logits_raw)
        assert list(scaled) == list(raw) == list(model.attention_strides)
        for name, m in scaled.items():
            how = model.relative_attention.get(name)
            if how is None:  # sigmoid gates: probabilities already, the same either way
                torch.testing.assert_close(m, raw[name])
                continue
            torch.testing.assert_close(m, scale_relative(raw[name], how))
            per_sample = m.flatten(1)
            torch.testing.assert_close(per_sample.amax(1), torch.ones(2))  # each sample of the call: max 1
            if how == "minmax":
                torch.testing.assert_close(per_sample.amin(1), torch.zeros(2))
    # "vit tokens" raw: attention received in units of the uniform share, so it averages 1 whatever the size
    assert float(raw["vit tokens"].mean()) == pytest.approx(1.0, abs=1e-4)


def test_maps_that_are_probabilities_are_left_alone():
    """The Attention U-Net's gates (the bundled models) are sigmoid outputs: nothing of them is relative, the
    engine calls the model as before, and the tiled heatmap is the blend of the gates as they are."""
    model = AttentionUNet(spatial_dims=2, in_channels=1, out_channels=2, features=(4, 8, 16, 32, 64)).eval()
    assert model.relative_attention == {}
    calls = []
    model.register_forward_pre_hook(lambda m, args, kwargs: calls.append(kwargs.get("return_attention")),
                                    with_kwargs=True)
    img = blobs(96)
    pred = predict(model, img, tile=64, overlap=0.25, attention=True, device="cpu", mode="2d")
    assert pred.attention and all(0.0 <= float(a.data.min()) and float(a.data.max()) < 1.0 for a in pred.attention)
    x = torch.from_numpy(img)[None, None]
    with torch.no_grad():
        _, a = model(x, return_attention=True)
        _, b = model(x, return_attention=RAW_ATTENTION)
    for name in a:
        torch.testing.assert_close(a[name], b[name])


def test_scale_whole_numpy_and_torch_agree():
    data = np.random.default_rng(3).random((5, 7)).astype(np.float32) * 3 + 2
    for how in ("minmax", "max"):
        a = scale_whole(data.copy(), how)
        b = scale_whole(torch.from_numpy(data.copy()), how).numpy()
        np.testing.assert_allclose(a, b, rtol=1e-6)
        assert float(a.max()) == pytest.approx(1.0)
    assert float(scale_whole(data.copy(), "minmax").min()) == 0.0
    assert not scale_whole(np.full((3, 3), 2.0, np.float32), "minmax").any()  # constant: 0, not NaN
    with pytest.raises(ValueError, match="scaling"):
        scale_whole(data.copy(), "percent")


# -- display ------------------------------------------------------------------------------------------
def _run(qtbot, w):
    with qtbot.waitSignal(w.run_done, timeout=120000) as done:
        assert w.run() is not None, w.messages
    assert done.args == [True], w.messages


def _heat_over_image(viewer, image, heat):
    """Screenshots of ``image`` alone, ``heat`` alone and both, with ``heat`` 0 on the left half of the image and 1
    on the right half: how much the heat changes the rendered image where it is 1 and where it is 0, and how
    coloured (max - min channel) and how often white-clipped the pixels under heat 1 are."""
    for layer in viewer.layers:
        layer.visible = layer in (image, heat)
    data = np.zeros(heat.data.shape, np.float32)
    data[..., data.shape[-1] // 2:] = 1.0
    heat.data = data
    viewer.reset_view()

    def shot(show_image, show_heat):
        image.visible, heat.visible = show_image, show_heat
        return viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(np.float32)

    both, alone, under = shot(True, True), shot(True, False), shot(False, True)
    tissue = alone.mean(-1) > 150  # the bright image
    hot = tissue & (np.abs(under - shot(False, False)).max(-1) > 30)  # where the heat is 1 (heat drawn on black)
    cold = tissue & ~hot
    change = np.linalg.norm(both - alone, axis=-1)
    return {"hot_px": int(hot.sum()), "cold_px": int(cold.sum()), "change_hot": float(change[hot].mean()),
            "change_cold": float(change[cold].mean()), "colour_hot": float(np.ptp(both[hot], axis=-1).mean()),
            "white_hot": float((both[hot].min(-1) >= 245).mean())}


@pytest.fixture()
def shown_panel(make_napari_viewer):
    """A shown viewer (a hidden one's screenshots are black here) with a Segment panel."""
    from napari_attnseg._napari.segment_widget import SegmentWidget

    viewer = make_napari_viewer(show=True)
    w = SegmentWidget(viewer)
    w.messages = []
    return viewer, w


@pytest.mark.gui
@pytest.mark.parametrize("dims", [2, 3])
def test_heatmaps_stay_readable_over_a_bright_image_in_2d_and_3d(shown_panel, qtbot, tiny_checkpoint, dims):
    """Heatmap layers are translucent, transparent where the attention is 0: over a bright image (white matter, a
    CT's bone) and in the 3D view (maximum intensity projection) a high value shows as colour instead of adding
    up to white, and the image stays as it is where the attention is low. Names, the status-bar help and the
    finest-level-visible rule stay; a layer updated by a new run keeps what its user set."""
    from napari_attnseg.display import HEATMAP_COLORMAP_NAME

    viewer, w = shown_panel
    shape = (64, 64) if dims == 2 else (16, 48, 48)
    bright = 0.85 + 0.1 * np.random.default_rng(0).random(shape).astype(np.float32)
    bright[(slice(None),) * (dims - 1) + (slice(0, 4),)] = 0.0  # a dark edge, so the percentile scaling keeps it bright
    image = viewer.add_image(bright, name="bright", contrast_limits=(0.0, 1.0))
    w.add_model(tiny_checkpoint(dims))
    _run(qtbot, w)
    heat = [ly for ly in viewer.layers if ly.name.startswith("bright attention ")]
    assert [ly.name for ly in heat] == ["bright attention level2", "bright attention level3", "bright attention level4"]
    assert heat[0].visible and not heat[2].visible
    for layer in heat:
        assert layer.blending == "translucent" and layer.opacity == pytest.approx(0.8)
        assert layer.colormap.name == HEATMAP_COLORMAP_NAME and tuple(layer.contrast_limits) == (0.0, 1.0)
        rgba = layer.colormap.map(np.array([0.0, 0.5, 1.0]))
        assert rgba[0, 3] == 0.0 and rgba[2, 3] == 1.0  # transparent at 0, opaque at 1
        assert layer.help.startswith("attention level")  # the status-bar note
    viewer.dims.ndisplay = dims
    got = _heat_over_image(viewer, image, heat[0])
    assert got["hot_px"] > 1000 and got["cold_px"] > 1000, got
    # additive inferno at 0.5 (before): change_hot 44 (2D) and 30 (3D), colour 0 and 0.3, white_hot 1.0 and 0.99
    assert got["change_hot"] > 100 and got["colour_hot"] > 100 and got["white_hot"] < 0.01, got
    assert got["change_cold"] < 5, got  # heat 0: the image as it is
    # a new run updates the layers in place and keeps the display settings their user chose
    heat[0].opacity, heat[0].blending = 0.3, "additive"
    viewer.dims.ndisplay = 2
    _run(qtbot, w)
    assert viewer.layers["bright attention level2"] is heat[0]
    assert heat[0].opacity == pytest.approx(0.3) and heat[0].blending == "additive"
