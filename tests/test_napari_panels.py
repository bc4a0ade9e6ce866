"""Correct/export and Fine-tune panels, readers/writers and sample data, in a real napari viewer."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

pytestmark = pytest.mark.gui


@pytest.fixture()
def viewer(make_napari_viewer):
    return make_napari_viewer()


def wait_until_done(qtbot, button, timeout):
    """Wait for a panel's worker to end: the panel re-enables ``button`` in its finished handler,
    connected before the worker started. (A waitSignal on ``worker.finished`` set up after the start
    misses the signal when the worker ends first.)"""
    assert not button.enabled
    qtbot.waitUntil(lambda: button.enabled, timeout=timeout)


def test_helpers_are_undoable_and_review_is_recorded(viewer, qtbot, tmp_path):
    from napari_attnseg._napari.correct_widget import CorrectWidget

    img = np.random.default_rng(0).random((6, 20, 20)).astype(np.float32)
    mask = np.zeros((6, 20, 20), np.uint8)
    mask[:, 4:12, 4:12] = 1
    mask[:, 7, 7] = 0  # holes
    viewer.add_image(img, name="ct", scale=(2.5, 0.7, 0.7))
    layer = viewer.add_labels(mask.copy(), name="ct mask", scale=(2.5, 0.7, 0.7))
    layer.metadata["attnseg_prediction"] = mask.copy()
    w = CorrectWidget(viewer)
    assert w.labels_combo.value == "ct mask" and w.image_combo.value == "ct"
    w.fill_holes()
    assert (layer.data[:, 7, 7] == 1).all()
    layer.undo()
    assert (layer.data[:, 7, 7] == 0).all()
    w.fill_holes()
    assert "+6 / -0" in w.stats_label.value
    viewer.dims.set_point(0, 2 * 2.5)
    w.mark_current()
    w.mark_slices([4, 5])
    assert layer.metadata["reviewed_slices"] == [2, 4, 5]
    assert "2,4-5" in w.reviewed_label.value
    w.dataset_edit.value = str(tmp_path / "ds")
    assert w.export() is not None
    wait_until_done(qtbot, w.export_button, 30000)
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    case = manifest["cases"][0]
    assert case["reviewed_slices"] == [2, 4, 5] and case["ignore_label"] == 2
    assert case["spacing"] == pytest.approx([2.5, 0.7, 0.7])
    assert case["edit_stats"]["per_class"]["1"]["added"] == 6
    assert w.last_export_dir == str(tmp_path / "ds")


def test_helpers_on_the_current_slice_only(viewer):
    from napari_attnseg._napari.correct_widget import CorrectWidget

    mask = np.zeros((5, 24, 24), np.uint8)
    mask[:, 4:14, 4:14] = 1
    mask[:, 8, 8] = 0  # a hole on every slice
    mask[:, 20, 20] = 1  # a speck on every slice
    viewer.add_image(np.zeros(mask.shape, np.float32), name="mr", scale=(3.0, 1.0, 1.0))
    layer = viewer.add_labels(mask.copy(), name="mr mask", scale=(3.0, 1.0, 1.0))
    w = CorrectWidget(viewer)
    w.slice_only.value = True
    viewer.dims.set_point(0, 2 * 3.0)  # slice 2 on screen
    w.fill_holes()
    w.size_spin.value = 5
    w.remove_small()
    assert layer.data[2, 8, 8] == 1 and layer.data[2, 20, 20] == 0
    others = [0, 1, 3, 4]
    assert (layer.data[others, 8, 8] == 0).all() and (layer.data[others, 20, 20] == 1).all()
    layer.undo()  # each helper is one undo step
    assert layer.data[2, 20, 20] == 1 and layer.data[2, 8, 8] == 1
    w.slice_only.value = False
    w.fill_holes()
    assert (layer.data[:, 8, 8] == 1).all()


def test_keep_the_object_under_the_cursor(viewer):
    from napari_attnseg._napari.correct_widget import CorrectWidget

    mask = np.zeros((5, 30, 30), np.uint8)
    mask[:, 1:20, 1:20] = 1  # the largest object: a false positive
    mask[2:4, 24:27, 24:27] = 1  # the tumour
    viewer.add_image(np.zeros(mask.shape, np.float32), name="ct", scale=(5.0, 0.5, 0.5))
    layer = viewer.add_labels(mask.copy(), name="ct mask", scale=(5.0, 0.5, 0.5))
    w = CorrectWidget(viewer)
    viewer.dims.set_point(0, 2 * 5.0)
    viewer.cursor.position = (2 * 5.0, 25 * 0.5, 25 * 0.5)  # world coordinates: on the tumour
    w.keep_at_cursor()
    assert (layer.data == 1).sum() == 18 and layer.data[2, 25, 25] == 1 and layer.data[0, 5, 5] == 0
    layer.undo()  # one undo step
    assert (layer.data == mask).all()
    w.slice_only.value = True  # only the slice on screen: the other slices keep their objects
    w.keep_at_cursor()
    assert layer.data[2, 5, 5] == 0 and layer.data[3, 5, 5] == 1 and layer.data[2, 25, 25] == 1
    before = layer.data.copy()
    viewer.cursor.position = (2 * 5.0, 28 * 0.5, 28 * 0.5)  # background: a message, no change
    w.keep_at_cursor()
    assert (layer.data == before).all()


def test_finetune_panel_trains_and_registers_the_model(viewer, qtbot, tmp_path, tiny_checkpoint):
    from napari_attnseg._napari.finetune_widget import FinetuneWidget
    from napari_attnseg._napari.segment_widget import SegmentWidget
    from napari_attnseg.data.export import export_case

    rng = np.random.default_rng(0)
    for _ in range(3):
        img = rng.random((40, 40)).astype(np.float32)
        export_case(img, (img > 0.6).astype(np.uint8), tmp_path / "ds", "tiff")
    seg = SegmentWidget(viewer)
    viewer.window.add_dock_widget(seg, name="Attention segmentation")
    w = FinetuneWidget(viewer)
    w.add_model("tiny", str(tiny_checkpoint(2)))
    w.dataset_edit.value = str(tmp_path / "ds")
    w.out_edit.value = str(tmp_path / "ft")
    w.minutes_spin.min = 0.1  # (below the panel's minimum, to keep the test short)
    w.minutes_spin.value = 0.15
    assert w.run() is not None
    wait_until_done(qtbot, w.run_button, 120000)
    assert w.result is not None and (tmp_path / "ft" / "best.safetensors").exists()
    assert w.history and "->" in w.status.value
    assert len(w.ax.lines) == 1 and len(w.ax_dice.lines) == 1  # loss and Dice, each on its own axis
    # the new model is in the segment widget's list, and chosen there unless less than one epoch ran
    # (a model that hardly changed from the start is not put forward for the next run)
    def path(entry):  # a path until first used, then the loaded model
        return str(getattr(entry, "checkpoint_path", entry))

    label = next(k for k, v in seg._models.items() if path(v) == str(w.result.checkpoint))
    short = w.status.value.startswith("Less than one epoch")
    assert (seg.model_combo.value == label) is not short
    assert label in w.model_combo.choices


def test_reviewed_ranges_key_binding_and_finetune_default_dataset(viewer, qtbot, tmp_path):
    from napari_attnseg._napari.correct_widget import CorrectWidget
    from napari_attnseg._napari.finetune_widget import FinetuneWidget

    img = np.random.default_rng(1).random((8, 16, 16)).astype(np.float32)
    mask = (img > 0.5).astype(np.uint8)
    viewer.add_image(img, name="vol")
    layer = viewer.add_labels(mask, name="vol mask")
    corr = CorrectWidget(viewer)
    viewer.window.add_dock_widget(corr, name="Correct and export")
    ft = FinetuneWidget(viewer)
    viewer.window.add_dock_widget(ft, name="Fine-tune")
    assert "R" in {str(k).upper() for k in viewer.keymap}
    messages = []
    import napari_attnseg._napari.correct_widget as cw

    cw_notify, cw.notify_error = cw.notify_error, messages.append
    try:
        corr.range_edit.value = "1-3,6"
        corr.mark_range()
        assert layer.metadata["reviewed_slices"] == [1, 2, 3, 6]
        corr.range_edit.value = "5-9"
        corr.mark_range()
        assert "outside" in messages[-1] and layer.metadata["reviewed_slices"] == [1, 2, 3, 6]
        corr.range_edit.value = "two"
        corr.mark_range()
        assert "3,5,10-12" in messages[-1]
    finally:
        cw.notify_error = cw_notify
    corr.dataset_edit.value = str(tmp_path / "ds")
    worker = corr.export()
    assert worker is not None and not corr.export_bar.native.isHidden()  # the busy bar shows while exporting
    wait_until_done(qtbot, corr.export_button, 30000)
    assert corr.export_bar.native.isHidden()
    assert ft.default_dataset() == str(tmp_path / "ds") == str(ft.dataset_edit.value)
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["cases"][0]["reviewed_slices"] == [1, 2, 3, 6]


def test_nifti_reader_writer_round_trip(viewer, tmp_path):
    import nibabel as nib

    from napari_attnseg._napari.io_hooks import get_nifti_reader, write_labels_nifti

    data = np.random.default_rng(0).integers(0, 3, (8, 9, 10)).astype(np.uint8)
    affine = np.diag([0.9, 0.8, 3.0, 1.0])
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "seg.nii.gz")
    reader = get_nifti_reader(str(tmp_path / "seg.nii.gz"))
    [(arr, kwargs, kind)] = reader(str(tmp_path / "seg.nii.gz"))
    assert arr.shape == (10, 9, 8) and kwargs["scale"] == pytest.approx((3.0, 0.8, 0.9))
    layer = viewer.add_labels(arr, **{k: v for k, v in kwargs.items() if k in ("scale", "metadata", "name")})
    [out] = write_labels_nifti(str(tmp_path / "back.nii.gz"), layer.data,
                               {"metadata": layer.metadata, "scale": tuple(layer.scale)})
    back = nib.load(out)
    np.testing.assert_array_equal(np.asarray(back.dataobj), data)
    np.testing.assert_allclose(back.affine, affine)


def test_dicom_series_round_trips_through_the_nifti_writer(viewer, tmp_path):
    from test_io import write_dicom_series

    from napari_attnseg._napari.io_hooks import get_dicom_reader, get_nifti_reader, write_labels_nifti

    hu = (np.arange(5)[:, None, None] * 40 - 100 + np.zeros((5, 8, 6))).astype(np.float32)
    folder = write_dicom_series(tmp_path / "dcm", hu)
    [(arr, kwargs, _)] = get_dicom_reader(str(folder))(str(folder))
    image = viewer.add_image(arr, **{k: v for k, v in kwargs.items() if k in ("scale", "metadata", "name")})
    labels = viewer.add_labels((arr > -30).astype(np.uint8), scale=image.scale, metadata=dict(image.metadata))
    [out] = write_labels_nifti(str(tmp_path / "mask.nii.gz"), labels.data,
                               {"metadata": labels.metadata, "scale": tuple(labels.scale)})
    [(back, bkw, _)] = get_nifti_reader(out)(out)
    np.testing.assert_array_equal(back, labels.data)
    assert bkw["scale"] == pytest.approx(tuple(image.scale))
    # the series' orientation and origin (from ImagePositionPatient / ImageOrientationPatient) are kept
    np.testing.assert_allclose(bkw["metadata"]["affine"], kwargs["metadata"]["affine"], atol=1e-5)


def test_readers_decline_foreign_files(tmp_path):
    from napari_attnseg._napari.io_hooks import get_dicom_reader, get_nifti_reader
    from napari_attnseg.errors import InputError

    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    assert get_nifti_reader(str(txt)) is None
    assert get_dicom_reader(str(txt)) is None
    bad = tmp_path / "broken.nii.gz"
    bad.write_text("garbage")
    # opened by name, unreadable: a message naming the file (napari shows it), not "returned no data"
    with pytest.raises(InputError, match="broken.nii.gz"):
        get_nifti_reader(str(bad))(str(bad))


def test_dicom_reader_and_tiff_writer(viewer, tmp_path):
    from test_io import write_dicom_series

    from napari_attnseg._napari.io_hooks import get_dicom_reader, write_labels_tif
    from napari_attnseg.data import read_image

    hu = (np.arange(4)[:, None, None] * 50 - 200 + np.zeros((4, 8, 6))).astype(np.float32)
    folder = write_dicom_series(tmp_path / "dcm", hu)
    [(arr, kwargs, _)] = get_dicom_reader(str(folder))(str(folder))
    np.testing.assert_array_equal(arr, hu.astype(np.int16))
    assert kwargs["scale"] == pytest.approx((2.5, 0.8, 0.6))
    [out] = write_labels_tif(str(tmp_path / "m.tif"), (arr > -120).astype(np.uint8), {"scale": kwargs["scale"], "metadata": kwargs["metadata"]})
    vol = read_image(out)
    assert vol.spacing == pytest.approx((2.5, 0.8, 0.6)) and vol.data.sum() == 2 * 48


def test_sample_data_loads_real_images():
    from napari_attnseg._napari.sample_data import brain_mri_3d, nuclei_2d

    (img, kw, kind), (ref, _, _) = nuclei_2d()
    assert img.shape == (512, 512) and kind == "image" and ref.max() == 1
    (brain, bkw, _), (lab, _, _) = brain_mri_3d()
    assert brain.shape == (189, 233, 197) and set(np.unique(lab)) == {0, 1, 2}
    assert bkw["scale"] == pytest.approx((1.0, 1.0, 1.0))


def test_a_predict_result_opens_in_the_viewer_ready_to_correct(viewer, tmp_path):
    """`attnseg predict` on the nuclei sample, then File > Open of its record: the widget's layers."""
    import napari

    from napari_attnseg._paths import samples_dir
    from napari_attnseg.cli import main

    out = tmp_path / "out"
    assert main(["predict", str(samples_dir() / "nuclei2d_image.tif"), "--model", "nuclei-2d", "--out", str(out),
                 "--attention", "--device", "cpu"]) == 0
    viewer.open(str(out / "nuclei2d_image_predict.json"), plugin="napari-attnseg")
    names = [layer.name for layer in viewer.layers]
    assert names[:2] == ["nuclei2d_image", "nuclei2d_image probability"]
    assert names[-1] == "nuclei2d_image mask"  # on top of its heatmaps
    mask = viewer.layers["nuclei2d_image mask"]
    assert isinstance(mask, napari.layers.Labels) and mask.data.shape == (512, 512) and mask.data.max() == 1
    maps = [layer for layer in viewer.layers if " attention " in layer.name]
    assert len(maps) == 3 and [m.visible for m in maps] == [True, False, False]
    # a map pixel sits on the centre of the image block it summarises (stride 2: between pixels 0 and 1)
    finest = maps[0]
    stride = finest.scale[0] / viewer.layers["nuclei2d_image"].scale[0]
    assert stride == 2
    np.testing.assert_allclose(finest.data_to_world((0, 0)), ((stride - 1) / 2,) * 2)


