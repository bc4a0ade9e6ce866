"""Click to fix as a clinician and a microscopist used it (nuclei-2d-prompt on the nuclei image, brain1 MRI under the
brain model's grey / white matter mask), in a real viewer: the status kept an earlier refusal after the right mask
was chosen; Ctrl+Z on the mask after *Undo last click* brought the undone click's change back (its point gone) and
a second Ctrl+Z undid it again; the prompts layer kept the image's old name; a tumour inside the brain mask's tissue
could only be clicked into an existing label value (and the helpers' *Class* chose a new object's value, unseen)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_napari_prompt_events import _press_release

pytestmark = pytest.mark.gui

BRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "radiomics"


def _wait(qtbot, pm) -> None:
    qtbot.waitUntil(lambda: not pm.busy and not pm.pending, timeout=60000)


def _centres(ref, n):
    from scipy import ndimage as ndi

    ids = [i for i in np.unique(ref[30:-30, 30:-30]) if i][:n]
    return [tuple(float(c) for c in ndi.center_of_mass(ref == i)) for i in ids]


def test_the_status_says_where_the_clicks_go_after_a_refusal_or_another_mask(nuclei_click_panel, qtbot):
    """A click refused for a mask of another shape said "pick the mask that belongs to the image", and kept saying
    it once that mask was picked; after *New object* the status still gave the last click's voxel count."""
    viewer, corr, mask, ref = nuclei_click_panel
    pm = corr.prompt
    first, second = _centres(ref, 2)
    viewer.add_labels(np.zeros((50, 50), np.uint8), name="other")
    corr.labels_combo.value = "other"
    viewer.layers.selection.active = pm.points_layer
    _press_release(viewer, first)
    assert "differ in shape" in pm.status.value
    corr.labels_combo.value = "cells mask"
    assert "differ in shape" not in pm.status.value and "'cells mask'" in pm.status.value
    _press_release(viewer, first)
    _wait(qtbot, pm)
    assert "voxels changed" in pm.status.value
    pm.new_button.changed.emit(True)
    assert "voxels changed" not in pm.status.value and "Click an object" in pm.status.value
    _press_release(viewer, second)
    _wait(qtbot, pm)
    pm.undo_last_click()  # the object's only click: the status says what the next click does
    assert "Click an object" in pm.status.value


def test_ctrl_z_on_the_mask_after_undo_last_click_does_not_bring_the_click_back(nuclei_click_panel, qtbot):
    """Two clicks, *Undo last click*, then napari's Ctrl+Z with the mask selected: it restored the second click's
    change (the click itself gone), and the next Ctrl+Z reverted it once more. Now *Undo last click* takes the click's
    own history entry off the mask's history: Ctrl+Z undoes the first click."""
    viewer, corr, mask, ref = nuclei_click_panel
    pm = corr.prompt
    target = _centres(ref, 1)[0]
    _press_release(viewer, target)
    _wait(qtbot, pm)
    one = np.asarray(mask.data).copy()
    _press_release(viewer, (target[0], target[1] + 3), modifiers=("Shift",))  # a negative click on its edge
    _wait(qtbot, pm)
    assert not np.array_equal(np.asarray(mask.data), one), "the negative click changed nothing: no test"
    pm.undo_button.changed.emit(True)
    assert np.array_equal(np.asarray(mask.data), one) and len(pm.clicks) == 1
    assert len(mask._undo_history) == 1, "the undone click is still in the mask's history, and its revert too"
    viewer.layers.selection.active = mask
    mask.undo()  # napari's Ctrl+Z on the mask: the first click's change, not the undone second click back
    assert not np.asarray(mask.data).any()
    mask.undo()
    assert not np.asarray(mask.data).any()


def test_undo_last_click_after_a_brush_stroke_keeps_the_stroke(nuclei_click_panel, qtbot):
    """The click's entry is no longer the newest (a brush stroke since): the revert is an entry of its own, the
    stroke stays, and Ctrl+Z on the mask undoes the revert as before."""
    viewer, corr, mask, ref = nuclei_click_panel
    pm = corr.prompt
    target = _centres(ref, 1)[0]
    _press_release(viewer, target)
    _wait(qtbot, pm)
    mask.paint((5, 5), 3)
    pm.undo_last_click()
    assert not np.asarray(mask.data)[tuple(int(round(c)) for c in target)] and (np.asarray(mask.data) == 3).any()
    assert len(mask._undo_history) == 3


def test_the_prompts_layer_follows_an_image_rename_while_the_mode_is_on(nuclei_click_panel, qtbot):
    """The image renamed with the mode on: its prompts layer kept '<old name> prompts' (and the status named it),
    beside '<new name> prompt attention'; it takes the new name, and the clicks still go on it alone."""
    from napari.layers import Points

    viewer, corr, mask, ref = nuclei_click_panel
    pm = corr.prompt
    layer = pm.points_layer
    viewer.layers["cells"].name = "nuclei"
    assert layer.name == "nuclei prompts" and "'nuclei prompts'" in pm.status.value
    viewer.layers.selection.active = layer
    _press_release(viewer, _centres(ref, 1)[0])
    _wait(qtbot, pm)
    assert [ly.name for ly in viewer.layers if isinstance(ly, Points)] == ["nuclei prompts"]
    assert len(layer.data) == 1 and "nuclei prompt attention" in viewer.layers
    layer.name = "my clicks"  # a name the user typed stays through the next rename
    viewer.layers["nuclei"].name = "cells"
    assert layer.name == "my clicks"


