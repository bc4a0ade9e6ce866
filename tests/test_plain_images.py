"""PNG / JPEG / BMP inputs (the core reader, `attnseg predict`, cohorts), grey images saved as RGB, and the
Segment tab's refusal of an RGB layer (its advice, and ``run_done(False)`` so that a script waiting goes on)."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from napari_attnseg.cli import main
from napari_attnseg.data import image_format, read_image, stem
from napari_attnseg.errors import InputError

NUCLEI = Path(__file__).resolve().parents[1] / "resources" / "samples" / "nuclei2d_image.tif"


@pytest.fixture(scope="module")
def grey():
    """A real nuclei crop as 8-bit grey (what a PNG export of a fluorescence image holds)."""
    from napari_attnseg._paths import samples_dir

    plane = np.asarray(read_image(samples_dir() / "nuclei2d_image.tif").data[:96, :128], np.float64)
    return np.round(plane / plane.max() * 255).astype(np.uint8)


def _predict(*argv) -> int:
    return main(["predict", *map(str, argv), "--model", "nuclei-2d", "--device", "cpu"])


def test_pictures_read_as_2d_grey_or_colour(tmp_path, grey):
    from skimage import io as skio

    skio.imsave(tmp_path / "g.png", grey, check_contrast=False)
    iio.imwrite(tmp_path / "g16.png", grey.astype(np.uint16) * 200)
    iio.imwrite(tmp_path / "g.bmp", grey)
    iio.imwrite(tmp_path / "c.jpeg", np.stack([grey, grey[::-1], grey[:, ::-1]], -1), quality=95)
    iio.imwrite(tmp_path / "a.png", np.dstack([grey, np.full_like(grey, 255)]))  # grey + alpha
    iio.imwrite(tmp_path / "rgba.png", np.stack([grey] * 3 + [np.full_like(grey, 200)], -1))
    for name, dtype in (("g.png", np.uint8), ("g16.png", np.uint16), ("g.bmp", np.uint8), ("a.png", np.uint8)):
        vol = read_image(tmp_path / name)
        assert vol.data.shape == grey.shape and vol.data.dtype == dtype and vol.spacing == (1.0, 1.0), name
        assert vol.meta["axes"] == "YX" and vol.meta["format"] == "tiff"  # what it is written as
    np.testing.assert_array_equal(read_image(tmp_path / "g.png").data, grey)
    np.testing.assert_array_equal(read_image(tmp_path / "g16.png").data, grey.astype(np.uint16) * 200)
    colour = read_image(tmp_path / "c.jpeg")
    assert colour.data.shape == (*grey.shape, 3) and colour.meta["axes"] == "YXS"
    assert colour.meta["file_format"] == "jpeg"
    assert read_image(tmp_path / "rgba.png").data.shape == (*grey.shape, 3)  # its alpha, 200 throughout, is dropped
    assert image_format(tmp_path / "g.png") == "plain" and stem(tmp_path / "c.jpeg") == "c"
    iio.imwrite(tmp_path / "cmyk.jpg", np.stack([grey] * 4, -1), plugin="pillow", mode="CMYK")
    with pytest.raises(InputError, match="CMYK JPEG"):  # not RGBA: its 4th sample is black, not alpha
        read_image(tmp_path / "cmyk.jpg")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(InputError, match=r"bad\.png is not a readable PNG"):
        read_image(tmp_path / "bad.png")


def test_predict_segments_a_png_and_writes_tiff_like_for_the_same_tiff(tmp_path, grey, capsys):
    iio.imwrite(tmp_path / "png8.png", grey)
    tifffile.imwrite(tmp_path / "same.tif", grey)
    assert _predict(tmp_path / "png8.png", tmp_path / "same.tif", "--out", tmp_path / "o") == 0, \
        capsys.readouterr().err
    out = tmp_path / "o"
    assert {"png8_mask.tif", "png8_prob.tif", "png8_predict.json"} <= {p.name for p in out.iterdir()}
    mask = tifffile.imread(out / "png8_mask.tif")
    assert mask.shape == grey.shape and mask.max() > 0
    np.testing.assert_array_equal(mask, tifffile.imread(out / "same_mask.tif"))
    from napari_attnseg.results import record_layers  # the record reopens, the PNG as its image

    layers = record_layers(out / "png8_predict.json")
    assert layers[0][0].shape == grey.shape and any(kind == "labels" for _, _, kind in layers)


def test_a_folder_of_pngs_is_a_cohort(tmp_path, grey, capsys):
    src = tmp_path / "pics"
    src.mkdir()
    iio.imwrite(src / "one.png", grey)
    iio.imwrite(src / "two.jpg", grey[::-1], quality=95)
    iio.imwrite(src / "one_mask.png", (grey > 128).astype(np.uint8))  # a user's reference: not a case
    iio.imwrite(src / "three.png", np.stack([grey] * 3, -1))  # grey saved as RGB: the summary keeps the note
    assert _predict(src, "--out", tmp_path / "o") == 0, capsys.readouterr().err
    names = {p.name for p in (tmp_path / "o").iterdir()}
    assert {"one_mask.tif", "two_mask.tif", "three_mask.tif"} <= names and "one_mask_mask.tif" not in names
    import csv

    with open(tmp_path / "o" / "cohort_summary.csv", newline="") as f:
        rows = {r["case"]: r for r in csv.DictReader(f)}
    assert "grey image saved as RGB" in rows["three"]["warnings"] and "RGB" not in rows["one"]["warnings"]


def test_grey_saved_as_rgb_is_read_as_grey_with_a_note(tmp_path, grey, capsys):
    rgb = np.stack([grey] * 3, -1)
    iio.imwrite(tmp_path / "grey.png", grey)
    iio.imwrite(tmp_path / "rgb.png", rgb)
    iio.imwrite(tmp_path / "rgba.png", np.dstack([rgb, np.full_like(grey, 255)]))
    tifffile.imwrite(tmp_path / "rgbtif.tif", rgb, photometric="rgb")
    assert _predict(tmp_path / "grey.png", "--out", tmp_path / "g") == 0
    expected = tifffile.imread(tmp_path / "g" / "grey_mask.tif")
    capsys.readouterr()
    for name in ("rgb.png", "rgba.png", "rgbtif.tif"):
        assert _predict(tmp_path / name, "--out", tmp_path / "o") == 0, capsys.readouterr().err
        err = capsys.readouterr().err
        notes = [line for line in err.splitlines() if "note:" in line]
        assert len(notes) == 1 and name in notes[0] and "grey" in notes[0], err
        assert ("alpha dropped" in notes[0]) == (name == "rgba.png")  # (its opaque alpha is dropped when read, said)
        mask = tifffile.imread(tmp_path / "o" / f"{stem(name)}_mask.tif")
        np.testing.assert_array_equal(mask, expected)
    # one stain saved in its colour (DAPI in blue, red and green 0): that colour is the grey image
    zero = np.zeros_like(grey)
    iio.imwrite(tmp_path / "dapi.png", np.stack([zero, zero, grey], -1))
    assert _predict(tmp_path / "dapi.png", "--out", tmp_path / "o") == 0
    assert "only blue varies" in capsys.readouterr().err
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "o" / "dapi_mask.tif"), expected)


def test_colour_rgb_is_still_refused_with_the_channel_advice(tmp_path, grey, capsys):
    colour = np.stack([grey, grey[::-1], grey[:, ::-1]], -1)
    iio.imwrite(tmp_path / "colour.png", colour)
    tifffile.imwrite(tmp_path / "colour.tif", colour, photometric="rgb")
    for name in ("colour.png", "colour.tif"):
        assert _predict(tmp_path / name, "--out", tmp_path / "o") != 0
        err = capsys.readouterr().err
        assert f"{name} has 3 channels (axes YXS)" in err and "--channel K" in err and "note:" not in err
    assert _predict(tmp_path / "colour.png", "--out", tmp_path / "o", "--channel", "1") == 0
    assert tifffile.imread(tmp_path / "o" / "colour_mask.tif").shape == grey.shape


@pytest.mark.gui
def test_an_rgb_layer_is_refused_with_napari_advice_and_run_done_false(make_napari_viewer, qtbot, monkeypatch,
                                                                         tiny_checkpoint):
    from napari_attnseg._napari import _common, job_segment
    from napari_attnseg._napari import segment_widget as sw

    messages = []
    monkeypatch.setattr(sw, "notify_error", messages.append)
    monkeypatch.setattr(job_segment, "notify_error", messages.append)  # (a picture's grey is made on the run's worker)
    monkeypatch.setattr(_common, "show_error", messages.append)
    viewer = make_napari_viewer()
    w = sw.SegmentWidget(viewer)
    with qtbot.waitSignal(w.run_done, timeout=2000) as done:  # no image layer
        assert w.run() is None
    assert done.args == [False]
    grey = np.random.default_rng(0).integers(0, 255, (30, 30), dtype=np.uint8)
    viewer.add_image(np.stack([grey, grey[::-1], grey[:, ::-1]], -1), name="rgb_blue", rgb=True)  # real colours
    w.add_model(tiny_checkpoint(2))
    with qtbot.waitSignal(w.run_done, timeout=30000) as done:
        w.run()
    assert done.args == [False]
    qtbot.waitUntil(lambda: w.run_button.enabled, timeout=10000)
    assert "'rgb_blue' is RGB" in messages[-1] and "Split RGB" in messages[-1] and "right-click" in messages[-1].lower()
    assert [ly.name for ly in viewer.layers] == ["rgb_blue"]
    # the advice works: Split RGB makes grey layers, and one of them runs
    from napari.layers.utils.stack_utils import split_rgb

    for layer in split_rgb(viewer.layers["rgb_blue"]):
        viewer.add_layer(layer)
    w.image_combo.value = next(ly.name for ly in viewer.layers if ly.name != "rgb_blue")
    w.model_combo.value = "nuclei-2d"  # a model with an object size: a bad diameter is a refusal too
    w.diameter_edit.value = "-3"
    with qtbot.waitSignal(w.run_done, timeout=2000) as done:
        assert w.run() is None
    assert done.args == [False] and "Object diameter" in messages[-1]


@pytest.mark.gui
def test_one_stain_saved_as_rgb_is_segmented_through_its_grey_layer(make_napari_viewer, qtbot, monkeypatch):
    """DAPI nuclei exported as a blue RGB picture (red and green 0): the Segment tab adds the blue channel as a
    grey layer, segments it like the grey image, and the results (and so corrections, export) belong to it."""
    from napari_attnseg._napari import _common
    from napari_attnseg._napari import segment_widget as sw

    infos = []
    monkeypatch.setattr(_common, "show_info", infos.append)
    image = tifffile.imread(NUCLEI)[:128, :128]
    image = (255 * (image - image.min()) / np.ptp(image)).astype(np.uint8)
    viewer = make_napari_viewer()
    viewer.add_image(np.stack([np.zeros_like(image), np.zeros_like(image), image], -1), name="dapi", rgb=True)
    w = sw.SegmentWidget(viewer)
    w.model_combo.value = "nuclei-2d"
    with qtbot.waitSignal(w.run_done, timeout=60000) as done:
        w.run()
    assert done.args == [True]
    assert w.image_combo.value == "dapi (blue)" and np.array_equal(viewer.layers["dapi (blue)"].data, image)
    assert any("only blue varies" in m and "dapi (blue)" in m for m in infos), infos
    mask = next(ly for ly in viewer.layers if ly.name.startswith("dapi (blue)") and ly.name.endswith("mask"))
    assert mask.data.shape == image.shape and (mask.data > 0).mean() > 0.05
    with qtbot.waitSignal(w.run_done, timeout=60000):  # a second run reuses the grey layer
        w.image_combo.value = "dapi"
        w.run()
    assert [ly.name for ly in viewer.layers].count("dapi (blue)") == 1


@pytest.mark.gui
def test_a_channel_stack_opened_by_napari_is_not_segmented_as_slices(make_napari_viewer, qtbot, monkeypatch,
                                                                     tmp_path):
    """An ImageJ hyperstack (axes CYX: cytoplasm, nuclei) opened with napari's own reader is a (2, y, x) layer
    without its axes; the audit's run called 49 cytoplasm blobs nuclei without a word. Refused, with the way on
    (Split Stack), and the channel layer it makes runs."""
    from napari.layers.utils.stack_utils import stack_to_images

    from napari_attnseg._napari import segment_widget as sw

    messages = []
    monkeypatch.setattr(sw, "notify_error", messages.append)
    nuclei = tifffile.imread(NUCLEI)[:96, :96]
    path = tmp_path / "hyperstack.tif"
    tifffile.imwrite(path, np.stack([nuclei[::-1], nuclei]), imagej=True, metadata={"axes": "CYX"})
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari")
    layer = viewer.layers[-1]
    assert layer.data.shape == (2, 96, 96)
    w = sw.SegmentWidget(viewer)
    w.model_combo.value = "nuclei-2d"
    with qtbot.waitSignal(w.run_done, timeout=2000) as done:
        assert w.run() is None
    assert done.args == [False] and "2 channels" in messages[-1] and "Split Stack" in messages[-1]
    for part in stack_to_images(layer, axis=0):
        viewer.add_layer(part)
    w.image_combo.value = viewer.layers[-1].name
    with qtbot.waitSignal(w.run_done, timeout=60000) as done:
        assert w.run() is not None
    assert done.args == [True]
    # a z-stack saved the same way (axes ZYX) is a volume: it runs
    tifffile.imwrite(tmp_path / "zstack.tif", np.stack([nuclei, nuclei]), imagej=True, metadata={"axes": "ZYX"})
    viewer.open(str(tmp_path / "zstack.tif"), plugin="napari")
    w.image_combo.value = viewer.layers[-1].name
    with qtbot.waitSignal(w.run_done, timeout=60000) as done:
        assert w.run() is not None
    assert done.args == [True]
