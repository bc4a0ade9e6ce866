"""The whole loop through the tabbed dock, as a clinician walks it, on the shared lung CT.

Open (napari's own path) -> segment (Run button) -> correct three slices -> K button at the tumour ->
mark reviewed -> rename the class -> export -> fine-tune with the panel's defaults -> a folder that
is not a dataset. In a 1600 x 1000 virtual screen (scripts/test.sh starts Xvfb with that size).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gui

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "radiomics"
LUNG = SHARED / "lung1_image.nii.gz"
CROP = (slice(24, 44), slice(256, 448), slice(128, 320))  # 20 slices around the tumour (slices 32-34)


def _no_exception(seen) -> None:
    raised = [n for n in seen if getattr(n, "exception", None) is not None]
    assert not raised, [str(n.message) for n in raised]


@pytest.mark.skipif(not LUNG.exists(), reason="the shared lung CT is not beside the checkout")
def test_walk_the_loop_on_the_lung_ct(make_napari_viewer, qtbot, tmp_path, notifications):
    from napari_attnseg.checkpoint import read_card
    from napari_attnseg.data import read_image
    from napari_attnseg.display import CT_WINDOWS

    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1600, 1000)
    layers = viewer.open(str(LUNG), plugin="napari-attnseg")
    ct = layers[0]
    assert tuple(ct.contrast_limits) == CT_WINDOWS["soft tissue"]  # not -1024..3071
    _, dock = viewer.window.add_plugin_dock_widget("napari-attnseg", "Attention segmentation")
    seg, corr, ft = dock.segment, dock.correct, dock.finetune

    # a crop around the tumour keeps the run short on 2 CPU cores; same spacing, real CT values
    crop = viewer.add_image(np.asarray(ct.data)[CROP], name="lung crop", scale=ct.scale,
                            metadata={"spacing": list(ct.scale)})
    ref = (read_image(SHARED / "lung1_labels.nii.gz").data[CROP] > 0).astype(np.uint8)
    seg.image_combo.value = crop.name
    seg.window_combo.value = "lung"  # the layer's presets
    assert tuple(crop.contrast_limits) == CT_WINDOWS["lung"]
    seg.model_combo.value = "nuclei-2d"
    with qtbot.waitSignal(seg.run_done, timeout=180000) as done:
        seg.run_button.native.click()
    assert done.args == [True]
    assert seg.progress_bar.value == seg.progress_bar.max

    # correct: replace slices 8-10 of the crop (32-34 of the CT) with the tumour outline
    dock.show_tab("Correct and export")
    mask = viewer.layers["lung crop mask"]
    assert corr.labels_combo.value == mask.name and corr.image_combo.value == crop.name
    before = corr.stats_label.value
    where = np.nonzero(np.ones_like(ref[8:11], bool))
    mask.data_setitem((where[0] + 8, where[1], where[2]), ref[8:11][where])
    qtbot.waitUntil(lambda: corr.stats_label.value != before, timeout=1000)  # live, no button pressed
    assert "Edits vs prediction" in corr.stats_label.value

    # the K button keeps the object under the cursor (here: the tumour on slice 9)
    z, y, x = 9, *np.argwhere(ref[9])[0]
    viewer.dims.set_point(0, z * crop.scale[0])
    viewer.cursor.position = tuple(np.array([z, y, x]) * np.asarray(crop.scale))
    corr.keep_button.native.click()
    assert mask.data[z, y, x] == 1
    labelled = np.unique(__import__("scipy").ndimage.label(np.asarray(mask.data) > 0)[0])
    assert len(labelled) == 2  # background and the one object kept

    corr.range_edit.value = "7-11"
    corr.mark_range()
    assert mask.metadata["reviewed_slices"] == [7, 8, 9, 10, 11]
    assert corr.class_names_edit.value.startswith("background")
    corr.class_names_edit.value = "background, tumour"
    corr.dataset_edit.value = str(tmp_path / "lung-ds")
    corr.export_button.native.click()
    qtbot.waitUntil(lambda: corr.export_button.enabled, timeout=60000)
    manifest = json.loads((tmp_path / "lung-ds" / "manifest.json").read_text())
    assert manifest["label_names"] == ["background", "tumour"]

    # fine-tune with the panel's defaults (30 s): the start model is the mask's, the output in the user models
    # folder (the Segment tab lists it by name after a restart)
    from napari_attnseg.models.registry import user_models_dir

    dock.show_tab("Fine-tune")
    assert str(ft.dataset_edit.value) == str(tmp_path / "lung-ds")
    assert ft.model_combo.value == "nuclei-2d"
    assert Path(str(ft.out_edit.value)) == user_models_dir() / "nuclei-2d-finetuned"
    ft.minutes_spin.value = 0.5
    ft.run_button.native.click()
    qtbot.waitUntil(lambda: ft.run_button.enabled, timeout=300000)
    assert ft.result is not None, ft.status.value
    assert ft.progress_bar.value == 100
    card = read_card(ft.result.checkpoint)
    assert card.classes == ["background", "tumour"]
    assert card.name == "nuclei-2d-finetuned" and "lung-ds" in card.description and "Nuclei" not in card.description
    assert ft.canvas.height() >= 150

    # a folder that is not a dataset: one message, the previous result no longer shown
    (tmp_path / "empty").mkdir()
    ft.dataset_edit.value = str(tmp_path / "empty")
    ft.run_button.native.click()
    qtbot.waitUntil(lambda: ft.run_button.enabled, timeout=60000)
    assert "Fine-tuning failed" in ft.status.value and "Validation Dice" not in ft.status.value

    # the window fits the screen; nothing raised an exception into a notification
    screen = window.screen().availableGeometry()
    assert window.frameGeometry().height() <= max(screen.height(), 1000)
    _no_exception(notifications)


def test_keep_button_click_and_rerun_keeping_edits(make_napari_viewer, qtbot, tiny_checkpoint, notifications):
    """The K *button* (not only the key) works; after 'No, keep my edits' the new mask is the one
    selected for correction and the edited one is hidden beneath it."""
    viewer = make_napari_viewer()
    from napari_attnseg._napari.dock import AttnSegDock

    dock = AttnSegDock(viewer)
    viewer.window.add_dock_widget(dock, name="Attention segmentation")
    seg, corr = dock.segment, dock.correct
    img = np.zeros((40, 40), np.float32)
    img[5:15, 5:15] = 1
    viewer.add_image(img, name="cells")
    seg.add_model(tiny_checkpoint(2))
    with qtbot.waitSignal(seg.run_done, timeout=60000):
        seg.run_button.native.click()
    mask = viewer.layers["cells mask"]
    data = np.zeros_like(mask.data)
    data[2:8, 2:8] = 1
    data[20:30, 20:30] = 1
    mask.data = data
    viewer.cursor.position = (25.0, 25.0)
    corr.keep_button.native.click()
    assert mask.data[25, 25] == 1 and mask.data[4, 4] == 0
    seg.confirm_overwrite = lambda name: False  # "No": keep my edits
    with qtbot.waitSignal(seg.run_done, timeout=60000):
        seg.run_button.native.click()
    assert "cells mask (2)" in viewer.layers
    assert corr.labels_combo.value == "cells mask (2)"
    assert not mask.visible and viewer.layers["cells mask (2)"].visible
    _no_exception(notifications)


def test_finetune_errors_are_one_message_and_clear_the_last_result(make_napari_viewer, qtbot, tmp_path, notifications):
    from napari_attnseg._napari.finetune_widget import FinetuneWidget

    viewer = make_napari_viewer()
    ft = FinetuneWidget(viewer)
    ft.status.value = "Validation Dice 0.5 -> 0.6. Saved somewhere"
    ft.dataset_edit.value = str(tmp_path / "missing")
    ft.run_button.native.click()
    assert "does not exist" in ft.status.value and ft.run_button.enabled
    (tmp_path / "plain").mkdir()
    ft.dataset_edit.value = str(tmp_path / "plain")
    ft.run_button.native.click()
    qtbot.waitUntil(lambda: ft.run_button.enabled, timeout=60000)
    assert ft.status.value.startswith("Fine-tuning failed") and "Traceback" not in ft.status.value
    _no_exception(notifications)


def _nuclei_prompt_viewer(make_napari_viewer):
    """The right half of the nuclei sample, an empty mask and the Correct panel with the shipped click model
    chosen (skipped without it): (viewer, corr, mask, reference instances)."""
    from napari_attnseg._napari.correct_widget import CorrectWidget
    from napari_attnseg._paths import samples_dir
    from napari_attnseg.data import read_image
    from napari_attnseg.models.registry import bundled_models

    if "nuclei-2d-prompt" not in bundled_models():
        pytest.skip("no bundled promptable model")
    viewer = make_napari_viewer()
    image = read_image(samples_dir() / "nuclei2d_image.tif").data[:, 256:]
    ref = read_image(samples_dir() / "nuclei2d_labels.tif").data[:, 256:]
    viewer.add_image(image, name="nuclei")
    mask = viewer.add_labels(np.zeros(image.shape, np.uint8), name="nuclei mask")
    corr = CorrectWidget(viewer)
    corr.prompt.model_combo.value = "nuclei-2d-prompt"
    return viewer, corr, mask, ref


def test_click_to_fix_segments_an_object_and_undoes_it(make_napari_viewer, qtbot, notifications):
    """Prompt mode on the nuclei sample with the shipped promptable model: a click on a nucleus writes
    that nucleus into the mask (one undoable step), the modulated attention is shown, 'Undo last
    click' restores the mask, and bad clicks are messages."""
    from scipy import ndimage as ndi

    from napari_attnseg._napari import correct_widget as cw

    viewer, corr, mask, ref = _nuclei_prompt_viewer(make_napari_viewer)
    messages = []
    corr_notify, cw.notify_error = cw.notify_error, messages.append
    from napari_attnseg._napari import prompt_mode as pm

    pm_notify, pm.notify_error = pm.notify_error, messages.append
    try:
        corr.prompt.enable_box.value = True
        assert "nuclei prompts" in viewer.layers
        # a nucleus away from the image's sides: the click at its deepest point
        ids, counts = np.unique(ref[64:-64, 64:-64], return_counts=True)
        target = int(ids[1:][np.argmax(counts[1:])])
        obj = ref == target
        centre = np.unravel_index(np.argmax(ndi.distance_transform_edt(obj)), obj.shape)
        assert corr.prompt.click(centre, positive=False) is None and "positive click" in messages[-1]
        worker = corr.prompt.click(centre)
        qtbot.waitUntil(lambda: not corr.prompt.busy, timeout=60000)
        assert worker is not None and corr.prompt.last_result is not None, messages
        got = np.asarray(mask.data) == 1
        iou = (got & obj).sum() / (got | obj).sum()
        assert got[centre] and iou > 0.6, iou
        assert "nuclei prompt attention" in viewer.layers
        corr.prompt.undo_last_click()
        assert not np.asarray(mask.data).any() and len(viewer.layers["nuclei prompts"].data) == 0
        assert corr.prompt.click((5.0, 9999.0)) is None and "outside" in messages[-1]
    finally:
        cw.notify_error, pm.notify_error = corr_notify, pm_notify
    _no_exception(notifications)


