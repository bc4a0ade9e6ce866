"""A clinician's second and third day with the plugin in a real napari viewer: day 1's mask reopened from its
file, more slices reviewed, a second export, fine-tuning round 2. The defects that audit found, each test failing
without its fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.gui


def _save(path: Path, name: str, seed: int, **training):
    from napari_attnseg import create_model, save_model
    from napari_attnseg.checkpoint import ModelCard, read_card

    torch.manual_seed(seed)
    save_model(create_model("unet", spatial_dims=2, features=[4, 8, 16]), path,
               ModelCard(arch="", config={}, name=name, classes=["background", "x"], tile=[32, 32],
                         training=training or {}))
    return read_card(path).weights_sha256


def test_round_two_starts_from_the_model_fine_tuned_from_the_masks_model(dock, tmp_path):
    """Day 2 reopens day 1's mask (made by the start model 's') after day 1 fine-tuned 's' on the dataset: the
    Fine-tune tab proposed 's' again (the mask's model), so round 2 threw away round 1's learning and did not
    validate on the slices round 1 never trained on (docs/finetuning.md, Rounds). Now: the newest model fine-tuned
    from the mask's model on this dataset (its descendants too); a model fine-tuned there from another start is not
    proposed, nor one fine-tuned on another dataset."""
    from test_finetune_budget import _dataset

    models = Path(tmp_path / "user-models")
    models.mkdir(parents=True, exist_ok=True)
    ds, _ = _dataset(tmp_path)
    s_sha = _save(models / "s.safetensors", "s", 0)
    r1_sha = _save(models / "s-finetuned.safetensors", "s-finetuned", 1, dataset=str(ds), start_model="s",
                   start_model_sha256=s_sha)
    _save(models / "other-finetuned.safetensors", "other-finetuned", 2, dataset=str(ds), start_model="other",
          start_model_sha256="0" * 64)  # newer, but fine-tuned from another model
    _save(models / "s-elsewhere.safetensors", "s-elsewhere", 3, dataset=str(tmp_path / "elsewhere"),
          start_model="s", start_model_sha256=s_sha)
    viewer, d = dock
    ft = d.finetune
    ft.refresh_models()
    viewer.add_labels(np.zeros((14, 32, 32), np.uint8), name="ct mask",  # as reopened from its file (io_hooks)
                      metadata={"attnseg": {"model": "s", "checkpoint": None, "checkpoint_sha256": s_sha}})
    ft.dataset_edit.value = str(ds)
    assert ft.model_combo.value == "s-finetuned", ft.model_combo.value
    assert ft.name_edit.value == "s-finetuned-2"
    # round 2 was fine-tuned from round 1's model: it is round 3's start (a chain of descendants)
    _save(models / "s-finetuned-2.safetensors", "s-finetuned-2", 4, dataset=str(ds), start_model="s-finetuned",
          start_model_sha256=r1_sha)
    ft.refresh_models()
    assert ft.model_combo.value == "s-finetuned-2", ft.model_combo.value
    # no model fine-tuned from the mask's model on this dataset: the mask's model, as before
    _save(models / "other-start.safetensors", "other-start", 5)
    viewer.layers["ct mask"].metadata["attnseg"] = {"model": "other-start", "checkpoint": None}
    ft.refresh_models()
    assert ft.model_combo.value == "other-start", ft.model_combo.value


def test_a_run_that_learnt_is_the_next_rounds_start(dock, qtbot, tmp_path, monkeypatch):
    """After a run that learnt, the Segment tab chose the new model but the Fine-tune tab kept the old start: the
    next round (more slices reviewed, exported again) trained the start model again, beside round 1's. (``train``
    stands in for a run whose epoch 2 beat the start, as a loaded 2-core machine may not manage in a test.)"""
    from test_finetune_budget import _dataset

    from napari_attnseg import training
    from napari_attnseg.training.config import TrainResult

    def learnt(cfg, progress=None, cancel=None, on_step=None, on_split=None):
        out = Path(cfg.out) / "best.safetensors"
        _save(out, cfg.name, 7, dataset=cfg.dataset, start_model=str(cfg.start_model))
        return TrainResult(checkpoint=str(out), val_dice_before=0.5, val_dice_after=0.6, test_dice=None, epochs=2,
                           seconds=1.0, split="rows", best_epoch=2)

    monkeypatch.setattr(training, "train", learnt)
    ds, start = _dataset(tmp_path)
    viewer, d = dock
    seg, ft = d.segment, d.finetune
    label = seg.add_model(start)
    ft.dataset_edit.value = str(ds)
    ft.model_combo.value = label
    assert ft.run() is not None
    qtbot.waitUntil(lambda: ft.run_button.enabled, timeout=60000)
    assert ft.result is not None and ft.result.checkpoint, ft.status.value
    assert seg.model_combo.value == ft.model_combo.value == "start-finetuned", ft.model_combo.value
    assert ft.name_edit.value == "start-finetuned-2", ft.name_edit.value


def test_an_export_to_another_folder_replaces_the_dataset_proposed_from_an_earlier_day(dock, qtbot, tmp_path):
    """Day 3: the Fine-tune tab proposed day 2's (brain) dataset from the settings; the nuclei mask was exported to
    a new folder, but the tab kept the brain dataset (it took the proposal for a typed choice) and the next
    Fine-tune trained nuclei-2d on the brain ("predicts 2 classes, the dataset has 3")."""
    from qtpy.QtGui import QShowEvent

    from napari_attnseg.data.export import export_case
    from napari_attnseg.settings import remember_export

    brain = tmp_path / "brain-ds"
    export_case(np.zeros((4, 16, 16), np.float32), np.ones((4, 16, 16), np.uint8), brain, "nnunet",
                reviewed_slices=[1], label_names=["background", "grey matter", "white matter"])
    assert remember_export(brain, "nnunet", "case_0000", "brain1_image.nii.gz")
    viewer, d = dock
    corr, ft = d.correct, d.finetune
    ft.showEvent(QShowEvent())  # (the tab shown: it proposes the last export's dataset)
    assert Path(str(ft.dataset_edit.value)) == brain
    viewer.add_image(np.random.default_rng(0).random((32, 32)).astype(np.float32), name="cells")
    data = np.zeros((32, 32), np.uint8)
    data[4:10, 4:10] = 1
    viewer.add_labels(data, name="cells mask", metadata={"class_names": ["background", "nucleus"]})
    corr.refresh()
    corr.mark_all()
    nuclei = tmp_path / "nuclei-ds"
    corr.dataset_edit.value = str(nuclei)
    assert corr.export() is not None
    qtbot.waitUntil(lambda: corr.export_button.enabled, timeout=60000)
    assert (nuclei / "manifest.json").is_file()
    assert Path(str(ft.dataset_edit.value)) == nuclei, ft.dataset_edit.value
    # a dataset the user chose in the tab stays: the next export does not move it
    ft.dataset_edit.value = str(brain)
    assert corr.export() is not None
    qtbot.waitUntil(lambda: corr.export_button.enabled, timeout=60000)
    assert Path(str(ft.dataset_edit.value)) == brain


def test_a_2d_mask_saved_as_tiff_reopens_as_a_mask_with_its_marks(make_napari_viewer, qtbot, tmp_path):
    """File > Save of a 2D mask as TIFF, then File > Open: napari's reader gave an Image layer with no metadata,
    which the Correct tab did not list, and its reviewed marks and model were lost (the README: they come back)."""
    from napari_attnseg._napari.correct_widget import CorrectWidget

    viewer = make_napari_viewer()
    corr = CorrectWidget(viewer)
    data = np.zeros((64, 80), np.uint8)
    data[10:30, 20:40] = 1
    mask = viewer.add_labels(data, name="cells mask", metadata={
        "reviewed_slices": [0], "attnseg": {"model": "nuclei-2d", "checkpoint": None, "checkpoint_sha256": "ab" * 32}})
    path = tmp_path / "cells mask.tif"
    mask.save(str(path), plugin="napari-attnseg")
    viewer.layers.clear()
    viewer.open(str(path), plugin="napari")  # File > Open: napari's own TIFF reader
    qtbot.waitUntil(lambda: any(ly.__class__.__name__ == "Labels" for ly in viewer.layers), timeout=5000)
    back = viewer.layers["cells mask"]
    np.testing.assert_array_equal(np.asarray(back.data), data)
    assert back.metadata["reviewed_slices"] == [0] and back.metadata["attnseg"]["model"] == "nuclei-2d"
    assert corr.labels_combo.value == "cells mask"
    other = tmp_path / "plain.tif"  # a TIFF that is no mask of ours stays an image
    import tifffile

    tifffile.imwrite(other, data)
    viewer.open(str(other), plugin="napari")
    qtbot.wait(50)
    assert viewer.layers["plain"].__class__.__name__ == "Image"