def test_correct_panel_follows_renames_keeps_typed_class_names_and_refuses_an_unreviewed_volume(viewer, tmp_path):
    """Renaming the image or the mask in the layer list keeps them chosen (R, K, export work); class names
    the user typed survive a new mask; a volume with no reviewed slice is not exported (every slice would
    be the model's unchecked guess) and says what to do."""
    from napari_attnseg._napari import correct_widget as cw
    from napari_attnseg._napari.correct_widget import CorrectWidget

    img = np.random.default_rng(0).random((6, 20, 20)).astype(np.float32)
    mask = np.zeros((6, 20, 20), np.uint8)
    mask[:, 4:12, 4:12] = 1
    image = viewer.add_image(img, name="ct")
    layer = viewer.add_labels(mask, name="ct mask")
    layer.features = {"class": ["background", "nucleus"]}
    viewer.add_image(img * 2, name="other")
    w = CorrectWidget(viewer)
    assert (w.labels_combo.value, w.image_combo.value) == ("ct mask", "ct")
    messages = []
    notify, cw.notify_error = cw.notify_error, messages.append
    try:
        w.dataset_edit.value = str(tmp_path / "ds")
        assert w.export() is None and "No slice of ct mask is marked reviewed" in messages[-1]
        assert not (tmp_path / "ds").exists()
        image.name = "patient 7 CT"
        layer.name = "tumour edit"
        assert (w.labels_combo.value, w.image_combo.value) == ("tumour edit", "patient 7 CT")
        assert "patient 7 CT" in [c for c in w.image_combo.choices] and "ct" not in w.image_combo.choices
        w.mark_slices([1, 2])
        assert layer.metadata["reviewed_slices"] == [1, 2]
        assert w.class_names_edit.value == "background, nucleus"
        w.class_names_edit.value = "background, tumour"
        second = viewer.add_labels(mask.copy(), name="patient 7 CT mask (2)")
        second.features = {"class": ["background", "nucleus"]}
        w.labels_combo.value = "patient 7 CT mask (2)"
        assert w.class_names_edit.value == "background, tumour"
    finally:
        cw.notify_error = notify


