"""Files from other tools (audit): a TIFF whose pixel size is in nm or cm (an ImageJ unit, a napari layer's units)
written as NIfTI keeps its physical voxel size (NIfTI names micron, mm and meter only: the file said 65 mm for 65 nm);
an OME export of one named channel names it in dataset.json (it said 'image'); a TZCYX hyperstack is refused once,
naming the file and both choices (channel and time point); a radiograph's detector pixel size is said to be one.
Every file is written by tifffile / nibabel / pydicom into tmp_path, its pixels a crop of the real nuclei image."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_attnseg.cli import main as cli
from napari_attnseg.data import read_image, write_image

NUCLEI = Path("/work/shared/data/nuclei2d/image.tif")
NUCLEI_LABELS = Path("/work/shared/data/nuclei2d/labels.tif")


def _nuclei(size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    import tifffile

    image = tifffile.imread(NUCLEI)[:size, :size].astype(np.uint16)
    labels = (tifffile.imread(NUCLEI_LABELS)[:size, :size] > 0).astype(np.uint8)
    return image, labels


def _imagej(path: Path, data: np.ndarray, size: float, unit: str, axes: str = "YX", **extra) -> Path:
    import tifffile

    tifffile.imwrite(path, data, imagej=True, resolution=(1 / size, 1 / size),
                     metadata={"axes": axes, "unit": unit, **extra})
    return path


def _physical(path: Path) -> tuple[np.ndarray, str]:
    """A NIfTI's voxel size in mm, read as a user's tool reads it (nibabel: zooms and xyz unit), and its unit."""
    import nibabel as nib

    header = nib.load(str(path)).header
    unit = header.get_xyzt_units()[0]
    return np.asarray(header.get_zooms()[:3], float) * {"micron": 1e-3, "mm": 1.0, "meter": 1e3}[unit], unit


# ------------------------------------------------------------------------------------------------------------------
# 1. nm / cm pixel sizes written as NIfTI
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("size", "unit", "mm", "named"), [(65.0, "nm", 65e-6, "micron"), (0.05, "cm", 0.5, "mm"),
                                                          (0.02, "inch", 0.508, "mm")])
def test_an_imagej_tiff_in_nm_or_cm_exports_to_nnunet_with_its_physical_size(tmp_path, size, unit, mm, named):
    image, labels = _nuclei()
    src = _imagej(tmp_path / "cells.tif", image, size, unit)
    _imagej(tmp_path / "cells_mask.tif", labels, size, unit)
    assert read_image(src).meta["unit"] == unit
    ds = tmp_path / "ds"
    assert cli(["export", "--image", str(src), "--labels", str(tmp_path / "cells_mask.tif"), "--dataset", str(ds),
                "--format", "nnunet"]) == 0
    for f in (ds / "imagesTr" / "case_0000_0000.nii.gz", ds / "labelsTr" / "case_0000.nii.gz"):
        physical, said = _physical(f)
        assert said == named
        assert physical[:2] == pytest.approx([mm, mm], rel=1e-5)  # (was 65 mm / 0.05 mm: the unit said mm)
        back = read_image(f)  # the plugin's reader: the same size, in the unit the file names
        assert back.meta["nifti"]["xyz_units"] == named
        factor = {"micron": 1e-3, "mm": 1.0}[named]
        assert np.asarray(back.spacing) * factor == pytest.approx([mm, mm], rel=1e-5)
    case = json.loads((ds / "manifest.json").read_text())["cases"][0]
    assert np.asarray(case["spacing"]) * {"micron": 1e-3, "mm": 1.0}[named] == pytest.approx([mm, mm], rel=1e-5)


def test_a_mask_saved_as_nifti_like_an_nm_tiff_and_with_napari_units_keeps_its_size(tmp_path):
    image, labels = _nuclei()
    stack = np.stack([image, image[::-1], image[:, ::-1]])
    src = _imagej(tmp_path / "stack.tif", stack, 65.0, "nm", axes="ZYX", spacing=200.0)
    vol = read_image(src)
    assert vol.spacing == pytest.approx((200.0, 65.0, 65.0))
    out = write_image(tmp_path / "mask.nii.gz", np.stack([labels] * 3), like=vol)
    physical, said = _physical(out)
    assert said == "micron" and physical == pytest.approx([65e-6, 65e-6, 200e-6], rel=1e-5)
    # a napari layer's units, one per axis (pint's names), and an affine given in them: the affine scaled too
    out = write_image(tmp_path / "layer.nii.gz", labels, spacing=(0.5, 0.5), unit=("centimeter", "centimeter"))
    physical, said = _physical(out)
    assert said == "mm" and physical[:2] == pytest.approx([5.0, 5.0])
    aff = np.diag([65.0, 65.0, 200.0, 1.0])
    aff[:3, 3] = (650.0, 0.0, 0.0)
    out = write_image(tmp_path / "placed.nii.gz", np.stack([labels] * 3), affine=aff, unit=("nm", "nm", "nm"))
    back = read_image(out)
    assert back.meta["nifti"]["xyz_units"] == "micron"
    assert back.affine[:3, :3] == pytest.approx(np.diag([0.065, 0.065, 0.2]))
    assert back.affine[:3, 3] == pytest.approx([0.65, 0.0, 0.0])


@pytest.mark.gui
def test_napari_saves_a_mask_in_nm_as_nifti_on_its_physical_size(make_napari_viewer, tmp_path):
    image, labels = _nuclei()
    viewer = make_napari_viewer()
    viewer.add_image(image, name="cells", scale=(65.0, 65.0), units=("nm", "nm"))  # (an ImageJ TIFF in nm, opened)
    mask = viewer.add_labels(labels, name="cells mask", scale=(65.0, 65.0), units=("nm", "nm"))
    viewer.layers.selection = {mask}
    out = tmp_path / "cells_mask.nii.gz"
    viewer.layers.save(str(out), selected=True, plugin="napari-attnseg")  # File > Save Selected Layer(s)
    physical, said = _physical(out)
    assert said == "micron" and physical[:2] == pytest.approx([65e-6, 65e-6], rel=1e-5)  # (was 65 mm)


def test_micron_and_mm_are_written_as_before(tmp_path):
    image, labels = _nuclei()
    for unit, named in (("micron", "micron"), ("mm", "mm")):
        out = write_image(tmp_path / f"{unit}.nii.gz", labels, spacing=(0.65, 0.65), unit=unit)
        back = read_image(out)
        assert back.spacing == pytest.approx((0.65, 0.65)) and back.meta["nifti"]["xyz_units"] == named
    out = write_image(tmp_path / "none.nii.gz", labels, spacing=(2.0, 2.0))  # no unit: mm, as it was
    assert read_image(out).spacing == pytest.approx((2.0, 2.0))


# ------------------------------------------------------------------------------------------------------------------
# 2. an OME export of one named channel names it
# ------------------------------------------------------------------------------------------------------------------
def _two_channels(tmp_path: Path) -> tuple[Path, Path]:
    import tifffile

    image, labels = _nuclei()
    src = tmp_path / "cells.ome.tif"
    tifffile.imwrite(src, np.stack([image, image.max() - image]), ome=True,
                     metadata={"axes": "CYX", "Channel": {"Name": ["GFP", "DAPI"]}, "PhysicalSizeX": 0.65,
                               "PhysicalSizeY": 0.65})
    mask = tmp_path / "cells_mask.tif"
    tifffile.imwrite(mask, labels)
    return src, mask


def _channel_table(ds: Path) -> tuple[dict, list]:
    return (json.loads((ds / "dataset.json").read_text())["channel_names"],
            json.loads((ds / "manifest.json").read_text())["channel_names"])


def test_an_ome_channel_exported_alone_is_named_by_its_own_name(tmp_path, capsys):
    src, mask = _two_channels(tmp_path)
    ds = tmp_path / "ds"
    base = ["export", "--image", str(src), "--labels", str(mask), "--dataset", str(ds)]
    assert cli([*base, "--channel", "1"]) == 0
    assert _channel_table(ds) == ({"0": "DAPI"}, ["DAPI"])  # (was 'image')
    assert "naming the channel DAPI" in capsys.readouterr().err
    # another channel's default follows the dataset's table, said, not refused
    assert cli([*base, "--channel", "0", "--case-id", "gfp"]) == 0
    assert _channel_table(ds) == ({"0": "DAPI"}, ["DAPI"])
    err = capsys.readouterr().err
    assert "named GFP in its file" in err and "names its channels DAPI" in err
    # a name given still overrides the default of a new dataset
    assert cli([*base[:-1], str(tmp_path / "ds2"), "--channel", "0", "--channel-names", "green"]) == 0
    assert _channel_table(tmp_path / "ds2") == ({"0": "green"}, ["green"])


def test_an_unnamed_channel_keeps_the_default_name(tmp_path):
    import tifffile

    image, labels = _nuclei()
    src = tmp_path / "plain.tif"
    tifffile.imwrite(src, np.stack([image, image.max() - image]), imagej=True, metadata={"axes": "CYX"})
    tifffile.imwrite(tmp_path / "mask.tif", labels)
    assert cli(["export", "--image", str(src), "--labels", str(tmp_path / "mask.tif"), "--dataset",
                str(tmp_path / "ds"), "--channel", "1"]) == 0
    assert _channel_table(tmp_path / "ds") == ({"0": "image"}, ["image"])


# ------------------------------------------------------------------------------------------------------------------
# 3. a TZCYX hyperstack: one refusal naming the file and every choice
# ------------------------------------------------------------------------------------------------------------------
def test_a_tzcyx_hyperstack_is_refused_once_naming_channel_and_time_point(tmp_path, capsys):
    import tifffile

    image, labels = _nuclei(32)
    hyper = np.stack([np.stack([np.stack([image, image.max() - image])] * 4)] * 3)  # t, z, c, y, x
    src = _imagej(tmp_path / "movie.tif", hyper, 0.5, "micron", axes="TZCYX", spacing=2.0)
    tifffile.imwrite(tmp_path / "movie_mask.tif", np.stack([np.stack([labels] * 4)] * 3), imagej=True,
                     metadata={"axes": "TZYX"})
    base = ["export", "--image", str(src), "--labels", str(tmp_path / "movie_mask.tif"), "--dataset",
            str(tmp_path / "ds")]
    assert cli(base) != 0
    err = capsys.readouterr().err
    assert "movie.tif is a time-lapse of volumes in 2 channels" in err  # (was: unnamed 'must be 2D or 3D')
    assert "time point t (0 to 2) and the channel k" in err and "0 to 1" in err and "[t, :, k]" in err
    assert cli([*base, "--channel", "1"]) != 0  # the channel picked: the time point still to choose, said once more
    err = capsys.readouterr().err
    assert "movie.tif is a time-lapse of volumes" in err and "of channel 1 (--channel 1)" in err
    assert "[t, :, 1]" in err
    assert not (tmp_path / "ds").exists()


def test_the_refusal_lists_ome_channel_names_and_leaves_other_stacks_alone():
    from napari_attnseg.data.hyperstack import own_channel_names, time_lapse_of_volumes

    said = time_lapse_of_volumes("TCZYX", (5, 2, 3, 8, 8), "h.ome.tif", None, ["GFP", "DAPI"])
    assert "5 time points of 3 x 8 x 8" in said and "(0 GFP, 1 DAPI)" in said and "[t, k]" in said
    assert time_lapse_of_volumes("TCYX", (5, 2, 8, 8), "x.tif") is None  # frames of 2D images: exported per frame
    assert time_lapse_of_volumes("ZCYX", (3, 2, 8, 8), "x.tif") is None
    assert own_channel_names({"channel_names": ["GFP", "DAPI"], "channel": 1}) == ["DAPI"]
    assert own_channel_names({"channel_names": ["GFP", "c1"], "channel": 1}) is None
    assert own_channel_names({"channel_names": ["GFP", "DAPI"]}, stacked=True) == ["GFP", "DAPI"]
    assert own_channel_names({"channel": "DAPI", "channel_index": 1}) == ["DAPI"]  # (a napari layer's metadata)
    assert own_channel_names({"channel": "c1", "channel_index": 1}) is None
    assert own_channel_names({"channel": "hematoxylin"}) is None  # (a slide's stain, picked of its colours)


# ------------------------------------------------------------------------------------------------------------------
# 4. a radiograph's pixel size from ImagerPixelSpacing, said to be the detector's
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pixel_spacing", [None, [0.0, 0.0]])
def test_a_radiograph_reads_its_detector_pixel_size_and_says_so(tmp_path, pixel_spacing):
    from test_dicom import dataset, save

    image, _ = _nuclei(32)
    ds = dataset("1.2.840.10008.5.1.4.1.1.1", "CR", rows=32, cols=32)
    ds.ImagerPixelSpacing = [0.139, 0.139]
    ds.EstimatedRadiographicMagnificationFactor = 1.1
    if pixel_spacing is not None:  # (a PixelSpacing of 0: as if absent)
        ds.PixelSpacing = pixel_spacing
    vol = read_image(save(ds, tmp_path / "cr" / "chest.dcm", image))
    assert vol.spacing == pytest.approx((0.139, 0.139)) and vol.meta["pixel_spacing_source"] == "ImagerPixelSpacing"
    assert "ImagerPixelSpacing" in vol.meta["note"] and "not calibrated at the patient" in vol.meta["note"]
    assert "0.1264 x 0.1264 mm in the patient" in vol.meta["note"]
    calibrated = dataset("1.2.840.10008.5.1.4.1.1.1", "CR", rows=32, cols=32)
    calibrated.ImagerPixelSpacing, calibrated.PixelSpacing = [0.139, 0.139], [0.126, 0.126]
    vol = read_image(save(calibrated, tmp_path / "cal" / "chest.dcm", image))
    assert vol.spacing == pytest.approx((0.126, 0.126)) and "pixel_spacing_source" not in vol.meta
    assert "note" not in vol.meta


@pytest.mark.gui
def test_the_correct_tab_names_an_ome_channel_as_its_file_does(opened, qtbot, tmp_path):
    """napari opens an OME-TIFF's channels as layers '<name> [DAPI]'; the Correct tab's Export of a mask over the DAPI
    one named the new dataset's channel 'image' where attnseg export names it DAPI."""
    import tifffile

    from napari_attnseg._napari.dock import AttnSegDock

    src, mask = _two_channels(tmp_path)
    layers = opened(src)
    dapi = next(layer for layer in layers if "[DAPI]" in layer.name)
    viewer = opened.viewer
    dock = AttnSegDock(viewer)
    viewer.window.add_dock_widget(dock, name="Attention segmentation")
    viewer.add_labels(tifffile.imread(mask).astype(np.uint8), name="nuclei", scale=dapi.scale)
    corr = dock.correct
    corr.labels_combo.value, corr.image_combo.value = "nuclei", dapi.name
    corr.foreground_box.value = True  # (instance ids: one class)
    corr.dataset_edit.value = str(tmp_path / "ds")
    assert corr.export() is not None
    qtbot.waitUntil(lambda: corr.export_button.enabled and (tmp_path / "ds" / "dataset.json").is_file(),
                    timeout=60000)
    assert _channel_table(tmp_path / "ds") == ({"0": "DAPI"}, ["DAPI"])  # (was 'image')


@pytest.mark.gui
def test_a_mask_saved_from_an_nm_layer_reopens_on_its_image(make_napari_viewer, tmp_path):
    """A mask of a 65 nm image layer saved as NIfTI is written in micron (the unit NIfTI names); napari does not
    convert units between layers, so reopened it lay 1000 times smaller than its image. Its layer takes the image's."""
    from napari_attnseg._napari import io_hooks

    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((3, 16, 16), np.float32), name="cells", scale=(200.0, 65.0, 65.0),
                             units=("nanometer",) * 3)
    path = io_hooks.write_labels_nifti(str(tmp_path / "mask"), np.ones((3, 16, 16), np.uint8),
                                       {"scale": (200.0, 65.0, 65.0), "units": ("nanometer",) * 3, "metadata": {}})[0]
    io_hooks.activate()
    [(data, kwargs, kind)] = io_hooks.get_nifti_reader(path)(path)
    assert kind == "labels"
    np.testing.assert_allclose(kwargs["scale"], image.scale, rtol=1e-6)
    assert kwargs["metadata"]["spacing"] == pytest.approx([0.2, 0.065, 0.065])  # (the file's, in micron)
