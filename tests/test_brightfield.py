"""Bright-field colour pictures (H&E, IHC): their hematoxylin is what `attnseg predict`, `attnseg export`,
cohorts and the Segment tab segment, one choice for all (a pathologist's slide was refused with "--channel K",
and every colour of it segments the wrong thing: the red channel of the H&E rendering below scores Dice 0.04)."""

from __future__ import annotations

import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from napari_attnseg.cli import main
from napari_attnseg.data import read_image, stains

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_brightfield import render_he  # noqa: E402

NUCLEI = Path(__file__).resolve().parents[1] / "resources" / "samples" / "nuclei2d_image.tif"
LABELS = NUCLEI.with_name("nuclei2d_labels.tif")


@pytest.fixture(scope="module")
def ihc():
    from skimage.data import immunohistochemistry

    return immunohistochemistry()  # a real hematoxylin-DAB slide (shipped with scikit-image)


def _dice(a, b) -> float:
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def test_hematoxylin_is_ruifrok_deconvolution_by_blocks_and_at_any_bit_depth(ihc, monkeypatch):
    from skimage.color import rgb2hed

    h = stains.hematoxylin(ihc)
    assert h.dtype == np.float32 and h.shape == ihc.shape[:2] and h.min() >= 0
    # skimage's H channel is the same optical density over log10(1e6) = 6
    np.testing.assert_allclose(h / 6.0, rgb2hed(ihc)[..., 0], atol=1e-6)
    monkeypatch.setattr(stains, "_BLOCK", 1000)  # a few rows at a time: the same values
    np.testing.assert_array_equal(stains.hematoxylin(ihc), h)
    # a 12-bit camera's picture in uint16: optical densities against its own white, not 65535
    twelve = ihc.astype(np.uint16) * 16
    assert np.abs(stains.hematoxylin(twelve) - h).max() < 0.02
    # channels first (an OME/ImageJ S axis in front)
    np.testing.assert_allclose(stains.hematoxylin(np.moveaxis(ihc, -1, 0), ax=0), h, atol=1e-6)


def test_only_bright_field_pictures_are_taken_for_stains(ihc):
    from napari_attnseg.cohort.inputs import grey_of_colour

    assert stains.is_brightfield(ihc)
    image = tifffile.imread(NUCLEI)[:128, :128]
    glow = (255 * (image - image.min()) / np.ptp(image)).astype(np.uint8)
    composite = np.stack([np.zeros_like(glow), glow[::-1], glow], -1)  # two stains glowing on black
    assert not stains.is_brightfield(composite) and grey_of_colour(composite) is None
    grey, k, note = grey_of_colour(np.stack([glow] * 3, -1))  # a grey picture stays its grey
    assert k == 0 and np.array_equal(grey, glow) and "identical" in note
    grey, k, note = grey_of_colour(ihc)
    assert k == "hematoxylin" and np.array_equal(grey, stains.hematoxylin(ihc)) and "bright-field" in note
    assert not stains.is_brightfield(np.zeros((4, 4, 2), np.uint8))  # not a colour picture at all
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3)).astype(np.uint8)
    assert not stains.is_brightfield(noise)  # random colours: they do not vary together as stains do


def test_predict_segments_the_nuclei_of_an_he_slide(tmp_path, capsys):
    """The nuclei sample rendered as H&E (module bench_brightfield): nuclei-2d on its hematoxylin scores as on
    the fluorescence it was trained on (right half, held out: 0.94); the red channel, a user's likely pick
    before, scores nearly nothing."""
    ref = tifffile.imread(LABELS) > 0
    tifffile.imwrite(tmp_path / "he.tif", render_he(tifffile.imread(NUCLEI)), photometric="rgb")
    argv = ["predict", str(tmp_path / "he.tif"), "--model", "nuclei-2d", "--device", "cpu", "--no-prob"]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert "he.tif: note: a bright-field colour picture (H&E, IHC): its hematoxylin" in err and "--channel K" in err
    mask = tifffile.imread(tmp_path / "o" / "he_mask.tif")
    assert mask.shape == ref.shape and _dice(mask[:, 256:], ref[:, 256:]) > 0.9
    assert main([*argv, "--out", str(tmp_path / "red"), "--channel", "0"]) == 0  # one colour, on request
    assert _dice(tifffile.imread(tmp_path / "red" / "he_mask.tif")[:, 256:], ref[:, 256:]) < 0.3