def test_interpolation_spares_reviewed_slices_and_names_count_only_reviewed_values(viewer, qtbot, tmp_path):
    """A clinician's loop on a model's mask (audit): slices 2-5 reviewed and emptied, the model's blobs left
    on unreviewed slices 0 and 7. Interpolate writes nothing into the reviewed slices (before: 1.5 M voxels
    on a CT), and 'background, tumour' exports although class 2 lies on unreviewed slices only."""
    from napari_attnseg._napari import correct_widget as cw
    from napari_attnseg._napari.correct_widget import CorrectWidget

    img = np.random.default_rng(0).random((8, 24, 24)).astype(np.float32)
    mask = np.zeros((8, 24, 24), np.uint8)
    mask[0, 6:18, 6:18] = mask[7, 6:18, 6:18] = 2
    mask[3, 10:14, 10:14] = 1  # the tumour, corrected by hand on a reviewed slice
    viewer.add_image(img, name="ct")
    layer = viewer.add_labels(mask.copy(), name="ct mask")
    w = CorrectWidget(viewer)
    w.mark_slices([2, 3, 4, 5])
    messages = []
    notify, cw.notify_error = cw.notify_error, messages.append
    try:
        w.interpolate()
        after = np.asarray(layer.data)
        assert np.array_equal(after[2:6], mask[2:6]), "reviewed slices are never written"
        w.class_names_edit.value = "background, tumour"
        w.dataset_edit.value = str(tmp_path / "ds")
        worker = w.export()
        assert worker is not None, messages
        qtbot.waitUntil(lambda: (tmp_path / "ds" / "manifest.json").exists(), timeout=30000)
    finally:
        cw.notify_error = notify