def test_click_to_fix_uses_the_object_size_of_the_segment_run(make_napari_viewer, qtbot, notifications):
    """Nuclei twice the click model's size (the sample upsampled 2x): after a Segment run with Object
    diameter 50 (recorded in the mask's metadata), a click segments the nucleus at the model's size
    (before: the 25-px model cut a piece out of a 50-px nucleus, IoU about 0.2)."""
    from scipy import ndimage as ndi

    viewer, corr, mask, ref = _nuclei_prompt_viewer(make_napari_viewer)
    image = ndi.zoom(np.asarray(viewer.layers["nuclei"].data, np.float32), 2, order=1)
    ref = ndi.zoom(ref, 2, order=0)
    viewer.layers["nuclei"].data = image
    mask.data = np.zeros(image.shape, np.uint8)
    mask.metadata["attnseg"] = {"params": {"diameter_used": 50.0}}
    corr.prompt.enable_box.value = True
    ids, counts = np.unique(ref[120:-120, 120:-120], return_counts=True)
    obj = ref == int(ids[1:][np.argmax(counts[1:])])
    centre = np.unravel_index(np.argmax(ndi.distance_transform_edt(obj)), obj.shape)
    corr.prompt.click(centre)
    qtbot.waitUntil(lambda: not corr.prompt.busy, timeout=60000)
    got = np.asarray(mask.data) == 1
    assert corr.prompt.last_result.params.get("diameter") == 50.0
    assert (got & obj).sum() / (got | obj).sum() > 0.7
    _no_exception(notifications)


