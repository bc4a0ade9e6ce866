"""Audit: the four architectures a user trains (unet, attention_unet, msga, transfuse), their attention maps
placed on the image (also flip-averaged), and the message for a 2D-only architecture asked for in 3D."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch

from napari_attnseg import create_model, predict
from napari_attnseg.errors import InputError
from napari_attnseg.models.base import SegmentationModel

NO_NORM = type("Card", (), {"normalization": {"scheme": "none"}, "tile": None, "overlap": 0.25, "spacing": None,
                            "classes": None})
TINY = {"msga": {"width": 4, "channels": 8, "latent": 4},
        "transfuse": {"width": 4, "embed_dim": 16, "depth": 1, "heads": 2}}


def _support_middle(features: torch.Tensor, x: torch.Tensor, stride: int) -> tuple[float, float]:
    """The middle of the input pixels that feature pixel (i, j) near the centre depends on, minus (i, j) * stride:
    where pixel 0 of that grid is centred on the input (exact: the support of the gradient, not a weighted mean)."""
    i, j = features.shape[2] // 2, features.shape[3] // 2
    (g,) = torch.autograd.grad(features[0, :, i, j].sum(), x, retain_graph=True)
    g = g[0, 0].abs()
    rows, cols = torch.nonzero(g.sum(1)).ravel(), torch.nonzero(g.sum(0)).ravel()
    return (float(rows[0] + rows[-1]) / 2 - i * stride, float(cols[0] + cols[-1]) / 2 - j * stride)


def _tiny(arch: str) -> SegmentationModel:
    torch.manual_seed(0)
    model = create_model(arch, **TINY[arch]).double().eval()
    model.card = NO_NORM
    return model


def test_msga_maps_are_placed_where_its_backbone_grid_is():
    """msga's maps are on its backbone's 1/4 grid, made by two 3x3 stride-2 convolutions: pixel i is centred on
    input pixel 4 i, not 4 i + 1.5 (the middle of a 4-pixel block, right for pooled grids). The maps were drawn
    1.5 image pixels down and right of where the model computed them."""
    model = _tiny("msga")
    x = torch.randn(1, 1, 128, 128, dtype=torch.float64, requires_grad=True)
    quarter = model.backbone(x)[0]
    assert _support_middle(quarter, x, 4) == (0.0, 0.0)
    pred = predict(model.float(), np.random.default_rng(0).random((97, 203), np.float32), attention=True,
                   precision="fp32", device="cpu", tile=64)
    assert [m.translate for m in pred.attention] == [(0.0, 0.0)] * 8
    assert [m.scale for m in pred.attention] == [(4.0, 4.0)] * 8


def test_transfuse_cnn_maps_are_placed_on_the_cnn_grid_and_vit_tokens_on_their_patches():
    """TransFuse's CNN pools to 1/4 (centres 4 i + 1.5), then halves with 3x3 stride-2 blocks, which keep that first
    centre: 8 i + 1.5 and 16 i + 1.5, not 8 i + 3.5 and 16 i + 7.5 (the 1/16 spatial attention was drawn 6 image
    pixels off). The ViT's tokens are 16-pixel patches (16 i + 7.5)."""
    model = _tiny("transfuse")
    x = torch.randn(1, 1, 256, 256, dtype=torch.float64, requires_grad=True)  # (1/16's support: 194 pixels)
    _, maps = model(x, return_attention="raw")
    for name in ("bifusion 1/4", "bifusion 1/8", "bifusion 1/16"):  # CBAM spatial attention: the CNN's features only
        stride = model.attention_strides[name][0]
        assert _support_middle(maps[name], x, stride) == (1.5, 1.5), name
    assert _support_middle(model.patch(x), x, 16) == (7.5, 7.5)
    pred = predict(model.float(), np.random.default_rng(0).random((97, 203), np.float32), attention=True,
                   precision="fp32", device="cpu", tile=64)
    placed = {m.name: m.translate for m in pred.attention}
    assert placed == {"bifusion 1/4": (1.5, 1.5), "gate 1/4": (1.5, 1.5), "bifusion 1/8": (1.5, 1.5),
                      "gate 1/8": (1.5, 1.5), "bifusion 1/16": (1.5, 1.5), "vit tokens": (7.5, 7.5)}


class CornerSampler(SegmentationModel):
    """Two classes; its one map takes every 4th input pixel from pixel 0 (a grid like msga's: pixel i centred on
    input pixel 4 i), so the map's value at pixel i is the input at 4 i."""

    arch = "corner_sampler"

    def __init__(self):
        super().__init__(2, 1, 2)
        self.size_divisor = 4
        self.attention_strides = OrderedDict([("corner", (4, 4))])
        self.attention_offsets = {"corner": (0.0, 0.0)}
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, return_attention=False):
        logits = torch.cat([torch.zeros_like(x), x], 1)
        return (logits, OrderedDict([("corner", x[:, :, ::4, ::4])])) if return_attention else logits


