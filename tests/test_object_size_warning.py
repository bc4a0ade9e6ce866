"""Objects far from the model's size (audit: the nuclei image at 2x / 4x magnification, Dice 0.923 / 0.786
without a word; --diameter auto: 0.944): a run without a diameter measures the objects it found and warns,
naming the sizes and the remedy; the click model's size estimate (prompts.size) and its status pieces."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi


def _sample(scale: float = 1.0, part=(slice(0, 256), slice(256, 512))):
    from napari_attnseg._paths import samples_dir
    from napari_attnseg.data import read_image

    image = read_image(samples_dir() / "nuclei2d_image.tif").data[part].astype(np.float32)
    return image if scale == 1.0 else ndi.zoom(image, scale, order=1)


@pytest.fixture(scope="module")
def nuclei():
    from napari_attnseg import load_model
    from napari_attnseg.models.registry import bundled_models

    if "nuclei-2d" not in bundled_models():
        pytest.skip("no bundled nuclei model")
    return load_model("nuclei-2d", device="cpu")


def _size_warnings(pred):
    from napari_attnseg.inference.object_size import SIZE_WARNING

    return [w for w in pred.warnings if SIZE_WARNING in w]


def test_objects_twice_the_model_size_are_flagged_with_the_remedy(nuclei):
    from napari_attnseg import predict
    from napari_attnseg.inference.object_size import FOUND_KEY

    pred = predict(nuclei, _sample(2.0), device="cpu", return_probabilities=False)
    (warning,) = _size_warnings(pred)
    assert "--diameter auto" in warning and "Estimate the size and run" in warning and "Object diameter" in warning
    assert "25 px" in warning and "times bigger" in warning, warning
    assert 40 < pred.params[FOUND_KEY] < 60  # the nuclei are about 50 px at 2x
    half = predict(nuclei, _sample(0.5, (slice(None), slice(None))), device="cpu", return_probabilities=False)
    assert any("times smaller" in w for w in _size_warnings(half)), half.warnings


def test_the_native_scale_and_a_diameter_run_are_not_flagged(nuclei):
    from napari_attnseg import predict
    from napari_attnseg._paths import samples_dir
    from napari_attnseg.data import read_image
    from napari_attnseg.inference.object_size import FOUND_KEY

    sample = read_image(samples_dir() / "nuclei2d_image.tif").data  # the shipped sample, as it is
    pred = predict(nuclei, sample, device="cpu", return_probabilities=False)
    assert not _size_warnings(pred) and 22 < pred.params[FOUND_KEY] < 29, pred.warnings
    given = predict(nuclei, _sample(2.0), device="cpu", diameter=50, return_probabilities=False)
    assert not _size_warnings(given) and FOUND_KEY not in given.params, given.warnings


def test_a_scan_model_is_not_told_about_pixel_sizes(nuclei):
    """A model fine-tuned on CT keeps nuclei-2d's object_diameter in pixels, but its card has a spacing (the run
    resamples in mm): its false positives "234 px wide" are no reason to advise --diameter auto."""
    import copy

    from napari_attnseg import predict

    scan = copy.deepcopy(nuclei)
    scan.card.spacing = [1.0, 1.0]
    pred = predict(scan, _sample(2.0), device="cpu", return_probabilities=False)
    assert not _size_warnings(pred), pred.warnings


def test_the_check_needs_enough_objects_and_a_card_size():
    from types import SimpleNamespace

    from napari_attnseg.inference.object_size import FOUND_KEY, object_size_check
    from napari_attnseg.inference.prediction import Prediction

    labels = np.zeros((400, 400), np.uint8)
    yy, xx = np.mgrid[:400, :400]
    centres = [(60 + 90 * i, 60 + 90 * j) for i in range(4) for j in range(4)]
    for y, x in centres:
        labels[(yy - y) ** 2 + (xx - x) ** 2 < 30 ** 2] = 1  # 60 px discs
    card = SimpleNamespace(object_diameter=25.0, name="m")

    def run(lab, card, **kw):
        pred = Prediction(labels=lab, probabilities=None, attention=[], classes=["bg", "fg"], device="cpu",
                          precision="fp32", timings={}, params={"mode": "2d"}, warnings=[])
        object_size_check(pred, card, **kw)
        return pred

    assert len(_size_warnings(run(labels, card))) == 1
    assert not _size_warnings(run(labels, card, skip=True))  # another warning speaks for this image
    assert not _size_warnings(run(labels, SimpleNamespace(object_diameter=None, name="m")))
    few = labels.copy()
    few[200:] = 0
    few[:, 200:] = 0  # 4 objects: too few to judge
    assert not _size_warnings(run(few, card)) and run(few, card).params[FOUND_KEY] > 50


def test_size_pieces_of_the_click_model():
    from napari_attnseg.prompts.size import GIVEN, object_note, to_use, typical_diameter, write_report

    assert typical_diameter({"diameter_used": 50.0}, None) == (50.0, GIVEN)
    assert typical_diameter({"object_diameter_found": 48.5}, None)[0] == 48.5
    labels = np.zeros((300, 300), np.uint8)
    for i in range(5):
        labels[20 + 55 * i: 60 + 55 * i, 100:140] = 1  # five 40x40 squares: 45 px discs
    assert 44 < typical_diameter(None, labels)[0] < 46
    assert typical_diameter(None, labels[:120])[0] is None  # two objects: no estimate
    assert to_use((26.0, "est"), 25.0) is None and to_use((48.0, "est"), 25.0) == 48.0
    assert to_use((26.0, GIVEN), 25.0) == 26.0  # a size somebody gave is always used
    small = np.zeros((100, 100), bool)
    small[50:53, 50:53] = True
    assert "far smaller" in object_note(small, 48.0, 25.0) and object_note(labels[:60] > 0, 48.0, 25.0) == ""
    region = np.ones((100, 100), bool)  # the object under the click: a region, not a neighbour
    box = (slice(0, 100), slice(0, 100))
    rep = write_report(small, region, box, 0, 0, True)
    assert rep["big"] and rep["inside"] and rep["kept"] == 100 * 100 - 9
    pair = np.zeros((100, 100), bool)
    pair[40:60, 40:70] = True
    half = pair.copy()
    half[:, 55:] = False
    rep = write_report(half, pair, box, 0, 0, True)
    assert not rep["big"] and rep["kept"] == 20 * 15