def test_helpers_on_a_large_volume_run_off_the_event_loop_and_respect_edits_meanwhile(viewer, qtbot, monkeypatch):
    """Fill holes on a whole volume above BACKGROUND_VOXELS runs in a worker (the loop audit measured 1.5-2 s
    on the event loop for a 48 x 512 x 512 CT); a brush stroke made while it runs wins (nothing painted)."""
    from napari_attnseg._napari import correct_helpers as cw
    from napari_attnseg._napari.correct_widget import CorrectWidget

    monkeypatch.setattr(cw, "BACKGROUND_VOXELS", 1000)
    mask = np.zeros((4, 32, 32), np.uint8)
    mask[:, 8:24, 8:24] = 1
    mask[:, 14:18, 14:18] = 0  # a hole in every slice
    viewer.add_image(np.zeros(mask.shape, np.float32), name="vol")
    layer = viewer.add_labels(mask.copy(), name="vol mask")
    w = CorrectWidget(viewer)
    worker = w._apply(cw.correct.fill_holes, None, whole_volume=True)
    assert worker is not None
    qtbot.waitUntil(lambda: bool(np.asarray(layer.data)[:, 15, 15].all()), timeout=30000)
    layer.undo()
    assert np.array_equal(np.asarray(layer.data), mask)  # one undoable step
    messages = []
    monkeypatch.setattr(cw, "notify_error", messages.append)
    import threading

    working = threading.Event()  # (the worker copies the mask first: a stroke before that is in its snapshot)
    slow = lambda data, classes: (working.set(), time.sleep(0.5), cw.correct.fill_holes(data, classes))[2]  # noqa: E731
    done = []
    worker = w._apply(slow, None, whole_volume=True)
    worker.finished.connect(lambda: done.append(True))
    qtbot.waitUntil(working.is_set, timeout=30000)
    layer.data_setitem((np.array([0]), np.array([0]), np.array([0])), np.array([2], np.uint8))  # a stroke meanwhile
    qtbot.waitUntil(lambda: bool(done), timeout=30000)
    assert "edited while the helper ran" in messages[-1] and not np.asarray(layer.data)[:, 15, 15].any()

    # two helpers pressed quickly: the second waits its turn (it is refused with a word) instead of making the
    # first one's result be dropped as 'edited while the helper ran'
    layer.data = mask.copy()
    infos, messages[:] = [], []
    monkeypatch.setattr(cw, "notify_info", infos.append)
    done = []
    worker = w._apply(slow, None, whole_volume=True)
    worker.finished.connect(lambda: done.append(True))
    assert w._apply(cw.correct.keep_largest_component, None, whole_volume=True) is None
    assert any("still working" in m for m in infos), infos
    qtbot.waitUntil(lambda: bool(done), timeout=30000)
    assert not messages and bool(np.asarray(layer.data)[:, 15, 15].all()), messages
    assert w._apply(cw.correct.fill_holes, None, whole_volume=True) is not None  # free again once it is done
    qtbot.waitUntil(lambda: not w._helper_running, timeout=30000)


