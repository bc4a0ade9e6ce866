"""A clinician's second round of the correction loop in one napari session (audit): round 1's fine-tuned model run
again on the same image, the corrections continued, exported into the same dataset and fine-tuned again. What round
1's reviewed work keeps through it."""

from __future__ import annotations

import json

import numpy as np


def _rerun(qtbot, dock) -> None:
    with qtbot.waitSignal(dock.segment.run_done, timeout=60000):
        dock.segment.run_button.native.click()
    qtbot.wait(100)  # (the layers are shown one per turn of the event loop)


def test_a_rerun_keeping_the_edited_mask_carries_its_reviewed_slices_into_the_new_one(volume_run, qtbot):
    """Round 2: the clinician keeps their edited mask (No to 'Overwrite edited mask?'); the new prediction goes to
    'vol mask (2)', which the Correct tab chooses. It showed 'Reviewed slices: none', Next suggested slice sent the
    clinician back to slices reviewed in round 1, and their corrections were not in the mask they went on with."""
    viewer, dock = volume_run
    corr, seg = dock.correct, dock.segment
    mask = viewer.layers["vol mask"]
    data = np.array(mask.data)
    data[2:4] = 0
    data[2:4, 10:20, 10:20] = 1  # round 1's corrections
    mask.data = data
    corr.mark_slices([*range(7), 8, 9])  # slice 7 alone left to review
    seg.confirm_overwrite = lambda name: False  # No: keep my edits
    _rerun(qtbot, dock)
    assert "vol mask (2)" in viewer.layers and corr.labels_combo.value == "vol mask (2)"
    new = viewer.layers["vol mask (2)"]
    qtbot.waitUntil(lambda: bool(new.metadata.get("reviewed_slices")), timeout=5000)
    assert new.metadata["reviewed_slices"] == [*range(7), 8, 9]
    np.testing.assert_array_equal(new.data[2:4], data[2:4])  # the corrections, in the mask worked on now
    np.testing.assert_array_equal(mask.data, data)  # the kept mask untouched
    assert mask.metadata["reviewed_slices"] == [*range(7), 8, 9]
    assert corr.reviewed_label.value == "Reviewed slices: 0-6,8-9"
    viewer.dims.ndisplay = 2
    assert corr.next_suggested() == 7  # never a slice reviewed in round 1


def test_replacing_a_case_with_a_mask_that_drops_its_reviewed_slices_is_refused(dock, qtbot, tmp_path, monkeypatch):
    """The export's own warning (the same image exported twice) advises 'Replace the case'; a round-2 mask without
    round 1's reviewed slices replaced the case, and round 1's corrections left the dataset."""
    from napari_attnseg._napari import correct_widget as cw

    errors: list[str] = []
    monkeypatch.setattr(cw, "notify_error", errors.append)
    viewer, panel = dock
    corr = panel.correct
    rng = np.random.default_rng(0)
    viewer.add_image(rng.random((8, 16, 16)).astype(np.float32), name="ct")
    first = np.zeros((8, 16, 16), np.uint8)
    first[2:4, 4:8, 4:8] = 1
    mask = viewer.add_labels(first, name="ct mask")
    corr.labels_combo.value, corr.image_combo.value = "ct mask", "ct"
    corr.dataset_edit.line_edit.value = str(tmp_path / "ds")
    corr.mark_slices([2, 3])
    assert corr.export() is not None
    qtbot.waitUntil(lambda: corr.export_button.enabled, timeout=60000)

    mask.metadata["reviewed_slices"] = [5]  # round 2's mask: its own slice only
    corr.case_edit.value, corr.replace_box.value = "case_0000", True
    assert corr.export() is None
    assert errors and "would lose slices 2-3" in errors[-1] and "new case" in errors[-1]
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["cases"][0]["reviewed_slices"] == [2, 3]

    corr.mark_slices([2, 3])  # round 1's slices checked again in this mask: the replacement goes ahead
    assert corr.export() is not None
    qtbot.waitUntil(lambda: corr.export_button.enabled, timeout=60000)
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert [c["reviewed_slices"] for c in manifest["cases"]] == [[2, 3, 5]]


def test_the_fine_tune_tab_says_its_figures_predate_the_next_rounds_export(dock, qtbot, tmp_path):
    """After round 2's export the Fine-tune tab still showed round 1's 'Validation Dice a -> b ... Saved ...' and plot
    as if they were this dataset's, next to a form proposing round 2's run."""
    viewer, panel = dock
    corr, ft = panel.correct, panel.finetune
    viewer.add_image(np.random.default_rng(0).random((8, 16, 16)).astype(np.float32), name="ct")
    labels = np.zeros((8, 16, 16), np.uint8)
    labels[2:4, 4:8, 4:8] = 1
    viewer.add_labels(labels, name="ct mask")
    corr.labels_combo.value, corr.image_combo.value = "ct mask", "ct"
    corr.dataset_edit.line_edit.value = str(tmp_path / "ds")
    corr.mark_slices([2, 3])
    round_one = "Validation Dice 0.4100 -> 0.6200 (best epoch kept). Saved /m/best.safetensors."
    ft.history, ft.status.value = [{"epoch": 1, "loss": 0.5, "val_dice": 0.62}], round_one  # round 1's run ended
    assert corr.export() is not None
    qtbot.waitUntil(lambda: corr.export_button.enabled, timeout=60000)
    qtbot.waitUntil(lambda: ft.status.value != round_one, timeout=5000)
    assert ft.status.value == f"Previous run (before the export to ds; Fine-tune to train on it): {round_one}"
    assert corr.export() is not None  # another export: said once
    qtbot.waitUntil(lambda: corr.export_button.enabled, timeout=60000)
    assert ft.status.value.count("Previous run") == 1
