"""The Correct panel's GUI-thread work follows what changed, not the volume: a Points layer or an attention map
added changes nothing in the panel, a paint / fill / undo / redo updates the edit statistics from its own voxels
(equal to a full recount), a big mask is recounted in a worker, and a first click on an existing object does not
label the whole volume (the 48x512x512 CT: 0.3-0.45 s per stroke or click, 0.6 s per layer added)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def _panel(make_napari_viewer, shape=(6, 40, 40)):
    from napari_attnseg._napari.correct_widget import CorrectWidget

    rng = np.random.default_rng(0)
    viewer = make_napari_viewer()
    viewer.add_image(rng.random(shape).astype(np.float32), name="ct")
    pred = np.zeros(shape, np.uint8)
    pred[1:5, 10:30, 10:30] = 1
    pred[2:4, 2:8, 2:8] = 2
    layer = viewer.add_labels(pred.copy(), name="ct mask", metadata={"attnseg_prediction": pred})
    return viewer, CorrectWidget(viewer), layer, pred


@pytest.fixture()
def spies(monkeypatch):
    from napari_attnseg import correct

    calls = {"edit_stats": 0, "EditCounts": 0}
    full, counts = correct.edit_stats, correct.EditCounts

    def edit_stats(*a, **k):
        calls["edit_stats"] += 1
        return full(*a, **k)

    class Counted(counts):
        def __init__(self, *a, **k):
            calls["EditCounts"] += 1
            super().__init__(*a, **k)

    monkeypatch.setattr(correct, "edit_stats", edit_stats)
    monkeypatch.setattr(correct, "EditCounts", Counted)
    return calls, full


def test_a_points_layer_or_an_attention_map_added_recounts_nothing(make_napari_viewer, spies, monkeypatch):
    viewer, corr, layer, _ = _panel(make_napari_viewer)
    calls, _ = spies
    calls.update(edit_stats=0, EditCounts=0)  # (the panel counted its mask when it was made)
    info = []
    monkeypatch.setattr(corr, "_update_info", lambda *a: info.append(a))
    monkeypatch.setattr(corr.prompt, "refresh_models", lambda *a: info.append("models"))
    points = viewer.add_points(np.zeros((0, 3)), name="ct prompts")
    attention = viewer.add_image(np.zeros((1, 40, 40), np.float32), name="ct prompt attention",
                                 metadata={"attnseg": {"prompt_attention": "level0"}})
    points.name = "renamed prompts"
    viewer.layers.remove(points)
    viewer.layers.remove(attention)
    assert not info and calls == {"edit_stats": 0, "EditCounts": 0}, (info, calls)
    assert corr.labels_combo.value == "ct mask" and corr.image_combo.value == "ct"
    viewer.add_image(np.zeros((6, 40, 40), np.float32), name="other image")  # an image is listed
    assert "other image" in corr.image_combo.choices and "models" in info


def test_edits_update_the_statistics_by_their_voxels_equal_to_a_full_recount(make_napari_viewer, spies):
    viewer, corr, layer, pred = _panel(make_napari_viewer)
    calls, full = spies
    assert calls["EditCounts"] == 1 and "class 1: +0 / -0" in corr.stats_label.value

    def check():
        corr._update_info()
        assert layer.metadata["attnseg_edit_stats"] == full(pred, np.asarray(layer.data))

    idx = (np.array([0, 0, 0, 3]), np.array([1, 2, 1, 15]), np.array([1, 2, 1, 15]))
    layer.data_setitem(idx, np.array([1, 2, 2, 0], np.uint8))  # a repeated voxel: the last value is written
    check()
    layer.selected_label, layer.brush_size = 2, 5
    layer._begin_stroke()  # a brush stroke: dabs that overlap, one history item
    for y in range(12, 20):
        layer.paint((2, y, 20), 2)
    layer._commit_stroke()
    check()
    layer.fill((3, 20, 20), 3)
    check()
    layer.undo()
    check()
    layer.undo()
    check()
    layer.redo()
    check()
    viewer.dims.set_point(0, 4)  # a slider move refreshes the layer too: no recount, nothing changes
    check()
    corr.fill_holes()
    check()
    assert calls == {"edit_stats": 0, "EditCounts": 1}, calls
    assert "Edits vs prediction: class 1:" in corr.stats_label.value
    layer.data = pred.copy()  # the data replaced: counted anew
    corr._update_info()
    assert calls["EditCounts"] == 2 and "+0 / -0" in corr.stats_label.value
    fresh = np.zeros_like(pred)
    layer.metadata["attnseg_prediction"] = fresh  # another prediction: counted anew against it
    check_fresh = full(fresh, np.asarray(layer.data))
    corr._update_info()
    assert calls["EditCounts"] == 3 and layer.metadata["attnseg_edit_stats"] == check_fresh


def test_a_big_mask_is_counted_in_a_worker_and_recounted_when_edited_meanwhile(make_napari_viewer, qtbot, monkeypatch,
                                                                             spies):
    from napari_attnseg._napari import correct_stats

    monkeypatch.setattr(correct_stats, "BACKGROUND_VOXELS", 1000)
    calls, full = spies
    viewer, corr, layer, pred = _panel(make_napari_viewer)
    assert corr._counting is not None and corr.stats_label.value == "Edits vs prediction: counting..."
    layer.data_setitem((np.array([0]), np.array([0]), np.array([0])), np.array([2], np.uint8))  # meanwhile
    qtbot.waitUntil(lambda: corr._counts is not None, timeout=20000)
    assert calls["EditCounts"] == 2, "the count made before the edit was dropped and made again"
    assert layer.metadata["attnseg_edit_stats"] == full(pred, np.asarray(layer.data))
    assert "class 2: +1 / -0" in corr.stats_label.value
    layer.data_setitem((np.array([1]), np.array([1]), np.array([1])), np.array([2], np.uint8))
    corr._update_info()
    assert calls["EditCounts"] == 2 and "class 2: +2 / -0" in corr.stats_label.value


def test_a_first_click_on_an_existing_object_labels_around_it_only(make_napari_viewer, monkeypatch):
    import napari_attnseg.prompts as prompts

    viewer, corr, layer, pred = _panel(make_napari_viewer)
    pm = corr.prompt
    if "nuclei-2d-prompt" not in pm._entries:
        pytest.skip("no bundled promptable model")
    pm.model_combo.value = "nuclei-2d-prompt"
    monkeypatch.setattr(prompts, "object_at", lambda *a: pytest.fail("object_at labels the whole volume"))
    monkeypatch.setattr(pm, "_run", lambda: None)  # (the model's run is not what is tested here)
    pm.click((2.0, 20.0, 20.0))
    assert np.array_equal(pm.session.initial, pred == 1) and pm.object_value == 1


def test_another_mask_chosen_while_one_is_counted_is_counted_too(make_napari_viewer, qtbot, monkeypatch):
    from napari_attnseg._napari import correct_stats

    monkeypatch.setattr(correct_stats, "BACKGROUND_VOXELS", 1000)
    viewer, corr, layer, pred = _panel(make_napari_viewer)
    assert corr._counting is not None
    other = viewer.add_labels(np.zeros_like(pred), name="other mask", metadata={"attnseg_prediction": pred})
    corr.labels_combo.value = "other mask"
    qtbot.waitUntil(lambda: corr._counts is not None and corr._counts_key[0] is other, timeout=20000)
    assert "class 1: +0 / -" in corr.stats_label.value and other.metadata["attnseg_edit_stats"]["changed_voxels"] > 0
