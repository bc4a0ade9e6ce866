"""The Correct panel's whole-volume helpers after review (lung1 CT crop, 5 x 0.57 x 0.57 mm): a reviewed slice off
screen is left as it was, and said; the 'ignore' value of exported labels is never a class of the core helpers. Each
test fails without its fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

DATA = Path("/work/shared/data/radiomics")
ON_SCREEN, CHECKED = 7, 14  # lung1 slices 33 (the tumour) and 40 of the crop


@pytest.fixture()
def lung():
    """lung1 cropped around its tumour (slices 26-40; tumour on 32-34 = 6-8), a ring (24 voxels, a hole in it) a
    person checked on slice 40 (14): image, mask, spacing."""
    from napari_attnseg.data import read_image

    if not (DATA / "lung1_image.nii.gz").exists():
        pytest.skip(f"{DATA} is not here")
    im, lb = read_image(DATA / "lung1_image.nii.gz"), read_image(DATA / "lung1_labels.nii.gz")
    box = (slice(26, 41), slice(320, 400), slice(180, 260))
    mask = (np.asarray(lb.data)[box] > 0).astype(np.uint8)
    mask[CHECKED, 10:15, 10:15] = 1
    mask[CHECKED, 12, 12] = 0
    return np.asarray(im.data)[box].astype(np.float32), mask, tuple(float(s) for s in im.spacing)


def _panel(make_napari_viewer, lung, reviewed=(ON_SCREEN, CHECKED), name="lung1"):
    from napari_attnseg._napari.correct_widget import CorrectWidget

    image, mask, spacing = lung
    viewer = make_napari_viewer()
    viewer.add_image(image, name=name, scale=spacing)
    layer = viewer.add_labels(mask.copy(), name=f"{name} mask", scale=spacing)
    corr = CorrectWidget(viewer)
    corr.labels_combo.value = layer.name
    corr.size_spin.value = 50
    corr.radius_spin.value = 1
    corr.mark_slices(list(reviewed))
    viewer.dims.set_point(0, ON_SCREEN * spacing[0])
    return viewer, corr, layer


HELPERS = ["keep_largest", "remove_small", "fill_holes", "open_", "close_"]


def _said(notifications) -> str:
    return " | ".join(str(n.message) for n in notifications)


@pytest.mark.parametrize("helper", HELPERS)
def test_a_whole_volume_helper_leaves_a_reviewed_slice_off_screen_and_says_so(make_napari_viewer, lung, helper,
                                                                             notifications):
    """Slice 40 reviewed, slice 33 on screen, 'Current slice only' unticked: 'Largest component' (and every other
    whole-volume helper) changed slice 40 unseen and unsaid. Now it is left as it was, the panel names it, the rest
    of the volume gets the helper's result, and Ctrl+Z undoes the helper in one step."""
    viewer, corr, layer = _panel(make_napari_viewer, lung)
    before = np.asarray(layer.data).copy()
    getattr(corr, helper)()
    now = np.asarray(layer.data)
    assert np.array_equal(now[CHECKED], before[CHECKED]), f"{helper} rewrote reviewed slice {CHECKED}, off screen"
    assert f"left the reviewed slices {CHECKED} as they were" in _said(notifications)
    layer.undo()
    assert np.array_equal(layer.data, before)


def test_without_reviewed_slices_the_helper_works_on_every_slice_and_says_nothing_more(make_napari_viewer, lung,
                                                                                        notifications):
    viewer, corr, layer = _panel(make_napari_viewer, lung, reviewed=())
    corr.keep_largest()
    assert not np.asarray(layer.data)[CHECKED].any()  # the ring was not the largest component
    assert "left the reviewed" not in _said(notifications)


