"""Microscopy images as other microscopes and their software write them (audit): OME-TIFF named in upper case, a
multi-position OME-TIFF, and masks saved as TIFF (File > Save with the plugin's writer, or Save mask...) reopened:
their class names and their pixel size come back (the class names were kept in NIfTI only; a mask of an OME image
came back 1 px apart beside its image in µm)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

PLUGIN = "napari-attnseg"


def _nuclei(size: int = 64) -> np.ndarray:
    from napari_attnseg._paths import samples_dir
    from napari_attnseg.data import read_image

    shared = Path("/work/shared/data/nuclei2d/image.tif")
    path = shared if shared.is_file() else samples_dir() / "nuclei2d_image.tif"
    return np.asarray(read_image(path).data)[:size, :size].astype(np.uint16)


def _positions(path: Path) -> Path:
    """An OME-TIFF of two stage positions of other sizes and pixel sizes (as a widefield scan of wells writes it)."""
    import tifffile

    img = _nuclei(64)
    with tifffile.TiffWriter(path, ome=True) as tw:
        tw.write(img[:32, :32], metadata={"axes": "YX", "PhysicalSizeX": 0.65, "PhysicalSizeY": 0.65, "Name": "A1"})
        tw.write(img, metadata={"axes": "YX", "PhysicalSizeX": 0.325, "PhysicalSizeY": 0.325, "Name": "B2"})
    return path


def test_a_multi_position_ome_tiff_says_which_series_is_read(tmp_path):
    from napari_attnseg.data import read_image

    vol = read_image(_positions(tmp_path / "plate.ome.tif"))
    assert vol.data.shape == (32, 32) and vol.spacing == pytest.approx((0.65, 0.65))
    warning = vol.meta["warning"]  # (attnseg predict / export print it with the file's name)
    assert "plate.ome.tif holds 2 image series" in warning and "'A1'" in warning and "'B2' (64 x 64" in warning
    assert "its own layer" in warning and "file of its own" in warning


def test_napari_opens_each_series_of_a_multi_position_ome_tiff_as_a_layer(tmp_path):
    import tifffile

    from napari_attnseg._napari.io_hooks import get_ome_tiff_reader

    path = _positions(tmp_path / "plate.ome.tif")
    layers = get_ome_tiff_reader(str(path))(str(path))
    assert [kw["name"] for _, kw, _ in layers] == ["plate [A1]", "plate [B2]"]
    (a, ka, _), (b, kb, _) = layers
    assert a.shape == (32, 32) and tuple(ka["scale"]) == pytest.approx((0.65, 0.65))
    assert tuple(kb["scale"]) == pytest.approx((0.325, 0.325))
    np.testing.assert_array_equal(b, tifffile.imread(path, series=1))


def test_the_tiff_writer_keeps_a_masks_class_names(tmp_path):
    from napari_attnseg._napari.io_hooks import write_labels_tif
    from napari_attnseg.data import read_image
    from napari_attnseg.data.tiff import mask_marks

    mask = np.zeros((2, 16, 16), np.uint8)
    mask[:, 4:8, 4:8], mask[:, 10:12, 10:12] = 1, 2
    names = ["background", "nucleus, dividing", "µ-debris"]
    for unit, name in ((("um",) * 3, "ij.tif"), ((), "plain.tif")):  # an ImageJ TIFF, and tifffile's JSON description
        meta = {"scale": (2.0, 0.5, 0.5), "units": unit, "metadata": {"class_names": names, "reviewed_slices": [1]}}
        write_labels_tif(str(tmp_path / name), mask, meta)
        vol = read_image(tmp_path / name)
        assert vol.meta["class_names"] == names and vol.meta["reviewed_slices"] == [1]
        assert mask_marks(tmp_path / name)["class_names"] == names


@pytest.mark.gui
def test_upper_case_ome_tiff_names_open_with_their_pixel_size_without_a_question(opened, tmp_path):
    import tifffile

    for name in ("CELLS.OME.TIF", "CELLS2.OME.TIFF"):
        path = tmp_path / name
        tifffile.imwrite(path, _nuclei(), ome=True, metadata={"axes": "YX", "PhysicalSizeX": 0.325,
                                                              "PhysicalSizeY": 0.325})
        layer = opened(path)[-1]  # File > Open, napari's reader question never asked
        assert layer.source.reader_plugin == PLUGIN
        assert tuple(layer.scale) == pytest.approx((0.325, 0.325)) and layer.name == name.split(".")[0]


@pytest.mark.gui
def test_a_saved_mask_reopens_on_its_pixel_size_with_its_class_names(make_napari_viewer, qtbot, tmp_path):
    from napari_attnseg._napari.correct_widget import CorrectWidget

    viewer = make_napari_viewer()
    viewer.add_image(_nuclei(), name="cells", scale=(0.325, 0.325), units=("um", "um"))
    data = (_nuclei() > np.percentile(_nuclei(), 80)).astype(np.uint8)
    mask = viewer.add_labels(data, name="cells mask", scale=(0.325, 0.325), units=("um", "um"),
                             metadata={"class_names": ["background", "nucleus"], "reviewed_slices": [0]})
    CorrectWidget(viewer)  # (the Correct tab makes a reopened TIFF mask the Labels layer it was)
    out = tmp_path / "cells_mask.tif"
    viewer.layers.selection = {mask}
    viewer.layers.save(str(out), selected=True, plugin=PLUGIN)  # File > Save Selected Layer(s), the plugin's TIFF type
    viewer.layers.remove(mask)
    viewer.open(str(out))  # napari's own TIFF reader (scale 1), then the panel's replacement
    qtbot.waitUntil(lambda: "cells_mask" in viewer.layers and viewer.layers["cells_mask"]._type_string == "labels",
                    timeout=5000)
    back = viewer.layers["cells_mask"]
    np.testing.assert_array_equal(np.asarray(back.data), data)
    assert tuple(back.scale) == pytest.approx((0.325, 0.325)) and [str(u) for u in back.units] == ["micrometer"] * 2
    assert back.metadata["class_names"] == ["background", "nucleus"] and back.metadata["reviewed_slices"] == [0]
    assert list(back.features["class"])[:2] == ["background", "nucleus"]