def test_click_to_fix_later_clicks_refine_the_newest_mask(make_napari_viewer, qtbot, notifications):
    """Each click's run gets the object's mask after the previous click (not its state before the first
    one) and its change is written against it: a nucleus added by a second positive click and removed by
    a negative click on it leaves the mask; 'Undo last click' walks the mask back one click at a time."""
    from scipy import ndimage as ndi

    viewer, corr, mask, ref = _nuclei_prompt_viewer(make_napari_viewer)
    image = np.asarray(viewer.layers["nuclei"].data)
    corr.prompt.enable_box.value = True
    ids, counts = np.unique(ref[64:-64, 64:-64], return_counts=True)
    a = ref == int(ids[1:][np.argmax(counts[1:])])
    deep = ndi.distance_transform_edt(a)
    ca = np.unravel_index(np.argmax(deep), a.shape)
    # a second nucleus 12-40 px away (centre to edge), not touching the first
    near = ndi.distance_transform_edt(~a)
    others = [i for i in np.unique(ref[(near > 3) & (near < 40)]) if i and not (ref == i)[a].any()]
    b = ref == max(others, key=lambda i: (ref == i).sum())
    cb = np.unravel_index(np.argmax(ndi.distance_transform_edt(b)), b.shape)

    def click(point, positive=True):
        corr.prompt.click(point, positive=positive)
        qtbot.waitUntil(lambda: not corr.prompt.busy, timeout=60000)
        return np.asarray(mask.data) == 1

    one = click(ca)
    two = click(cb)
    assert two[cb] and (two & b).sum() > 0.5 * b.sum(), "the second positive click adds the second nucleus"
    # a negative click inside the second nucleus, away from the positive one: part of it goes
    db = ndi.distance_transform_edt(b)
    far = np.argwhere(b & (db >= 2))
    cn = tuple(far[np.argmax(((far - np.array(cb)) ** 2).sum(1))])
    three = click(cn, positive=False)
    assert not three[cn] and (three & b).sum() < (two & b).sum(), "the negative click removes voxels added by the second"
    assert np.array_equal(three, corr.prompt.session.current), "the layer holds the object's newest mask"
    assert (three & a).sum() > 0.8 * (one & a).sum(), "the first nucleus stays"
    stroke = (np.arange(2, 6), np.arange(2, 6))
    mask.data_setitem(stroke, np.full(4, 2, np.uint8))  # a brush stroke after the click
    corr.prompt.undo_last_click()
    assert (np.asarray(mask.data)[stroke] == 2).all(), "undoing the click keeps the brush stroke"
    assert np.array_equal(np.asarray(mask.data) == 1, two)
    # Ctrl+Z on the prompts layer (selected while clicking) undoes a click too
    points = viewer.layers["nuclei prompts"]
    undo = [f for k, f in points.keymap.items() if "z" in str(k).lower() and "ctrl" in str(k).lower()]
    assert undo, points.keymap
    undo[0](points)
    assert np.array_equal(np.asarray(mask.data) == 1, one) and len(corr.prompt.clicks) == 1
    # another mask chosen: the clicks belong to the old one; a new object starts, nothing is undone there
    other = viewer.add_labels(np.zeros(image.shape, np.uint8), name="other mask")
    other.data_setitem(stroke, np.full(4, 3, np.uint8))
    corr.labels_combo.value = "other mask"
    assert not corr.prompt.clicks
    corr.prompt.undo_last_click()
    assert (np.asarray(other.data)[stroke] == 3).all() and np.array_equal(np.asarray(mask.data) == 1, one)
    _no_exception(notifications)


