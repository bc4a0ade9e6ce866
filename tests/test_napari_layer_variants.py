"""The Segment tab on the kinds of image layers microscopy users have in napari: time-lapses, channels,
pyramids, lazy (dask) arrays, units and axis labels, unusual dtypes (a real viewer, the bundled nuclei model)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def nuclei():
    from napari_attnseg._paths import samples_dir
    from napari_attnseg.data import read_image

    path = samples_dir() / "nuclei2d_image.tif"
    if not path.exists():
        pytest.skip("no nuclei sample")
    return np.asarray(read_image(path).data)


@pytest.fixture()
def widget(segment_panel):
    return segment_panel  # (conftest: a viewer and a Segment panel collecting its error messages)


def run_and_wait(qtbot, w, ok=True):
    with qtbot.waitSignal(w.run_done, timeout=120000) as done:
        w.run()
    assert done.args == [ok], w.messages
    return w


def assert_on_the_image(viewer, name, shape):
    """Every result layer of ``name`` has the image's axes, and mask and probability pixels lie on its pixels."""
    image = viewer.layers[name]
    corners = [(0,) * len(shape), tuple(n - 1 for n in shape), tuple(n // 2 for n in shape)]
    results = [ly for ly in viewer.layers if ly.name.startswith(f"{name} ")]
    assert {f"{name} mask", f"{name} probability"} <= {ly.name for ly in results}
    for layer in results:
        assert layer.ndim == image.ndim, layer.name
        if layer.name in (f"{name} mask", f"{name} probability"):
            assert layer.data.shape == tuple(shape), layer.name
            for c in corners:
                np.testing.assert_allclose(layer.data_to_world(c), image.data_to_world(c), atol=1e-9)


def test_results_share_the_images_units_and_axis_labels(widget, qtbot, nuclei):
    """An image in micrometres with named axes (as OME readers open it): the results carry the same units and
    labels. Before, they were in pixels, so napari dropped the units for every layer ("Inconsistent units across
    layers", once per result layer) and the scale bar lost its micrometres."""
    viewer, w = widget
    viewer.add_image(nuclei[:128, :128], name="cells", scale=(0.3, 0.3), units=("um", "um"), axis_labels=("y", "x"))
    assert w.model_combo.value == "nuclei-2d"
    run_and_wait(qtbot, w)
    for layer in viewer.layers:
        assert [str(u) for u in layer.units] == ["micrometer", "micrometer"], layer.name
        assert tuple(layer.axis_labels) == ("y", "x"), layer.name
    assert viewer.layers.extent.units is not None  # None: napari's "Inconsistent units across layers"
    assert_on_the_image(viewer, "cells", (128, 128))
    # a re-run on another image of the same name updates the layers in place, with the new image's units
    viewer.layers.remove("cells")
    viewer.add_image(nuclei[:128, :128], name="cells", scale=(300, 300), units=("nm", "nm"))
    mask = viewer.layers["cells mask"]
    run_and_wait(qtbot, w)
    assert viewer.layers["cells mask"] is mask and str(mask.units[0]) == "nanometer"
    assert viewer.layers.extent.units is not None


def test_a_time_lapse_is_segmented_frame_by_frame_and_the_panel_says_so(widget, qtbot, nuclei):
    """(t, y, x): the nuclei model segments every frame on its own, on the frame's own place, and the status
    says frames; a 3D model chosen for it is told, before Run, that it would take the frames as one volume."""
    viewer, w = widget
    movie = np.stack([np.roll(nuclei[:128, :128], 7 * t, axis=1) for t in range(4)])
    viewer.add_image(movie, name="movie", scale=(1.0, 0.5, 0.5), axis_labels=("t", "y", "x"))
    assert (w.model_combo.value, w.mode_combo.value) == ("nuclei-2d", "slices")
    run_and_wait(qtbot, w)
    assert "4 frames one by one" in w.status.value
    assert_on_the_image(viewer, "movie", movie.shape)
    assert tuple(viewer.layers["movie mask"].axis_labels) == ("t", "y", "x")
    mask = viewer.layers["movie mask"].data > 0  # frame 2 is frame 0 moved 14 px: so is its mask (Dice, inside)
    a, b = mask[2][:, 40:100], np.roll(mask[0], 14, axis=1)[:, 40:100]
    assert a.any() and 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b)) > 0.9
    w.model_combo.value = "brain-mri-3d"
    assert "time-lapse (t, y, x)" in w.model_info.value and "2D model" in w.model_info.value


def test_a_3d_time_lapse_is_refused_with_what_to_do(widget, nuclei):
    viewer, w = widget
    stack = np.stack([np.stack([np.roll(nuclei[:64, :64], 3 * z + 5 * t, 0) for z in range(3)]) for t in range(2)])
    viewer.add_image(stack, name="embryo", axis_labels=("t", "z", "y", "x"))
    assert "Split Stack" in w.model_info.value  # said before Run
    assert w.run() is None
    assert "'embryo' has 4 dimensions (t, z, y, x)" in w.messages[-1] and "Split Stack" in w.messages[-1]
    assert "time point" in w.messages[-1]
    assert [ly.name for ly in viewer.layers] == ["embryo"]


