"""Attention heatmaps audit: the maps of every level lie where the model looked, on the image, in the cases a user
meets (a volume stored in another orientation, an anisotropic volume resampled to the model's spacing and back,
flip averaging, a 2D model slice by slice, tiling, a rescaled image), with the bundled models on real data.

Each test compares two runs that must give the same map in the image's (or the world's) coordinates: a half-cell
shift of a coarse level, a map not flipped back before averaging, or a map turned back to the wrong voxels breaks
the equality (checked by putting each of these mistakes in by hand)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import tifffile
from scipy import ndimage

import napari_attnseg as ag
from napari_attnseg._paths import samples_dir
from napari_attnseg.cli import main


def _maps(pred) -> list[np.ndarray]:
    return [np.asarray(m.data, np.float32) for m in pred.attention]


def _nuclei(n: int = 128) -> np.ndarray:
    return tifffile.imread(str(samples_dir() / "nuclei2d_image.tif")).astype(np.float32)[100 : 100 + n, 200 : 200 + n]


def _spot(n: int, c: float, width: float) -> np.ndarray:
    yy, xx = np.mgrid[:n, :n]
    return (20 + 200 * np.exp(-((yy - c) ** 2 + (xx - c) ** 2) / (2 * (width / 2) ** 2))).astype(np.float32)


def test_flip_averaging_flips_each_map_back_before_averaging():
    """With --tta every flipped copy's maps are flipped back: the averaged maps of a flipped image are the averaged
    maps of the image, flipped (exactly, on an image of one tile), in 2D and in 3D. Averaged unflipped, they are
    not (the maps of an image and of its mirror differ by up to 0.5)."""
    model = ag.load_model("nuclei-2d")
    img = _nuclei()
    a = ag.predict(model, img, attention=True, device="cpu", tta=True, precision="fp32")
    b = ag.predict(model, img[::-1].copy(), attention=True, device="cpu", tta=True, precision="fp32")
    for x, y in zip(_maps(a), _maps(b)):
        np.testing.assert_allclose(x[::-1], y, atol=2e-3)
        assert np.abs(x - y).max() > 0.05  # the test means something: the map is not symmetric itself
    brain = ag.load_model("brain-mri-3d")
    t1 = np.asarray(nib.load(str(samples_dir() / "mni152_t1.nii.gz")).dataobj, np.float32).T[60:92, 80:144, 60:124]
    a = ag.predict(brain, t1, attention=True, device="cpu", tta=True, precision="fp32", brain_extraction=False)
    b = ag.predict(brain, t1[:, :, ::-1].copy(), attention=True, device="cpu", tta=True, precision="fp32",
                   brain_extraction=False)
    for x, y in zip(_maps(a), _maps(b)):
        np.testing.assert_allclose(x[:, :, ::-1], y, atol=2e-3)


@pytest.mark.parametrize("size, diameter", [(128, None), (256, "twice")])
def test_a_single_bright_spot_is_at_the_centre_of_every_level(size, diameter):
    """A spot at the centre of an image of one tile, flip-averaged: every level's map is symmetric and its centre,
    placed by the map's scale and translate, is the image's centre (a cell of stride s is centred on image pixel
    s * m + (s - 1) / 2, not s * m: the classic half-cell shift). Also through --diameter, which rescales the
    image (by 1/2 here) and maps the levels back onto it."""
    model = ag.load_model("nuclei-2d")
    kw = {} if diameter is None else {"diameter": 2 * model.card.object_diameter}
    pred = ag.predict(model, _spot(size, (size - 1) / 2, 10 if diameter is None else 20), attention=True, device="cpu",
                      tta=True, precision="fp32", **kw)
    stride = 1 if diameter is None else 2
    for amap, own in zip(pred.attention, (2, 4, 8)):
        data = np.asarray(amap.data, np.float32)
        np.testing.assert_allclose(data, data[::-1, ::-1], atol=2e-3)
        assert amap.scale == pytest.approx((own * stride,) * 2)
        centre = [t + (n - 1) / 2 * s for t, n, s in zip(amap.translate, data.shape, amap.scale)]
        assert centre == pytest.approx([(size - 1) / 2] * 2)
        assert 0.0 <= data.min() <= data.max() <= 1.0


def _save(path, data, affine) -> None:
    img = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, str(path))


def _world_compare(out, a: str, b: str, level: str) -> tuple[float, float]:
    """The largest distance of map ``a``'s voxel centres, taken to map ``b``'s voxels through the two files'
    affines, from a voxel centre; and the largest difference of the values there."""
    ma, mb = nib.load(str(out / f"{a}_attention_{level}.nii.gz")), nib.load(str(out / f"{b}_attention_{level}.nii.gz"))
    da, db = ma.get_fdata(), mb.get_fdata()
    idx = np.indices(da.shape).reshape(3, -1)
    v = (np.linalg.inv(mb.affine) @ ma.affine @ np.vstack([idx, np.ones(idx.shape[1])]))[:3]
    off = float(np.abs(v - np.round(v)).max())
    vals = ndimage.map_coordinates(db, np.round(v), order=0)
    return off, float(np.abs(da.reshape(-1) - vals).max())


def test_a_sagittal_first_flipped_volume_gets_the_maps_of_the_canonical_one_in_world(tmp_path):
    """The MNI T1 (a crop) as stored (RAS) and re-saved in the axis order (j, k, i), i and k flipped (AIL),
    with the matching affine: `attnseg predict --attention` turns the second to the model's orientation and its
    maps back. Through the files' affines, each map voxel of one lands on a map voxel of the other, with the same
    value, at every level (grid and values equal: the turn is exact, no resampling)."""
    t1 = nib.load(str(samples_dir() / "mni152_t1.nii.gz"))
    crop = np.asarray(t1.dataobj, np.float32)[40:120, 50:140, 30:100]
    affine = t1.affine.copy()
    affine[:3, 3] = t1.affine[:3, :3] @ [40, 50, 30] + t1.affine[:3, 3]
    _save(tmp_path / "canon.nii.gz", crop, affine)
    n = crop.shape
    turned = crop[::-1, :, ::-1].transpose(1, 2, 0)  # turned[a, b, c] = crop[n0 - 1 - c, a, n2 - 1 - b]
    m = np.zeros((4, 4))
    m[0, 2], m[0, 3], m[1, 0], m[2, 1], m[2, 3], m[3, 3] = -1, n[0] - 1, 1, -1, n[2] - 1, 1
    _save(tmp_path / "sag.nii.gz", turned, affine @ m)
    assert "".join(nib.aff2axcodes(affine @ m)) == "AIL"
    out = tmp_path / "pred"
    assert main(["predict", str(tmp_path / "canon.nii.gz"), str(tmp_path / "sag.nii.gz"), "--model", "brain-mri-3d",
                 "--out", str(out), "--attention", "--precision", "fp32", "--brain-extraction", "off"]) == 0
    assert "AIL -> RAS" in json.loads((out / "sag_predict.json").read_text())["params"]["reoriented"]
    for level in ("level2", "level3", "level4"):
        off, diff = _world_compare(out, "canon", "sag", level)
        assert off < 1e-3 and diff < 1e-3, (level, off, diff)


def test_a_resampled_volumes_maps_are_those_of_the_model_grid_placed_on_the_image():
    """brain1 (0.78 x 0.78 x 6.5 mm, 25 slices) runs at the model's 2 mm: its maps equal those of the same volume
    resampled to the model's grid by hand (the engine's linear, pixel-centre resampling) and run as it is, and
    each map pixel is placed, in the 6.5 mm image's pixels, where that grid puts it: model pixel j is centred on
    image pixel (j + 0.5) * f - 0.5, f the image pixels per model pixel."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "radiomics" / "brain1_image.nii.gz"
    if not path.exists():
        pytest.skip("the shared brain1 volume is not on this machine")
    vol = np.asarray(nib.load(str(path)).dataobj, np.float32).T[:, 40:200, 40:200]  # (z, y, x)
    lo, hi = np.percentile(vol, [1, 99])
    vol = (vol - lo) / (hi - lo)
    spacing = (6.5, 0.78125, 0.78125)
    model = ag.load_model("brain-mri-3d")
    kw = dict(attention=True, device="cpu", precision="fp32", brain_extraction=False, normalization={"scheme": "none"})
    pred = ag.predict(model, vol, spacing=spacing, **kw)
    grid = tuple(int(round(n * s / 2.0)) for n, s in zip(vol.shape, spacing))  # (81, 62, 62)
    f = [n / g for n, g in zip(vol.shape, grid)]
    work = ndimage.zoom(vol, [g / n for g, n in zip(grid, vol.shape)], order=1, grid_mode=True, mode="nearest")
    ref = ag.predict(model, work, spacing=tuple(s * fa for s, fa in zip(spacing, f)), **kw)
    assert not ref.params["resampled"] and pred.params["resampled"]
    for amap, own in zip(pred.attention, ref.attention):
        np.testing.assert_allclose(np.asarray(amap.data, np.float32), np.asarray(own.data, np.float32), atol=0.02)
        assert amap.scale == pytest.approx(tuple(s * fa for s, fa in zip(own.scale, f)))
        assert amap.translate == pytest.approx(tuple((t + 0.5) * fa - 0.5 for t, fa in zip(own.translate, f)))


