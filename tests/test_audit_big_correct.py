"""The Correct tab's GUI-thread work on a big CT follows what an edit changed, not the volume (a 300 x 512 x 512 CT
built from lung1; figures in the h_perf report): a helper on the whole volume copies the mask and finds what it
changed in its worker; only the painting of that change is left to the event loop (they held it 0.1 s when pressed
and 0.25 s more when painted, besides what the change itself costs)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gui

DATA = Path("/work/shared/data/radiomics")


@pytest.fixture(scope="module")
def ct():
    """lung1's CT (a crop: 12 slices of 96 x 96 around the tumour) and a mask: air in the lung (< -400 HU) as 1,
    the tumour as 2, as a Segment run would give (its prediction with it)."""
    from napari_attnseg.data import read_image

    if not (DATA / "lung1_image.nii.gz").exists():
        pytest.skip(f"{DATA} is not here")
    im, lb = read_image(DATA / "lung1_image.nii.gz"), read_image(DATA / "lung1_labels.nii.gz")
    box = (slice(26, 38), slice(300, 396), slice(160, 256))
    image = np.asarray(im.data)[box].astype(np.float32)
    mask = ((image < -400) & (image > -1000)).astype(np.uint8)
    mask[np.asarray(lb.data)[box] > 0] = 2
    return image, mask, tuple(float(s) for s in im.spacing)


def _panel(make_napari_viewer, ct):
    from napari_attnseg._napari.correct_widget import CorrectWidget

    image, mask, spacing = ct
    viewer = make_napari_viewer()
    viewer.add_image(image, name="lung1", scale=spacing)
    layer = viewer.add_labels(mask.copy(), name="lung1 mask", scale=spacing,
                              metadata={"attnseg_prediction": mask.copy()})
    corr = CorrectWidget(viewer)
    corr.labels_combo.value = layer.name
    return viewer, corr, layer


class _Watched(np.ndarray):
    """A helper's result that records the thread of each comparison of all of it (finding what it changed; not of
    the values it changed, which napari compares when it paints them)."""

    threads: list = []
    volume: tuple = ()  # (the mask's shape)

    def __ne__(self, other):
        if np.shape(np.asarray(self)) == _Watched.volume:
            _Watched.threads.append(threading.current_thread() is threading.main_thread())
        return np.asarray(self) != np.asarray(other)


def test_a_helper_on_a_big_volume_copies_and_compares_it_in_its_worker(make_napari_viewer, ct, qtbot, monkeypatch):
    """Fill holes / Remove small / Largest component on a whole big volume: the snapshot the helper works on and
    the comparison of its result with it (both over the whole volume) ran on the GUI thread, before and after the
    worker (0.1 s and 0.25 s on a 300 x 512 x 512 CT); they run in the worker now, and the change painted, its undo
    and the statistics are those of the helper run on the event loop."""
    from napari_attnseg import correct
    from napari_attnseg._napari import correct_helpers

    monkeypatch.setattr(correct_helpers, "BACKGROUND_VOXELS", 1000)  # this crop counts as big
    viewer, corr, layer = _panel(make_napari_viewer, ct)
    before = np.array(layer.data)
    expected = correct.fill_holes(before, None)
    assert (expected != before).any()
    data, copies, real_array = layer.data, [], np.array

    def array(obj, *args, **kwargs):  # records who copies the mask's own array
        if obj is data:
            copies.append(threading.current_thread() is threading.main_thread())
        return real_array(obj, *args, **kwargs)

    def fill(labels, classes):
        return correct.fill_holes(labels, classes).view(_Watched)

    _Watched.threads, _Watched.volume = [], before.shape
    monkeypatch.setattr(np, "array", array)
    corr._apply(fill, None)
    assert layer in corr._helper_running
    qtbot.waitUntil(lambda: layer not in corr._helper_running, timeout=30000)
    monkeypatch.setattr(np, "array", real_array)
    assert copies == [False], f"the mask was copied on the GUI thread (main thread: {copies})"
    assert _Watched.threads == [False], f"the helper's result was compared on the GUI thread ({_Watched.threads})"
    assert np.array_equal(np.asarray(layer.data), expected)  # the same change, painted as one step
    corr._update_info()
    assert layer.metadata["attnseg_edit_stats"] == correct.edit_stats(ct[1], np.asarray(layer.data))
    layer.undo()
    assert np.array_equal(np.asarray(layer.data), before)


def test_an_edit_during_a_big_helper_still_drops_its_result(make_napari_viewer, ct, qtbot, monkeypatch,
                                                          notifications):
    """The snapshot is now taken in the worker: a brush stroke while the helper works still makes its result be
    dropped, said, and the stroke is kept."""
    from napari_attnseg import correct
    from napari_attnseg._napari import correct_helpers

    monkeypatch.setattr(correct_helpers, "BACKGROUND_VOXELS", 1000)
    viewer, corr, layer = _panel(make_napari_viewer, ct)
    working, gate = threading.Event(), threading.Event()

    def slow_fill(labels, classes):
        working.set()  # (the snapshot is taken)
        gate.wait(10)
        return correct.fill_holes(labels, classes)

    corr._apply(slow_fill, None)
    qtbot.waitUntil(working.is_set, timeout=10000)
    layer.data_setitem((np.array([5]), np.array([1]), np.array([1])), np.array([2], np.uint8))  # a stroke meanwhile
    gate.set()
    qtbot.waitUntil(lambda: layer not in corr._helper_running, timeout=30000)
    stroked = ct[1].copy()
    stroked[5, 1, 1] = 2
    assert np.array_equal(np.asarray(layer.data), stroked), "the helper's result was painted over the stroke"
    assert any("was edited while the helper ran" in str(n.message) for n in notifications), notifications


def test_save_mask_writes_a_big_mask_in_a_worker_as_it_was_when_pressed(make_napari_viewer, ct, qtbot, monkeypatch,
                                                                       tmp_path):
    """*Save mask...* compressed a big mask into its .nii.gz on the GUI thread (0.74 s for a 300 x 512 x 512 CT);
    it is written in a worker now: the mask, marks and names as they were when pressed (a stroke and a mark made
    while it writes go into the next save), said when written; a second press meanwhile is told to wait."""
    import nibabel as nib

    from napari_attnseg._napari import io_hooks, save_mask

    monkeypatch.setattr(save_mask, "BACKGROUND_VOXELS", 1000, raising=False)  # this crop counts as big
    viewer, corr, layer = _panel(make_napari_viewer, ct)
    corr.mark_slices([3, 4])
    out = tmp_path / "lung1 mask.nii.gz"
    monkeypatch.setattr(save_mask.QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), save_mask.NIFTI_FILTER))
    threads, gate, real = [], threading.Event(), io_hooks.write_labels_nifti

    def writer(path, data, meta):
        threads.append(threading.current_thread() is threading.main_thread())
        gate.wait(10)
        return real(path, data, meta)

    monkeypatch.setattr(io_hooks, "write_labels_nifti", writer)
    worker = corr.save_mask()
    assert threads == [False] or not threads, "the mask was written on the GUI thread"
    assert worker is not None and "Saving lung1 mask" in corr.save_label.value
    assert corr.save_mask() is None  # (pressed again while it writes)
    layer.data_setitem((np.array([5]), np.array([1]), np.array([1])), np.array([2], np.uint8))  # edits meanwhile
    corr.mark_slices([7])
    gate.set()
    qtbot.waitUntil(lambda: corr.save_label.value.startswith("Saved"), timeout=30000)
    assert threads == [False]
    assert "2 reviewed slices (3-4)" in corr.save_label.value and str(out) in corr.save_label.value
    saved = np.asarray(nib.load(str(out)).dataobj).transpose(2, 1, 0)
    assert np.array_equal(saved, ct[1]), "the file holds edits made after Save was pressed"
