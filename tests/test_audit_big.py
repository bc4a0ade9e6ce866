"""Big inputs in a real napari viewer (a 300 x 512 x 512 CT, a 256^3 MRI, a 6000 x 6000 mosaic; figures in
docs/benchmarks.md): what the Segment tab's Cancel and re-run do at the end of a run, checked on small arrays.

After the last tile the run still checks the result and makes the layers' data on its worker (1-1.5 s on the
mosaic, the progress bar already full): a Cancel pressed then added the results anyway."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def test_cancel_pressed_after_the_last_tile_adds_no_layer(segment_panel, qtbot, tiny_checkpoint, monkeypatch):
    from napari_attnseg._napari import job_segment

    viewer, w = segment_panel
    real = job_segment.iter_predict

    def late_cancel(model, image, cancel=None, **kwargs):
        pred = yield from real(model, image, cancel=cancel, **kwargs)
        cancel.cancel()  # the user presses Cancel while the bar is full, before the results are shown
        return pred

    monkeypatch.setattr(job_segment, "iter_predict", late_cancel)
    viewer.add_image(np.random.default_rng(0).random((64, 64)).astype(np.float32), name="cells")
    w.add_model(tiny_checkpoint(2))
    with qtbot.waitSignal(w.run_done, timeout=60000) as done:
        assert w.run() is not None, w.messages
    assert done.args == [False]
    assert [ly.name for ly in viewer.layers] == ["cells"], "a cancelled run added its layers"
    assert w.status.value.startswith("Cancelled") and w.run_button.enabled and w.last_prediction is None


def test_replacing_an_edited_mask_hashes_it_once_on_the_gui_thread(segment_panel, qtbot, tiny_checkpoint,
                                                                     monkeypatch):
    import threading

    from napari_attnseg._napari import result_layers

    viewer, w = segment_panel
    viewer.add_image(np.random.default_rng(0).random((64, 64)).astype(np.float32), name="cells")
    w.add_model(tiny_checkpoint(2))
    with qtbot.waitSignal(w.run_done, timeout=60000):
        w.run()
    mask = viewer.layers["cells mask"]
    mask.data_setitem((np.array([3]), np.array([3])), np.array([1 - int(mask.data[3, 3])], np.uint8))  # an edit
    hashed, asked = [], []
    real = result_layers.data_hash
    monkeypatch.setattr(result_layers, "data_hash",
                        lambda a: hashed.append(threading.current_thread() is threading.main_thread()) or real(a))
    w.confirm_overwrite = lambda name: asked.append(name) or True
    with qtbot.waitSignal(w.run_done, timeout=60000) as done:
        w.run()
    assert done.args == [True] and asked == ["cells mask"] and "cells mask (2)" not in viewer.layers
    assert hashed == [True], "the edited mask was hashed again on the GUI thread after Yes"
    assert mask.metadata["attnseg_hash"] == real(mask.data)  # the new prediction's: a next run replaces it unasked
    asked.clear()
    with qtbot.waitSignal(w.run_done, timeout=60000):
        w.run()
    assert asked == []


def test_next_suggested_on_a_big_volume_finds_the_slice_in_a_worker(volume_run, qtbot, monkeypatch):
    """N on a 300 x 512 x 512 CT held the GUI thread 6.1 s (the uncertainty map of the whole run, 2 GB more
    memory): a big volume's map is made in a worker, and the view jumps when it is done (the same slice)."""
    from napari_attnseg import suggest
    from napari_attnseg._napari import suggest_tool

    viewer, dock = volume_run
    seg, corr = dock.segment, dock.correct
    corr.mark_slices([0, 1])
    monkeypatch.setattr(suggest_tool, "BACKGROUND_VOXELS", 1000)  # this small volume counts as big
    monkeypatch.setattr(suggest, "UNCERTAINTY_BLOCK", 2 * 32 * 32)  # and is mapped a slice at a time
    import threading

    main = threading.get_ident()
    threads = []
    real = suggest.uncertainty_map
    monkeypatch.setattr(suggest, "uncertainty_map", lambda p, *a: threads.append(threading.get_ident()) or real(p, *a))
    assert corr.next_suggested() is None  # (the worker runs)
    qtbot.waitUntil(lambda: "Suggested slice" in corr.suggest_label.value, timeout=20000)
    assert threads and main not in threads, "the map was made on the GUI thread"
    probs = np.asarray(seg.last_prediction.probabilities, np.float32)
    expected = suggest.rank_slices(suggest.slice_scores(real(probs)), [0, 1], n=1)[0][0]
    assert f"slice {expected}" in corr.suggest_label.value and round(viewer.dims.point[0] / 4.0) == expected
    np.testing.assert_allclose(viewer.layers["vol mask uncertainty"].data, real(probs))
    assert corr.next_suggested() == expected  # the map is kept: the next N ranks at once
