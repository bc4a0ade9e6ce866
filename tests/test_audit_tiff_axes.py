"""A microscopist's TIFFs (Fiji time-lapses, tifffile multi-series files, a resolution in pixels per cm) opened in
napari and with attnseg, their masks saved and reopened (audit "tiff").

A time-lapse (t, y, x) opened with napari's own reader, or with this plugin's OME reader, and its mask saved through
the plugin's TIFF writer was written with axes ZYX: Fiji and attnseg read the frames back as z-slices. An ImageJ
time-lapse's voxel depth ("spacing") was taken as its frame interval; a file of several series written by tifffile
gave every series the z spacing of the first; a resolution in pixels per centimetre was read without its unit; and a
mask of ``attnseg predict`` opened beside its image (both with napari's reader) took the file's pixel size while the
image stayed at scale 1, so the two did not overlay."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile


def _nuclei(n: int = 64) -> np.ndarray:
    from napari_attnseg._paths import samples_dir

    return (tifffile.imread(samples_dir() / "nuclei2d_image.tif")[:n, :n].astype(np.float32) * 200).astype(np.uint16)


def _time_lapse(path, frames: int = 4) -> np.ndarray:
    img = _nuclei()
    stack = np.stack([np.roll(img, 3 * k, axis=1) for k in range(frames)])
    if path.name.endswith(".ome.tif"):
        tifffile.imwrite(path, stack, ome=True, metadata={"axes": "TYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5})
    else:  # Fiji's: frames, a pixel width, and the voxel depth Fiji keeps from an earlier stack
        tifffile.imwrite(path, stack, imagej=True, resolution=(2.0, 2.0),
                         metadata={"axes": "TYX", "unit": "micron", "spacing": 2.0, "finterval": 30})
    return stack


@pytest.mark.gui
@pytest.mark.parametrize("name, plugin", [("tyx.tif", "napari"), ("tyx.ome.tif", "napari"),
                                          ("tyx.ome.tif", "napari-attnseg")])
def test_a_time_lapse_mask_saved_through_the_plugin_keeps_its_time_axis(make_napari_viewer, tmp_path, name, plugin):
    from napari_attnseg._napari import io_hooks
    from napari_attnseg.data.tiff import read_tiff

    viewer = make_napari_viewer()
    stack = _time_lapse(tmp_path / name)
    image = viewer.open(str(tmp_path / name), plugin=plugin)[0]
    mask = viewer.add_labels((stack > stack.mean()).astype(np.uint8), name="tyx mask", scale=image.scale,
                             units=image.units, axis_labels=image.axis_labels)
    data, meta, _ = mask.as_layer_data_tuple()  # what File > Save and Save mask... hand the writer
    [out] = io_hooks.write_labels_tif(str(tmp_path / "tyx_mask.tif"), data, meta)
    with tifffile.TiffFile(out) as tif:
        assert tif.series[0].axes == "TYX", "the frames were saved as z-slices"
        assert "spacing" not in (tif.imagej_metadata or tif.shaped_metadata[0])  # (no voxel depth for frames)
    again = read_tiff(tmp_path / "tyx_mask.tif")
    assert again.meta["axes"] == "TYX" and again.spacing[0] == 1.0
    if plugin == "napari-attnseg":  # on its pixel size: an ImageJ time-lapse Fiji reads in microns
        assert again.spacing == pytest.approx((1.0, 0.5, 0.5)) and again.meta["unit"] == "micron"


@pytest.mark.gui
def test_a_new_mask_of_a_time_lapse_takes_the_axes_of_the_image_of_its_shape(make_napari_viewer, tmp_path):
    """New labels (no axis labels, no provenance) on a time-lapse napari's reader opened: the TIFF it came from."""
    from napari_attnseg._napari import io_hooks

    viewer = make_napari_viewer()
    stack = _time_lapse(tmp_path / "movie.tif")
    viewer.open(str(tmp_path / "movie.tif"), plugin="napari")
    viewer.add_image(np.zeros((4, 8, 8), np.uint8), name="other")  # (of another shape: not the one)
    [out] = io_hooks.write_labels_tif(str(tmp_path / "new.tif"), np.zeros(stack.shape, np.uint8), {"metadata": {}})
    with tifffile.TiffFile(out) as tif:
        assert tif.series[0].axes == "TYX"


def test_an_imagej_time_lapse_puts_no_voxel_depth_on_its_frames(tmp_path):
    from napari_attnseg.data.tiff import read_tiff, tiff_calibration, tiff_layers

    _time_lapse(tmp_path / "fiji.tif")
    volume = read_tiff(tmp_path / "fiji.tif")
    assert volume.meta["axes"] == "TYX" and volume.spacing == pytest.approx((1.0, 0.5, 0.5))
    [(_, kwargs, _)] = tiff_layers(tmp_path / "fiji.tif", "fiji")
    assert tuple(kwargs["scale"]) == pytest.approx((1.0, 0.5, 0.5)) and kwargs["units"] == ("pixel", "um", "um")
    assert tiff_calibration(tmp_path / "fiji.tif")[0] == pytest.approx((1.0, 0.5, 0.5))


