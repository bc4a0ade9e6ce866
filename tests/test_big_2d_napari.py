"""Large 2D images in napari (an analyst's 6000 x 6000 fluorescence mosaic): the GUI thread does not do the big
arrays' work.

Measured on the loaded 2-core machine, 6000 x 6000 uint16, nuclei-2d with heatmaps: the first run's results stalled
napari's window 1.4 s (the layers' data made on the GUI thread, and pandas imported there for the mask's class
names; 0.5-0.7 s after the fix, napari creating the mask layer); K removing 6.6-8 M pixels stalled it 1.6 s, 0.8 s
of it sorting their indices for the edit statistics (about 1 s after the fix: napari's own painting)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_attnseg.layers import prediction_layers


@pytest.mark.gui
def test_a_runs_result_layers_are_made_on_its_worker(segment_panel, qtbot, tiny_checkpoint, monkeypatch):
    from napari_attnseg._napari import job_segment, result_layers

    viewer, w = segment_panel
    made = []

    def spy(*args, **kwargs):
        made.append(threading.current_thread() is threading.main_thread())
        return prediction_layers(*args, **kwargs)

    monkeypatch.setattr(job_segment, "prediction_layers", spy)
    monkeypatch.setattr(result_layers, "prediction_layers", spy)
    viewer.add_image(np.random.default_rng(0).random((96, 96)).astype(np.float32), name="cells")
    w.add_model(tiny_checkpoint(2))
    with qtbot.waitSignal(w.run_done, timeout=60000) as done:
        assert w.run() is not None, w.messages
    assert done.args == [True], w.messages
    assert made == [False], "the result layers' data were made on the GUI thread"
    assert viewer.layers["cells mask"].data.shape == (96, 96)


@pytest.mark.gui
def test_keep_at_cursor_on_a_big_2d_mask_counts_its_edit_without_sorting_it(make_napari_viewer, qtbot, monkeypatch):
    from napari_attnseg import correct
    from napari_attnseg._napari.correct_widget import CorrectWidget

    n = 2200  # 4.8 M pixels: whole-mask helpers run in a worker, their paint and its statistics on the GUI thread
    pred = np.zeros((n, n), np.uint8)
    pred[3::8, 3::8] = 1  # 75 000 one-pixel objects, and a block
    pred[100:140, 100:140] = 1
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((n, n), np.float32), name="big")
    mask = viewer.add_labels(pred.copy(), name="big mask", metadata={"attnseg": {"source_layer": "big"},
                                                                     "attnseg_prediction": pred})
    corr = CorrectWidget(viewer)
    corr._update_info()
    qtbot.waitUntil(lambda: corr._counts is not None, timeout=60000)  # the first count (in a worker)

    sorted_on_gui, watching = [], [True]
    unique = np.unique

    def spy(values, *args, **kwargs):
        if watching and threading.current_thread() is threading.main_thread() and np.size(values) > 10_000:
            sorted_on_gui.append(np.size(values))
        return unique(values, *args, **kwargs)

    monkeypatch.setattr(np, "unique", spy)
    steps = len(mask._undo_history)
    corr.keep_at_cursor(position=(120.0, 120.0))
    qtbot.waitUntil(lambda: len(mask._undo_history) > steps, timeout=60000)
    corr._update_info()
    watching.clear()
    assert not sorted_on_gui, f"np.unique of {sorted_on_gui} values on the GUI thread"
    np.testing.assert_array_equal(mask.data, correct.keep_component_at(pred, (120, 120)))
    assert corr._counts is not None and corr._counts.stats() == correct.edit_stats(pred, np.asarray(mask.data))
    # a brush stroke listing a pixel twice still counts it once (the sort stays where it is needed)
    mask.data_setitem((np.array([5, 5, 7]), np.array([5, 5, 9])), np.array([1, 1, 1], np.uint8))
    corr._update_info()
    assert corr._counts.stats() == correct.edit_stats(pred, np.asarray(mask.data))
