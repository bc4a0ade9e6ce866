"""Big colour pictures in napari: the colour work of Run and Export off the GUI thread, and no copies of a slide.

A pathologist's 6000 x 6000 H&E field paused napari 4-6 s at each press: the Correct tab's Export computed the
picture's grey (colour deconvolution) on the GUI thread before its worker started, and the Segment tab did so at every
Run, also when the grey layer it had added was still open. An RGBA picture exported for a model of 4 channels had its
alpha dropped and put back (two copies of the slide). Each test failed before its fix.
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import tifffile
from test_colour_loop import _model

from napari_attnseg.cli import main as cli

DATA = "/work/shared/data/nuclei2d"


def _picture(size: int = 64, dtype=np.uint8) -> np.ndarray:
    """An H&E-like crop of the nuclei image (nuclei purple on pink), in ``dtype`` (uint16: 257 x the uint8 values)."""
    grey = tifffile.imread(f"{DATA}/image.tif")[:size, :size].astype(np.float32)
    g = grey / grey.max()
    rgb = np.stack([255 - 90 * g, 235 - 200 * g, 245 - 60 * g], -1).clip(0, 255).astype(np.uint8)
    return rgb.astype(np.uint16) * 257 if dtype == np.uint16 else rgb


def _labels(size: int = 64) -> np.ndarray:
    return (tifffile.imread(f"{DATA}/labels.tif")[:size, :size] > 0).astype(np.uint8)


def _threads(monkeypatch, module, name: str) -> list:
    """The threads ``module.name`` runs on, from now on."""
    seen, real = [], getattr(module, name)

    def record(*args, **kwargs):
        seen.append(threading.current_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, record)
    return seen


def _export(qtbot, viewer, corr, image: str, info: dict, folder) -> None:
    mask = viewer.add_labels(_labels(), name="mask", metadata={"attnseg": info})
    corr.labels_combo.value, corr.image_combo.value, corr.format_combo.value = mask.name, image, "tiff"
    corr.dataset_edit.line_edit.value = str(folder)
    assert corr.export() is not None
    qtbot.waitUntil(lambda: corr.export_button.enabled, timeout=60000)


# 1. the Correct tab's Export: the picture's grey and colours on its worker ---------------------------------------------


def test_export_computes_a_pictures_grey_on_its_worker(dock, qtbot, tmp_path, monkeypatch):
    """A slide reopened with its nuclei-2d mask: its hematoxylin was computed on the GUI thread before the export's
    worker started (5.7 s on 6000 x 6000); now on the worker, and its grey layer is added as before."""
    from napari_attnseg.cohort import inputs

    viewer, d = dock
    seen = _threads(monkeypatch, inputs, "grey_of_colour")
    viewer.add_image(_picture(), name="slide", rgb=True)
    _export(qtbot, viewer, d.correct, "slide", {"model": "nuclei-2d"}, tmp_path / "ds")
    assert seen and threading.main_thread() not in seen
    grey = viewer.layers["slide (hematoxylin)"]
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert len(manifest["cases"]) == 1 and not manifest.get("colour")
    image = tifffile.imread(tmp_path / "ds" / manifest["cases"][0]["files"]["images"][0])
    np.testing.assert_allclose(image, grey.data, rtol=1e-6)


def test_export_refuses_a_picture_without_a_grey_image_on_its_worker(dock, qtbot, tmp_path, monkeypatch):
    """A fluorescence composite (colours holding different images) with a 1-channel model's mask: refused, saying
    Split RGB, nothing written (the refusal now comes from the worker)."""
    from napari_attnseg._napari import correct_widget

    viewer, d = dock
    said: list[str] = []
    monkeypatch.setattr(correct_widget, "notify_error", said.append)
    g = _picture()[..., 1]
    viewer.add_image(np.stack([g, 255 - g, g // 2], -1), name="slide", rgb=True)
    _export(qtbot, viewer, d.correct, "slide", {"model": "nuclei-2d"}, tmp_path / "ds")
    assert any("Split RGB" in m and "'slide'" in m for m in said), said
    assert not (tmp_path / "ds" / "manifest.json").exists()


def test_export_reads_a_pictures_colours_on_its_worker(dock, qtbot, tmp_path, monkeypatch):
    """A 3-channel model's mask: the picture's colours (its alpha checked, a lazy array read) were made on the GUI
    thread; now on the worker, and the dataset holds the picture's colours."""
    from napari_attnseg.data import alpha

    viewer, d = dock
    seen = _threads(monkeypatch, alpha, "drop_flat_alpha")
    rgb = _picture()
    viewer.add_image(rgb, name="slide", rgb=True)
    _export(qtbot, viewer, d.correct, "slide", {"model": "m3", "checkpoint": str(_model(tmp_path, 3))}, tmp_path / "ds")
    assert seen and threading.main_thread() not in seen
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["colour"] is True
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "ds" / manifest["cases"][0]["files"]["images"][0]), rgb)


