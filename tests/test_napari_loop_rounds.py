"""A second round of the loop in napari: a re-run that replaces a reviewed mask clears its review marks,
the Fine-tune tab starts from the checkpoint that made the mask (two fine-tuned models can share a card
name), and the Correct tab can replace a case on purpose."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def _volume() -> np.ndarray:
    img = np.zeros((4, 48, 48), np.float32)
    img[:, 8:20, 8:20] = 1.0
    img[:, 28:40, 26:38] = 1.0
    return img


def _run(qtbot, seg) -> None:
    with qtbot.waitSignal(seg.run_done, timeout=120000) as done:
        seg.run_button.native.click()
    assert done.args == [True], seg.status.value


def test_replacing_a_reviewed_mask_clears_its_review_marks(dock, qtbot):
    """Answering Yes to replace an edited mask put new, unchecked voxels under the old review marks, and
    the next export shipped them as reviewed ground truth."""
    viewer, d = dock
    seg, corr = d.segment, d.correct
    viewer.add_image(_volume(), name="ct")
    seg.image_combo.value, seg.model_combo.value = "ct", "nuclei-2d"
    _run(qtbot, seg)
    mask = viewer.layers["ct mask"]
    corr.mark_slices([1, 2])
    mask.data_setitem((np.array([1]), np.array([5]), np.array([5])), np.array([1], np.uint8))  # an edit
    assert mask.metadata["reviewed_slices"] == [1, 2]
    seg.confirm_overwrite = lambda name: True
    _run(qtbot, seg)
    assert "ct mask (2)" not in viewer.layers and not mask.metadata.get("reviewed_slices")


def test_the_fine_tune_tab_starts_from_the_checkpoint_that_made_the_mask(dock, tmp_path):
    """Two fine-tuned checkpoints with the same card name: the one whose file made the mask is preselected
    (the lookup by name picked the first)."""
    import torch

    from napari_attnseg import create_model, save_model
    from napari_attnseg.checkpoint import ModelCard

    viewer, d = dock
    seg, ft = d.segment, d.finetune
    paths = []
    for i in range(2):
        torch.manual_seed(i)
        path = tmp_path / f"run{i}" / "best.safetensors"
        save_model(create_model("attention_unet", spatial_dims=2, features=(4, 8, 16, 32, 64)), path,
                   ModelCard(arch="", config={}, name="nuclei-2d-finetuned", tile=[32, 32]))
        paths.append(path)
        seg.add_model(path)
    ft.refresh_models()
    labels = [label for label, p in ft._paths.items() if str(p) in map(str, paths)]
    assert len(labels) == 2
    second = next(label for label in labels if ft._paths[label] == str(paths[1]))
    viewer.add_labels(np.zeros((8, 8), np.uint8), name="x mask",
                      metadata={"attnseg": {"model": "nuclei-2d-finetuned", "checkpoint": str(paths[1])}})
    assert ft.mask_model() == second
    ft.follow_export(str(tmp_path / "ds"), None, {"model": "nuclei-2d-finetuned", "checkpoint": str(paths[1])})
    assert ft.model_combo.value == second


def test_replace_the_case_exports_over_it_on_purpose(dock, qtbot, tmp_path):
    viewer, d = dock
    corr = d.correct
    viewer.add_image(_volume(), name="ct")
    mask = viewer.add_labels((_volume() > 0).astype(np.uint8), name="ct mask")
    corr.refresh()
    corr.mark_slices([0, 1])
    corr.dataset_edit.value = str(tmp_path / "ds")
    corr.case_edit.value = "lung_a"

    def export():
        assert corr.export() is not None
        qtbot.waitUntil(lambda: corr.export_button.enabled, timeout=30000)

    export()
    corr.mark_slices([2])
    export()  # the same id again, not replaced: refused (a notification), the first export stays
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert [c["reviewed_slices"] for c in manifest["cases"]] == [[0, 1]]
    corr.replace_box.value = True
    export()
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert [(c["case_id"], c["reviewed_slices"]) for c in manifest["cases"]] == [("lung_a", [0, 1, 2])]
    assert mask.metadata["reviewed_slices"] == [0, 1, 2]