def test_export_of_a_slide_holds_the_grey_image_the_model_saw(tmp_path, ihc, capsys):
    iio.imwrite(tmp_path / "ihc.png", ihc)
    assert main(["predict", str(tmp_path / "ihc.png"), "--model", "nuclei-2d", "--device", "cpu", "--no-prob",
                 "--out", str(tmp_path / "o")]) == 0
    assert main(["export", "--image", str(tmp_path / "ihc.png"), "--labels", str(tmp_path / "o" / "ihc_mask.tif"),
                 "--dataset", str(tmp_path / "ds"), "--format", "tiff"]) == 0
    assert "ihc.png: a bright-field colour picture" in capsys.readouterr().err
    image = read_image(tmp_path / "ds" / "images" / "case_0000.tif").data
    np.testing.assert_array_equal(image, stains.hematoxylin(ihc))
    # a fluorescence composite has no one grey image: refused, naming the file, before anything is written
    glow = np.asarray(ihc[..., 2] < 128, np.uint8) * 200
    iio.imwrite(tmp_path / "two.png", np.stack([glow, glow[::-1], np.zeros_like(glow)], -1))
    assert main(["export", "--image", str(tmp_path / "two.png"), "--labels", str(tmp_path / "o" / "ihc_mask.tif"),
                 "--dataset", str(tmp_path / "ds2"), "--format", "tiff"]) != 0
    assert "two.png is an RGB picture whose colours hold different images" in capsys.readouterr().err
    assert not (tmp_path / "ds2").exists()


@pytest.mark.gui
def test_segment_tab_segments_a_slide_through_its_hematoxylin_layer(make_napari_viewer, qtbot, monkeypatch, ihc):
    from napari_attnseg._napari import _common
    from napari_attnseg._napari import segment_widget as sw

    infos = []
    monkeypatch.setattr(_common, "show_info", infos.append)
    viewer = make_napari_viewer()
    viewer.add_image(ihc, name="slide", rgb=True)
    w = sw.SegmentWidget(viewer)
    w.model_combo.value = "nuclei-2d"
    with qtbot.waitSignal(w.run_done, timeout=60000) as done:
        w.run()
    assert done.args == [True]
    assert w.image_combo.value == "slide (hematoxylin)"
    np.testing.assert_array_equal(viewer.layers["slide (hematoxylin)"].data, stains.hematoxylin(ihc))
    assert any("hematoxylin" in m and "Split RGB" in m for m in infos), infos
    mask = next(ly for ly in viewer.layers if ly.name.startswith("slide (hematoxylin)") and ly.name.endswith("mask"))
    assert mask.data.shape == ihc.shape[:2] and 0.2 < (mask.data > 0).mean() < 0.6


@pytest.mark.gui
def test_click_mode_on_a_slide_clicks_on_its_hematoxylin(make_napari_viewer, qtbot, notifications, ihc):
    """Ticking Click to fix with the slide chosen had warned "invert the image first (in Python...)" and refused every
    click with "No Labels layer"; now the clicks go to the slide's hematoxylin layer and its mask."""
    from napari_attnseg._napari.correct_widget import CorrectWidget
    from napari_attnseg.models.registry import bundled_models

    if "nuclei-2d-prompt" not in bundled_models():
        pytest.skip("no bundled promptable model")
    viewer = make_napari_viewer()
    viewer.add_image(ihc, name="slide", rgb=True)
    corr = CorrectWidget(viewer)
    corr.prompt.model_combo.value = "nuclei-2d-prompt"
    corr.prompt.enable_box.value = True
    assert corr.prompt.enable_box.value and corr.image_combo.value == "slide (hematoxylin)"
    assert not any("invert" in str(n.message) for n in notifications)
    pm = corr.prompt
    pm.click((300, 100))  # a stroma nucleus
    qtbot.waitUntil(lambda: not pm.busy, timeout=60000)
    mask = viewer.layers["slide (hematoxylin) mask"]
    assert 100 < int((mask.data > 0).sum()) < 1500 and mask.data[300, 100] > 0, pm.status.value


