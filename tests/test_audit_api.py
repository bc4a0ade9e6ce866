"""Audit of the Python API as a notebook user drives it (README "Python API", help(...)): what the help
texts name is importable, a card given as a dict does not drop what a loaded model needs, and misused
arguments get an InputError naming them instead of a TypeError from numpy."""

from __future__ import annotations

import numpy as np
import pytest

import napari_attnseg as ag
from napari_attnseg import correct
from napari_attnseg.errors import Cancelled, InputError
from napari_attnseg.evaluation import label_mismatch


def test_the_cancel_token_help_predict_names_is_public():
    # help(ag.predict): "cancel: a CancelToken"; it was only in napari_attnseg.inference
    token = ag.CancelToken()
    token.cancel()
    net = ag.create_model("unet", features=(4, 8, 16))
    with pytest.raises(Cancelled):
        ag.predict(net, np.random.default_rng(0).random((40, 50), np.float32), cancel=token, device="cpu")
    assert "CancelToken" in dir(ag)


def test_a_card_dict_changes_only_its_fields_of_a_loaded_models_card(tmp_path):
    # save_model(load_model("brain-mri-3d"), p, card={"name": ...}) wrote a fresh card: no 2 mm spacing (1 mm scans
    # were no longer resampled), no skull stripping, no orientation, the percentile normalisation of microscopy
    brain = ag.load_model("brain-mri-3d", device="cpu")
    path = tmp_path / "my-brain.safetensors"
    ag.save_model(brain, path, card={"name": "my-brain", "description": "renamed"})
    back = ag.load_model(path, device="cpu")
    for key in ("spacing", "brain_extraction", "orientation", "normalization", "tile", "classes"):
        assert getattr(back.card, key) == getattr(brain.card, key), key
    assert (back.card.name, back.card.description) == ("my-brain", "renamed")


@pytest.mark.parametrize("card, field", [
    ({"spacing": [1.0, 1.0, 1.0]}, "spacing"),
    ({"tile": [64, 64, 64]}, "tile"),
    ({"brain_extraction": "yes"}, "brain_extraction"),
    ({"normalization": {"scheme": "foo"}}, "scheme"),
    ({"normalization": {"scheme": "ct", "window": "soft"}}, "window"),
    ({"normalization": {"scheme": "percentile", "lower": 99, "upper": 1}}, "percentiles"),
])
def test_save_model_refuses_card_fields_predict_cannot_use(tmp_path, card, field):
    # they were written, and failed (or were ignored) at every later run: a 'window' of text raised
    # "ValueError: too many values to unpack" from inside the normalisation
    net = ag.create_model("unet", features=(4, 8, 16))
    path = tmp_path / "m.safetensors"
    with pytest.raises(InputError, match=field):
        ag.save_model(net, path, card=card)
    assert not path.exists()


def test_save_model_still_takes_a_valid_card(tmp_path):
    net = ag.create_model("attention_unet", spatial_dims=3, out_channels=3, features=(4, 8, 16))
    card = ag.save_model(net, tmp_path / "m.safetensors", card={"classes": ["bg", "gm", "wm"], "spacing": [2, 2, 2],
                                                                  "normalization": {"scheme": "ct", "window": [-160, 240]}})
    assert card.spacing == [2, 2, 2] and ag.load_model(tmp_path / "m.safetensors").card.classes == ["bg", "gm", "wm"]


@pytest.mark.parametrize("kwargs, key", [({"spatial_dims": "2"}, "spatial_dims"), ({"out_channels": 2.5}, "out_channels"),
                                         ({"in_channels": True}, "in_channels")])
def test_create_model_names_a_size_that_is_not_a_whole_number(kwargs, key):
    # spatial_dims="2" said "unet supports spatial_dims 2, 3, not 2."; out_channels=2.5 "divisible by groups" (torch)
    with pytest.raises(InputError, match=f"{key} must be a whole number"):
        ag.create_model("unet", **kwargs)


