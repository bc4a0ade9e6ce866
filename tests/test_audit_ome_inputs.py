"""OME-TIFF as a microscopy core brings it (audit): opened in napari (File > Open, drag and drop) the layer carries the
file's pixel size (OME PhysicalSizeX/Y/Z, nm and mm converted to µm) and its axes, one layer per channel named by the
file's channel names, and the Segment tab gives the mask `attnseg predict` gives on the same file, on the same grid.
napari's own TIFF reader opened every OME-TIFF at scale 1 (the results, heatmaps and an export in pixels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gui

PLUGIN = "napari-attnseg"
NUCLEI = Path("/work/shared/data/nuclei2d/image.tif")


def _nuclei(size: int = 128) -> np.ndarray:
    from napari_attnseg._paths import samples_dir
    from napari_attnseg.data import read_image

    path = NUCLEI if NUCLEI.is_file() else samples_dir() / "nuclei2d_image.tif"
    return np.asarray(read_image(path).data)[:size, :size].astype(np.uint16)


def _ome(path: Path, data: np.ndarray, axes: str, size: float = 0.65, unit: str = "µm", **extra) -> Path:
    import tifffile

    tifffile.imwrite(path, data, ome=True, photometric="rgb" if axes.endswith("S") else "minisblack",
                     metadata={"axes": axes, "PhysicalSizeX": size, "PhysicalSizeXUnit": unit,
                               "PhysicalSizeY": size, "PhysicalSizeYUnit": unit, **extra})
    return path


@pytest.mark.parametrize(("size", "unit"), [(0.65, "µm"), (650.0, "nm"), (0.00065, "mm")])
def test_an_ome_tiff_opens_on_its_pixel_size_in_micrometres(opened, tmp_path, size, unit):
    from napari.plugins import _npe2

    path = _ome(tmp_path / "cells.ome.tif", _nuclei(64), "YX", size, unit)
    assert PLUGIN in _npe2.get_readers(str(path))
    [layer] = opened(path)
    assert layer.source.reader_plugin == PLUGIN
    assert tuple(layer.scale) == pytest.approx((0.65, 0.65))
    assert [str(u) for u in layer.units] == ["micrometer", "micrometer"]
    assert layer.metadata["spacing"] == pytest.approx([0.65, 0.65]) and layer.name == "cells"


def test_stacks_keep_their_axes_and_z_step(opened, tmp_path):
    img = _nuclei(64)
    stack = np.stack([img, img[::-1], img[:, ::-1]])
    [z] = opened(_ome(tmp_path / "z.ome.tif", stack, "ZYX", PhysicalSizeZ=2.0, PhysicalSizeZUnit="µm"))
    assert tuple(z.scale) == pytest.approx((2.0, 0.65, 0.65)) and tuple(z.axis_labels) == ("z", "y", "x")
    [t] = opened(_ome(tmp_path / "t.ome.tif", stack, "TYX"))
    assert tuple(t.scale) == pytest.approx((1.0, 0.65, 0.65)) and tuple(t.axis_labels) == ("t", "y", "x")
    assert [str(u) for u in t.units] == ["pixel", "micrometer", "micrometer"]  # a time axis is no length
    hyper = np.stack([np.stack([np.stack([img, img.max() - img])] * 3)] * 2)  # t, z, c, y, x
    layers = opened(_ome(tmp_path / "h.ome.tif", hyper, "TZCYX", PhysicalSizeZ=2.0))
    assert [ly.name for ly in layers] == ["h [c0]", "h [c1]"]
    assert all(ly.data.shape == (2, 3, 64, 64) and tuple(ly.axis_labels) == ("t", "z", "y", "x") for ly in layers)
    np.testing.assert_array_equal(np.asarray(layers[1].data), hyper[:, :, 1])


def test_rgb_pyramid_float_and_16_bit_open_on_their_pixel_size(opened, tmp_path):
    import tifffile

    img = _nuclei(128)
    rgb = np.stack([255 - img // 2, 255 - img, 255 - img // 3], -1).astype(np.uint8)
    [colour] = opened(_ome(tmp_path / "he.ome.tif", rgb, "YXS", 0.25))
    assert colour.rgb and tuple(colour.scale) == pytest.approx((0.25, 0.25))
    assert [str(u) for u in colour.units] == ["micrometer"] * 2
    import warnings

    from napari_attnseg._napari._common import grey_layer_of

    with warnings.catch_warnings(record=True) as said:  # the grey layer the Segment tab adds for an RGB picture:
        warnings.simplefilter("always")  # without the picture's units napari said "Inconsistent units across layers"
        grey = grey_layer_of(opened.viewer, colour)
        opened.viewer.dims.set_current_step(0, 0)
    assert grey is not None and tuple(grey.units) == tuple(colour.units), grey.units
    assert not [w for w in said if "units" in str(w.message).lower()], [str(w.message) for w in said]
    pyramid = tmp_path / "pyr.ome.tif"
    with tifffile.TiffWriter(pyramid) as tw:  # a pyramid in sub-IFDs, as bfconvert / QuPath write them
        tw.write(img, subifds=1, tile=(64, 64), metadata={"axes": "YX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5})
        tw.write(img[::2, ::2], subfiletype=1, tile=(64, 64))
    [level0] = opened(pyramid)
    assert level0.data.shape == img.shape and tuple(level0.scale) == pytest.approx((0.5, 0.5))
    for data in (img, img.astype(np.float32) / 235):
        [layer] = opened(_ome(tmp_path / f"{data.dtype}.ome.tif", data, "YX"))
        assert layer.dtype == data.dtype and tuple(layer.scale) == pytest.approx((0.65, 0.65))


def test_channels_are_layers_named_by_stain_and_segment_as_the_cli_does(opened, tmp_path, qtbot, monkeypatch):
    """A DAPI + GFP OME-TIFF: one layer per channel named by its stain (napari's reader gave one 3D layer the
    Segment tab refused); the DAPI layer's mask is `attnseg predict --channel 0`'s, on the same 0.65 µm grid, and
    saved from napari (File > Save) it is the same file as the CLI's."""
    from napari_attnseg._napari import io_hooks
    from napari_attnseg._napari import segment_widget as sw
    from napari_attnseg.cli import main
    from napari_attnseg.data import read_image

    monkeypatch.setattr(sw, "notify_error", lambda m: pytest.fail(m))
    img = _nuclei(128)
    path = _ome(tmp_path / "cells.ome.tif", np.stack([img, img.max() - img]), "CYX", Channel={"Name": ["DAPI", "GFP"]})
    dapi, gfp = opened(path)
    assert (dapi.name, gfp.name) == ("cells [DAPI]", "cells [GFP]") and dapi.metadata["channel"] == "DAPI"
    np.testing.assert_array_equal(np.asarray(gfp.data), img.max() - img)
    w = sw.SegmentWidget(opened.viewer)
    assert w.image_combo.value == "cells [DAPI]"  # the first channel, its stain in the name the status repeats
    w.model_combo.value, w.precision_combo.value = "nuclei-2d", "fp32"
    with qtbot.waitSignal(w.run_done, timeout=120000) as done:
        w.run()
    assert done.args == [True] and w.status.value.startswith("cells [DAPI]: nuclei-2d")
    mask = opened.viewer.layers["cells [DAPI] mask"]
    assert tuple(mask.scale) == pytest.approx((0.65, 0.65))

    out = tmp_path / "pred"
    assert main(["predict", str(path), "--model", "nuclei-2d", "--out", str(out), "--channel", "0",
                 "--precision", "fp32", "--no-prob"]) == 0
    cli = read_image(out / "cells_mask.tif")
    assert cli.spacing == pytest.approx((0.65, 0.65)) and cli.meta["unit"] == "micron"
    np.testing.assert_array_equal(np.asarray(mask.data) > 0, cli.data > 0)
    saved = io_hooks.write_labels_tif(str(tmp_path / "napari_mask.tif"), np.asarray(mask.data),
                                      {"scale": tuple(mask.scale), "units": mask.units, "metadata": mask.metadata})
    again = read_image(saved[0])
    assert again.spacing == pytest.approx(cli.spacing) and again.meta["unit"] == cli.meta["unit"]