@pytest.mark.parametrize("channels", [3, 4])
def test_the_correct_tab_exports_uint16_and_rgba_pictures_as_they_are(dock, qtbot, tmp_path, channels):
    """A (Y, X, 3) uint16 picture for a 3-channel model, an opaque RGBA one for a 4-channel model: the dataset's TIFF
    holds the layer's dtype and values (as attnseg export writes them, below)."""
    viewer, d = dock
    pic = _picture(dtype=np.uint16) if channels == 3 else np.concatenate(
        [_picture(), np.full((64, 64, 1), 255, np.uint8)], -1)
    viewer.add_image(pic, name="slide", rgb=True)
    info = {"model": f"m{channels}", "checkpoint": str(_model(tmp_path, channels))}
    _export(qtbot, viewer, d.correct, "slide", info, tmp_path / "ds")
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    written = tifffile.imread(tmp_path / "ds" / manifest["cases"][0]["files"]["images"][0])
    assert manifest["colour"] is True and written.dtype == pic.dtype
    np.testing.assert_array_equal(written, pic)


def test_an_rgba_picture_for_a_model_of_four_channels_is_not_copied(tmp_path):
    """An opaque RGBA slide for a model of 4: its alpha was dropped (a copy of its colours) and put back (a copy of
    the whole picture) to give back the same array; it is now exported as it is."""
    from napari_attnseg.data.export_colour import colour_layer_export

    rgba = np.concatenate([_picture(), np.full((64, 64, 1), 255, np.uint8)], -1)
    info = {"model": "m4", "checkpoint": str(_model(tmp_path, 4))}
    out = colour_layer_export(rgba, info, 2, "slide.tif")
    np.testing.assert_array_equal(out, rgba)
    assert np.shares_memory(out, rgba)


# 2. the Segment tab: a picture's grey layer -------------------------------------------------------------------------


def test_a_grey_layer_still_open_is_not_computed_again(dock, monkeypatch):
    """Each Run of nuclei-2d on a slide computed its hematoxylin again on the GUI thread (4 s on 6000 x 6000), also
    when the grey layer it added was still open; that layer is now taken as it is."""
    from napari_attnseg._napari._common import grey_layer_of
    from napari_attnseg.cohort import inputs

    viewer, _ = dock
    seen = _threads(monkeypatch, inputs, "grey_of_colour")
    slide = viewer.add_image(_picture(), name="slide", rgb=True)
    first = grey_layer_of(viewer, slide, "nuclei-2d")
    assert grey_layer_of(viewer, slide, "nuclei-2d") is first and len(seen) == 1
    viewer.layers.remove(first)  # (closed: made again)
    assert grey_layer_of(viewer, slide, "nuclei-2d").name == "slide (hematoxylin)" and len(seen) == 2


