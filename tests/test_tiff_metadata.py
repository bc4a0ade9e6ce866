"""TIFF metadata on real files: OME pixel sizes, ImageJ calibration and axes kept from input to mask."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_attnseg.data import read_image, write_image


def _img(shape, seed=0):
    return np.random.default_rng(seed).normal(100, 20, shape).clip(0).astype(np.uint16)


def _mask(shape):
    mask = np.zeros(shape, np.int32)
    mask[..., 2:9, 3:12] = 2
    return mask


def test_ome_pixel_sizes_give_the_spacing_in_micrometres(tmp_path):
    """OME PhysicalSizeX/Y/Z (µm by default; nm and mm converted) is the spacing, in (z, y, x) order;
    the mask written like it carries it (resolution tags) and reads back the same."""
    img2d = _img((32, 40))
    tifffile.imwrite(tmp_path / "a.ome.tif", img2d, metadata={
        "axes": "YX", "PhysicalSizeX": 0.325, "PhysicalSizeXUnit": "µm", "PhysicalSizeY": 0.325, "PhysicalSizeYUnit": "µm"})
    tifffile.imwrite(tmp_path / "z.ome.tif", _img((5, 32, 40)), metadata={
        "axes": "ZYX", "PhysicalSizeX": 650, "PhysicalSizeXUnit": "nm", "PhysicalSizeY": 0.5,
        "PhysicalSizeZ": 0.002, "PhysicalSizeZUnit": "mm"})
    tifffile.imwrite(tmp_path / "plain.ome.tif", img2d, metadata={"axes": "YX"})
    tifffile.imwrite(tmp_path / "odd_unit.ome.tif", img2d, metadata={
        "axes": "YX", "PhysicalSizeX": 3.0, "PhysicalSizeXUnit": "pixel", "PhysicalSizeY": 0.5})

    vol = read_image(tmp_path / "a.ome.tif")
    assert vol.spacing == pytest.approx((0.325, 0.325))
    stack = read_image(tmp_path / "z.ome.tif")
    assert stack.spacing == pytest.approx((2.0, 0.5, 0.65))
    assert read_image(tmp_path / "plain.ome.tif").spacing == (1.0, 1.0)  # no sizes: as before
    assert read_image(tmp_path / "odd_unit.ome.tif").spacing == pytest.approx((0.5, 1.0))  # not a length: ignored

    for src, vol_ in (("a", vol), ("z", stack)):
        out = write_image(tmp_path / f"{src}_mask.tif", _mask(vol_.data.shape), like=vol_)
        with tifffile.TiffFile(out) as tif:
            xres = tif.pages[0].tags["XResolution"].value
        assert xres[1] / xres[0] == pytest.approx(vol_.spacing[-1])
        assert read_image(out).spacing == pytest.approx(vol_.spacing)


def test_imagej_unit_and_z_spacing_survive_in_the_mask(tmp_path):
    """A mask written like an ImageJ TIFF is an ImageJ TIFF with the same unit, z spacing and axes, so
    Fiji shows the same calibration, and the plugin's reader reads it back with the same spacing."""
    tifffile.imwrite(tmp_path / "z.tif", _img((3, 32, 40)), imagej=True, resolution=(1 / 0.325, 1 / 0.325),
                     metadata={"axes": "ZYX", "spacing": 2.0, "unit": "micron"})
    vol = read_image(tmp_path / "z.tif")
    assert vol.spacing == pytest.approx((2.0, 0.325, 0.325))
    assert vol.meta["imagej"] == {"unit": "micron"}
    json.dumps(vol.meta)  # layer metadata stays JSON-safe

    out = write_image(tmp_path / "z_mask.tif", _mask(vol.data.shape), like=vol)
    with tifffile.TiffFile(out) as tif:
        ij = tif.imagej_metadata
        assert ij is not None and ij["unit"] == "micron" and ij["spacing"] == pytest.approx(2.0)
        assert tif.series[0].axes == "ZYX" and ij["slices"] == 3
        xres = tif.pages[0].tags["XResolution"].value
        assert xres[1] / xres[0] == pytest.approx(0.325)
        np.testing.assert_array_equal(tif.asarray(), _mask(vol.data.shape))
    back = read_image(out)
    assert back.spacing == pytest.approx(vol.spacing) and back.meta["imagej"] == {"unit": "micron"}

    # a probability map (float32) too; a non-ASCII unit is escaped as ImageJ does and read back as written
    vol.meta["imagej"]["unit"] = "µm"
    prob = write_image(tmp_path / "z_prob.tif", np.full(vol.data.shape, 0.5, np.float32), like=vol)
    assert tifffile.TiffFile(prob).imagej_metadata["unit"] == "\\u00B5m"
    assert read_image(prob).meta["imagej"] == {"unit": "µm"}
    assert read_image(prob).spacing == pytest.approx(vol.spacing)