def test_a_new_object_gets_naparis_selected_label_and_the_panel_says_which(nuclei_click_panel, qtbot):
    """A click on background wrote the helpers' *Class* (chosen for Fill holes) instead of the label selected in
    napari's layer controls, and nothing said which value a click would write."""
    viewer, corr, mask, ref = nuclei_click_panel
    pm = corr.prompt
    first, second = _centres(ref, 2)
    mask.data_setitem((np.array([2]), np.array([2])), 1)
    corr.class_combo.value = 1  # chosen for the helpers
    mask.selected_label = 5
    assert "label 5" in pm.value_line.value
    mask.selected_label = 4  # followed as it changes
    assert "label 4" in pm.value_line.value
    _press_release(viewer, first)
    _wait(qtbot, pm)
    assert np.asarray(mask.data)[tuple(int(round(c)) for c in first)] == 4
    assert "This object: label 4" in pm.value_line.value
    pm.enable_box.value = False
    assert pm.value_line.value == ""


def _brain():
    from napari_attnseg.data import read_image

    if not (BRAIN / "brain1_image.nii.gz").exists():
        pytest.skip(f"{BRAIN} is not here")
    im, lb = read_image(BRAIN / "brain1_image.nii.gz"), read_image(BRAIN / "brain1_labels.nii.gz")
    box = (slice(13, 18), slice(60, 160), slice(130, 250))
    return im.data[box].astype(np.float32), (lb.data[box] > 0), tuple(im.spacing)


def test_a_tumour_inside_the_tissue_mask_is_clicked_into_a_new_label(make_napari_viewer, qtbot):
    """brain1 under a grey / white matter mask (the tumour lies inside the tissue, labels 1 and 2): a click on the
    tumour could only correct the tissue region (nothing written, "erase that region first"). With a label the mask
    does not hold selected (napari's M), the click writes the tumour as that label over the tissue; a later click on
    the next slice (after *New object*) goes on with it, and *Undo last click* gives the tissue back its values."""
    from napari_attnseg._napari.correct_widget import CorrectWidget
    from napari_attnseg.models.registry import bundled_models

    if "nuclei-2d-prompt" not in bundled_models():
        pytest.skip("no bundled promptable model")
    image, tumour, spacing = _brain()
    tissue = np.zeros(image.shape, np.uint8)
    tissue[image > np.percentile(image, 30)] = 1
    tissue[:, :, 60:] = np.where(tissue[:, :, 60:] > 0, 2, 0)
    side = np.broadcast_to(np.where(np.arange(tissue.shape[2]) < 60, 1, 2).astype(np.uint8), tissue.shape)
    tissue[tumour] = side[tumour]  # the tumour is tissue in this mask, as in the brain model's
    viewer = make_napari_viewer()
    viewer.add_image(image, name="brain1", scale=spacing)
    mask = viewer.add_labels(tissue.copy(), name="brain1 mask", scale=spacing)
    corr = CorrectWidget(viewer)
    pm = corr.prompt
    pm.model_combo.value = "nuclei-2d-prompt"
    pm.enable_box.value = True
    z = 2
    centre = (z, *np.argwhere(tumour[z]).mean(0).round())
    mask.selected_label = 3  # napari's M: the next free value
    assert "label 3" in pm.value_line.value and "writes it over that region" in pm.value_line.value
    pm.click(centre)
    _wait(qtbot, pm)
    written = np.asarray(mask.data) == 3
    assert written[z].sum() > 50, pm.status.value
    assert 2 * (written[z] & tumour[z]).sum() / (written[z].sum() + tumour[z].sum()) > 0.4
    assert np.array_equal(np.asarray(mask.data)[~written], tissue[~written]), "only the object's voxels changed"
    pm.new_button.changed.emit(True)  # the same tumour on the next slice: the mask holds 3 now
    assert "writes it over that region" in pm.value_line.value
    pm.click((z + 1, *np.argwhere(tumour[z + 1]).mean(0).round()))
    _wait(qtbot, pm)
    assert (np.asarray(mask.data)[z + 1] == 3).sum() > 50, pm.status.value
    pm.undo_last_click()
    assert np.array_equal(np.asarray(mask.data)[z + 1], tissue[z + 1]), "the tissue under the tumour was not given back"


def test_a_new_label_clicked_on_an_existing_nucleus_writes_no_ring(nuclei_click_panel, qtbot):
    """M (a label new to the mask), then a click on a nucleus already in an instance mask: the new label had been
    written on the free voxels around it, a ring of about 28 px, the nucleus left as it was. Nothing is written now and
    the status says to select the nucleus's own label to correct it."""
    from scipy import ndimage as ndi

    viewer, corr, mask, ref = nuclei_click_panel
    nucleus = _centres(ref, 1)[0]
    value = int(ref[tuple(int(round(c)) for c in nucleus)])
    drawn = ref.astype(np.uint16)
    drawn[(ref == value) & ~ndi.binary_erosion(ref == value, iterations=3)] = 0  # drawn a little small
    mask.data = drawn.copy()
    mask.selected_label = int(ref.max()) + 1
    _press_release(viewer, nucleus)
    _wait(qtbot, corr.prompt)
    np.testing.assert_array_equal(np.asarray(mask.data), drawn)
    assert f"Select label {value}" in corr.prompt.status.value
