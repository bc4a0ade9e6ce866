"""A microscopist's day on nuclei from another microscope (audit 2026-12, "h7"): the nuclei image upsampled 2x
(nuclei about 48 px), 16-bit with a camera offset and a gain, an ImageJ TIFF with a pixel size; Segment with the
tab's defaults, Click to fix with nuclei-2d-prompt, undo, new object, brush, review, Export, Fine-tune, re-run."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

pytestmark = pytest.mark.gui


def _wait(qtbot, pm) -> None:
    qtbot.waitUntil(lambda: not pm.busy and not pm.pending, timeout=60000)


def _three_clicks_two_ctrl_z(qtbot, viewer, pm, mask, ref):
    """A click on the biggest nucleus, a negative click 3 px inside its edge, a positive one on the same pixel (each
    changes the mask: every click is obeyed), then Ctrl+Z twice on the mask: (mask before, mask after click 1)."""
    ids, counts = np.unique(ref[ref > 0], return_counts=True)
    depth = ndi.distance_transform_edt(ref == ids[np.argmax(counts)])
    s0 = np.array(mask.data)
    pm.click(np.unravel_index(depth.argmax(), depth.shape))
    _wait(qtbot, pm)
    s1 = np.array(mask.data)
    assert (s1 > 0).sum() > 100
    inner = np.argwhere((s1 > 0) & (ndi.distance_transform_edt(s1 > 0) == 3))
    rim = tuple(int(v) for v in inner[len(inner) // 2])
    pm.click(rim, positive=False)  # taken off...
    _wait(qtbot, pm)
    s2 = np.array(mask.data)
    assert s2[rim] == 0 and (s2 != s1).any()
    pm.click(rim, positive=True)  # ... and given back by a newer click on the same pixel
    _wait(qtbot, pm)
    assert mask.data[rim] != 0
    viewer.layers.selection.active = mask
    mask.undo()
    mask.undo()
    np.testing.assert_array_equal(mask.data, s1)
    return s0, s1


def test_undo_last_click_after_ctrl_z_on_the_mask_removes_the_clicks_it_undid(nuclei_click_panel, qtbot):
    """Three clicks, then Ctrl+Z twice with the mask selected (the mask back to the first click's), then *Undo last
    click*: it reverted the third click a second time (two voxels the third click had given back after the second's
    removal were erased again) and left two points for a mask of one click. The clicks Ctrl+Z undid are now only
    removed, with their points, and the status says so."""
    viewer, corr, mask, ref = nuclei_click_panel
    pm = corr.prompt
    s0, s1 = _three_clicks_two_ctrl_z(qtbot, viewer, pm, mask, ref)
    pm.undo_last_click()
    _wait(qtbot, pm)
    np.testing.assert_array_equal(mask.data, s1)  # the mask stays as Ctrl+Z left it
    assert len(pm.clicks) == 1 and len(pm.points_layer.data) == 1, pm.clicks
    assert "Ctrl+Z" in pm.status.value and "2 click(s)" in pm.status.value, pm.status.value
    pm.undo_last_click()  # the first click now: the mask as before it
    _wait(qtbot, pm)
    np.testing.assert_array_equal(mask.data, s0)
    assert not pm.clicks


def test_a_click_after_two_ctrl_z_on_the_mask_drops_both_undone_clicks(nuclei_click_panel, qtbot):
    """The next click after two Ctrl+Z dropped neither undone click (only the newest run was compared with the mask,
    and the older one had changed its voxels too): it refined the third click's mask "from 4 click(s)", with the
    negative click Ctrl+Z had undone still applied."""
    viewer, corr, mask, ref = nuclei_click_panel
    pm = corr.prompt
    _, s1 = _three_clicks_two_ctrl_z(qtbot, viewer, pm, mask, ref)
    first = pm.clicks[0][0]
    pm.click(first)  # a second positive click on the object, where the first was
    assert len(pm.clicks) == 2, pm.clicks
    _wait(qtbot, pm)
    assert "from 2 click(s)" in pm.status.value, pm.status.value


def test_the_segment_status_says_when_the_objects_are_far_from_the_models_size(segment_panel, qtbot):
    """Nuclei twice the size nuclei-2d learnt, run with the tab's defaults (no Object diameter): the size warning was
    only a notification (gone in seconds); the panel's status said "121 tiles on cpu (bf16) in 1.7 s"."""
    from napari_attnseg._paths import samples_dir
    from napari_attnseg.data import read_image

    viewer, w = segment_panel
    image = read_image(samples_dir() / "nuclei2d_image.tif").data[:256, :256]
    viewer.add_image(np.kron(image, np.ones((2, 2), image.dtype)) * 16 + 100, name="cells2x")
    w.refresh_layers(prefer="cells2x")
    assert w.model_combo.value == "nuclei-2d" and not w.diameter_edit.value.strip()
    with qtbot.waitSignal(w.run_done, timeout=120000):
        w.run_button.native.click()
    assert "Estimate the size and run" in w.status.value and "px wide" in w.status.value, w.status.value
    w.diameter_edit.value = "auto"  # at the model's size: nothing to say
    with qtbot.waitSignal(w.run_done, timeout=120000):
        w.run_button.native.click()
    assert "Estimate the size and run" not in w.status.value, w.status.value


def test_a_click_on_a_clump_in_a_one_class_mask_does_not_advise_a_second_label():
    """A click on nuclei merged into a clump said "select a label the mask does not hold (M)": on a one-class nuclei
    mask that paints label 2, which Export then refused ("only 2 class names are given")."""
    from types import SimpleNamespace

    from napari_attnseg._napari.prompt_checks import click_status

    result = SimpleNamespace(timings={"total": 0.2}, params={})
    report = {"added": 0, "removed": 0, "big": True, "inside": True, "model": 600, "initial": 2400, "kept": 0,
              "first": False}
    one = SimpleNamespace(metadata={"class_names": ["background", "nucleus"]})
    text = click_status(result, report, 1, None, None, None, "", one)
    assert "M in its layer controls" not in text and "click each object" in text, text
    three = SimpleNamespace(metadata={"class_names": ["background", "liver", "tumour"]})
    assert "M in its layer controls" in click_status(result, report, 1, None, None, None, "", three)


def test_the_core_session_drops_both_runs_two_ctrl_z_undid():
    """PromptSession.drop_reverted (the Python API's) compared each run with its own values before it: after two
    Ctrl+Z the newest run, whose voxels the older one had changed too, looked kept and neither run was dropped."""
    from napari_attnseg.prompts.session import PromptSession

    labels = np.zeros((8, 8), np.uint8)
    s = PromptSession()
    s.add((2, 2))  # run 1 writes a 3x3 object
    where1 = tuple(np.asarray(a).ravel() for a in np.mgrid[1:4, 1:4])
    s.record(np.zeros((8, 8), bool), edit=(where1, np.ones(9, np.uint8)), labels=labels)
    labels[where1] = 1
    s.add((3, 3), positive=False)  # run 2 takes the centre pixel back off
    where2 = (np.array([2]), np.array([2]))
    s.record(np.zeros((8, 8), bool), edit=(where2, np.zeros(1, np.uint8)), labels=labels)
    labels[where2] = 0
    labels[:] = 0  # two Ctrl+Z on the mask: back to before run 1
    assert s.drop_reverted(labels) == 2 and not s.clicks and not s.states