def test_correct_helpers_name_a_misused_argument():
    mask = np.zeros((20, 20), np.uint8)
    mask[2:8, 2:8] = 1
    mask[12:18, 12:18] = 2
    before = mask.copy()
    assert np.array_equal(correct.fill_holes(mask, classes=1), correct.fill_holes(mask, classes=[1]))  # one class
    for call, name in [(lambda: correct.keep_component_at(mask, 5), "point"),
                       (lambda: correct.keep_component_at(mask, (np.nan, 3)), "point"),
                       (lambda: correct.remove_small_objects(mask, None), "min_voxels"),
                       (lambda: correct.binary_open(mask, "2"), "radius"),
                       (lambda: correct.binary_close(mask, 1.5), "radius"),
                       (lambda: correct.fill_holes(mask, classes="1"), "classes"),
                       (lambda: correct.interpolate_slices(np.stack([mask] * 5), slices="0,4"), "slices")]:
        with pytest.raises(InputError, match=name):
            call()
    assert np.array_equal(mask, before)
    vol = np.zeros((5, 20, 20), np.uint8)
    vol[0, 5:15, 5:15] = vol[4, 5:15, 5:15] = 1
    assert correct.interpolate_slices(vol, slices=[0, 4])[2].sum() == 100


def test_open_close_on_thick_slices_take_the_spacing():
    # a 3-slice tumour at 5 mm slices and 0.57 mm pixels (as lung1): a ball of voxels of radius 2 opened it to nothing
    tumour = np.zeros((7, 60, 60), np.uint8)
    yy, xx = np.ogrid[:60, :60]
    tumour[2:5][:, (yy - 30) ** 2 + (xx - 30) ** 2 < 12 ** 2] = 1
    spacing = (5.0, 0.5703125, 0.5703125)
    assert correct.binary_open(tumour, 2).sum() == 0  # without a spacing the ball spans 2 slices up and down
    opened = correct.binary_open(tumour, 2, spacing=spacing)
    assert opened[2:5].sum() >= 0.95 * tumour.sum() and not opened[[0, 1, 5, 6]].any()
    assert np.array_equal(correct.binary_close(tumour, 2, spacing=spacing)[[0, 1, 5, 6]], tumour[[0, 1, 5, 6]])
    with pytest.raises(InputError, match="spacing"):
        correct.binary_open(tumour, 1, spacing=(5.0, 0.5))


def test_label_mismatch_takes_the_label_array_and_names_instance_ids():
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 150, (64, 64))  # instance ids, as the nuclei labels.tif
    text = label_mismatch(reference, ["background", "nucleus"])  # was: TypeError (only 0-dimensional arrays...)
    assert "instance" in text and "> 0" in text and len(text) < 400  # was a list of all 149 values
    assert label_mismatch(np.unique(reference), ["background", "nucleus"]) == text
    assert "not class ids" in label_mismatch(rng.random((8, 8)), ["background", "nucleus"])
    assert label_mismatch([0, 1, 2], ["bg", "gm", "wm"]) == ""
    with pytest.raises(InputError, match="classes"):
        label_mismatch([0, 1], "bg,fg")


@pytest.mark.parametrize("option, value, named", [("batch_size", -1, "batch_size"), ("batch_size", 2.5, "batch_size"),
                                                  ("cancel", True, "CancelToken"), ("progress", 5, "progress"),
                                                  ("overlap", "a", "overlap")])
def test_predict_names_a_misused_option_before_it_runs(option, value, named):
    # batch_size=-1: "max() arg is an empty sequence" from the blender; cancel=True / progress=5 failed after setup
    # with AttributeError / TypeError; overlap="a": float()'s message without the option's name
    net = ag.create_model("unet", features=(4, 8, 16))
    with pytest.raises(InputError, match=named):
        ag.predict(net, np.random.default_rng(0).random((40, 50), np.float32), device="cpu", **{option: value})


def test_segment_with_prompts_takes_a_model_name_and_warns_as_predict_does():
    # a name gave "The model 'str' is not promptable" (predict takes names); a NaN or constant image gave a mask
    # of a few pixels with no warning, where predict warns
    from napari_attnseg._paths import samples_dir
    from napari_attnseg.models.registry import bundled_models

    if "nuclei-2d-prompt" not in bundled_models():
        pytest.skip("no bundled promptable model")
    import tifffile

    img = tifffile.imread(samples_dir() / "nuclei2d_image.tif")[:128, :128].astype(np.float32)
    res = ag.segment_with_prompts("nuclei-2d-prompt", img, [[64, 64]], [1], device="cpu")
    assert res.mask.shape == img.shape and not res.warnings
    holed = img.copy()
    holed[60:70, 60:70] = np.nan
    assert any("NaN" in w for w in ag.segment_with_prompts("nuclei-2d-prompt", holed, [[64, 64]], [1]).warnings)
    flat = np.full((96, 96), 7.0, np.float32)
    assert any("constant" in w for w in ag.segment_with_prompts("nuclei-2d-prompt", flat, [[48, 48]], [1]).warnings)