def test_next_suggested_slice_jumps_to_an_unreviewed_uncertain_slice(volume_run):
    """After a run, 'Next suggested slice' moves the viewer to the unreviewed slice with the highest
    uncertainty of the run's probabilities, shows the uncertainty as a hidden layer, never a reviewed one."""
    from napari_attnseg.suggest import rank_slices, slice_scores, uncertainty_map

    viewer, dock = volume_run
    seg, corr = dock.segment, dock.correct
    vol = np.asarray(viewer.layers["vol"].data)
    mask = viewer.layers["vol mask"]
    corr.mark_slices([0, 1, 2, 3])
    viewer.layers.selection.active = mask
    viewer.dims.order = (1, 0, 2)  # a coronal view: R must not mark the hidden axial slider's slice
    corr.mark_current()
    assert mask.metadata["reviewed_slices"] == [0, 1, 2, 3]
    z = corr.next_suggested()
    assert viewer.layers.selection.active is mask, "the brush must keep painting the mask"
    assert viewer.dims.order == (0, 1, 2) and viewer.dims.ndisplay == 2, "N shows the suggested axial slice"
    probs = np.asarray(seg.last_prediction.probabilities, np.float32)
    expected = rank_slices(slice_scores(uncertainty_map(probs)), [0, 1, 2, 3], n=1)[0][0]
    assert z == expected and z not in (0, 1, 2, 3)
    assert round(viewer.dims.point[0] / 4.0) == z and f"slice {z}" in corr.suggest_label.value
    assert "vol mask uncertainty" in viewer.layers and not viewer.layers["vol mask uncertainty"].visible
    corr.mark_current()
    assert z in mask.metadata["reviewed_slices"]
    corr.mark_current(reviewed=False)  # Shift+R / Unmark slice: one wrong mark off, the others stay
    assert mask.metadata["reviewed_slices"] == [0, 1, 2, 3]
    shown = viewer.layers["vol mask uncertainty"]
    assert corr.next_suggested() == z and viewer.layers["vol mask uncertainty"] is shown  # one map per run, reused
    # a mask no run made is ranked only by the run on the image chosen for it in the panel
    hand = viewer.add_labels(np.zeros((10, 32, 32), np.uint8), name="hand")
    viewer.add_image(vol[::-1].copy(), name="other")
    corr.labels_combo.value, corr.image_combo.value = "hand", "other"
    assert corr.next_suggested() is None
    corr.image_combo.value = "vol"
    assert corr.next_suggested() is not None
    corr.labels_combo.value = mask.name
    del hand
    corr.mark_slices(range(10))
    assert mask.metadata["reviewed_slices"] == list(range(10)) and corr.next_suggested() is None


