"""napari's own open path (File > Open, drag and drop, ``viewer.open`` without ``plugin=``) with the
plugin installed: other formats open with napari's reader and no question; NIfTI and DICOM open
through the plugin."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

pytestmark = pytest.mark.gui

PLUGIN = "napari-attnseg"


@pytest.fixture()
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture()
def dialog(monkeypatch):
    """napari's reader question, answered with this plugin; records every time it is asked."""
    from napari._qt.dialogs import qt_reader_dialog

    asked = []

    def choose(self):
        asked.append(self._current_file)
        return "Attention Segmentation", False

    monkeypatch.setattr(qt_reader_dialog.QtReaderDialog, "get_user_choices", choose)
    return asked


def dicom_folder(tmp_path: Path, name: str, extensions: bool) -> tuple[Path, np.ndarray]:
    from test_io import write_dicom_series

    hu = (np.arange(4)[:, None, None] * 50 - 200 + np.zeros((4, 8, 6))).astype(np.float32)
    folder = write_dicom_series(tmp_path / name, hu)
    if not extensions:  # as scanners write them: IM000001, ... (still Part-10 files with the DICM mark)
        for f in sorted(folder.iterdir()):
            f.rename(folder / f"IM{f.stem}")
        assert not any(f.suffix for f in folder.iterdir())
    return folder, hu.astype(np.int16)


@pytest.mark.parametrize("ext", [".tif", ".png", ".npy"])
def test_other_formats_open_with_napari_and_no_question(viewer, tmp_path, dialog, ext):
    import imageio.v3 as iio
    import tifffile
    from napari.plugins import _npe2

    data = (np.arange(24 * 32).reshape(24, 32) % 251).astype(np.uint8)
    path = tmp_path / f"img{ext}"
    {".tif": lambda: tifffile.imwrite(path, data), ".png": lambda: iio.imwrite(path, data),
     ".npy": lambda: np.save(path, data)}[ext]()
    assert list(_npe2.get_readers(str(path))) == ["napari"]  # the plugin does not offer itself
    layers = viewer._open_or_raise_error([str(path)])  # raises MultipleReaderError if napari had to ask
    assert len(layers) == 1 and len(viewer.layers) == 1
    np.testing.assert_array_equal(np.asarray(viewer.layers[0].data), data)
    viewer.window._qt_viewer._qt_open([str(path)], stack=False)  # File > Open / drag and drop
    assert len(viewer.layers) == 2 and dialog == []


def test_zarr_store_opens_with_napari(viewer, tmp_path, dialog):
    import zarr
    from napari.settings import get_settings

    from napari_attnseg._napari import io_hooks

    data = np.arange(20 * 30, dtype=np.uint16).reshape(20, 30)
    store = tmp_path / "img.zarr"
    zarr.save_array(str(store), data)
    assert not io_hooks.is_dicom_path(store)
    io_hooks.activate()  # what the plugin's first use does
    assert get_settings().plugins.extension2reader["*.zarr/"] == "napari"
    layers = viewer._open_or_raise_error([str(store)])
    assert len(layers) == 1 and np.array_equal(np.asarray(layers[0].data), data)
    viewer.window._qt_viewer._qt_open([str(store)], stack=False)
    assert len(viewer.layers) == 2 and dialog == []