def test_the_reviewed_slice_on_screen_is_changed_and_a_3d_view_spares_every_reviewed_one(make_napari_viewer, lung,
                                                                                         notifications):
    _, mask, spacing = lung
    viewer, corr, layer = _panel(make_napari_viewer, lung)
    viewer.dims.set_point(0, CHECKED * spacing[0])  # the person looks at the ring's slice: they see it go
    corr.keep_largest()
    assert not np.asarray(layer.data)[CHECKED].any() and "left the reviewed" not in _said(notifications)
    layer.undo()
    viewer.dims.ndisplay = 3  # no slice on screen
    corr.fill_holes()
    assert np.array_equal(np.asarray(layer.data), mask)
    assert f"left the reviewed slices {CHECKED} as they were (1 voxels" in _said(notifications)


def test_the_edit_statistics_count_what_a_spared_helper_painted(make_napari_viewer, lung):
    from napari_attnseg import correct

    _, mask, _ = lung
    viewer, corr, layer = _panel(make_napari_viewer, lung)
    layer.metadata["attnseg_prediction"] = mask.copy()
    corr._update_info()
    corr.open_()
    assert layer.metadata["attnseg_edit_stats"] == correct.edit_stats(mask, np.asarray(layer.data))
    assert layer.metadata["attnseg_edit_stats"]["changed_voxels"] > 0
    layer.undo()
    corr._update_info()
    assert layer.metadata["attnseg_edit_stats"]["changed_voxels"] == 0


def test_a_helper_in_the_worker_spares_and_says_so_even_after_a_helper_on_another_mask(make_napari_viewer, lung,
                                                                                       qtbot, monkeypatch,
                                                                                       notifications):
    """A large volume goes to the worker: it spares the reviewed slice too; and a helper run on another (small) mask
    while it works replaced the panel's note, so the big one's 'left as it was' was lost (or another's said)."""
    from napari_attnseg._napari import correct_helpers

    monkeypatch.setattr(correct_helpers, "BACKGROUND_VOXELS", 2000)
    viewer, corr, layer = _panel(make_napari_viewer, lung)
    small = viewer.add_labels(np.zeros((3, 10, 10), np.uint8), name="small mask")
    corr.refresh(prefer=layer.name)
    corr.labels_combo.value = layer.name
    corr.keep_largest()
    assert layer in corr._helper_running
    corr.labels_combo.value = small.name
    corr.fill_holes()
    qtbot.waitUntil(lambda: layer not in corr._helper_running, timeout=30000)
    assert np.array_equal(np.asarray(layer.data)[CHECKED], lung[1][CHECKED])
    assert f"lung1 mask: 'Largest component' left the reviewed slices {CHECKED} as they were" in _said(notifications)


# -- core: the 'ignore' value of exported labels -----------------------------------------------------------------------
CORE = {
    "interpolate_slices": lambda a, ig: __import__("napari_attnseg.correct").correct.interpolate_slices(a, ignore=ig),
    "fill_holes": lambda a, ig: __import__("napari_attnseg.correct").correct.fill_holes(a, ignore=ig),
    "keep_largest_component": lambda a, ig: __import__("napari_attnseg.correct").correct.keep_largest_component(
        a, ignore=ig),
    "remove_small_objects": lambda a, ig: __import__("napari_attnseg.correct").correct.remove_small_objects(
        a, 500, ignore=ig),
    "binary_open": lambda a, ig: __import__("napari_attnseg.correct").correct.binary_open(a, 2, ignore=ig),
    "binary_close": lambda a, ig: __import__("napari_attnseg.correct").correct.binary_close(a, 3, ignore=ig),
}


@pytest.fixture()
def exported(lung, tmp_path):
    """The lung crop exported with slices 6-9 and 14 reviewed: its label file's array and its 'ignore' value."""
    from napari_attnseg.data import read_image
    from napari_attnseg.data.export import export_case
    from napari_attnseg.data.manifest import ignore_value_of

    image, mask, spacing = lung
    record = export_case(image, mask, tmp_path / "ds", "nnunet", spacing=spacing, reviewed_slices=[6, 7, 8, 9, 14])
    path = tmp_path / "ds" / record.files["label"]
    return np.asarray(read_image(path).data), ignore_value_of(path)