def test_no_tab_needs_a_sideways_scroll_bar_on_a_1600_x_1000_screen(make_napari_viewer, qtbot):
    """Each tab of the dock fits its width in a 1600 x 1000 window with the brain sample open (the Correct
    tab's review row of four buttons and its title were 54 px wider than the dock: Clear was cut off)."""
    from qtpy.QtWidgets import QApplication, QScrollArea

    from napari_attnseg._paths import samples_dir

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1600, 1000)
    viewer.open(str(samples_dir() / "mni152_t1.nii.gz"), plugin="napari-attnseg")
    _, dock = viewer.window.add_plugin_dock_widget("napari-attnseg", "Attention segmentation")
    for i in range(dock.tabs.count()):
        dock.tabs.setCurrentIndex(i)
        QApplication.processEvents()
    # a status naming a long checkpoint path (one word) wraps or is clipped; it never widens the tab (audit:
    # the Fine-tune tab got a sideways scroll bar after a run, "Choose directory" cut off)
    path = "/tmp/" + "/".join(["a-hospital-folder_with-a-long-name"] * 6) + "/best.safetensors"
    for panel in (dock.segment, dock.correct, dock.finetune):
        if hasattr(panel, "status"):
            panel.status.value = f"Validation Dice 0.0020 -> 0.4100. Saved {path}"
    QApplication.processEvents()
    areas = dock.findChildren(QScrollArea)
    assert len(areas) == 3
    for area in areas:
        assert area.horizontalScrollBar().maximum() == 0, (
            area.widget().minimumSizeHint().width(), area.viewport().width())


