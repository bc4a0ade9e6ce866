"""Follow-ups of the layer, layout and user-model audits in the panels (a real viewer): the user models folder is
listed in the Segment and Fine-tune tabs, a second run cannot start while one runs, an RGB layer is preset to a
2D model, a 3D pyramid layer can be chosen, and the Fine-tune panel docked alone has its tooltips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.gui


@pytest.fixture()
def folder(tmp_path, monkeypatch):
    where = tmp_path / "my-models"
    monkeypatch.setenv("ATTNSEG_MODELS_DIR", str(where))
    where.mkdir()
    return where


def _save(path, dims=2, name="mine"):
    from napari_attnseg import create_model, save_model
    from napari_attnseg.checkpoint import ModelCard

    torch.manual_seed(0)
    model = create_model("attention_unet", spatial_dims=dims, features=[4, 8, 16, 32])
    save_model(model, path, ModelCard(arch="", config={}, name=name, description=f"{name}: a user's model",
                                      tile=[32] * dims))


def test_the_user_models_folder_is_listed_in_the_segment_and_finetune_tabs(make_napari_viewer, folder):
    from napari_attnseg._napari.finetune_widget import FinetuneWidget
    from napari_attnseg._napari.segment_widget import SegmentWidget

    _save(folder / "my-nuclei.safetensors")
    (folder / "round1").mkdir()
    _save(folder / "round1" / "best.safetensors", name="nuclei-2d")  # a fine-tuning run's folder
    viewer = make_napari_viewer()
    seg = SegmentWidget(viewer)
    assert {"my-nuclei", "round1"} <= set(seg.model_names())
    assert seg._descriptions["my-nuclei"] == "mine: a user's model"  # the card's description
    assert seg.model_entry("round1") == "round1"  # loaded by name (load_model finds it in the folder)
    ft = FinetuneWidget(viewer)
    assert {"my-nuclei", "round1"} <= set(ft._paths)
    assert ft.dataset_edit.tooltip and ft.run_button.tooltip  # docked alone, it has its tooltips too


def test_a_second_run_cannot_start_while_one_runs(make_napari_viewer, qtbot, monkeypatch):
    from napari_attnseg._napari import segment_widget as sw

    said = []
    monkeypatch.setattr(sw, "notify_info", said.append)
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    viewer.add_image(rng.random((256, 256)).astype(np.float32), name="img")
    w = sw.SegmentWidget(viewer)
    w.model_combo.value = "nuclei-2d"
    with qtbot.waitSignal(w.run_done, timeout=120000):
        first = w.run()
        assert first is not None
        assert not w.estimate_button.enabled and not w.run_button.enabled
        assert w.estimate_and_run() is None  # "Estimate the size and run" stayed clickable: a second run at once
        assert any("already running" in m for m in said)
    assert w.run_button.enabled and w.estimate_button.enabled


def test_rgb_and_3d_pyramid_layers_are_preset_sensibly(make_napari_viewer):
    from napari_attnseg._napari.model_choice import layer_kind, model_for_layer

    viewer = make_napari_viewer()
    rgb = viewer.add_image(np.zeros((64, 64, 3), np.uint8), rgb=True, name="rgb")
    models = {"brain-mri-3d": "brain-mri-3d", "nuclei-2d": "nuclei-2d"}
    assert model_for_layer(models, None, rgb) == "nuclei-2d"  # napari's ndim leaves out the colour axis (was 3D)
    volume = np.zeros((16, 64, 64), np.int16) - 1000
    pyramid = viewer.add_image([volume, volume[:, ::2, ::2]], multiscale=True, name="pyr")
    layer_kind(pyramid)  # raised TypeError (a pyramid's data cannot be sliced whole)


def test_replacing_a_mask_opened_from_a_file_is_asked_in_its_own_words(make_napari_viewer, monkeypatch):
    """A mask reopened from its file (day 2) was called "edited since the last run" although no run made it."""
    from napari_attnseg._napari import result_layers
    from napari_attnseg._napari.segment_widget import SegmentWidget

    asked = []
    monkeypatch.setattr(result_layers.QMessageBox, "question", lambda _p, _t, text: asked.append(text))
    viewer = make_napari_viewer()
    w = SegmentWidget(viewer)
    viewer.add_labels(np.zeros((8, 8), np.uint8), name="img mask")
    w._ask_overwrite("img mask")
    assert "was not made by a run in this session (opened from a file or drawn)" in asked[-1]
    viewer.layers["img mask"].metadata["attnseg_hash"] = "0"
    w._ask_overwrite("img mask")
    assert "was edited since the last run" in asked[-1]


def test_results_arriving_after_the_viewer_closed_are_dropped(make_napari_viewer):
    """Closing the viewer while the heatmaps were being added one per event-loop turn gave a KeyError traceback
    from napari's layer controls; the remaining layers are now dropped."""
    from napari_attnseg import load_model, predict
    from napari_attnseg._napari._common import placement_of
    from napari_attnseg._napari.segment_widget import SegmentWidget

    viewer = make_napari_viewer()
    image = viewer.add_image(np.random.default_rng(0).random((64, 64)).astype(np.float32), name="img")
    w = SegmentWidget(viewer)
    model = load_model("nuclei-2d")
    pred = predict(model, image.data, attention=True)
    where = placement_of(image)
    viewer.close()
    w._show(model, pred, "img", where)  # raised from napari's closed window before
    assert not w._showing
