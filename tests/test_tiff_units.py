"""Physical units of TIFF masks on real files: pixel size and unit written so that Fiji (ImageJ
description + resolution) and our own reader read them back, for 2D masks as for 3D ones."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_attnseg.data import Volume, read_image, write_image
from napari_attnseg.data.tiff import tiff_unit, write_tiff


def _mask(shape, dtype=np.uint8):
    mask = np.zeros(shape, dtype)
    mask[..., 2:9, 3:12] = 1
    return mask


def _imagej(path) -> tuple[dict, float, float]:
    """What Fiji reads: the ImageJ description entries and the pixel width / height (units per pixel)."""
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej, "Fiji would read no calibration entries"
        tags = tif.pages[0].tags
        x, y = tags["XResolution"].value, tags["YResolution"].value
        return tif.imagej_metadata, x[1] / x[0], y[1] / y[0]


@pytest.mark.parametrize("shape, spacing", [((20, 24), (0.5, 0.5)), ((3, 20, 24), (2.0, 0.5, 0.5))],
                         ids=["2d", "3d"])
def test_a_mask_with_a_unit_reopens_calibrated_in_fiji_and_in_our_reader(tmp_path, shape, spacing):
    out = tmp_path / "mask.tif"
    write_tiff(out, _mask(shape), spacing, unit="µm")
    ij, width, height = _imagej(out)
    assert ij["unit"] == "micron" and width == pytest.approx(0.5) and height == pytest.approx(0.5)
    if len(shape) == 3:
        assert ij["spacing"] == pytest.approx(2.0)
    back = read_image(out)
    assert back.spacing == pytest.approx(spacing) and back.meta["unit"] == "micron"
    np.testing.assert_array_equal(back.data, _mask(shape))


@pytest.mark.parametrize("ndim", [2, 3])
def test_a_mask_written_like_an_ome_image_keeps_its_micrometres(tmp_path, ndim):
    """An OME source's pixel size (µm) reached the mask, its unit did not: Fiji showed a bare number."""
    shape = (3, 20, 24)[-ndim:]
    sizes = {"PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5, **({"PhysicalSizeZ": 2.0} if ndim == 3 else {})}
    tifffile.imwrite(tmp_path / "img.ome.tif", np.ones(shape, np.uint16), metadata={"axes": "ZYX"[-ndim:], **sizes})
    src = read_image(tmp_path / "img.ome.tif")
    out = write_image(tmp_path / "img_mask.tif", _mask(shape), like=src)
    ij, width, _ = _imagej(out)
    assert ij["unit"] == "micron" and width == pytest.approx(0.5)
    assert src.meta["unit"] == "micron"
    back = read_image(out)
    assert back.spacing == pytest.approx(src.spacing) and back.meta["unit"] == "micron"


def test_a_2d_mask_of_a_calibrated_imagej_image_and_of_a_nifti(tmp_path):
    tifffile.imwrite(tmp_path / "img.tif", np.ones((20, 24), np.uint16), imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": "YX", "unit": "micron"})
    src = read_image(tmp_path / "img.tif")
    assert src.meta["unit"] == "micron" and src.spacing == pytest.approx((0.5, 0.5))
    out = write_image(tmp_path / "img_mask.tif", _mask((20, 24)), like=src)
    assert _imagej(out)[0]["unit"] == "micron" and read_image(out).meta["unit"] == "micron"

    nifti = Volume(np.zeros((20, 24), np.float32), (0.8, 0.7), None, {"format": "nifti", "nifti": {"xyz_units": "mm"}})
    out = write_image(tmp_path / "ct_mask.tif", _mask((20, 24)), like=nifti)
    ij, width, height = _imagej(out)
    assert ij["unit"] == "mm" and (height, width) == pytest.approx((0.8, 0.7))
    assert read_image(out).spacing == pytest.approx((0.8, 0.7)) and read_image(out).meta["unit"] == "mm"


def test_napari_units_per_axis_and_labels_imagej_cannot_hold(tmp_path):
    """A napari layer's ``units`` (pint, one per axis); labels past uint16 keep the unit in the JSON."""
    pint = pytest.importorskip("pint")
    ureg = pint.UnitRegistry()
    out = tmp_path / "z.tif"
    write_tiff(out, _mask((3, 20, 24)), (0.002, 0.5, 0.5), unit=(ureg.millimeter, ureg.micrometer, ureg.micrometer))
    ij, _, _ = _imagej(out)
    assert ij["unit"] == "micron" and ij["zunit"] == "mm"

    # what napari's Labels writer hands over: the layer's units as names, one per axis
    like = Volume(np.zeros((20, 24)), (0.5, 0.5), None, {"unit": ["micrometer", "micrometer"]})
    out = write_image(tmp_path / "layer.tif", _mask((20, 24)), like=like)
    assert _imagej(out)[0]["unit"] == "micron" and read_image(out).meta["unit"] == "micron"

    big = _mask((20, 24), np.int32) * 70000
    write_tiff(tmp_path / "big.tif", big, (0.5, 0.5), unit="um")
    back = read_image(tmp_path / "big.tif")
    assert not tifffile.TiffFile(tmp_path / "big.tif").is_imagej
    np.testing.assert_array_equal(back.data, big)
    assert back.spacing == pytest.approx((0.5, 0.5)) and back.meta["unit"] == "micron"


def test_without_a_unit_nothing_is_claimed(tmp_path):
    write_tiff(tmp_path / "m.tif", _mask((20, 24)), (0.5, 0.5), unit="pixel")
    back = read_image(tmp_path / "m.tif")
    assert back.spacing == pytest.approx((0.5, 0.5)) and "unit" not in back.meta
    assert not tifffile.TiffFile(tmp_path / "m.tif").is_imagej  # as before: tifffile's JSON description
    assert [tiff_unit(u) for u in ("micrometer", "\\u00B5m", "um", "millimeter", "pixel", None, "furlong")] == \
        ["micron", "micron", "micron", "mm", None, None, "furlong"]