def test_imagej_mask_keeps_reviewed_slices_and_labels_imagej_cannot_hold_fall_back(tmp_path):
    tifffile.imwrite(tmp_path / "z.tif", _img((4, 16, 16)), imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": "ZYX", "spacing": 3.0, "unit": "um"})
    vol = read_image(tmp_path / "z.tif")
    out = write_image(tmp_path / "m.tif", _mask(vol.data.shape), like=vol, reviewed_slices=[3, 1])
    back = read_image(out)
    assert tifffile.TiffFile(out).is_imagej and back.meta["reviewed_slices"] == [1, 3]
    assert back.spacing == pytest.approx((3.0, 0.5, 0.5))
    assert read_image(write_image(tmp_path / "e.tif", _mask(vol.data.shape), like=vol, reviewed_slices=[])
                      ).meta["reviewed_slices"] == []

    big = _mask(vol.data.shape) * 40000  # labels past uint16: plain TIFF, values and spacing kept
    out = write_image(tmp_path / "big.tif", big, like=vol)
    assert not tifffile.TiffFile(out).is_imagej
    np.testing.assert_array_equal(read_image(out).data, big)
    assert read_image(out).spacing == pytest.approx((3.0, 0.5, 0.5))


@pytest.mark.parametrize("imagej", [True, False])
def test_a_time_series_mask_keeps_its_time_axis(tmp_path, imagej):
    kwargs = {"imagej": True, "metadata": {"axes": "TYX", "finterval": 5.0}} if imagej else {"metadata": {"axes": "TYX"}}
    tifffile.imwrite(tmp_path / "t.tif", _img((3, 16, 16)), photometric="minisblack", **kwargs)
    vol = read_image(tmp_path / "t.tif")
    assert vol.meta["axes"] == "TYX"
    out = write_image(tmp_path / "t_mask.tif", _mask(vol.data.shape), like=vol)
    with tifffile.TiffFile(out) as tif:
        assert tif.series[0].axes == "TYX" and tif.is_imagej == imagej
        if imagej:
            assert tif.imagej_metadata["frames"] == 3 and tif.imagej_metadata["finterval"] == pytest.approx(5.0)
    assert read_image(out).meta["axes"] == "TYX"
    # without a source the writer keeps its ZYX default
    with tifffile.TiffFile(write_image(tmp_path / "bare.tif", _mask((3, 16, 16)))) as tif:
        assert tif.series[0].axes == "ZYX" and not tif.is_imagej


def test_predict_keeps_ome_and_imagej_calibration_and_axes(tmp_path, tiny_checkpoint):
    """``attnseg predict`` end to end: OME pixel size, ImageJ unit / z spacing and the T axis reach the mask."""
    from napari_attnseg.cli import main

    model = tiny_checkpoint(2)
    inputs = tmp_path / "in"
    inputs.mkdir()
    tifffile.imwrite(inputs / "ome.ome.tif", _img((48, 48)), metadata={
        "axes": "YX", "PhysicalSizeX": 0.325, "PhysicalSizeY": 0.325, "PhysicalSizeXUnit": "µm"})
    tifffile.imwrite(inputs / "zstack.tif", _img((2, 48, 48)), imagej=True, resolution=(1 / 0.325, 1 / 0.325),
                     metadata={"axes": "ZYX", "spacing": 2.0, "unit": "micron"})
    tifffile.imwrite(inputs / "tlapse.tif", _img((2, 48, 48)), imagej=True, metadata={"axes": "TYX"})
    out = tmp_path / "out"
    names = ["ome.ome.tif", "zstack.tif", "tlapse.tif"]
    assert main(["predict", *[str(inputs / n) for n in names], "--model", str(model), "--out", str(out),
                 "--device", "cpu"]) == 0

    with tifffile.TiffFile(out / "ome_mask.tif") as tif:
        xres = tif.pages[0].tags["XResolution"].value
        assert xres[1] / xres[0] == pytest.approx(0.325)
    assert read_image(out / "ome_mask.tif").spacing == pytest.approx((0.325, 0.325))
    assert json.loads((out / "ome_predict.json").read_text())["spacing"] == pytest.approx([0.325, 0.325])

    with tifffile.TiffFile(out / "zstack_mask.tif") as tif:
        ij = tif.imagej_metadata
        assert ij["unit"] == "micron" and ij["spacing"] == pytest.approx(2.0) and tif.series[0].axes == "ZYX"
    assert read_image(out / "zstack_mask.tif").spacing == pytest.approx((2.0, 0.325, 0.325))

    with tifffile.TiffFile(out / "tlapse_mask.tif") as tif:
        assert tif.series[0].axes == "TYX" and tif.imagej_metadata["frames"] == 2
