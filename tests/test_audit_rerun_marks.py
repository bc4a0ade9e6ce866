"""A re-run over a mask the clinician corrected or marked reviewed (audit): what the question says is lost, a mask
with reviewed marks only (its voxels the last run's) asked about like an edited one, and the last run's uncertainty
map not left behind."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def _rerun(qtbot, dock, ok: bool = True) -> None:
    with qtbot.waitSignal(dock.segment.run_done, timeout=60000) as done:
        dock.segment.run_button.native.click()
    qtbot.wait(100)  # (the layers are shown one per turn of the event loop)
    assert done.args == [ok], dock.segment.status.value


def _asked(monkeypatch, answer):
    """The texts of every "Overwrite ...?" question the panel asks, answered ``answer`` (Yes: True)."""
    from qtpy.QtWidgets import QMessageBox

    from napari_attnseg._napari import result_layers

    seen: list[str] = []

    def question(parent, title, text, *args, **kwargs):
        seen.append(f"{title}\n{text}")
        return QMessageBox.Yes if answer else QMessageBox.No

    monkeypatch.setattr(result_layers.QMessageBox, "question", staticmethod(question))
    return seen


def test_the_overwrite_question_names_the_reviewed_slices_it_would_drop(volume_run, qtbot, monkeypatch):
    """Yes replaced the mask and cleared its reviewed marks, but the question only said 'was edited since the last
    run': the clinician learnt that slices reviewed were unmarked from a warning after the fact."""
    viewer, dock = volume_run
    corr = dock.correct
    mask = viewer.layers["vol mask"]
    mask.data_setitem((np.array([3]), np.array([5]), np.array([5])), np.array([1], np.uint8))  # a correction
    corr.mark_slices([2, 3, 4, 7])
    seen = _asked(monkeypatch, True)
    _rerun(qtbot, dock)
    assert len(seen) == 1, seen
    assert "slices 2-4,7" in seen[0] and "reviewed" in seen[0] and "correction" in seen[0], seen[0]
    assert "vol mask (2)" not in viewer.layers and not mask.metadata.get("reviewed_slices")


def test_a_mask_with_reviewed_marks_only_is_asked_about_before_a_rerun(volume_run, qtbot, monkeypatch):
    """Slices marked reviewed on a mask whose voxels were not changed (the prediction was right there): a re-run
    replaced it without asking and dropped the marks, the clinician's review lost, said only by a warning after."""
    viewer, dock = volume_run
    corr = dock.correct
    mask = viewer.layers["vol mask"]
    before = np.array(mask.data)
    corr.mark_slices([1, 2])
    seen = _asked(monkeypatch, False)  # No: keep it
    _rerun(qtbot, dock)
    assert len(seen) == 1 and "slices 1-2" in seen[0], seen
    assert mask.metadata["reviewed_slices"] == [1, 2] and not mask.visible
    np.testing.assert_array_equal(mask.data, before)
    new = viewer.layers["vol mask (2)"]
    qtbot.waitUntil(lambda: new.metadata.get("reviewed_slices") == [1, 2], timeout=5000)  # (round_state carries them)
    assert corr.labels_combo.value == "vol mask (2)"


def test_a_rerun_removes_the_last_runs_uncertainty_map(volume_run, qtbot):
    """N made a hidden 'vol mask uncertainty' of round 1's probabilities; after a re-run it stayed, round 1's map
    under the name of the mask that now holds round 2's prediction, the Correct tab still said 'Suggested slice z'
    of round 1 and held round 1's probabilities and map."""
    viewer, dock = volume_run
    viewer.dims.ndisplay = 2
    assert dock.correct.next_suggested() is not None
    assert "vol mask uncertainty" in viewer.layers
    _rerun(qtbot, dock)  # nothing edited: the mask is updated in place
    assert "vol mask uncertainty" not in viewer.layers
    assert dock.correct.suggest_label.value == "" and dock.correct._suggest_cache is None
    assert dock.correct.next_suggested() is not None  # N makes the new run's map
    unc = viewer.layers["vol mask uncertainty"]
    assert unc.data is dock.correct._suggest_cache[1]


def test_a_map_made_in_a_worker_while_a_rerun_came_is_not_shown(volume_run, qtbot, monkeypatch):
    """N on a big volume maps its uncertainty in a worker; a re-run shown meanwhile made the map of the last run
    arrive after it: 'vol mask uncertainty' of round 1 came back and the view jumped to round 1's suggestion."""
    import threading

    from napari_attnseg import suggest
    from napari_attnseg._napari import suggest_tool

    viewer, dock = volume_run
    seg, corr = dock.segment, dock.correct
    viewer.dims.ndisplay = 2
    monkeypatch.setattr(suggest_tool, "BACKGROUND_VOXELS", 1000)  # this small volume counts as big
    rerun_shown, real = threading.Event(), suggest.uncertainty_map
    monkeypatch.setattr(suggest, "uncertainty_map", lambda p, *a: rerun_shown.wait(30) and real(p, *a))
    assert corr.next_suggested() is None  # (the worker runs, and finishes once the re-run is shown)
    first = seg.last_prediction
    _rerun(qtbot, dock)
    rerun_shown.set()
    assert seg.last_prediction is not first
    qtbot.waitUntil(lambda: not getattr(corr, "_suggest_running", False), timeout=20000)
    qtbot.wait(50)
    assert "vol mask uncertainty" not in viewer.layers and corr._suggest_cache is None
    assert not corr.suggest_label.value.startswith("Suggested slice"), corr.suggest_label.value


def test_a_2d_mask_marked_reviewed_is_asked_about_before_a_rerun(dock, qtbot, monkeypatch):
    """R on a 2D nuclei mask (the image reviewed, the prediction right): a re-run replaced it without asking."""
    viewer, d = dock
    img = np.zeros((48, 48), np.float32)
    img[8:20, 8:20] = img[28:40, 26:38] = 1.0
    viewer.add_image(img, name="cells")
    d.segment.model_combo.value = "nuclei-2d"
    _rerun(qtbot, d)
    d.correct.mark_current()
    mask = viewer.layers["cells mask"]
    assert mask.metadata["reviewed_slices"] == [0]
    seen = _asked(monkeypatch, True)
    _rerun(qtbot, d)
    assert len(seen) == 1 and "marked it reviewed" in seen[0] and "its reviewed mark will be lost" in seen[0], seen
    assert "cells mask (2)" not in viewer.layers and not mask.metadata.get("reviewed_slices")