def test_click_to_fix_lists_a_fine_tuned_prompt_checkpoint_and_picks_the_one_matching_the_image(
        make_napari_viewer, tmp_path):
    """A promptable 3D checkpoint added to the Segment list (as the Fine-tune panel does) is offered by
    Click to fix before it was ever run, and chosen for a volume; a 2D image gets a 2D model back."""
    from napari_attnseg import create_model, save_model
    from napari_attnseg._napari.dock import AttnSegDock
    from napari_attnseg.checkpoint import ModelCard
    from napari_attnseg.models.registry import bundled_models

    model = create_model("attention_unet", spatial_dims=3, features=(4, 8, 16), prompts={"radius": 3.0})
    path = tmp_path / "lesion-test.safetensors"
    save_model(model, path, ModelCard(arch="", config={}, name="lesion-test", description="test", tile=[16, 32, 32]))
    viewer = make_napari_viewer()
    dock = AttnSegDock(viewer)
    viewer.window.add_dock_widget(dock, name="Attention segmentation")
    seg, corr = dock.segment, dock.correct
    seg.add_model(path, select=False)
    viewer.add_image(np.zeros((8, 32, 32), np.float32), name="vol")
    viewer.add_labels(np.zeros((8, 32, 32), np.uint8), name="vol mask")
    corr.image_combo.value = "vol"
    corr.prompt.refresh_models()
    assert "lesion-test" in corr.prompt._entries and corr.prompt.model_combo.value == "lesion-test"
    assert corr.prompt.model().spatial_dims == 3
    if "nuclei-2d-prompt" in bundled_models():
        viewer.add_image(np.zeros((32, 32), np.float32), name="plane")
        corr.refresh()
        corr.image_combo.value = "plane"
        corr.prompt.refresh_models()
        assert corr.prompt.model_combo.value == "nuclei-2d-prompt"


