"""Heatmap audit: a flipped CT's coarse attention levels stay near their own size in the plane, cover every
image pixel with the block that covers it, and keep napari's sliders on the image's pixels."""

from __future__ import annotations

import numpy as np
import pytest

from napari_attnseg.inference.prediction import AttentionMap
from napari_attnseg.layers import Placement, attention_help, attention_layer, on_image_grid

# lung1 (48 x 512 x 512, 5 x 0.57 x 0.57 mm) with brain-mri-3d in 3d mode (turned LPS -> RAS): levels 3 and 4 as
# the model returns them (image pixel units); the in-plane axes end in a partial block before the first pixel
LEVELS = {
    "level3": ((30, 37, 37), (1.6, 14.027397260273972, 14.027397260273972), (0.3, -0.5, -0.5)),
    "level4": ((15, 19, 19), (3.2, 28.054794520547944, 28.054794520547944), (1.1, -7.5136986301369575, -7.5136986301369575)),
}
SHAPE = (48, 512, 512)


def _map(name: str) -> AttentionMap:
    shape, scale, translate = LEVELS[name]
    data = np.random.default_rng(0).random(shape).astype(np.float32)
    return AttentionMap(name, 1, data, scale, translate)


@pytest.mark.parametrize("name", sorted(LEVELS))
def test_a_flipped_cts_coarse_levels_are_not_blown_up_to_the_image_pixels(name):
    """Put on the image's pixels (to keep the slider on them), levels 3 and 4 of a flipped CT were float32
    30 x 512 x 512 and 15 x 512 x 512 (47 MB for 0.2 MB of values); each in-plane block is cut in a few parts
    instead. Every image pixel still shows the value of the block that covers it."""
    amap = _map(name)
    out = on_image_grid(amap, SHAPE)
    assert out.data.shape[0] == amap.data.shape[0]
    assert max(out.data.shape[1:]) <= 4 * max(amap.data.shape[1:])  # without the fix: 512
    assert out.data.nbytes < 1_000_000
    for d in (1, 2):
        s, t, m = amap.scale[d], amap.translate[d], amap.data.shape[d]
        s2, t2, m2 = out.scale[d], out.translate[d], out.data.shape[d]
        # the grid stays inside the image's pixel centres (napari's range), and covers its pixels
        assert t2 >= -1e-6 and t2 + (m2 - 1) * s2 <= SHAPE[d] - 0.5 + 1e-6
        assert t2 - s2 / 2 <= 1e-6 and t2 + (m2 - 0.5) * s2 >= SHAPE[d] - 1 - 1e-6
        px = np.arange(SHAPE[d])
        native = np.clip(np.floor((px - t) / s + 0.5).astype(int), 0, m - 1)
        shown = np.clip(np.floor((px - t2) / s2 + 0.5).astype(int), 0, m2 - 1)
        line = [slice(0, 1)] * 3
        line[d] = slice(None)
        np.testing.assert_array_equal(out.data[tuple(line)].ravel()[shown], amap.data[tuple(line)].ravel()[native])


@pytest.mark.gui
def test_the_split_levels_keep_every_slider_on_the_image_pixels(make_napari_viewer):
    """In napari, with the axes rolled so that an in-plane axis is the slider, its positions are the image's
    pixel centres, and each level lies over the image where the model put it (same world position as the
    block it came from)."""
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros(SHAPE, np.int16), name="ct", scale=(5.0, 0.5703125, 0.5703125),
                             translate=(-777.5, -325.0, -146.0))
    where = Placement(tuple(image.scale), tuple(image.translate))
    for name in LEVELS:
        data, kwargs, _ = attention_layer(_map(name), "ct", where, {}, True, SHAPE)
        viewer.add_image(data, **kwargs)
    assert viewer.dims.nsteps == SHAPE
    for d in range(3):
        rng = viewer.dims.range[d]
        assert rng.start == pytest.approx(image.translate[d]) and rng.step == pytest.approx(image.scale[d])
    level4, native = viewer.layers["ct attention level4"], _map("level4")
    z = int(np.floor((3 - native.translate[0]) / native.scale[0] + 0.5))  # the level's plane over image slice 3
    # the centre of native block (i, j) of slice 3 is where that block's value is shown
    for i, j in [(0, 0), (5, 9), (18, 18)]:
        c = np.array([3, native.translate[1] + i * native.scale[1], native.translate[2] + j * native.scale[2]])
        if not (0 <= c[1] <= SHAPE[1] - 1 and 0 <= c[2] <= SHAPE[2] - 1):
            c[1:] = np.clip(c[1:], 0, SHAPE[1] - 1)  # a partial edge block: its part inside the image
        world = image.data_to_world(c)
        k = np.round(level4.world_to_data(world)).astype(int)
        assert level4.data[tuple(k)] == native.data[z, i, j]


