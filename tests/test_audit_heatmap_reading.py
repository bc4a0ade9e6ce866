"""Heatmap reading audit: what a clinician reads off an attention heatmap layer (its status-bar note) matches what
the layer shows: the range of the values on screen, a level too even to show a pattern on the fixed 0-1 scale,
and the colour scale after the user changed it (also through a re-run and napari's mode changes)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_attnseg.inference.prediction import AttentionMap, Prediction
from napari_attnseg.layers import Placement, attention_help, prediction_layers


def _prediction(maps: list[AttentionMap], shape: tuple[int, ...]) -> Prediction:
    return Prediction(labels=np.zeros(shape, np.uint8), probabilities=None, attention=maps,
                      classes=["background", "foreground"], device="cpu", precision="fp32")


def _heatmaps(pred: Prediction) -> dict[str, tuple[np.ndarray, dict]]:
    layers = prediction_layers(None, pred, "vol", Placement((1.0,) * 3, (0.0,) * 3), meta={"arch": "attention_unet"})
    return {k["name"]: (d, k) for d, k, kind in layers if " attention " in k["name"]}


def test_a_heatmaps_help_gives_the_range_of_the_values_it_shows():
    """A coarse level whose first block along z is centred outside the image (brain1 with brain-mri-3d: level4's edge
    slice) is not shown; its value was still in the note: "here 0.41-0.92" over a layer whose values were
    0.41-0.88. A clinician looking for the 0.92 found nothing. The note gives the range of the values shown."""
    fine = AttentionMap("level2", 2, np.full((8, 4, 4), 0.3, np.float32), (1.0, 2.0, 2.0), (0.0, 0.5, 0.5))
    coarse = np.full((3, 2, 2), 0.4, np.float32)
    coarse[1, 0, 0], coarse[0] = 0.5, 0.95  # block 0 covers z -4.5..-0.5: outside the 8 slices
    pred = _prediction([fine, AttentionMap("level3", 3, coarse, (4.0, 4.0, 4.0), (-2.5, 1.5, 1.5))], (8, 8, 8))
    data, kwargs = _heatmaps(pred)["vol attention level3"]
    assert float(data.max()) == pytest.approx(0.5)  # the block outside the image is not shown
    note = kwargs["metadata"]["attnseg"]["help"]
    assert "here 0.40-0.50." in note, note  # (before: here 0.40-0.95)


def test_a_nearly_even_level_says_so_and_how_to_see_its_pattern():
    """On the fixed 0-1 scale (levels comparable) a level whose values span 0.45-0.55 shows as one even veil: its
    pattern is there but cannot be seen, and nothing said so. Its note says it and gives the contrast limits that
    show the pattern; a level with contrast does not get that sentence."""
    rng = np.random.default_rng(0)
    even = AttentionMap("level2", 2, (0.45 + 0.1 * rng.random((8, 8))).astype(np.float32), (2.0, 2.0), (0.5, 0.5))
    wide = AttentionMap("level3", 3, (0.1 + 0.8 * rng.random((4, 4))).astype(np.float32), (4.0, 4.0), (1.5, 1.5))
    lo, hi = float(even.data.min()), float(even.data.max())
    note = attention_help(even, [4.0, 16.0], 2)
    assert "vary little" in note and f"contrast limits to {lo:.2f}-{hi:.2f}" in note, note
    assert "no longer comparable" in note
    assert "vary little" not in attention_help(wide, [4.0, 16.0], 2)
    # the same through the layers a run makes
    layers = prediction_layers(None, _prediction([even, wide], (16, 16)), "cells", Placement((1.0, 1.0), (0.0, 0.0)))
    notes = {k["name"]: k["metadata"]["attnseg"]["help"] for _, k, kind in layers if " attention " in k["name"]}
    assert "vary little" in notes["cells attention level2"] and "vary little" not in notes["cells attention level3"]


@pytest.mark.gui
def test_a_heatmaps_help_follows_its_display_settings_through_a_rerun_and_mode_changes(segment_panel, qtbot,
                                                                                      tiny_checkpoint):
    """A clinician stretches a heatmap's contrast (0.3-0.7) and picks another colormap to read it: the status bar
    kept saying "Colour scale 0-1 (inferno, transparent at 0)", and a re-run, which keeps those settings, wrote
    it again. napari's transform mode (key 2) and back replaced the note with "use <2> for transform" until the
    next run. The note says the scale the layer is shown with, and stays."""
    viewer, w = segment_panel
    viewer.add_image(np.random.default_rng(0).random((64, 64)).astype(np.float32), name="cells")
    w.add_model(tiny_checkpoint(2))

    def run():
        with qtbot.waitSignal(w.run_done, timeout=60000):
            w.run()
        qtbot.waitUntil(lambda: not w._showing, timeout=20000)

    run()
    heat = viewer.layers["cells attention level2"]
    viewer.layers.selection.active = heat
    assert "Colour scale 0-1 (inferno, transparent at 0)" in viewer.help
    heat.contrast_limits = (0.3, 0.7)
    assert "Colour scale set to 0.30-0.70 (inferno, transparent at 0, your setting)" in viewer.help, viewer.help
    heat.colormap = "viridis"
    assert "Colour scale set to 0.30-0.70 (viridis, your setting)" in heat.help and "0-1 (inferno" not in heat.help
    run()  # updated in place: the user's settings stay, and so does what the note says of them
    assert viewer.layers["cells attention level2"] is heat and tuple(heat.contrast_limits) == pytest.approx((0.3, 0.7))
    viewer.layers.selection.active = heat
    assert "Colour scale set to 0.30-0.70 (viridis, your setting)" in viewer.help, viewer.help
    heat.mode = "transform"
    heat.mode = "pan_zoom"
    assert heat.help.startswith("attention level2:") and viewer.help == heat.help, heat.help
    heat.contrast_limits, heat.colormap = (0.0, 1.0), viewer.layers["cells attention level3"].colormap
    assert "Colour scale 0-1 (inferno, transparent at 0)" in heat.help, heat.help  # back to the default: said so


def test_the_prompt_attention_layer_says_what_it_shows(nuclei_click_panel, qtbot):
    """'<image> prompt attention' (Click to fix) had no note: selected, the status bar said only "use <2> for
    transform" while the Segment run's heatmaps say what they show."""
    viewer, corr, _mask, ref = nuclei_click_panel
    pm = corr.prompt
    label = int(np.bincount(ref.ravel())[1:].argmax()) + 1
    pm.click(tuple(np.argwhere(ref == label).mean(0)))
    qtbot.waitUntil(lambda: not pm.busy and not pm.pending, timeout=60000)
    layer = viewer.layers["cells prompt attention"]
    assert layer.help.startswith("prompt attention") and "as your clicks moved them" in layer.help, layer.help
    assert "values here" in layer.help


