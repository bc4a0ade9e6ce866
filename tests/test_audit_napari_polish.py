"""napari defects a review found: the Segment tab gave a model of colours (3 channels) an RGB layer's grey, and a
model of 4 (trained on opaque RGBA pictures) never got its alpha back, where ``attnseg predict`` gives them; a DICOM
SEG opened with no image open was called contours with ROIs (an RTSTRUCT's words); *Save mask...* proposed
'<layer>.nii.gz' for a mask opened from a SEG, not the SEG. Real nuclei crop and lung CT crop, tiny models, a real
viewer."""

from __future__ import annotations

import numpy as np
import pytest
import test_audit_dicom_labels as base
import tifffile
from PIL import Image
from test_audit_dicom_labels import SHAPE, ct_series, seg
from test_audit_inputs_more import _colours, _model, _nuclei
from test_audit_segment_tab import panel  # noqa: F401  (a fixture: the Segment panel, its messages collected)
from test_napari_seg_save import SEG_FILTER, _click_save, _open_series

from napari_attnseg.cli import main
from napari_attnseg.errors import InputError


@pytest.fixture(scope="module")
def lung():
    """test_audit_dicom_labels' crop: (CT crop, labels crop, RAS affine, LPS affine, spacing)."""
    return base.lung.__wrapped__()


# 1. the Segment tab gives a model of colours the picture's colours (and its alpha back), as attnseg predict --------




@pytest.mark.gui
@pytest.mark.parametrize("channels", [3, 4])
def test_the_segment_tab_gives_a_model_of_colours_what_predict_gives_it(panel, qtbot, tmp_path, channels):  # noqa: F811
    """An RGB picture for a model of 3 channels, an opaque RGBA one for a model of 4 (its alpha dropped when read, put
    back for the model): the tab's mask is predict's (was: the tab made the picture's grey layer, which the model
    refused: 'takes 3 channels')."""
    viewer, w = panel
    grey, _ = _nuclei(64)
    picture = _colours(grey) if channels == 3 else np.dstack([_colours(grey), np.full_like(grey, 255)])
    Image.fromarray(picture, "RGB" if channels == 3 else "RGBA").save(tmp_path / "slide.png")
    model = _model(tmp_path, channels)
    assert main(["predict", str(tmp_path / "slide.png"), "--model", str(model), "--out", str(tmp_path / "out")]) == 0
    expected, prob = (tifffile.imread(tmp_path / "out" / f"slide_{k}.tif") for k in ("mask", "prob"))
    assert np.ptp(prob) > 1e-3  # (the untrained model's mask is empty: its probability tells the inputs apart)

    viewer.add_image(picture, name="slide", rgb=True)  # (as napari's own reader opens the PNG)
    w.image_combo.value, w.model_combo.value = "slide", w.add_model(model)
    with qtbot.waitSignal(w.run_done, timeout=120000) as done:
        w.run()
    assert done.args[0], w.messages
    np.testing.assert_array_equal(np.asarray(viewer.layers["slide mask"].data), expected)
    np.testing.assert_allclose(np.asarray(viewer.layers["slide probability"].data, np.float32), prob, atol=1e-3)
    assert not [ly.name for ly in viewer.layers if ly.name.startswith("slide (")]  # (no grey layer made)
    if channels == 4:
        assert any("the model reads 4 channels (RGBA, as it was trained), so it is given the colours and that alpha"
                   in m for m in w.messages), w.messages


@pytest.mark.gui
def test_an_rgb_layer_without_alpha_for_a_model_of_4_channels_is_refused_naming_the_layer(panel, tmp_path):  # noqa: F811
    """No alpha to put back: refused as predict refuses it, naming the layer (no grey layer made, nothing run)."""
    viewer, w = panel
    grey, _ = _nuclei(48)
    viewer.add_image(_colours(grey), name="slide", rgb=True)
    w.image_combo.value, w.model_combo.value = "slide", w.add_model(_model(tmp_path, 4))
    assert w.run() is None
    assert any(m.startswith("notify_error: Layer 'slide' is an RGB picture without alpha") for m in w.messages), \
        w.messages
    assert [ly.name for ly in viewer.layers] == ["slide"]


# 2. a SEG opened with no image open: its segments, not an RTSTRUCT's contours ---------------------------------------


def test_a_seg_opened_with_no_image_open_names_its_segments(tmp_path, lung):
    from napari_attnseg._napari.dicom_labels_reader import read_dicom_labels

    cts = ct_series(lung, tmp_path / "CT")
    sg = seg(cts, tmp_path / "SEG.dcm", {"GTV-1": lung[1]})
    with pytest.raises(InputError) as refused:
        read_dicom_labels(str(sg))
    text = str(refused.value)
    assert text.startswith("SEG.dcm (a DICOM SEG) holds segments of the CT/MR series it was drawn on")
    assert "its segments open as a Labels layer on that image" in text
    assert "contours" not in text and "ROIs" not in text


# 3. Save mask... for a mask opened from a SEG proposes that SEG ------------------------------------------------------


@pytest.mark.gui
def test_save_mask_proposes_the_seg_a_mask_was_opened_from(make_napari_viewer, monkeypatch, lung, tmp_path):
    """A SEG this plugin wrote, reopened and corrected: proposed itself, as a SEG, and replaced. Another tool's SEG:
    '<name>-2.dcm' beside it, as a SEG; answering the SEG itself is refused, the file unchanged (was for both:
    '<layer>.nii.gz' beside the series, as NIfTI)."""
    folder = tmp_path / "CT"
    cts = ct_series(lung, folder)
    viewer, panel, image = _open_series(make_napari_viewer, monkeypatch, folder)  # noqa: F811
    drawn = np.zeros(SHAPE, np.uint8)
    drawn[2:5, 40:70, 50:90] = 1
    mask = viewer.add_labels(drawn, name="drawn", scale=image.scale, translate=image.translate)
    panel.labels_combo.value, panel.image_combo.value = mask.name, image.name
    mine = tmp_path / "mine.dcm"
    _click_save(panel, monkeypatch, mine)
    assert panel.save_label.value.startswith(f"Saved drawn to {mine}"), panel.save_label.value
    viewer.layers.remove(mask)

    viewer._open_or_raise_error([str(mine)])
    reopened = viewer.layers["CT mine"]
    reopened.data_setitem((np.array([1]), np.array([1]), np.array([1])), 1)
    panel.labels_combo.value, panel.image_combo.value = reopened.name, image.name
    asked = _click_save(panel, monkeypatch, mine)
    assert (asked[0][2], asked[0][4]) == (str(mine), SEG_FILTER)
    assert panel.save_label.value.startswith(f"Saved CT mine to {mine} as a DICOM SEG"), panel.save_label.value

    theirs = seg(cts, tmp_path / "SEG.dcm", {"GTV-1": lung[1]})  # (highdicom's, another tool's)
    before = theirs.read_bytes()
    viewer._open_or_raise_error([str(theirs)])
    panel.labels_combo.value, panel.image_combo.value = "CT SEG", image.name
    asked = _click_save(panel, monkeypatch, theirs)
    assert (asked[0][2], asked[0][4]) == (str(tmp_path / "SEG-2.dcm"), SEG_FILTER)
    assert panel.save_label.value.startswith(f"Not saved: {theirs} already exists and is not a mask this plugin saved")
    assert theirs.read_bytes() == before