def test_a_run_given_a_picture_computes_its_grey_on_the_worker(dock, qtbot, monkeypatch):
    """The Segment job given an RGB layer for a model of one channel computes its grey on its worker, adds the grey
    layer and puts the results on it (the mask paired with that layer), as grey_layer_of did on the GUI thread."""
    from napari_attnseg.cohort import inputs

    viewer, d = dock
    seg, seen = d.segment, _threads(monkeypatch, inputs, "grey_of_colour")
    slide = viewer.add_image(_picture(), name="slide", rgb=True)
    seg.image_combo.value, seg.model_combo.value = "slide", "nuclei-2d"
    with qtbot.waitSignal(seg.run_done, timeout=120000) as done:
        seg._start_job(slide, seg._current_model(), {})
    assert done.args[0] and seen and threading.main_thread() not in seen
    grey, mask = viewer.layers["slide (hematoxylin)"], viewer.layers["slide (hematoxylin) mask"]
    assert mask.data.shape == (64, 64) and mask.metadata["attnseg_source_uid"] == grey.unique_id


def test_run_on_a_slide_makes_its_grey_off_the_gui_thread(dock, qtbot, monkeypatch):
    """Run on an RGB slide with nuclei-2d: its grey (colour deconvolution, 4 s of a 6000 x 6000 slide) was made by
    the Segment tab on the GUI thread before the run started; the run's worker makes it now, and the results go to the
    grey layer as before (pressed again, the open grey layer is taken as it is)."""
    from napari_attnseg.cohort import inputs

    viewer, d = dock
    seg, seen = d.segment, _threads(monkeypatch, inputs, "grey_of_colour")
    viewer.add_image(_picture(), name="slide", rgb=True)
    seg.image_combo.value, seg.model_combo.value = "slide", "nuclei-2d"
    with qtbot.waitSignal(seg.run_done, timeout=120000) as done:
        seg.run()
    assert done.args[0] and seen and threading.main_thread() not in seen
    grey, mask = viewer.layers["slide (hematoxylin)"], viewer.layers["slide (hematoxylin) mask"]
    assert mask.metadata["attnseg_source_uid"] == grey.unique_id
    seen.clear()
    seg.image_combo.value = "slide"
    with qtbot.waitSignal(seg.run_done, timeout=120000) as done:
        seg.run()
    assert done.args[0] and not seen and not any(ly.name.startswith("slide (hematoxylin) [") for ly in viewer.layers)


# 3. uint16 colours and RGBA models end to end (attnseg export, finetune) ----------------------------------------------


@pytest.mark.parametrize("channels", [3, 4])
def test_uint16_and_rgba_pictures_go_through_export_and_finetune(tmp_path, capsys, channels):
    """A (Y, X, 3) uint16 picture for a 3-channel model, an opaque RGBA one for a 4-channel model: exported with their
    dtype and values, and attnseg finetune --model <that model> runs on the dataset."""
    from napari_attnseg.checkpoint import read_card
    from napari_attnseg.data.io import write_image

    pic = _picture(dtype=np.uint16) if channels == 3 else np.concatenate(
        [_picture(), np.full((64, 64, 1), 255, np.uint8)], -1)
    tifffile.imwrite(tmp_path / "pic.tif", pic, photometric="rgb", extrasamples=[2] if channels == 4 else None)
    model = _model(tmp_path, channels)
    info = {"model": f"m{channels}", "weights_sha256": read_card(model).weights_sha256, "checkpoint": str(model)}
    write_image(tmp_path / "mask.tif", _labels(), None, spacing=(1.0, 1.0), model_info=info)
    ds = tmp_path / "ds"
    assert cli(["export", "--image", str(tmp_path / "pic.tif"), "--labels", str(tmp_path / "mask.tif"),
                "--dataset", str(ds)]) == 0, capsys.readouterr().err
    manifest = json.loads((ds / "manifest.json").read_text())
    written = tifffile.imread(ds / manifest["cases"][0]["files"]["images"][0])
    assert written.dtype == pic.dtype
    np.testing.assert_array_equal(written, pic)
    assert cli(["finetune", str(ds), "--model", str(model), "--out", str(tmp_path / "ft"), "--epochs", "1",
                "--iters-per-epoch", "2", "--patch", "32,32", "--batch", "2"]) == 0, capsys.readouterr().err
    assert (tmp_path / "ft" / "best.safetensors").is_file()