def test_each_series_of_a_tifffile_file_keeps_its_own_z_spacing(tmp_path):
    from napari_attnseg.data.tiff import read_tiff, tiff_layers

    path, img = tmp_path / "positions.tif", _nuclei()
    with tifffile.TiffWriter(path) as tw:
        for spacing, xy, unit, planes in ((2.0, 0.5, "micron", 5), (5.0, 0.25, "nm", 3)):
            tw.write(np.stack([img] * planes), resolution=(1 / xy, 1 / xy), resolutionunit=1, photometric="minisblack",
                     metadata={"axes": "ZYX", "spacing": spacing, "unit": unit})
    first, second = read_tiff(path, 0), read_tiff(path, 1)
    assert first.spacing == pytest.approx((2.0, 0.5, 0.5)) and first.meta["unit"] == "micron"
    assert second.spacing == pytest.approx((5.0, 0.25, 0.25)) and second.meta["unit"] == "nm"
    layers = tiff_layers(path, "positions")
    assert [tuple(kw["scale"]) for _, kw, _ in layers] == [pytest.approx((2.0, 0.5, 0.5)), pytest.approx((5.0, 0.25, 0.25))]
    assert [kw["units"][0] for _, kw, _ in layers] == ["um", "nm"]


def test_a_resolution_in_pixels_per_centimetre_keeps_its_unit(tmp_path):
    """A TIFF with ResolutionUnit = centimetre (20000 px/cm: 0.5 µm pixels) was read as 5e-05 of no unit: the layer's
    scale bar and a mask written from it (attnseg predict) had no length unit; Fiji shows cm."""
    from napari_attnseg.data.io import write_image
    from napari_attnseg.data.tiff import read_tiff, tiff_layers

    path = tmp_path / "scanner.tif"
    tifffile.imwrite(path, _nuclei(), resolution=(20000.0, 20000.0), resolutionunit=3)
    volume = read_tiff(path)
    assert volume.spacing == pytest.approx((5e-05, 5e-05)) and volume.meta["unit"] == "cm"
    [(_, kwargs, _)] = tiff_layers(path, "scanner")
    assert kwargs["units"] == ("cm", "cm")
    write_image(tmp_path / "mask.tif", np.zeros(volume.data.shape, np.uint8), volume)  # as predict writes the mask
    mask = read_tiff(tmp_path / "mask.tif")
    assert mask.spacing == pytest.approx(volume.spacing) and mask.meta["unit"] == "cm"
    tifffile.imwrite(tmp_path / "photo.tif", _nuclei(), resolution=(300.0, 300.0), resolutionunit=2)  # print dpi
    assert read_tiff(tmp_path / "photo.tif").spacing == (1.0, 1.0) and "unit" not in read_tiff(tmp_path / "photo.tif").meta


@pytest.mark.gui
def test_a_predicted_mask_opened_beside_its_image_with_napari_reader_overlays_it(make_napari_viewer, tmp_path,
                                                                                 notifications, qtbot):
    """File > Open of a calibrated z-stack and of its ``attnseg predict`` mask, both with napari's own reader: the mask
    (replaced by its Labels layer) took the file's 2 x 0.5 x 0.5 beside the image at scale 1."""
    from napari_attnseg._napari.correct_widget import CorrectWidget
    from napari_attnseg.data.io import write_image
    from napari_attnseg.data.tiff import read_tiff

    stack = np.stack([_nuclei()] * 3)
    tifffile.imwrite(tmp_path / "zstack.tif", stack, imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": "ZYX", "unit": "micron", "spacing": 2.0})
    source = read_tiff(tmp_path / "zstack.tif")
    write_image(tmp_path / "zstack_mask.tif", (stack > stack.mean()).astype(np.uint8), source, reviewed_slices=[1])
    viewer = make_napari_viewer()
    CorrectWidget(viewer)
    image = viewer.open(str(tmp_path / "zstack.tif"), plugin="napari")[0]
    viewer.open(str(tmp_path / "zstack_mask.tif"), plugin="napari")
    qtbot.waitUntil(lambda: type(viewer.layers["zstack_mask"]).__name__ == "Labels", timeout=5000)
    mask = viewer.layers["zstack_mask"]
    assert tuple(mask.scale) == tuple(image.scale) == (1, 1, 1), "the mask does not overlay its image"
    assert mask.metadata["reviewed_slices"] == [1]
    said = " ".join(str(n.message) for n in notifications)
    assert "stays at scale 1 to overlay 'zstack'" in said and "2 x 0.5 x 0.5 micron" in said
    viewer.layers.remove(image)  # alone, it is placed on the pixel size its file records
    viewer.layers.remove(mask)
    viewer.open(str(tmp_path / "zstack_mask.tif"), plugin="napari")
    qtbot.waitUntil(lambda: type(viewer.layers["zstack_mask"]).__name__ == "Labels", timeout=5000)
    assert tuple(viewer.layers["zstack_mask"].scale) == pytest.approx((2.0, 0.5, 0.5))