def test_click_to_fix_with_the_2d_model_on_a_volume_says_so_and_writes_only_the_clicked_slice(
        make_napari_viewer, qtbot, notifications):
    """No 3D click model is bundled: on a volume the 2D one is chosen, the status says each click segments
    its own slice, and a click on slice 2 writes that slice alone."""
    viewer, corr, mask, ref = _stack_prompt_viewer(make_napari_viewer, 4)
    assert corr.prompt.model_combo.value == "nuclei-2d-prompt"
    assert "2D model" in corr.prompt.status.value and "slice it is on" in corr.prompt.status.value
    from scipy import ndimage as ndi

    biggest = np.bincount(ref.ravel())[1:].argmax() + 1
    depth = ndi.distance_transform_edt(ref == biggest)
    y, x = np.unravel_index(depth.argmax(), depth.shape)
    corr.prompt.click((2.0, float(y), float(x)))
    qtbot.waitUntil(lambda: not corr.prompt.busy, timeout=60000)
    written = np.asarray(mask.data) > 0
    assert written[2].any() and not written[[0, 1, 3]].any()
    assert written[2, y, x] and (written[2] & (ref == biggest)).sum() > 0.5 * (ref == biggest).sum()
    _no_exception(notifications)


def _touching_pair(ref):
    """Two touching nuclei of the reference (the biggest such pair) and each one's deepest point."""
    from scipy import ndimage as ndi

    best = None
    for i in np.unique(ref)[1:]:
        ring = ndi.binary_dilation(ref == i) & (ref != i) & (ref > 0)
        for j in np.unique(ref[ring]):
            size = int((ref == i).sum() + (ref == j).sum())
            if best is None or size > best[0]:
                best = (size, int(i), int(j))
    assert best is not None, "the sample has touching nuclei"
    a, b = ref == best[1], ref == best[2]
    centre = [np.unravel_index(np.argmax(ndi.distance_transform_edt(m)), m.shape) for m in (a, b)]
    return a, b, centre[0], centre[1]


def test_click_to_fix_keeps_what_the_user_made(make_napari_viewer, qtbot, notifications):
    """Audit defects: a click on a nucleus of a one-class mask keeps its touching neighbour; a voxel erased
    by hand stays erased when the next click runs; another class's paint is never overwritten; a new
    object started while a run is busy does not lose the first object; quick clicks queued on one object
    are all used."""
    viewer, corr, mask, ref = _nuclei_prompt_viewer(make_napari_viewer)
    corr.prompt.enable_box.value = True
    a, b, ca, cb = _touching_pair(ref)
    wait = lambda: qtbot.waitUntil(lambda: not corr.prompt.busy, timeout=60000)  # noqa: E731

    # 1. the mask holds both touching nuclei as one blob of class 1: a click on A keeps B
    mask.data = ((a | b) * 1).astype(np.uint8)
    corr.prompt.click(ca)
    wait()
    data = np.asarray(mask.data)
    assert (data[b] == 1).mean() > 0.95, "the touching neighbour was deleted"
    assert "kept" in corr.prompt.status.value
    # 2. erase a corner of A by hand, click positive in A again: the erased voxels stay erased
    corr.prompt.new_object()
    mask.data = np.zeros_like(data)
    corr.prompt.click(ca)
    wait()
    first = np.argwhere(np.asarray(mask.data) == 1)
    edge = tuple(first[np.argmax(((first - np.array(ca)) ** 2).sum(1))])
    mask.data_setitem(tuple(np.array([c]) for c in edge), np.zeros(1, np.uint8))
    corr.prompt.click((ca[0] + 1, ca[1] + 1))
    wait()
    assert np.asarray(mask.data)[edge] == 0, "a click put back a voxel erased by hand"
    # 3. a ring of class 2 painted around A: the next click does not overwrite it
    from scipy import ndimage as ndi

    ring = ndi.binary_dilation(np.asarray(mask.data) == 1, iterations=2) & (np.asarray(mask.data) == 0)
    mask.data_setitem(np.nonzero(ring), np.full(int(ring.sum()), 2, np.uint8))
    corr.prompt.click(ca)
    wait()
    assert (np.asarray(mask.data)[ring] == 2).all(), "a click overwrote another class's paint"
    # 4. New object while A's run is busy: A is still written, and B's run keeps it
    corr.prompt.new_object()
    mask.data = np.zeros_like(data)
    corr.prompt.click(ca)
    corr.prompt.new_object()
    corr.prompt.click(cb)
    wait()
    out = np.asarray(mask.data)
    assert (out[a] == 1).mean() > 0.8 and (out[b] == 1).mean() > 0.5, "an object started mid-run lost the first"
    # 5. quick clicks queued on one object: every one of them is used
    corr.prompt.new_object()
    mask.data = np.zeros_like(data)
    far = [c for c in np.unique(ref)[1:] if not (ndi.binary_dilation(ref == c, iterations=20) & a).any()]
    c = max(far, key=lambda i: (ref == i).sum())
    cc = np.unravel_index(np.argmax(ndi.distance_transform_edt(ref == c)), ref.shape)
    corr.prompt.click(ca)
    corr.prompt.click(cb)
    corr.prompt.click(cc)
    wait()
    wait()
    out = np.asarray(mask.data)
    assert all((out[m] == 1).mean() > 0.5 for m in (a, b, ref == c)), [(out[m] == 1).mean() for m in (a, b, ref == c)]
    _no_exception(notifications)