def test_heatmaps_reopened_from_a_predict_record_say_what_they_show(make_napari_viewer, tmp_path):
    """File > Open on `<stem>_predict.json` brought the attention maps back without their status-bar note (a reader's
    layer data cannot set it): selected, a reopened map said only "use <2> for transform"."""
    import tifffile

    from napari_attnseg._paths import samples_dir
    from napari_attnseg.cli import main

    image = tifffile.imread(samples_dir() / "nuclei2d_image.tif")[:96, :96]
    tifffile.imwrite(tmp_path / "crop.tif", image)
    assert main(["predict", str(tmp_path / "crop.tif"), "--model", "nuclei-2d", "--out", str(tmp_path / "rec"),
                 "--attention", "--device", "cpu"]) == 0
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / "rec" / "crop_predict.json"), plugin="napari-attnseg")
    maps = [ly for ly in viewer.layers if "attention" in ly.name]
    assert maps
    for layer in maps:
        assert layer.help.startswith("attention ") and "values here" in layer.help, (layer.name, layer.help)


def test_a_flat_level_is_not_told_to_set_its_contrast_limits_to_one_value():
    """An untrained model's near-constant map (0.5201-0.5238) was told to "set its contrast limits to 0.52-0.52", which
    shows nothing; the limits get the digits that tell its ends apart, and a map of one value says there is no
    pattern."""
    almost = AttentionMap("level2", 2, np.linspace(0.5201, 0.5238, 64, dtype=np.float32).reshape(8, 8), (2.0, 2.0),
                          (0.5, 0.5))
    note = attention_help(almost, [4.0, 16.0], 2)
    assert "contrast limits to 0.520-0.524" in note, note
    one = AttentionMap("level2", 2, np.full((8, 8), 0.52, np.float32), (2.0, 2.0), (0.5, 0.5))
    note = attention_help(one, [4.0, 16.0], 2)
    assert "one value (0.52) everywhere" in note and "contrast limits to" not in note, note