def test_a_heatmaps_help_gives_its_block_in_the_images_units():
    """'one value per 0.617 x 5.12 x 5.12 image pixels' alone (brain1, 6.5 mm slices, the model at 2 mm) read badly:
    with the image's pixel size known, the help adds the block's size in its units."""
    amap = AttentionMap("level4", 4, np.zeros((41, 13, 13), np.float32), (0.617, 5.12, 5.12), (0.0, 0.0, 0.0))
    mm = Placement((6.5, 0.78125, 0.78125), (0.0, 0.0, 0.0), units=("mm", "mm", "mm"))
    said = attention_help(amap, [1.0, 16.0], 2, "", mm)
    assert "one value per 0.617 x 5.12 x 5.12 image pixels (4.01 x 4 x 4 mm; shown on the image's slices" in said
    plain = attention_help(amap, [1.0, 16.0], 2, "", Placement((1.0, 1.0, 1.0), (0.0, 0.0, 0.0)))
    assert "image pixels. Colour scale" in plain and "mm" not in plain


def test_a_heatmap_level_removed_by_hand_comes_back_in_its_place(segment_panel, qtbot, tiny_checkpoint):
    """A user removes the middle heatmap and runs again: it came back on top of the layer list (level2, level4,
    level3); it goes back between its neighbours."""
    viewer, w = segment_panel
    viewer.add_image(np.random.default_rng(0).random((70, 90)).astype(np.float32), name="cells")
    w.add_model(tiny_checkpoint(2))
    for remove in (False, True):
        if remove:
            viewer.layers.remove("cells attention level3")
        with qtbot.waitSignal(w.run_done, timeout=60000) as done:
            assert w.run() is not None
        assert done.args == [True], w.messages
        names = [ly.name for ly in viewer.layers if ly.name.startswith("cells attention ")]
        assert names == ["cells attention level2", "cells attention level3", "cells attention level4"]


def test_the_mask_lies_above_its_heatmaps_after_a_run_and_when_a_record_is_reopened(segment_panel, qtbot,
                                                                                      tiny_checkpoint, tmp_path):
    """The finest heatmap is shown at opacity 0.8: added above the mask, it tinted the mask where the model looked
    (on the object being corrected). The probability and heatmaps go below the mask, in the run's order; a record
    reopened in napari is laid out the same way."""
    from napari_attnseg._napari.record_reader import get_prediction_reader

    viewer, w = segment_panel
    viewer.add_image(np.random.default_rng(0).random((70, 90)).astype(np.float32), name="cells")
    w.add_model(tiny_checkpoint(2))
    with qtbot.waitSignal(w.run_done, timeout=60000) as done:
        assert w.run() is not None
    assert done.args == [True], w.messages
    names = [ly.name for ly in viewer.layers]
    assert names == ["cells", "cells probability", "cells attention level2", "cells attention level3",
                     "cells attention level4", "cells mask"]
    import tifffile

    from napari_attnseg.cli import main
    tifffile.imwrite(tmp_path / "cells.tif", np.random.default_rng(1).random((64, 64)).astype(np.float32))
    ckpt = tiny_checkpoint(2)
    assert main(["predict", str(tmp_path / "cells.tif"), "--model", str(ckpt), "--out", str(tmp_path / "o")]) == 0
    layers = get_prediction_reader(str(tmp_path / "o" / "cells_predict.json"))(str(tmp_path / "o" / "cells_predict.json"))
    kinds = [kind for _, _, kind in layers]
    assert kinds[-1] == "labels" and kinds.count("labels") == 1 and kinds[0] == "image"


def test_a_record_without_heatmaps_says_why_when_reopened(tmp_path, tiny_checkpoint, notifications):
    """A record of `attnseg predict` without --attention (the default) reopened in napari showed the mask and no
    heatmap, without a word on why (the heatmaps are what the plugin is for)."""
    import tifffile

    from napari_attnseg._napari.record_reader import get_prediction_reader
    from napari_attnseg.cli import main

    tifffile.imwrite(tmp_path / "cells.tif", np.random.default_rng(1).random((64, 64)).astype(np.float32))
    ckpt = str(tiny_checkpoint(2))
    for out, extra in (("plain", []), ("maps", ["--attention"])):
        assert main(["predict", str(tmp_path / "cells.tif"), "--model", ckpt, "--out", str(tmp_path / out), *extra]) == 0
        record = str(tmp_path / out / "cells_predict.json")
        notifications.clear()
        get_prediction_reader(record)(record)
        said = [str(n.message) for n in notifications if "saved no attention heatmaps" in str(n.message)]
        if out == "plain":
            assert said and "run it again with --attention" in said[0], [str(n.message) for n in notifications]
        else:
            assert not said, said