def test_click_to_fix_drag_pans_and_queued_slices_are_each_segmented(make_napari_viewer, qtbot, notifications):
    """A press-drag-release is a pan, not a click; quick clicks on several slices of a volume (2D model)
    are each segmented on their own slice."""
    from types import SimpleNamespace

    viewer, corr, mask, ref = _stack_prompt_viewer(make_napari_viewer, 5)
    from scipy import ndimage as ndi

    big = np.bincount(ref.ravel())[1:].argmax() + 1
    y, x = np.unravel_index(np.argmax(ndi.distance_transform_edt(ref == big)), ref.shape)
    event = SimpleNamespace(type="mouse_press", position=(0.0, float(y), float(x)), pos=(100.0, 100.0),
                            modifiers=(), button=1)
    drag = corr.prompt._on_click(corr.prompt.points_layer, event)
    next(drag)
    event.type, event.pos = "mouse_move", (140.0, 100.0)
    with pytest.raises(StopIteration):
        next(drag)
    assert not corr.prompt.clicks, "a drag added a click"
    release = SimpleNamespace(**{**vars(event), "type": "mouse_press", "pos": (100.0, 100.0)})
    press = corr.prompt._on_click(corr.prompt.points_layer, release)
    next(press)
    release.type = "mouse_release"
    with pytest.raises(StopIteration):
        next(press)  # released where it was pressed: a click
    assert len(corr.prompt.clicks) == 1
    for z in (1, 4):
        corr.prompt.click((float(z), float(y), float(x)))
    for _ in range(3):
        qtbot.waitUntil(lambda: not corr.prompt.busy, timeout=60000)
        qtbot.wait(50)
    written = (np.asarray(mask.data) > 0).any((1, 2))
    assert written.tolist() == [True, True, False, False, True], written.tolist()
    # the prompts layer deleted while clicking: the mode goes off and says so; ticking it brings it back
    viewer.layers.remove("stack prompts")
    assert not corr.prompt.enable_box.value and "was removed" in corr.prompt.status.value
    corr.prompt.enable_box.value = True
    assert "stack prompts" in viewer.layers
    _no_exception(notifications)


def _stack_prompt_viewer(make_napari_viewer, slices: int):
    """A stack of ``slices`` copies of a nuclei crop, an empty mask and the Correct panel in prompt mode with
    the shipped 2D click model (skipped without it): (viewer, corr, mask, reference instances of one slice)."""
    from napari_attnseg._napari.correct_widget import CorrectWidget
    from napari_attnseg._paths import samples_dir
    from napari_attnseg.data import read_image
    from napari_attnseg.models.registry import bundled_models

    if "nuclei-2d-prompt" not in bundled_models():
        pytest.skip("no bundled promptable model")
    plane = read_image(samples_dir() / "nuclei2d_image.tif").data[:160, 256:416]
    ref = read_image(samples_dir() / "nuclei2d_labels.tif").data[:160, 256:416]
    viewer = make_napari_viewer()
    viewer.add_image(np.stack([plane] * slices), name="stack")
    mask = viewer.add_labels(np.zeros((slices, *plane.shape), np.uint8), name="stack mask")
    corr = CorrectWidget(viewer)
    corr.prompt.enable_box.value = True
    return viewer, corr, mask, ref
