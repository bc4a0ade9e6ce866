"""napari users who place a layer by hand after the plugin placed its own (audit "viewer life", second part): the click
markers stayed where the image was when Click to fix was ticked (a scale typed later: the green dots drawn at twice the
distance); a click into a mask that no longer lay on its image (the image's scale typed after Segment) was written
where it showed somewhere else on the mask; a reopened dock's Correct tab did not propose an export that finished
after the reopen; a time-lapse's calibration hint spoke of planes 1 apart; and an export of a time-lapse dropped its
micron unit."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from test_napari_prompt_events import _press_release

pytestmark = pytest.mark.gui


def _centre(ref) -> tuple[float, float]:
    from scipy import ndimage as ndi

    target = [i for i in np.unique(ref[30:-30, 30:-30]) if i][0]
    return tuple(float(c) for c in ndi.center_of_mass(ref == target))


def _wait(qtbot, pm) -> None:
    qtbot.waitUntil(lambda: not pm.busy and not pm.pending, timeout=60000)


def test_the_click_markers_follow_a_scale_translate_or_rotate_set_later(nuclei_click_panel, qtbot):
    """``image.scale = (0.5, 0.5)`` after ticking the mode: the prompts layer kept scale 1, its dots drawn where the
    click was not (the click itself landed right)."""
    viewer, corr, mask, ref = nuclei_click_panel
    image, pm = viewer.layers["cells"], corr.prompt
    for layer in (image, mask):
        layer.scale, layer.translate = (0.5, 0.5), (10.0, -4.0)
    assert tuple(pm.points_layer.scale) == (0.5, 0.5) and tuple(pm.points_layer.translate) == (10.0, -4.0)
    world = tuple(image.data_to_world(_centre(ref)))
    viewer.layers.selection.active = pm.points_layer
    _press_release(viewer, world)
    _wait(qtbot, pm)
    assert "voxels changed" in pm.status.value, pm.status.value
    np.testing.assert_allclose(pm.points_layer.data_to_world(pm.points_layer.data[0]), world, atol=1e-6)
    for layer in (image, mask):  # napari's rotate (an affine): the dots turn with the image
        layer.rotate = 30
    np.testing.assert_allclose(pm.points_layer.data_to_world(pm.points_layer.data[0]),
                               image.data_to_world(pm.points_layer.data[0]), atol=1e-6)
    image.affine = np.diag([2.0, 1.0, 1.0])
    np.testing.assert_allclose(pm.points_layer.data_to_world(pm.points_layer.data[0]),
                               image.data_to_world(pm.points_layer.data[0]), atol=1e-6)


def test_a_click_into_a_mask_placed_elsewhere_than_its_image_is_refused(nuclei_click_panel, qtbot, notifications):
    """The image's scale typed after Segment (the mask kept scale 1): the click was written at the image's pixel, which
    the mask shows at another place."""
    viewer, corr, mask, ref = nuclei_click_panel
    image, pm = viewer.layers["cells"], corr.prompt
    image.scale = (0.5, 0.5)
    viewer.layers.selection.active = pm.points_layer
    _press_release(viewer, tuple(image.data_to_world(_centre(ref))))
    _wait(qtbot, pm)
    assert not mask.data.any() and not len(pm.clicks) and not len(pm.points_layer.data)
    said = pm.status.value
    assert "cells mask" in said and "'cells'" in said and "scale" in said and "(0.5, 0.5)" in said, said
    assert any("cells mask" in str(n.message) for n in notifications)
    mask.scale = (0.5, 0.5)  # what the message says to do: the click goes in
    _press_release(viewer, tuple(image.data_to_world(_centre(ref))))
    _wait(qtbot, pm)
    assert mask.data.any() and "voxels changed" in pm.status.value, pm.status.value


def _export_held(monkeypatch, viewer, tmp_path):
    """The first dock's export to ``tmp_path / 'ds'`` started and held until the returned event is set, that dock closed
    (its x): (worker, event)."""
    import threading

    from napari_attnseg.data import export

    go, real = threading.Event(), export.export_case
    monkeypatch.setattr(export, "export_case", lambda *a, **k: go.wait(60) and real(*a, **k))
    _, first = viewer.window.add_plugin_dock_widget("napari-attnseg", "Attention segmentation")
    image = viewer.add_image(np.random.default_rng(0).random((32, 32)).astype(np.float32), name="cells")
    mask = viewer.add_labels((image.data > 0.5).astype(np.uint8), name="cells mask")
    c = first.correct
    c.labels_combo.value, c.image_combo.value = mask.name, image.name
    c.dataset_edit.value, c.format_combo.value = str(tmp_path / "ds"), "tiff"
    worker = c.export()
    assert worker is not None
    viewer.window.remove_dock_widget(first)
    return worker, go


def test_a_reopened_dock_proposes_an_export_that_finished_after_the_reopen(make_napari_viewer, qtbot, tmp_path,
                                                                          monkeypatch):
    """Export, close the dock (its x) while the export runs, reopen it: its Correct tab read the last export from the
    settings when it was built, before the export finished, and kept an empty dataset folder (the Fine-tune tab
    followed the export)."""
    viewer = make_napari_viewer()
    worker, go = _export_held(monkeypatch, viewer, tmp_path)
    _, dock = viewer.window.add_plugin_dock_widget("napari-attnseg", "Attention segmentation")
    assert str(dock.correct.dataset_edit.line_edit.value).strip() == ""  # (the export is still running)
    with qtbot.waitSignal(worker.finished, timeout=60000):
        go.set()
    qtbot.wait(50)
    assert str(dock.correct.dataset_edit.line_edit.value) == str(tmp_path / "ds")
    assert dock.correct.format_combo.value == "tiff"
    assert "case_0000" in dock.correct.case_edit.native.placeholderText()
    dock.show_tab("Fine-tune")
    assert str(dock.finetune.dataset_edit.value) == str(tmp_path / "ds")


def test_a_proposed_dataset_follows_a_later_export_elsewhere_but_a_typed_one_stays(make_napari_viewer, qtbot,
                                                                                   tmp_path, monkeypatch):
    """The Correct tab proposed yesterday's dataset; an export to another folder finished in the closed dock: the
    new folder is proposed. A folder typed in the field is never replaced."""
    from napari_attnseg.data.export import export_case
    from napari_attnseg.settings import remember_export

    rec = export_case(np.zeros((16, 16), np.float32), np.ones((16, 16), np.uint8), tmp_path / "old", "nnunet")
    assert remember_export(tmp_path / "old", "nnunet", rec.case_id, "x.nii.gz")
    viewer = make_napari_viewer()
    worker, go = _export_held(monkeypatch, viewer, tmp_path)
    _, dock = viewer.window.add_plugin_dock_widget("napari-attnseg", "Attention segmentation")
    _, typed = viewer.window.add_plugin_dock_widget("napari-attnseg", "Correct and export")
    assert str(dock.correct.dataset_edit.line_edit.value) == str(tmp_path / "old")
    typed.dataset_edit.value = str(tmp_path / "mine")
    with qtbot.waitSignal(worker.finished, timeout=60000):
        go.set()
    qtbot.wait(50)
    assert str(dock.correct.dataset_edit.line_edit.value) == str(tmp_path / "ds")
    assert dock.correct.format_combo.value == "tiff"
    assert str(typed.dataset_edit.line_edit.value) == str(tmp_path / "mine")


def test_the_calibration_hint_of_a_time_lapse_speaks_of_frames(make_napari_viewer, tmp_path):
    """An ImageJ time-lapse (t, y, x, 0.5 um pixels) opened by napari's reader: the hint said '1 x 0.5 x 0.5 micron ...
    the planes 1 apart' and proposed no units."""
    from napari_attnseg._napari.segment_widget import calibration_hint

    stack = np.zeros((4, 32, 32), np.uint16)
    tifffile.imwrite(tmp_path / "movie.tif", stack, imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": "TYX", "unit": "micron", "finterval": 30})
    viewer = make_napari_viewer()
    layer = viewer.open(str(tmp_path / "movie.tif"), plugin="napari")[0]
    hint = calibration_hint(layer)
    assert "planes" not in hint and "1 x 0.5 x 0.5" not in hint, hint
    assert "0.5 x 0.5 micron" in hint and "frames" in hint, hint
    assert "axis_labels = ('t', 'y', 'x')" in hint and "units = ('pixel', 'um', 'um')" in hint, hint
    assert ".scale = (1.0, 0.5, 0.5)" in hint, hint
    exec(hint.split("Window > Console): ")[1].split(", then choose")[0], {"viewer": viewer})  # the console line works
    assert tuple(layer.scale) == (1.0, 0.5, 0.5) and tuple(str(u) for u in layer.units)[1:] == ("micrometer",) * 2
    assert calibration_hint(layer) == ""


def _export_movie(dock, qtbot, tmp_path, **placement) -> list:
    """A (3, 32, 32) time-lapse at 0.5 um and its mask exported as TIFF from the Correct tab; the image and labels
    files read back."""
    from napari_attnseg.data import read_image

    viewer, d = dock
    image = viewer.add_image(np.random.default_rng(0).random((3, 32, 32)).astype(np.float32), name="movie",
                             scale=(1.0, 0.5, 0.5), units=("pixel", "um", "um"), **placement)
    mask = viewer.add_labels((image.data > 0.5).astype(np.uint8), name="movie mask", scale=image.scale,
                             units=image.units, **placement)
    c = d.correct
    c.labels_combo.value, c.image_combo.value = mask.name, image.name
    c.mark_all()
    c.dataset_edit.value, c.format_combo.value = str(tmp_path / "ds"), "tiff"
    worker = c.export()
    with qtbot.waitSignal(worker.finished, timeout=60000):
        pass
    return [read_image(tmp_path / "ds" / kind / "case_0000.tif") for kind in ("images", "labels")]


def test_the_export_of_a_time_lapse_keeps_its_micron_unit(dock, qtbot, tmp_path):
    """A time-lapse layer in ('pixel', 'um', 'um') exported as TIFF: no unit was passed (any 'pixel' dropped them all),
    so Fiji read the exported pixel size 0.5 without a unit."""
    for again in _export_movie(dock, qtbot, tmp_path):
        assert again.spacing[1:] == pytest.approx((0.5, 0.5)) and again.meta.get("unit") == "micron", again.meta


def test_the_export_of_a_time_lapse_keeps_its_time_axis(dock, qtbot, tmp_path):
    """A (t, y, x) layer exported as TIFF from the Correct tab: the files said ZYX, so Fiji showed the frames as
    z-slices (`attnseg export` already kept them)."""
    for again in _export_movie(dock, qtbot, tmp_path, axis_labels=("t", "y", "x")):
        assert again.meta.get("axes") == "TYX", again.meta