# 4. review of the Run-on-the-worker change -------------------------------------------------------------------------


def test_another_slide_of_the_same_name_gets_its_own_grey_layer(dock, qtbot):
    """Slide A run, closed (its grey layer left open), slide B of the same name and size run: B's mask was put on A's
    grey layer (reused by name), and the Correct tab would export A's image with B's mask."""
    from napari_attnseg.cohort.inputs import grey_of_colour

    viewer, d = dock
    seg = d.segment
    a, b = _picture(128)[:64, :64].copy(), _picture(128)[64:, 64:].copy()
    viewer.add_image(a, name="slide", rgb=True)
    seg.image_combo.value, seg.model_combo.value = "slide", "nuclei-2d"
    with qtbot.waitSignal(seg.run_done, timeout=120000):
        seg.run()
    viewer.layers.remove("slide")
    viewer.add_image(b, name="slide", rgb=True)
    seg.image_combo.value = "slide"
    with qtbot.waitSignal(seg.run_done, timeout=120000) as done:
        seg.run()
    assert done.args[0]
    source = next(ly for ly in viewer.layers if ly.unique_id == seg._last_uid)
    np.testing.assert_allclose(source.data, grey_of_colour(b)[0])


def test_an_image_chosen_during_the_run_stays_chosen(dock, qtbot):
    """The user picks another image while a slide's run goes on (the next run's): the run's end switched the Image
    back to the slide's grey layer."""
    viewer, d = dock
    seg = d.segment
    viewer.add_image(_picture(), name="slide", rgb=True)
    viewer.add_image(tifffile.imread(f"{DATA}/image.tif")[:64, :64], name="other")
    seg.image_combo.value, seg.model_combo.value = "slide", "nuclei-2d"
    with qtbot.waitSignal(seg.run_done, timeout=120000):
        seg.run()
        seg.image_combo.value = "other"
    assert seg.image_combo.value == "other"


def test_an_opaque_rgba_picture_joins_a_dataset_of_rgb_pictures(dock, qtbot, tmp_path):
    """A dataset of RGB pictures (a colour model's export), then an opaque RGBA picture with a hand-drawn mask: the
    Correct tab exported its 4 samples and was refused ("... channel(s)"); attnseg export takes it with 3."""
    viewer, d = dock
    viewer.add_image(_picture(), name="slide", rgb=True)
    _export(qtbot, viewer, d.correct, "slide", {"model": "m3", "checkpoint": str(_model(tmp_path, 3))}, tmp_path / "ds")
    rgba = np.concatenate([_picture()[::-1], np.full((64, 64, 1), 255, np.uint8)], -1)
    viewer.add_image(rgba, name="slide2", rgb=True)
    _export(qtbot, viewer, d.correct, "slide2", {}, tmp_path / "ds")
    qtbot.waitUntil(lambda: len(json.loads((tmp_path / "ds" / "manifest.json").read_text())["cases"]) == 2,
                    timeout=30000)
    assert json.loads((tmp_path / "ds" / "manifest.json").read_text())["channel_names"] == ["R", "G", "B"]


def test_demo_refuses_a_click_model(capsys, tmp_path):
    """demo --model nuclei-2d-prompt printed Dice 0.0000 and exited 0: a click model segments nothing unclicked."""
    assert cli(["demo", "--model", "nuclei-2d-prompt", "--screenshot", str(tmp_path / "x.png"), "--quit"]) == 1
    assert "is a click (promptable) model" in capsys.readouterr().err