def test_a_helper_that_changes_nothing_says_so_and_why(viewer, notifications):
    """Audit: slices 12, 14, 16 corrected and reviewed, the model's prediction left on 13 and 15: Interpolate
    changed nothing and said nothing (every slice holding the class is an annotation)."""
    from napari_attnseg._napari.correct_widget import CorrectWidget

    mask = np.zeros((6, 24, 24), np.uint8)
    mask[:, 6:18, 6:18] = 1  # the class on every slice: nothing lies between annotated slices
    viewer.add_image(np.random.default_rng(0).random((6, 24, 24)).astype(np.float32), name="mri")
    layer = viewer.add_labels(mask.copy(), name="mri mask")
    w = CorrectWidget(viewer)
    w.mark_slices([1, 3])
    w.interpolate()
    assert np.array_equal(np.asarray(layer.data), mask)
    said = [str(n.message) for n in notifications if "nothing changed" in str(n.message)]
    assert said and "mri mask" in said[-1] and "erase the object on the slices to fill" in said[-1], said
    mask[2] = 0  # an erased slice between two annotated ones: filled, and no "nothing changed"
    layer.data = mask.copy()
    before = len(said)
    w.interpolate()
    assert np.asarray(layer.data)[2].any()
    assert len([n for n in notifications if "nothing changed" in str(n.message)]) == before
    layer.data = np.zeros_like(mask)  # an empty mask: the advice is to draw, not to erase
    w.interpolate()
    said = [str(n.message) for n in notifications if "nothing changed" in str(n.message)]
    assert "is empty" in said[-1] and "Draw the object on two slices" in said[-1] and "erase" not in said[-1], said


def test_class_names_longer_than_the_reviewed_values_get_a_warning(viewer, notifications):
    """Audit: the brain model's default names (background, grey matter, white matter) over a tumour drawn as 1
    would export the tumour as 'grey matter' without a word."""
    from napari_attnseg._napari.correct_widget import CorrectWidget

    mask = np.zeros((4, 16, 16), np.uint8)
    mask[1, 4:8, 4:8] = 1
    viewer.add_image(np.zeros((4, 16, 16), np.float32), name="mri")
    layer = viewer.add_labels(mask, name="mri mask")
    w = CorrectWidget(viewer)
    w.mark_slices([1, 2])
    w.class_names_edit.value = "background, grey matter, white matter"
    assert w.class_names(layer) == ["background", "grey matter", "white matter"]
    said = [str(n.message) for n in notifications if "is exported as 'grey matter'" in str(n.message)]
    assert said and "rename the classes" in said[-1]
    w.class_names_edit.value = "background, tumour"
    count = len(notifications)
    assert w.class_names(layer) == ["background", "tumour"]
    assert not [n for n in notifications[count:] if "is exported as" in str(n.message)]