def test_channels_are_not_segmented_as_slices(widget, qtbot, nuclei):
    """Channels in one layer: labelled 'c' first, or (y, x, C) last, are refused with how to split them (a
    (y, x, 2) layer ran as 128 'slices', each a row of the image, with no word); the user can still force
    slices; two channels opened with channel_axis are two layers to choose from."""
    viewer, w = widget
    two = np.stack([nuclei[:128, :128], np.roll(nuclei[:128, :128], 30, 0) // 2 + 10])
    viewer.add_image(two, name="cyx", axis_labels=("c", "y", "x"))
    assert "2 channels" in w.model_info.value
    assert w.run() is None and "'cyx' holds 2 channels" in w.messages[-1] and "Split Stack" in w.messages[-1]
    viewer.layers.clear()
    viewer.add_image(np.moveaxis(two, 0, -1).astype(np.float32), name="yxc")
    assert w.mode_combo.value == "auto" and "channels last" in w.model_info.value
    assert w.run() is None
    assert "'yxc' looks like an image with 2 channels last" in w.messages[-1] and "channel_axis=-1" in w.messages[-1]
    assert [ly.name for ly in viewer.layers] == ["yxc"]
    w.mode_combo.value = "slices"  # the user says it is a volume
    run_and_wait(qtbot, w)
    viewer.layers.clear()
    viewer.add_image(two, channel_axis=0, name=["DAPI", "GFP"], scale=(0.3, 0.3))
    assert list(w.image_combo.choices) == ["DAPI", "GFP"]
    w.image_combo.value = "DAPI"
    run_and_wait(qtbot, w)
    assert_on_the_image(viewer, "DAPI", (128, 128))


def test_a_pyramid_layer_is_segmented_at_full_resolution(widget, qtbot, nuclei):
    """A multiscale layer (napari's MultiScaleData) ended in 'unexpected error (TypeError: list indices must be
    integers or slices, not tuple)'; it runs on its full-resolution level, the results on the image."""
    viewer, w = widget
    image = nuclei[:256, :256]
    viewer.add_image([image, image[::2, ::2], image[::4, ::4]], multiscale=True, name="pyramid",
                     scale=(0.5, 0.5), translate=(10.0, -3.0), rotate=30)
    run_and_wait(qtbot, w)
    assert "full resolution" in w.status.value
    assert_on_the_image(viewer, "pyramid", image.shape)
    from napari_attnseg import predict

    ref = predict(w.model_entry("nuclei-2d"), image, device="cpu")
    np.testing.assert_array_equal(viewer.layers["pyramid mask"].data, np.asarray(ref.labels))


def test_choosing_a_lazy_layer_does_not_read_it_whole(widget, qtbot, nuclei):
    """A dask array (a zarr store opened lazily): the panel's "Before you run" check reads a bounded sample on the
    GUI thread, not every chunk (an 8192 x 8192 zarr took 4 s each time the image or the model changed); the run
    segments it and its results are in-memory arrays on the image."""
    import dask.array as da

    viewer, w = widget
    mosaic = np.tile(nuclei, (6, 6))  # 3072 x 3072 in 144 chunks of 256 x 256
    read = []

    def chunk(block, block_info=None):
        read.append(block_info[0]["chunk-location"])
        return block

    lazy = da.from_array(mosaic, chunks=(256, 256)).map_blocks(chunk, dtype=mosaic.dtype)
    layer = viewer.add_image(lazy, name="slide", contrast_limits=(0, 255))
    read.clear()
    w.image_combo.value = "slide"
    w._image_changed()
    w.model_combo.value = "nuclei-2d-prompt"
    w.model_combo.value = "nuclei-2d"
    assert 0 < len(read) <= 3 * 81, len(read)  # the central 2000 x 2000 block: 9 x 9 chunks a check
    viewer.layers.remove(layer)
    small = da.from_array(nuclei[:192, :160], chunks=(64, 64))
    viewer.add_image(small, name="lazy", scale=(0.5, 0.5))
    run_and_wait(qtbot, w)
    assert isinstance(viewer.layers["lazy mask"].data, np.ndarray)
    assert_on_the_image(viewer, "lazy", (192, 160))


@pytest.mark.parametrize("kind", ["int8", "float16", "bool", "nan"])
def test_unusual_dtypes_run_or_say_why(widget, qtbot, nuclei, kind):
    viewer, w = widget
    base = nuclei[:96, :96]
    data = {"int8": (base.astype(np.int16) - 100).clip(-128, 127).astype(np.int8),
            "float16": (base / 235).astype(np.float16), "bool": base > 60,
            "nan": np.where(np.arange(96)[:, None] < 10, np.nan, base).astype(np.float32)}[kind]
    viewer.add_image(data, name=kind)
    run_and_wait(qtbot, w)
    assert_on_the_image(viewer, kind, (96, 96))
    all_nan = np.full((64, 64), np.nan, np.float32)
    viewer.add_image(all_nan, name="empty")
    w.image_combo.value = "empty"
    run_and_wait(qtbot, w, ok=False)
    assert "empty" in w.messages[-1] and "no finite values" in w.messages[-1]


def test_the_probability_layer_adds_no_float32_copy(widget, qtbot, nuclei):
    """The hidden probability layer shows the prediction's own float16 map (with two classes, a view of it): a
    float32 copy added 4 bytes a pixel (64 MB on a 4096 x 4096 mosaic). Shown, it renders."""
    viewer, w = widget
    viewer.add_image(nuclei[:192, :192], name="cells")
    run_and_wait(qtbot, w)
    prob = viewer.layers["cells probability"]
    assert prob.data.dtype == np.float16 and np.shares_memory(prob.data, w.last_prediction.probabilities)
    prob.visible = True
    viewer.layers["cells mask"].visible = False
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert shot.std() > 0  # the map is drawn, not a blank canvas
