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