@pytest.mark.parametrize("helper", sorted(CORE))
def test_the_ignore_value_of_exported_labels_is_never_a_class(exported, helper):
    """interpolate_slices(labels) on an exported label file filled 'ignore' (2) into the reviewed slices 7-9 between
    the unreviewed 'ignore' slices 5 and 10; close bridged it the same way, keep-largest and open erased unreviewed
    slices to background (which trains as 'nothing here'). With ``ignore=``, it is neither worked on nor written."""
    labels, ignore = exported
    assert ignore == 2 and (labels == ignore).any()
    out = CORE[helper](labels, ignore)
    assert np.array_equal(out == ignore, labels == ignore), f"{helper} moved the 'ignore' voxels"


def test_k_on_an_ignore_voxel_says_it_is_no_object(exported):
    from napari_attnseg import correct
    from napari_attnseg.errors import InputError

    labels, ignore = exported
    with pytest.raises(InputError, match="'ignore' value 2"):
        correct.keep_component_at(labels, (0, 5, 5), ignore=ignore)


@pytest.mark.parametrize("helper", ["interpolate", "keep_largest", "close_", "open_"])
def test_a_mask_reopened_from_its_export_keeps_its_ignore_slices(make_napari_viewer, lung, tmp_path, helper,
                                                                 notifications):
    """The clinician reopens an exported label file (slices 6-9 and 14 reviewed, 'ignore' = 2 elsewhere) to fix it:
    Interpolate filled 'ignore' into the background of reviewed slices 6-9 (between 'ignore' slices 5 and 10),
    Close did too, Largest component and Open erased unreviewed slices to background. The panel now reads the
    'ignore' value from the dataset's manifest and never works on it; K on it says it is no object."""
    from napari_attnseg._napari.correct_widget import CorrectWidget
    from napari_attnseg.data.export import export_case

    image, mask, spacing = lung
    record = export_case(image, mask, tmp_path / "ds", "nnunet", spacing=spacing, reviewed_slices=[6, 7, 8, 9, 14])
    viewer = make_napari_viewer()
    layer = viewer.open(str(tmp_path / "ds" / record.files["label"]), plugin="napari-attnseg")[0]
    corr = CorrectWidget(viewer)
    corr.labels_combo.value = layer.name
    corr.radius_spin.value = 2
    before = np.asarray(layer.data).copy()
    assert (before == 2).any()
    getattr(corr, helper)()
    assert np.array_equal(np.asarray(layer.data) == 2, before == 2), f"{helper} moved the 'ignore' voxels"
    corr.keep_at_cursor(position=layer.data_to_world((0, 5, 5)))
    assert np.array_equal(np.asarray(layer.data) == 2, before == 2)
    assert "the cursor is on its 'ignore' value 2" in _said(notifications)


def test_restore_slices_puts_the_spared_slices_back_and_counts_them():
    from napari_attnseg import correct

    data = np.zeros((4, 3, 3), np.uint8)
    out = data + 1
    assert correct.restore_slices(out, data, [3, 1]) == {1: 9, 3: 9}
    assert not out[[1, 3]].any() and out[[0, 2]].all() and correct.restore_slices(out, data, []) == {}


def test_ctrl_z_on_the_canvas_undoes_a_helper_when_the_image_was_selected(make_napari_viewer, lung, qtbot):
    """After a Segment run the image layer is the selected one; a helper then changed the mask and Ctrl+Z on the
    canvas did nothing, silently (napari's undo acts on the selected layer). The helper selects the mask it paints."""
    from qtpy.QtCore import Qt

    viewer, corr, layer = _panel(make_napari_viewer, lung, reviewed=())
    viewer.layers.selection.active = viewer.layers["lung1"]
    before = np.asarray(layer.data).copy()
    corr.fill_holes()
    assert not np.array_equal(layer.data, before) and viewer.layers.selection.active is layer
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key_Z, Qt.ControlModifier)
    qtbot.waitUntil(lambda: np.array_equal(layer.data, before), timeout=5000)