@pytest.mark.parametrize("extensions", [True, False], ids=["dcm", "no-extension"])
def test_dicom_folder_opens_through_the_plugin(viewer, tmp_path, dialog, extensions):
    """A folder is offered to every reader that takes folders (npe2 does not match folder names), so
    napari asks once; the plugin is among the choices and reads the series in Hounsfield units."""
    from napari.plugins import _npe2

    folder, hu = dicom_folder(tmp_path, "ct", extensions)
    assert PLUGIN in _npe2.get_readers(str(folder))
    viewer.window._qt_viewer._qt_open([str(folder)], stack=False)  # what File > Open Folder does
    assert dialog == [str(folder)]  # before the plugin's first use napari asks once
    [layer] = viewer.layers
    np.testing.assert_array_equal(layer.data, hu)
    assert tuple(layer.scale) == pytest.approx((2.5, 0.8, 0.6))
    assert layer.metadata["format"] == "dicom"
    from napari_attnseg._napari import io_hooks

    io_hooks.activate()  # what the plugin's first use does: from now on no question for folders
    viewer.window._qt_viewer._qt_open([str(folder)], stack=False)
    assert dialog == [str(folder)] and len(viewer.layers) == 2
    np.testing.assert_array_equal(viewer.layers[1].data, hu)


def test_other_folders_open_as_napari_opens_them_without_a_question(viewer, tmp_path, dialog):
    """Once the plugin has been used, a folder of TIFFs opens with no question and gives the layer
    napari's own reader gives (the plugin hands non-DICOM folders to it); a user's choice for folders stays."""
    import tifffile
    from napari.settings import get_settings

    from napari_attnseg._napari import io_hooks

    folder = tmp_path / "stack"
    folder.mkdir()
    for i in range(3):
        tifffile.imwrite(folder / f"z{i}.tif", np.full((4, 5), i + 1, np.uint8))
    expected = viewer.open(str(folder), plugin="napari")[0]
    io_hooks.activate()
    assert get_settings().plugins.extension2reader["*/"] == PLUGIN
    [layer] = viewer._open_or_raise_error([str(folder)])
    viewer.window._qt_viewer._qt_open([str(folder)], stack=False)
    assert dialog == [] and len(viewer.layers) == 3
    for got in (layer, viewer.layers[2]):
        np.testing.assert_array_equal(np.asarray(got.data), np.asarray(expected.data))
        assert got.name.split(" [")[0] == expected.name  # napari numbers a repeated name
    get_settings().plugins.extension2reader = {"*/": "napari"}  # the user's own choice is never overridden
    io_hooks.activate()
    assert get_settings().plugins.extension2reader["*/"] == "napari"


def test_nifti_and_dicom_files_open_through_the_plugin_without_a_question(viewer, tmp_path, dialog):
    """After the plugin's activation (its first use) napari opens NIfTI and DICOM files with it, every
    time, without asking; a choice the user made is kept."""
    import npe2
    from napari.settings import get_settings

    from napari_attnseg._napari import io_hooks

    manifest = npe2.PluginManager.instance().get_manifest(PLUGIN)
    assert manifest.on_activate == "napari_attnseg._napari.io_hooks:activate"
    get_settings().plugins.extension2reader = {"*.ima": "napari"}  # the user's own choice
    io_hooks.activate()
    prefs = get_settings().plugins.extension2reader
    assert prefs["*.ima"] == "napari" and prefs["*.nii"] == PLUGIN and prefs["*.nii.gz"] == PLUGIN

    vol = np.arange(5 * 6 * 7, dtype=np.int16).reshape(5, 6, 7)  # (i, j, k)
    paths = []
    for name in ("a.nii.gz", "b.nii"):
        nib.save(nib.Nifti1Image(vol, np.diag([0.5, 0.6, 2.0, 1.0])), tmp_path / name)
        paths.append(tmp_path / name)
    folder, hu = dicom_folder(tmp_path, "ct", True)
    dcm = sorted(folder.iterdir())[0]
    for _ in range(2):  # every time, not only the first
        for p in [*paths, dcm]:
            [layer] = viewer._open_or_raise_error([str(p)])
            assert layer.metadata["format"] in ("nifti", "dicom")
        viewer.window._qt_viewer._qt_open([str(paths[0])], stack=False)
    assert dialog == []
    assert [tuple(layer.data.shape) for layer in viewer.layers][:3] == [(7, 6, 5), (7, 6, 5), hu.shape]
    assert tuple(viewer.layers[0].scale) == pytest.approx((2.0, 0.6, 0.5))