@pytest.mark.parametrize("tta", [False, True])
def test_a_map_not_on_blocks_reads_the_image_where_it_is_placed_also_flip_averaged(tta):
    """On a ramp, a map pixel placed at image coordinate translate + i * scale must hold the ramp's value there. A
    flipped tile's map comes back on another grid (pixels 3, 7, 11, ... instead of 0, 4, 8, ...): averaged as it
    was, the flip-averaged map mixed two grids 3 pixels apart."""
    model = CornerSampler()
    model.card = NO_NORM
    yy, xx = np.mgrid[:96, :128].astype(np.float32)
    ramp = 0.1 + 0.8 * (yy / 96 * 0.4 + xx / 128 * 0.6)
    (amap,) = predict(model, ramp, attention=True, precision="fp32", device="cpu", tile=32, tta=tta).attention
    assert amap.translate == (0.0, 0.0) and amap.scale == (4.0, 4.0)
    cy = amap.translate[0] + np.arange(amap.data.shape[0]) * amap.scale[0]
    cx = amap.translate[1] + np.arange(amap.data.shape[1]) * amap.scale[1]
    expected = 0.1 + 0.8 * (cy[:, None] / 96 * 0.4 + cx[None, :] / 128 * 0.6)
    inner = (slice(1, None), slice(1, None))  # (flip-averaged: the first pixel has no neighbour before it)
    error = np.abs(np.asarray(amap.data, np.float32)[inner] - expected[inner])
    # a flipped tile's first map pixel repeats its neighbour (at most 0.004 here, at tile edges, where tiles weigh
    # little); the two grids mixed gave 0.011 everywhere
    assert np.median(error) < 1e-3 and error.max() < 5e-3


def test_msga_pixel_attention_map_is_placed_on_its_grid(monkeypatch):
    """'Where does this pixel look?' (msga's position-attention row) shares the maps' 1/4 grid."""
    from napari_attnseg.inference.pixel import pixel_attention_map

    model = _tiny("msga").float()
    amap = pixel_attention_map(model, np.random.default_rng(1).random((80, 90), np.float32), (40, 45), tile=64)
    assert amap.scale == (4.0, 4.0) and amap.translate == (8.0, 12.0)  # the crop starts at (8, 12), a 4-multiple


@pytest.mark.parametrize("arch", ["msga", "transfuse"])
def test_a_2d_only_architecture_asked_for_in_3d_says_what_to_do(arch):
    with pytest.raises(InputError) as err:
        create_model(arch, spatial_dims=3)
    text = str(err.value)
    assert "2D architecture" in text and "--dims 3" in text and "attention_unet" in text and "--dims 2" in text


def test_msga_pixel_attention_asks_the_map_pixel_centred_nearest_the_point():
    """Map pixels are centred on input pixels 0, 4, 8, ...: pixel 3 is nearest the second (4), not the first."""
    model = _tiny("msga").float()
    x = torch.randn(1, 1, 32, 32)
    torch.testing.assert_close(model.pixel_attention(x, (3, 3)), model.pixel_attention(x, (4, 4)))
    torch.testing.assert_close(model.pixel_attention(x, (2, 2)), model.pixel_attention(x, (0, 0)))  # a tie: the first


def test_a_click_models_maps_are_placed_on_its_own_grid():
    """segment_with_prompts placed every map at mid-block ((stride - 1) / 2 past the crop's start): a promptable msga's
    maps, centred on input pixels 0, 4, 8, ... of the crop, sat 1.5 px off (the engine's maps were fixed first)."""
    from napari_attnseg import segment_with_prompts
    from napari_attnseg.inference.forward import map_centre
    from napari_attnseg.prompts.convert import make_promptable

    torch.manual_seed(0)
    model = make_promptable(create_model("msga", in_channels=1, out_channels=2).eval())
    image = np.random.default_rng(0).random((96, 96)).astype(np.float32)
    res = segment_with_prompts(model, image, np.array([[48.0, 48.0]]), np.array([1]), attention=True)
    start = [s.start for s in res.box]
    assert res.attention
    for m in res.attention:
        assert m.translate == pytest.approx(tuple(b + c for b, c in zip(start, map_centre(model, m.name)))), m.name
    assert any(m.translate != pytest.approx(tuple(b + (s - 1) / 2 for b, s in zip(start, m.scale)))
               for m in res.attention)


def test_a_click_prior_on_msga_peaks_on_the_grid_pixel_over_the_click():
    """The SMCA prior of a promptable msga's position attention was computed for a grid centred mid-block (4i + 1.5),
    while msga's 1/4 grid sits on input pixels 0, 4, 8, ...: a click on input pixel (16, 16), the centre of grid pixel
    (4, 4), got its peak split over grid pixels 3 and 4 (the value 1.5 px off)."""
    from napari_attnseg.prompts.convert import KeyPrior, make_promptable

    model = make_promptable(create_model("msga", in_channels=1, out_channels=2).eval())
    prior = next(m for m in model.modules() if isinstance(m, KeyPrior))
    ctx = prior.prompt_context
    ctx.set([np.array([[16.0, 16.0]])], [np.array([1])])
    ctx.input_shape = (64, 64)
    g_pos, _ = ctx.bumps((16, 16), None, 1, "cpu", torch.float32, prior.origin)
    assert tuple(np.unravel_index(int(g_pos[0].argmax()), (16, 16))) == (4, 4)
    assert float(g_pos[0, 4, 4]) == pytest.approx(1.0)
    ctx.clear()


def test_planes_of_a_two_channel_tiff_given_to_a_two_channel_model_get_no_z_stack_note(tmp_path):
    """A (2, Y, X) TIFF without axis names given to a 2-channel 2D model: the run used the planes as the model's two
    channels, but the note said they were "segmented as a z-stack slice by slice" and advised --channel K, which
    would have broken the run."""
    import tifffile

    from napari_attnseg.cohort.inputs import pick_channel, read_input

    tifffile.imwrite(tmp_path / "two.tif", np.zeros((2, 8, 8), np.uint16))  # reads back with axes QYX
    vol = pick_channel(read_input(tmp_path / "two.tif"), None, 2, "two.tif", dims=2)
    assert not vol.meta.get("note") and np.shape(vol.data) == (2, 8, 8)
    assert "z-stack" in pick_channel(read_input(tmp_path / "two.tif"), None, 1, "two.tif", dims=2).meta["note"]
