"""A clinician's worklist in one napari session, never restarting napari: case after case opened, segmented,
corrected (brush, helpers, R, N, clicks), exported and closed. The defects that audit found, each test failing
without its fix: what stayed from one case to the next, what a closed case left in memory, the panel opened from
the Plugins menu (napari's proxy of the viewer), and the Segment tab's model list reading the user models folder
only when the panel opened."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def _nuclei(n: int = 192):
    from napari_attnseg._paths import samples_dir
    from napari_attnseg.data import read_image
    from napari_attnseg.models.registry import bundled_models

    if not {"nuclei-2d", "nuclei-2d-prompt"} <= set(bundled_models()):
        pytest.skip("nuclei-2d or nuclei-2d-prompt is not bundled")
    image = read_image(samples_dir() / "nuclei2d_image.tif").data[:n, :n]
    ref = read_image(samples_dir() / "nuclei2d_labels.tif").data[:n, :n]
    return image, ref


def _centre_of_largest(ref) -> tuple[float, float]:
    label = int(np.bincount(ref.ravel())[1:].argmax()) + 1
    return tuple(np.argwhere(ref == label).mean(0))


def test_clicks_refine_one_object_in_the_panel_opened_from_the_plugins_menu(make_napari_viewer, qtbot, notifications):
    """napari hands a panel opened from its Plugins menu a proxy of the viewer, which wraps a layer anew at every
    look-up: the click model's "same mask and image as the object's" test (by identity) failed at every click, so
    each click started a new object (the second click's status: "from 1 click(s)") and a negative click after a
    positive one was refused ("Start an object with a positive click"). The Correct tab also took the chosen mask for
    another one at every change of the layer list."""
    image, ref = _nuclei()
    viewer = make_napari_viewer()
    _, dock = viewer.window.add_plugin_dock_widget("napari-attnseg", "Attention segmentation")
    viewer.add_image(image, name="cells")
    corr, pm = dock.correct, dock.correct.prompt
    pm.model_combo.value = "nuclei-2d-prompt"
    pm.enable_box.value = True
    y, x = _centre_of_largest(ref)
    for point, positive in (((y, x), True), ((y + 2, x + 2), True), ((y + 25, x + 25), False)):
        pm.click(point, positive=positive)
        qtbot.waitUntil(lambda: not pm.busy and not pm.pending, timeout=60000)
    assert len(pm.clicks) == 3, pm.status.value
    assert "from 3 click(s)" in pm.status.value, pm.status.value
    refused = [str(n.message) for n in notifications if "positive click" in str(n.message)]
    assert not refused, refused
    watched = corr._watched
    viewer.add_points(np.empty((0, 2)), name="other")
    assert corr._watched is watched  # (the same mask: not watched anew, its counts kept)


def test_a_closed_case_leaves_nothing_in_memory(dock, qtbot, tmp_path):
    """Close a case (its layers deleted) after Segment, a brush stroke, R, a click and Export: its image and mask were
    kept alive for the whole session (with their data: a day of CTs piled up) by napari's task list, which keeps
    every worker napari's thread_worker starts, and by the panels: the click mode's caches, status pair, watched
    mask and prompts layer, the Correct tab's edit counts. Now both are freed, and nothing names the closed case."""
    image, ref = _nuclei()
    viewer, d = dock
    seg, corr, pm = d.segment, d.correct, d.correct.prompt
    img = viewer.add_image(image, name="cells")
    seg.model_combo.value = "nuclei-2d"
    with qtbot.waitSignal(seg.run_done, timeout=120000):
        seg.run_button.native.click()
    mask = viewer.layers["cells mask"]
    assert corr.labels_combo.value == mask.name
    mask.data_setitem((np.arange(5, 9), np.arange(5, 9)), 1)  # a brush stroke
    corr.mark_current()
    pm.model_combo.value = "nuclei-2d-prompt"
    pm.enable_box.value = True
    pm.click(_centre_of_largest(ref))
    qtbot.waitUntil(lambda: not pm.busy and not pm.pending, timeout=60000)
    pm.enable_box.value = False
    corr.dataset_edit.value = str(tmp_path / "ds")
    corr.format_combo.value = "tiff"
    assert corr.export() is not None
    qtbot.waitUntil(lambda: corr.export_button.enabled, timeout=60000)
    assert (tmp_path / "ds" / "manifest.json").is_file()
    qtbot.wait(100)
    refs = {"image": weakref.ref(img), "mask": weakref.ref(mask)}
    del img, mask
    viewer.layers.clear()
    qtbot.wait(100)
    gc.collect()
    assert {k: r() is None for k, r in refs.items()} == {"image": True, "mask": True}
    assert seg.last_prediction is None and seg.status.value == ""  # (the last run's status named the closed image)


def test_a_closed_volume_takes_its_suggestion_and_prediction_with_it(volume_run, qtbot):
    """N on a volume, then the case closed: the Correct tab still said "Suggested slice 7" for the next case (also
    after N refused the next mask) and kept the run's probabilities and uncertainty map; the Segment tab kept the
    prediction and its status named the closed image."""
    viewer, d = volume_run
    seg, corr = d.segment, d.correct
    z = corr.next_suggested()
    assert z is not None and corr.suggest_label.value.startswith("Suggested slice")
    viewer.layers.clear()
    gc.collect()
    assert corr.suggest_label.value == "" and corr._suggest_cache is None
    assert seg.last_prediction is None and seg.last_source is None and seg.status.value == ""
    # the image closed but its mask kept open: the prediction stays (N still ranks that mask's slices)
    viewer.add_image(np.random.default_rng(3).random((10, 32, 32)).astype(np.float32), name="vol", scale=(4.0, 1, 1))
    with qtbot.waitSignal(seg.run_done, timeout=60000):
        seg.run_button.native.click()
    del viewer.layers["vol"]
    assert seg.last_prediction is not None
    assert corr.next_suggested() is not None


def test_names_and_case_id_typed_for_one_case_do_not_follow_to_the_next(dock):
    """Case 1's class names typed ("background, tumour"), its case id and *Replace the case* stayed in the fields
    for case 2's mask: case 2 was exported as a tumour, and with case 1's id and Replace ticked it replaced case 1
    in the dataset. Another mask of the same image (a second run's "mask (2)") keeps them."""
    viewer, d = dock
    corr = d.correct
    a = viewer.add_image(np.zeros((32, 32), np.float32), name="a")
    viewer.add_labels(np.zeros((32, 32), np.uint8), name="a mask",
                      metadata={"class_names": ["background", "nucleus"], "attnseg_source_uid": a.unique_id})
    assert corr.labels_combo.value == "a mask" and corr.class_names_edit.value == "background, nucleus"
    corr.class_names_edit.value = "background, tumour"
    corr.case_edit.value = "case_0000"
    corr.replace_box.value = True
    viewer.add_labels(np.zeros((32, 32), np.uint8), name="a mask (2)",  # the same case: everything stays
                      metadata={"class_names": ["background", "nucleus"], "attnseg_source_uid": a.unique_id})
    corr.labels_combo.value = "a mask (2)"
    assert corr.class_names_edit.value == "background, tumour"
    assert corr.case_edit.value == "case_0000" and corr.replace_box.value
    viewer.layers.clear()
    b = viewer.add_image(np.zeros((32, 32), np.float32), name="b")
    viewer.add_labels(np.zeros((32, 32), np.uint8), name="b mask",
                      metadata={"class_names": ["background", "nucleus"], "attnseg_source_uid": b.unique_id})
    assert corr.labels_combo.value == "b mask"
    assert corr.class_names_edit.value == "background, nucleus"
    assert corr.case_edit.value == "" and not corr.replace_box.value


def _user_model(folder, name: str, seed: int = 0):
    import torch

    from napari_attnseg import create_model, save_model
    from napari_attnseg.checkpoint import ModelCard

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    save_model(create_model("unet", spatial_dims=2, features=[4, 8, 16]), folder / f"{name}.safetensors",
               ModelCard(arch="", config={}, name=name, description=f"{name}, made today", classes=["background", "x"],
                         tile=[32, 32]))


def test_the_model_list_follows_the_user_models_folder_while_napari_is_open(segment_panel, qtbot, tmp_path,
                                                                             monkeypatch):
    """A model added with `attnseg models --add` while napari was open did not appear in the Segment tab until the
    panel was opened again, and a deleted one stayed listed (and failed when run). The list is read again (the
    folder's listing, no model loaded) when it is opened and when the tab is shown; the choice stays."""
    from qtpy.QtCore import Qt
    from qtpy.QtGui import QShowEvent

    from napari_attnseg._napari import segment_widget as sw

    infos = []
    monkeypatch.setattr(sw, "notify_info", infos.append)
    viewer, w = segment_panel
    folder = tmp_path / "user-models"
    viewer.add_image(np.zeros((32, 32), np.float32), name="img")
    w.model_combo.value = "nuclei-2d"
    _user_model(folder, "mine")
    assert "mine" not in w.model_combo.choices
    qtbot.mouseClick(w.model_combo.native, Qt.LeftButton)  # the list opened
    w.model_combo.native.hidePopup()
    assert "mine" in w.model_combo.choices and w.model_combo.value == "nuclei-2d"
    assert w.model_info.value.startswith("Nuclei")
    w.model_combo.value = "mine"
    assert w.run_done is not None and "made today" in w.model_info.value
    loaded = w._current_model()  # (loaded when run)
    assert loaded is not None
    (folder / "mine.safetensors").unlink()
    (folder / "mine.json").unlink()
    w.showEvent(QShowEvent())  # the tab shown again
    assert "mine" not in w.model_combo.choices and w.model_combo.value != "mine"
    assert any("'mine' is no longer in your models folder" in m for m in infos), infos
    assert w.model_info.value and "made today" not in w.model_info.value


def test_the_next_ct_case_is_warned_again_about_the_click_model(dock, notifications):
    """Click to fix warns once that the microscopy click model was not trained on CT, and every status after it says
    "see the warning"; the warning was shown once per session: the next CT case of the worklist got the pointer to a
    warning it never showed."""
    _nuclei()
    viewer, d = dock
    pm = d.correct.prompt
    ct = np.random.default_rng(0).normal(-300, 400, (64, 64)).clip(-1024, 1500).astype(np.int16)
    for case in ("ct1", "ct2"):
        viewer.add_image(ct, name=case)
        pm.model_combo.value = "nuclei-2d-prompt"
        pm.enable_box.value = True
        pm.enable_box.value = False
        viewer.layers.clear()
    said = [str(n.message) for n in notifications if "not trained on CT" in str(n.message)]
    assert len(said) == 2, said


def test_the_fine_tune_tab_holds_the_viewer_and_workers_as_the_other_tabs_do(make_napari_viewer):
    """The Fine-tune tab kept napari's plugin proxy of the viewer (a new wrapper per layer look-up, and napari's
    warnings about private attributes) and started its runs with napari's thread_worker, whose task list keeps every
    worker, with its dataset and model, for the whole session."""
    from napari_attnseg._napari import finetune_widget, job_pool

    viewer = make_napari_viewer()
    _, alone = viewer.window.add_plugin_dock_widget("napari-attnseg", "Fine-tune")  # (Plugins > ... > Fine-tune)
    assert alone.viewer is viewer
    assert finetune_widget.thread_worker is job_pool.thread_worker


def test_click_to_fix_on_the_nuclei_sample_does_not_write_into_its_reference(make_napari_viewer, qtbot):
    """File > Open Sample > Nuclei, then Click to fix before any Segment run: the sample's hidden 'nuclei reference'
    was the Correct tab's mask and the clicks were written into it. Now the clicks go to a new 'nuclei mask'."""
    from napari_attnseg.models.registry import bundled_models

    if "nuclei-2d-prompt" not in bundled_models():
        pytest.skip("nuclei-2d-prompt is not bundled")
    viewer = make_napari_viewer()
    _, dock = viewer.window.add_plugin_dock_widget("napari-attnseg", "Attention segmentation")
    viewer.open_sample("napari-attnseg", "nuclei-2d")
    reference = viewer.layers["nuclei reference"]
    before = np.asarray(reference.data).copy()
    corr, pm = dock.correct, dock.correct.prompt
    pm.model_combo.value = "nuclei-2d-prompt"
    pm.enable_box.value = True
    assert corr.labels_combo.value == "nuclei mask", corr.labels_combo.value
    ref = np.asarray(reference.data)
    centre = tuple(np.argwhere(ref > 0)[len(np.argwhere(ref > 0)) // 2])
    pm.click(centre)
    qtbot.waitUntil(lambda: not pm.busy and not pm.pending, timeout=60000)
    assert np.array_equal(np.asarray(reference.data), before)
    assert np.asarray(viewer.layers["nuclei mask"].data).any(), pm.status.value
