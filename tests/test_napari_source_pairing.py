"""A mask stays paired with the very image layer it was predicted on (an audit exported a mask with another
patient's image): an image renamed while it is segmented gets results named after it, one removed while it
is segmented gets none, and the Correct tab finds the image after a rename and refuses to export the mask
with another open image."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def _widgets(make_napari_viewer, tiny_checkpoint):
    from napari_attnseg._napari.correct_widget import CorrectWidget
    from napari_attnseg._napari.segment_widget import SegmentWidget

    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    viewer.add_image(rng.normal(size=(48, 48)).astype(np.float32), name="patient X")
    viewer.add_image(rng.normal(size=(48, 48)).astype(np.float32), name="patient B")
    seg = SegmentWidget(viewer)
    seg.add_model(tiny_checkpoint(2))
    seg.image_combo.value = "patient B"
    return viewer, seg, CorrectWidget(viewer)


def test_an_image_renamed_while_it_is_segmented_keeps_its_results(make_napari_viewer, qtbot, tiny_checkpoint,
                                                                   notifications, tmp_path):
    viewer, seg, corr = _widgets(make_napari_viewer, tiny_checkpoint)
    with qtbot.waitSignal(seg.run_done, timeout=60000) as done:
        assert seg.run() is not None
        viewer.layers["patient B"].name = "patient B (reviewed)"
    assert done.args == [True]
    assert "patient B (reviewed) mask" in viewer.layers and "patient B mask" not in viewer.layers
    corr.labels_combo.value = "patient B (reviewed) mask"
    assert corr.image_combo.value == "patient B (reviewed)"
    # renamed after the run: the Correct tab still pairs the mask with its own image
    viewer.layers["patient B (reviewed)"].name = "B"
    corr.labels_combo.value = "patient B (reviewed) mask"
    assert corr.image_combo.value == "B"
    # another open image of the same shape is refused at export, naming the right one
    corr.image_combo.value = "patient X"
    corr.dataset_edit.value = str(tmp_path / "ds")
    assert corr.export() is None and not (tmp_path / "ds").exists()
    assert any("predicted on the image 'B'" in str(n.message) for n in notifications), \
        [str(n.message) for n in notifications]


def test_an_image_removed_while_it_is_segmented_gets_no_results(make_napari_viewer, qtbot, tiny_checkpoint):
    viewer, seg, _ = _widgets(make_napari_viewer, tiny_checkpoint)
    with qtbot.waitSignal(seg.run_done, timeout=60000) as done:
        assert seg.run() is not None
        viewer.layers.remove("patient B")
    assert done.args == [False] and seg.run_button.enabled
    assert [ly.name for ly in viewer.layers] == ["patient X"]
    assert "removed while it was segmented" in seg.status.value


def test_a_layer_name_with_a_slash_is_kept_whole_in_the_export_record(make_napari_viewer, qtbot, tmp_path):
    import json

    from napari_attnseg._napari.correct_widget import CorrectWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).random((24, 24)).astype(np.float32), name="pt 1/scan A")
    mask = np.zeros((24, 24), np.uint8)
    mask[5:12, 5:12] = 1
    viewer.add_labels(mask, name="pt 1/scan A mask")
    corr = CorrectWidget(viewer)
    corr.dataset_edit.value = str(tmp_path / "ds")
    worker = corr.export()
    with qtbot.waitSignal(worker.finished, timeout=30000):
        pass
    cases = json.loads((tmp_path / "ds" / "manifest.json").read_text())["cases"]
    assert cases[0]["source_name"] == "pt 1/scan A"  # was 'scan A' (the name read as a path)