@pytest.mark.gui
def test_a_reopened_slide_record_exports_the_grey_image_it_was_segmented_on(make_napari_viewer, qtbot, tmp_path, ihc):
    from napari_attnseg._napari.correct_widget import CorrectWidget
    from napari_attnseg.results import record_layers

    iio.imwrite(tmp_path / "ihc.png", ihc)
    assert main(["predict", str(tmp_path / "ihc.png"), "--model", "nuclei-2d", "--device", "cpu", "--no-prob",
                 "--out", str(tmp_path / "o")]) == 0
    viewer = make_napari_viewer()
    for data, kwargs, kind in record_layers(tmp_path / "o" / "ihc_predict.json"):
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    corr = CorrectWidget(viewer)
    corr.image_combo.value, corr.labels_combo.value = "ihc", "ihc mask"
    corr.dataset_edit.value = str(tmp_path / "ds")
    worker = corr.export()
    assert worker is not None
    qtbot.waitUntil(lambda: (tmp_path / "ds" / "manifest.json").exists() and corr.export_button.enabled, timeout=30000)
    (image_file,), (label_file,) = (sorted((tmp_path / "ds").glob(f"{d}/*")) for d in ("imagesTr", "labelsTr"))
    np.testing.assert_array_equal(read_image(image_file).data, stains.hematoxylin(ihc))
    np.testing.assert_array_equal(read_image(label_file).data, viewer.layers["ihc mask"].data)


def test_an_opaque_black_margin_is_no_stain(tmp_path, ihc, capsys):
    """Whole-slide exports fill the unscanned area with opaque black: read as the densest hematoxylin (OD 6), it
    made the margin one nucleus and the real nuclei background (tissue Dice 0.0 against the slide without it)."""
    margin = ihc.copy()
    margin[:, 480:] = 0
    for name, picture in (("plain.png", ihc), ("margin.png", margin)):
        iio.imwrite(tmp_path / name, picture)
        assert main(["predict", str(tmp_path / name), "--model", "nuclei-2d", "--device", "cpu", "--no-prob",
                     "--out", str(tmp_path / "o")]) == 0
    plain, got = (tifffile.imread(tmp_path / "o" / f"{n}_mask.tif") > 0 for n in ("plain", "margin"))
    assert not got[:, 484:].any()
    assert _dice(got[:, :470], plain[:, :470]) > 0.9


def test_a_one_stain_or_grey_jpeg_reads_as_that_stain_despite_its_colour_noise(tmp_path, ihc, capsys):
    """JPEG leaves the "empty" colours of a DAPI-in-blue picture at 0-8 and a grey picture's colours 1-2 apart;
    both were refused ("colours hold different images") while the README says they read as grey."""
    grey = tifffile.imread(NUCLEI)
    grey = (255 * (grey - grey.min()) / np.ptp(grey)).astype(np.uint8)
    blue = np.zeros(grey.shape + (3,), np.uint8)
    blue[..., 2] = grey
    iio.imwrite(tmp_path / "dapi_blue.jpg", blue, quality=85)
    iio.imwrite(tmp_path / "grey.jpg", np.repeat(grey[..., None], 3, -1), quality=85)
    decoded = iio.imread(tmp_path / "dapi_blue.jpg")
    assert 0 < decoded[..., :2].max() <= 10  # the noise the picture really has
    assert stains.grey_sample(decoded)[0] == 2
    assert stains.grey_sample(iio.imread(tmp_path / "grey.jpg"))[0] == 0
    assert stains.grey_sample(ihc) is None  # a real slide's colours still carry different images
    out = tmp_path / "pred"
    assert main(["predict", str(tmp_path / "dapi_blue.jpg"), "--model", "nuclei-2d", "--out", str(out)]) == 0
    assert "only blue varies" in capsys.readouterr().err
    mask = tifffile.imread(out / "dapi_blue_mask.tif")
    assert _dice(mask > 0, tifffile.imread(LABELS) > 0) > 0.85