def test_a_2d_model_over_a_volume_gives_each_slice_the_maps_of_that_slice_alone():
    """--mode slices, with and without --tta: slice z of every level is the map of image[z] run as a 2D image."""
    model = ag.load_model("nuclei-2d")
    vol = np.stack([_nuclei(96) * (1 + 0.1 * z) for z in range(3)])
    vol = vol / vol.max()
    kw = dict(attention=True, device="cpu", precision="fp32", normalization={"scheme": "none"})
    for tta in (False, True):
        pv = ag.predict(model, vol, mode="slices", tta=tta, **kw)
        for z in range(3):
            p2 = ag.predict(model, vol[z], tta=tta, **kw)
            for a, b in zip(pv.attention, p2.attention):
                np.testing.assert_allclose(np.asarray(a.data[z], np.float32), np.asarray(b.data, np.float32), atol=1e-3)
                assert a.scale == (1.0, *b.scale) and a.translate == (0.0, *b.translate)


def test_tiled_maps_match_a_single_tile_run_without_seams():
    """The 512 x 512 nuclei image in the card's 128-px tiles (36 tiles) against one 512-px tile: every level agrees
    (correlation over 0.9, the coarsest level being the one that sees the tile's context most), and the jumps
    between neighbouring map columns at tile borders stay close to the jumps elsewhere (no seam)."""
    model = ag.load_model("nuclei-2d")
    img = tifffile.imread(str(samples_dir() / "nuclei2d_image.tif")).astype(np.float32)
    tiled = ag.predict(model, img, attention=True, device="cpu", precision="fp32")
    whole = ag.predict(model, img, attention=True, device="cpu", precision="fp32", tile=512)
    assert tiled.params["tiles"] > 1 and whole.params["tiles"] == 1
    step = 96  # 128 * (1 - 0.25)
    for a, b, s in zip(_maps(tiled), _maps(whole), (2, 4, 8)):
        assert a.shape == b.shape
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9
        jump = np.abs(np.diff(a, axis=1)).mean(0)
        border = ((np.arange(jump.size) + 1) * s) % step == 0
        assert jump[border].mean() < 1.6 * jump[~border].mean()
