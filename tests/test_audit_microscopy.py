"""A microscopist's own files, opened with napari's TIFF reader, then Click to fix (audit 2026-12, "micro").

Audit: a 2-channel c-y-x 16-bit TIFF (nuclei in channel 1) was refused by the Segment tab with the way to split
it, but Click to fix took it as a volume of 2 slices, added a 2-plane mask and segmented whichever channel was
shown (the other stain's too); an ImageJ hyperstack (z, c, y, x) was accepted with "Click an object" and every
click then failed with a command-line hint (``attnseg predict --channel K``)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

pytestmark = pytest.mark.gui


@pytest.fixture
def click_panel(make_napari_viewer):
    from napari_attnseg._napari.correct_widget import CorrectWidget
    from napari_attnseg.models.registry import bundled_models

    if "nuclei-2d-prompt" not in bundled_models():
        pytest.skip("no bundled promptable model")
    viewer = make_napari_viewer()
    corr = CorrectWidget(viewer)
    return viewer, corr


def _nuclei16() -> np.ndarray:
    from napari_attnseg._paths import samples_dir

    return (tifffile.imread(samples_dir() / "nuclei2d_image.tif")[:96, :96].astype(np.float32) * 250).astype(np.uint16)


@pytest.mark.parametrize("kind", ["cyx", "zcyx"])
def test_click_to_fix_refuses_a_channel_stack_as_the_segment_tab_does(click_panel, tmp_path, notifications, kind):
    viewer, corr = click_panel
    nuclei = _nuclei16()
    other = np.full_like(nuclei, 3000)
    path = tmp_path / f"{kind}.tif"
    if kind == "cyx":
        tifffile.imwrite(path, np.stack([other, nuclei]), photometric="minisblack", metadata={"axes": "CYX"})
    else:
        tifffile.imwrite(path, np.stack([np.stack([other, nuclei])] * 3), imagej=True, metadata={"axes": "ZCYX"})
    layer = viewer.open(str(path), plugin="napari")[0]
    corr.refresh(prefer=layer.name)
    corr.image_combo.value = layer.name
    pm = corr.prompt
    pm.model_combo.value = "nuclei-2d-prompt"
    pm.enable_box.value = True
    assert not pm.enable_box.value
    # a hyperstack's channels are its second axis: Split Stack would split its slices, each layer still holding both
    # channels (and those ran as volumes of 2 slices); the advice is napari's channel_axis
    advice = "Split Stack" if kind == "cyx" else "channel_axis=1"
    assert advice in pm.status.value and "channels" in pm.status.value, pm.status.value
    assert any(advice in str(n.message) for n in notifications)
    assert [ly.name for ly in viewer.layers] == [layer.name], "a mask or prompts layer was added for the stack"
    # a click that still reaches the canvas (the layer chosen while the mode was on) is refused the same way
    from napari_attnseg._napari.prompt_view import click_refusal

    assert advice in click_refusal(viewer, layer, 2)


def test_a_click_on_a_zarr_image_reads_it_in_the_worker_not_on_the_gui_thread(click_panel, qtbot):
    """A slide region opened from Zarr (napari gives a dask array): every click read the whole image on the GUI thread
    (np.asarray of the layer: 0.76 s a click for 8000 x 8000 px on the audit machine, growing with the slide)."""
    import threading

    import dask
    import dask.array as da

    viewer, corr = click_panel
    image = _nuclei16()
    on_gui: list[bool] = []

    def read(block):
        on_gui.append(threading.current_thread() is threading.main_thread())
        return block

    lazy = da.from_array(image, chunks=48).map_blocks(read, dtype=image.dtype)
    with dask.config.set(scheduler="synchronous"):  # (a task runs in the thread that asks for the data)
        layer = viewer.add_image(lazy, name="slide")
        corr.refresh(prefer=layer.name)
        pm = corr.prompt
        pm.model_combo.value = "nuclei-2d-prompt"
        pm.enable_box.value = True
        mask = corr.labels_layer()
        assert mask is not None and mask.name == "slide mask"
        on_gui.clear()
        pm.click((60.0, 40.0), True)
        assert not any(on_gui), "the click read the lazy image on the GUI thread"
        qtbot.waitUntil(lambda: not pm.busy, timeout=60000)
    assert on_gui and np.asarray(mask.data).any(), pm.status.value


def test_ticking_click_to_fix_on_a_zarr_image_reads_a_preview_not_the_whole_image(click_panel, monkeypatch):
    """The click model's fit check sampled the whole lazy image on the GUI thread when the mode was ticked (0.4 s for
    8000 x 8000 px); the Segment tab's hint reads a central block of at most PREVIEW_VOXELS."""
    import threading

    import dask
    import dask.array as da

    from napari_attnseg._napari import _common

    viewer, corr = click_panel
    monkeypatch.setattr(_common, "PREVIEW_VOXELS", 32 * 32)
    image = _nuclei16()
    blocks: list[tuple] = []

    def read(block, block_info=None):
        if threading.current_thread() is threading.main_thread() and block_info:
            blocks.append(tuple(block_info[0]["chunk-location"]))
        return block

    lazy = da.from_array(image, chunks=32).map_blocks(read, dtype=image.dtype)
    with dask.config.set(scheduler="synchronous"):
        layer = viewer.add_image(lazy, name="slide", contrast_limits=(0, 60000))
        corr.refresh(prefer=layer.name)
        pm = corr.prompt
        pm.model_combo.value = "nuclei-2d-prompt"
        blocks.clear()
        pm.enable_box.value = True
    assert pm.enable_box.value
    assert len(set(blocks)) <= 1, f"ticking the mode read {len(set(blocks))} of the 9 blocks on the GUI thread"
