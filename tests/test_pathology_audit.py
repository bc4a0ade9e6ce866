"""A pathologist's walk through the bright-field loop (audit): slides in the formats they come in, the crops they
cut of them, and the records `attnseg predict` leaves, reopened in napari."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from napari_attnseg.cli import main
from napari_attnseg.data import stains

NUCLEI = Path(__file__).resolve().parents[1] / "resources" / "samples" / "nuclei2d_image.tif"


@pytest.fixture(scope="module")
def ihc():
    from skimage.data import immunohistochemistry

    return immunohistochemistry()


def test_a_crop_filled_with_stained_tissue_is_bright_field(ihc, tmp_path, capsys):
    """A region of interest cut inside the tissue (no glass; DAB-rich, median brightness 0.45 of white) was refused
    as a fluorescence composite ('choose one with --channel K'): 11% of the IHC slide's 256-pixel crops were."""
    crop = ihc[:256, :256]
    assert np.median(crop.mean(axis=-1)) < 0.5 * 255  # darker than the whole slide's rule allowed
    assert stains.is_brightfield(crop)
    assert all(stains.is_brightfield(ihc[y:y + 128, x:x + 128]) for y in range(0, 385, 64) for x in range(0, 385, 64))
    assert stains.is_brightfield(crop.astype(np.uint16) * 16) and stains.is_brightfield(crop / 255.0)
    iio.imwrite(tmp_path / "roi.png", crop)
    assert main(["predict", str(tmp_path / "roi.png"), "--model", "nuclei-2d", "--device", "cpu", "--no-prob",
                 "--out", str(tmp_path / "o")]) == 0
    assert "roi.png: note: a bright-field colour picture" in capsys.readouterr().err
    whole = tmp_path / "whole.png"
    iio.imwrite(whole, ihc)
    assert main(["predict", str(whole), "--model", "nuclei-2d", "--device", "cpu", "--no-prob",
                 "--out", str(tmp_path / "o")]) == 0
    a, b = (tifffile.imread(tmp_path / "o" / f) > 0 for f in ("roi_mask.tif", "whole_mask.tif"))
    b = b[:256, :256]
    assert 2.0 * (a & b).sum() / (a.sum() + b.sum()) > 0.9  # the crop's nuclei are the slide's


def test_fluorescence_composites_stay_refused(ihc):
    image = tifffile.imread(NUCLEI)
    glow = (255 * (image - image.min()) / np.ptp(image)).astype(np.uint8)
    assert not stains.is_brightfield(np.stack([np.zeros_like(glow), glow[::-1], glow], -1))
    # a dense field of cells glowing in two colours: bright, yet one colour black everywhere
    dense = np.clip(glow.astype(np.int32) * 3 + 120, 0, 255).astype(np.uint8)  # (median brightness 0.53)
    assert not stains.is_brightfield(np.stack([dense, dense[::-1], np.zeros_like(dense)], -1))
    # nuclei on black in all three colours (a few dark pixels are allowed, most are not)
    assert not stains.is_brightfield(np.where(glow[..., None] > 60, ihc[:glow.shape[0], :glow.shape[1]], 0))


def test_the_transparent_margin_of_an_rgba_slide_is_no_stain(ihc, tmp_path, capsys):
    """A region exported with a transparent margin (alpha 0, black): its black read as the densest hematoxylin, so
    the margin (6% of the picture) became one nucleus and the percentile normalisation left the tissue's nuclei
    background (Dice 0.0 against the opaque slide); a wider margin made the slide refused as fluorescence."""
    rgba = np.dstack([ihc, np.full(ihc.shape[:2], 255, np.uint8)])
    for margin in (480, 400):  # 6% and 22% of the picture transparent
        rgba[:, margin:] = 0
        h = stains.hematoxylin(rgba)
        assert stains.is_brightfield(rgba) and (h[:, margin:] == 0).all()
        np.testing.assert_allclose(h[:, :margin], stains.hematoxylin(ihc)[:, :margin], atol=1e-6)
    iio.imwrite(tmp_path / "region.png", rgba)
    iio.imwrite(tmp_path / "slide.png", ihc)
    for name in ("region", "slide"):
        assert main(["predict", str(tmp_path / f"{name}.png"), "--model", "nuclei-2d", "--device", "cpu", "--no-prob",
                     "--out", str(tmp_path / "o")]) == 0, capsys.readouterr().err
    region, slide = (tifffile.imread(tmp_path / "o" / f"{n}_mask.tif") > 0 for n in ("region", "slide"))
    assert not region[:, 400:].any()
    a, b = region[:, :400], slide[:, :400]
    assert 2.0 * (a & b).sum() / (a.sum() + b.sum()) > 0.9


def test_a_refused_colour_picture_says_it_was_not_taken_for_a_slide(tmp_path, capsys):
    """The refusal of a fluorescence composite said only "choose one with --channel K": a pathologist whose slide was
    not recognised could not tell why, nor which K is which colour."""
    image = tifffile.imread(NUCLEI)
    glow = (255 * (image - image.min()) / np.ptp(image)).astype(np.uint8)
    iio.imwrite(tmp_path / "fluo.png", np.stack([np.zeros_like(glow), glow[::-1], glow], -1))
    assert main(["predict", str(tmp_path / "fluo.png"), "--model", "nuclei-2d", "--device", "cpu",
                 "--out", str(tmp_path / "o")]) != 0
    err = capsys.readouterr().err
    assert "fluo.png has 3 channels (axes YXS)" in err and "fluorescence composite, not a bright-field" in err
    assert "--channel K (0 to 2, 0 red, 1 green, 2 blue;" in err


def test_a_record_of_one_colour_reopens_on_that_colour(ihc, tmp_path):
    """`attnseg predict slide.png --channel 0` segments the red channel; its record reopened as the colour slide, so
    the Correct tab's export (and Click to fix) took the slide's hematoxylin for a mask made on red."""
    from napari_attnseg.results import record_layers

    iio.imwrite(tmp_path / "slide.png", ihc)
    for out, extra in (("red", ["--channel", "0"]), ("he", [])):
        assert main(["predict", str(tmp_path / "slide.png"), "--model", "nuclei-2d", "--device", "cpu", "--no-prob",
                     "--out", str(tmp_path / out), *extra]) == 0
    (data, kwargs, _), *_ = record_layers(tmp_path / "red" / "slide_predict.json")
    assert not kwargs.get("rgb") and np.array_equal(data, ihc[..., 0]) and kwargs["scale"] == (1.0, 1.0)
    (data, kwargs, _), *_ = record_layers(tmp_path / "he" / "slide_predict.json")  # the slide, as before
    assert kwargs.get("rgb") and np.array_equal(data, ihc)
