"""Sliding-window inference: exact tiling, aligned attention maps, progress, cancel, bad input."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_attnseg import create_model, predict
from napari_attnseg.errors import Cancelled, InputError
from napari_attnseg.inference import CancelToken, iter_predict
from napari_attnseg.models.base import SegmentationModel


class IdentityModel(SegmentationModel):
    """Two-class 'model' whose foreground probability is the input itself (logit of it), and whose
    attention map at stride s is the input averaged over each s x s block."""

    arch = "identity"

    def __init__(self, spatial_dims=2, stride=4):
        super().__init__(spatial_dims, 1, 2)
        self.stride = stride
        self.size_divisor = stride
        self.attention_strides = OrderedDict([("block", (stride,) * spatial_dims)])
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, return_attention=False):
        p = x.clamp(1e-4, 1 - 1e-4)
        logits = torch.cat([torch.zeros_like(p), torch.log(p / (1 - p))], 1)
        if not return_attention:
            return logits
        pool = torch.nn.functional.avg_pool2d if self.spatial_dims == 2 else torch.nn.functional.avg_pool3d
        return logits, OrderedDict([("block", pool(x, self.stride))])


NO_NORM = type("Card", (), {"normalization": {"scheme": "none"}, "tile": None, "overlap": 0.25, "spacing": None, "classes": None})


def identity(dims=2, stride=4):
    m = IdentityModel(dims, stride)
    m.card = NO_NORM
    return m


@settings(max_examples=15, deadline=None)
@given(
    h=st.integers(5, 90), w=st.integers(5, 90), tile=st.sampled_from([16, 32, 48]),
    overlap=st.sampled_from([0.0, 0.25, 0.5]),
)
def test_tiling_reproduces_the_input_exactly(h, w, tile, overlap):
    rng = np.random.default_rng(h * 100 + w)
    img = rng.uniform(0.01, 0.99, (h, w)).astype(np.float32)
    pred = predict(identity(), img, tile=tile, overlap=overlap, precision="fp32", device="cpu")
    assert pred.probabilities.shape == (2, h, w)
    np.testing.assert_allclose(pred.probabilities[1].astype(np.float32), img, atol=2e-3)  # float16 storage
    np.testing.assert_array_equal(pred.labels, (img > 0.5).astype(np.uint8))


def test_tiling_exact_in_3d_and_slices():
    rng = np.random.default_rng(0)
    vol = rng.uniform(0.01, 0.99, (13, 37, 29)).astype(np.float32)
    p3 = predict(identity(3), vol, tile=16, precision="fp32")
    np.testing.assert_allclose(p3.probabilities[1].astype(np.float32), vol, atol=2e-3)
    ps = predict(identity(2), vol, tile=16, precision="fp32")
    assert ps.params["mode"] == "slices"
    np.testing.assert_allclose(ps.probabilities[1].astype(np.float32), vol, atol=2e-3)


def test_attention_map_is_aligned_with_the_image():
    # a bright square; the block-average map must light up exactly over it
    img = np.full((70, 90), 0.05, np.float32)
    img[20:36, 40:56] = 0.95  # 16x16 square starting at multiples of 4
    pred = predict(identity(stride=4), img, tile=32, attention=True, precision="fp32")
    (amap,) = pred.attention
    assert amap.scale == (4.0, 4.0) and amap.translate == (1.5, 1.5)
    assert amap.data.shape == (18, 23)
    hot = np.argwhere(amap.data > 0.9)
    # map pixel i is centred on image coordinate translate + i*scale
    centres = hot * 4 + 1.5
    assert centres[:, 0].min() == 21.5 and centres[:, 0].max() == 33.5
    assert centres[:, 1].min() == 41.5 and centres[:, 1].max() == 53.5


def test_progress_is_monotonic_and_complete():
    seen = []
    predict(identity(), np.random.rand(100, 100).astype(np.float32), tile=32, progress=lambda d, t: seen.append((d, t)))
    assert seen and seen[-1][0] == seen[-1][1]
    assert all(b[0] >= a[0] for a, b in zip(seen, seen[1:]))


def test_cancel_stops_promptly_and_writes_nothing(tmp_path):
    token = CancelToken()
    out = tmp_path / "pred"
    gen = iter_predict(identity(), np.random.rand(200, 200).astype(np.float32), tile=32, batch_size=1, cancel=token, out=out)
    next(gen)
    next(gen)
    token.cancel()
    with pytest.raises(Cancelled):
        for _ in gen:
            pass
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_out_folder_memory_maps_the_outputs(tmp_path):
    img = np.random.rand(50, 60).astype(np.float32)
    pred = predict(identity(), img, tile=32, out=tmp_path / "o", precision="fp32")
    assert isinstance(pred.labels, np.memmap)
    assert (tmp_path / "o" / "labels.npy").exists()
    np.testing.assert_array_equal(np.load(tmp_path / "o" / "labels.npy"), (img > 0.5))


@pytest.mark.parametrize(
    "image,match",
    [
        (np.zeros((0, 10), np.float32), "empty"),
        (np.zeros((4, 5, 6, 7), np.float32), "2D image or a 3D volume"),
        (np.zeros((3, 32, 32), np.uint8), None),  # a volume of 3 slices is fine for a 2D model
        (np.array([["a", "b"], ["c", "d"]]), "numeric"),
        (np.zeros((10, 10, 10, 3), np.uint8), "RGB"),
    ],
)
def test_bad_inputs_have_clear_messages(image, match):
    model = create_model("unet", features=(4, 8, 16))
    if match is None:
        predict(model, image, tile=32)
        return
    with pytest.raises(InputError, match=match):
        predict(model, image)


def test_mode_mismatch_and_channels():
    m3 = create_model("unet", spatial_dims=3, features=(4, 8, 16))
    with pytest.raises(InputError, match="3D model"):
        predict(m3, np.zeros((32, 32), np.float32), mode="2d")
    m2c = create_model("unet", in_channels=2, features=(4, 8, 16))
    with pytest.raises(InputError, match="2 channels"):
        predict(m2c, np.zeros((3, 32, 32), np.float32))
    assert predict(m2c, np.random.rand(2, 40, 30).astype(np.float32), tile=32).labels.shape == (40, 30)


def test_nan_and_constant_images_are_reported_not_fatal():
    model = create_model("unet", features=(4, 8, 16))
    img = np.random.rand(40, 40).astype(np.float32)
    img[3, 4] = np.nan
    img[5, 6] = np.inf
    pred = predict(model, img, tile=32)
    assert any("2 NaN or infinite" in w for w in pred.warnings)
    pred = predict(model, np.full((40, 40), 7.0, np.float32), tile=32)
    assert any("constant" in w for w in pred.warnings)


def test_tiny_image_is_padded_not_refused():
    model = create_model("attention_unet", features=(4, 8, 16, 32, 64))
    pred = predict(model, np.random.rand(5, 7).astype(np.float32), attention=True)
    assert pred.labels.shape == (5, 7)
    assert all(a.data.shape[0] >= 1 for a in pred.attention)


def test_spacing_resamples_and_returns_on_image_grid():
    m = identity()
    m.card = type("Card", (), {"normalization": {"scheme": "none"}, "tile": None, "overlap": 0.25,
                               "spacing": [1.0, 1.0], "classes": None})
    img = np.random.uniform(0.1, 0.9, (60, 80)).astype(np.float32)
    pred = predict(m, img, spacing=(0.5, 0.5), tile=32, attention=True, precision="fp32")
    assert pred.params["resampled"] and pred.labels.shape == (60, 80)
    assert pred.attention[0].scale == (8.0, 8.0)  # stride 4 on a grid twice as coarse
    smooth = np.asarray(pred.probabilities[1], np.float32)
    assert abs(smooth.mean() - img.mean()) < 0.02


def test_flip_tta_keeps_shapes_and_identity():
    img = np.random.uniform(0.01, 0.99, (33, 41)).astype(np.float32)
    pred = predict(identity(), img, tile=32, tta=True, precision="fp32")
    np.testing.assert_allclose(pred.probabilities[1].astype(np.float32), img, atol=2e-3)


def test_bf16_fast_path_agrees_with_fp32():
    torch.manual_seed(0)
    model = create_model("attention_unet", features=(4, 8, 16, 32, 64))
    img = np.random.rand(96, 96).astype(np.float32)
    a = predict(model, img, precision="fp32").probabilities[1].astype(np.float32)
    b = predict(model, img, precision="bf16").probabilities[1].astype(np.float32)
    assert np.abs(a - b).max() < 0.05


def test_out_of_memory_retries_with_fewer_tiles_then_smaller_tiles(monkeypatch):
    from napari_attnseg.inference import engine

    real = engine._run_batch
    failures = {"n": 0}

    def flaky(net, x, *args, **kwargs):
        if x.shape[0] > 1 or x.shape[-1] > 16:  # "too big for the GPU" until batch 1 and 16-pixel tiles
            failures["n"] += 1
            raise torch.cuda.OutOfMemoryError("simulated")
        return real(net, x, *args, **kwargs)

    monkeypatch.setattr(engine, "_run_batch", flaky)
    img = np.random.default_rng(0).uniform(0.01, 0.99, (40, 40)).astype(np.float32)
    pred = predict(identity(), img, tile=32, batch_size=2, precision="fp32")
    assert failures["n"] >= 2
    assert any("tiles per batch" in w for w in pred.warnings) and any("tiles of [16, 16]" in w for w in pred.warnings)
    np.testing.assert_allclose(pred.probabilities[1].astype(np.float32), img, atol=2e-3)


def test_dask_zarr_and_memmap_inputs_give_the_same_result(tmp_path):
    import dask.array as da
    import tifffile
    import zarr

    img = np.random.default_rng(3).uniform(0.01, 0.99, (3, 50, 70)).astype(np.float32)
    expected = predict(identity(), img, tile=32, precision="fp32").labels
    z = zarr.open(str(tmp_path / "img.zarr"), mode="w", shape=img.shape, chunks=(1, 32, 32), dtype="f4")
    z[:] = img
    tifffile.imwrite(tmp_path / "img.tif", img)
    mm = tifffile.memmap(tmp_path / "img.tif", mode="r")
    for arr in (da.from_array(img, chunks=(1, 25, 35)), z, mm):
        np.testing.assert_array_equal(predict(identity(), arr, tile=32, precision="fp32").labels, expected)


def test_nonzero_normalisation_ignores_the_field_of_view():
    """On a skull-stripped T1 (the bundled MNI152 sample), padding the volume with empty background
    moves whole-image percentiles but not the ones taken over the non-zero (brain) voxels."""
    import nibabel as nib

    from napari_attnseg._paths import samples_dir
    from napari_attnseg.cli._train_common import parse_normalization
    from napari_attnseg.inference.normalize import compute_stats

    t1 = np.asarray(nib.load(samples_dir() / "mni152_t1.nii.gz").dataobj, np.float32)[::2, ::2, ::2]
    wide = np.pad(t1, 20)  # a larger field of view: more air around the same head
    spec = parse_normalization("nonzero-percentile:1,99")
    assert spec == {"scheme": "percentile", "lower": 1.0, "upper": 99.0, "nonzero": True}
    plain = {"scheme": "percentile", "lower": 1.0, "upper": 99.0}
    a, b = compute_stats(t1, spec, False), compute_stats(wide, spec, False)
    assert a["offset"][0] == b["offset"][0] and a["scale"][0] == b["scale"][0]
    p, q = compute_stats(t1, plain, False), compute_stats(wide, plain, False)
    assert abs(q["scale"][0] - p["scale"][0]) > 0.02 * p["scale"][0]  # the plain upper percentile moved
    # "scale" divides by the upper percentile only, so 0 (no signal) stays 0 and the brain's edge voxels,
    # whose values depend on the resolution, do not set an offset: 1 mm and 2 mm agree within 1 %
    sc = parse_normalization("nonzero-scale:99")
    assert sc == {"scheme": "scale", "upper": 99.0, "nonzero": True}
    full = np.asarray(nib.load(samples_dir() / "mni152_t1.nii.gz").dataobj, np.float32)
    half = full[:196, :232, :188].reshape(98, 2, 116, 2, 94, 2).mean((1, 3, 5))  # 2 mm by block mean
    s1, s2, s3 = (compute_stats(v, sc, False) for v in (full, half, np.pad(half, 20)))
    assert s1["offset"][0] == s2["offset"][0] == 0 and abs(s1["scale"][0] / s2["scale"][0] - 1) < 0.01
    assert s2["scale"][0] == s3["scale"][0]
    lo1, lo2 = (compute_stats(v, spec, False)["offset"][0] for v in (full, half))
    assert lo1 > 2 * lo2  # why not nonzero-percentile:1,99 here: its lower percentile is an edge voxel
    z = compute_stats(t1, parse_normalization("nonzero-zscore"), False)
    assert z["offset"][0] == pytest.approx(t1[t1 != 0].mean(), rel=1e-3)
    # an all-zero image falls back to every voxel instead of failing
    assert compute_stats(np.zeros((4, 4), np.float32), spec, False)["scale"][0] == 1.0
    for bad in ("nonzero-ct:-1000,400", "nonzero-none", "scale:1,99"):
        with pytest.raises(InputError, match="nonzero- before percentile, scale or zscore"):
            parse_normalization(bad)


def test_a_ct_given_to_a_model_not_trained_on_ct_is_a_warning():
    """A CT in Hounsfield units to a model whose card normalises by percentiles (nuclei-2d) warns, as does
    an image without Hounsfield units to a model trained on a CT window; matching pairs do not."""
    from napari_attnseg import load_model
    from napari_attnseg.checkpoint import ModelCard
    from napari_attnseg.inference.checks import domain_warning

    rng = np.random.default_rng(0)
    ct = np.full((64, 64), -1000.0, np.float32)  # air around a body of soft tissue and some bone
    ct[12:52, 12:52] = rng.normal(40, 20, (40, 40))
    ct[30:34, 30:34] = 900.0
    micro = rng.random((64, 64)).astype(np.float32) * 300
    model = load_model("nuclei-2d", device="cpu")
    warned = predict(model, ct, return_probabilities=False).warnings
    assert any("looks like a CT in Hounsfield units" in w and "nuclei-2d" in w for w in warned), warned
    assert not any("Hounsfield" in w for w in predict(model, micro, return_probabilities=False).warnings)
    ct_card = ModelCard(arch="unet", config={}, name="lung-ct", normalization={"scheme": "ct", "window": [-1000, 400]})
    assert "trained on CT" in domain_warning(ct_card, micro, False)
    assert domain_warning(ct_card, ct, False) is None
    assert domain_warning(model.card, ct[None], True) is None  # several channels: no guess


def test_a_microscopy_model_on_a_scan_placed_in_the_body_is_flagged():
    """Audit: nuclei-2d on a T1 brain MRI (a NIfTI with an orientation) marked 84 % of the head without a
    word. A model whose card has no spacing and no orientation is flagged on a scan; the brain model, an image
    without geometry and a CT (the Hounsfield warning speaks for it) are not."""
    from napari_attnseg import load_model
    from napari_attnseg.data import read_image
    from napari_attnseg.data.orientation import volume_codes
    from napari_attnseg.inference.checks import fit_warning, scan_warning

    vol = read_image(Path(__file__).parents[1] / "resources" / "samples" / "mni152_t1.nii.gz")
    codes = volume_codes(vol)
    nuclei = load_model("nuclei-2d", device="cpu")
    image = np.asarray(vol.data)[40:44]
    warned = predict(nuclei, image, orientation=codes, return_probabilities=False).warnings
    said = [w for w in warned if "trained on microscopy images" in w]
    assert len(said) == 1 and "brain-mri-3d" in said[0] and "".join(reversed(codes)) in said[0], warned
    assert not any("microscopy" in w for w in predict(nuclei, image, return_probabilities=False).warnings)
    assert scan_warning(load_model("brain-mri-3d", device="cpu").card, codes, image) is None
    ct = np.full((4, 64, 64), -1000.0, np.float32)
    ct[:, 12:52, 12:52] = np.random.default_rng(0).normal(40, 20, (4, 40, 40))
    assert scan_warning(nuclei.card, codes, ct) is None and "Hounsfield" in fit_warning(nuclei.card, ct, False, codes)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-40000, 70000), min_size=1, max_size=400), st.sampled_from([np.int16, np.int32, np.int64]),
       st.lists(st.floats(0, 100), min_size=1, max_size=5))
def test_histogram_percentiles_equal_numpys(values, dtype, qs):
    """compute_stats reads integer images' percentiles off a histogram: the same float64 values as
    np.percentile on the float64 sample it used before (the normalisation, hence every output, unchanged)."""
    from napari_attnseg.inference.normalize import percentiles

    info = np.iinfo(dtype)
    v = np.clip(np.asarray(values), info.min, info.max).astype(dtype)
    np.testing.assert_array_equal(percentiles(v, qs), np.percentile(v.astype(np.float64), qs))
    u8 = (v % 256).astype(np.uint8)
    np.testing.assert_array_equal(percentiles(u8, qs), np.percentile(u8.astype(np.float64), qs))
    flags = v > 0
    np.testing.assert_array_equal(percentiles(flags, qs), np.percentile(flags.astype(np.float64), qs))


@pytest.mark.parametrize("dtype", [bool, np.uint8, np.int16, np.uint16, np.float32])
@pytest.mark.parametrize("spec", [None, {"scheme": "zscore"}, {"scheme": "scale", "upper": 99.5, "nonzero": True}])
def test_statistics_of_an_integer_image_are_those_of_its_float_copy(dtype, spec):
    """compute_stats reads integer and boolean images in their own type (a histogram, not a float64 copy):
    every statistic must be what the float64 copy gives (a boolean layer used to fail in np.ptp)."""
    from napari_attnseg.inference.normalize import compute_stats

    rng = np.random.default_rng(4)
    image = (rng.random((30, 41)) < 0.3) if dtype is bool else (rng.random((30, 41)) * 900 - 200).astype(dtype)
    got = compute_stats(image, spec, False)
    want = compute_stats(image.astype(np.float64), spec, False)
    for key in ("offset", "scale"):
        np.testing.assert_array_equal(got[key], want[key])
    assert (got["fill"], got["constant"]) == (want["fill"], want["constant"])
