"""Round 1's and round 2's fine-tuned models read alike in the model lists ('nuclei-2d fine-tuned on ds'): the
Segment tab's model description and `attnseg models` now say how each did on its run's validation (from its card)."""

from __future__ import annotations

import pytest
import torch

from napari_attnseg import create_model, save_model
from napari_attnseg.checkpoint import ModelCard
from napari_attnseg.cli import main
from napari_attnseg.model_card import fit_line

ROUND = {"val_dice_before": 0.0030141, "val_dice_after": 0.31257, "selection": "val_dice", "best_epoch": 1,
         "finished_at": "2026-12-06T17:03:11+00:00", "dataset": "/data/lung_ds"}


def _model(path, name, training):
    torch.manual_seed(0)
    save_model(create_model("unet", spatial_dims=2, features=[4, 8, 16]), path,
               ModelCard(arch="", config={}, name=name, description="nuclei-2d fine-tuned on lung_ds",
                         classes=["background", "tumour"], tile=[32, 32], training=training))
    return path


def test_fit_line_says_the_validation_before_and_after():
    assert fit_line({"training": ROUND}) == "validation Dice 0.003 -> 0.313 (2026-12-06)"
    assert fit_line(ModelCard(arch="unet", config={}, training={**ROUND, "best_epoch": 0, "val_dice_after": 0.0030141})) \
        == "validation Dice 0.003 -> 0.003, the start model's weights kept (2026-12-06)"
    assert fit_line({"training": {"val_dice_before": None, "val_dice_after": 0.947}}) == "validation Dice 0.947"
    assert fit_line({"training": {**ROUND, "selection": "train_loss"}}) == ""  # (no foreground to validate on)
    assert fit_line({}) == fit_line(None) == ""


def test_attnseg_models_lists_each_rounds_validation(tmp_path, capsys):
    one = _model(tmp_path / "r1.safetensors", "lung-r1", ROUND)
    two = _model(tmp_path / "r2.safetensors", "lung-r2", {**ROUND, "val_dice_before": 0.0506, "val_dice_after": 0.3467})
    for path in (one, two):
        assert main(["models", "--add", str(path)]) == 0
    capsys.readouterr()
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "nuclei-2d fine-tuned on lung_ds; validation Dice 0.003 -> 0.313 (2026-12-06)" in out, out
    assert "validation Dice 0.051 -> 0.347 (2026-12-06)" in out, out


@pytest.mark.gui
def test_the_segment_tab_describes_a_fine_tuned_model_with_its_validation(segment_panel, tmp_path):
    viewer, w = segment_panel
    assert main(["models", "--add", str(_model(tmp_path / "r1.safetensors", "lung-r1", ROUND))]) == 0
    w.refresh_models()
    w.model_combo.value = "lung-r1"
    assert "fine-tuned on lung_ds; validation Dice 0.003 -> 0.313 (2026-12-06)" in w.model_info.value, w.model_info.value
    label = w.add_model(_model(tmp_path / "r2.safetensors", "lung-r2", {**ROUND, "val_dice_after": 0.5}))
    assert w.model_combo.value == label and "validation Dice 0.003 -> 0.500" in w.model_info.value, w.model_info.value
