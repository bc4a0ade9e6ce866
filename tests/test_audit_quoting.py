"""Commands and hints the plugin prints name user paths quoted, so a path with a space can be pasted into a shell."""

from __future__ import annotations

import shlex

import torch

from napari_attnseg import create_model, save_model
from napari_attnseg.cli import main
from napari_attnseg.data.export import export_case
from napari_attnseg.models.registry import user_models_dir


def test_the_add_command_for_a_misplaced_model_quotes_its_path(capsys):
    """A renamed checkpoint in a sub-folder of the models folder is not listed; the printed `attnseg models --add`
    line named a path with spaces unquoted, so pasting it ran `--add` on the first word."""
    torch.manual_seed(0)
    path = user_models_dir() / "Anna's models" / "nuclei anna.safetensors"
    save_model(create_model("attention_unet", features=[4, 8, 16, 32]), path,
               card={"name": "tiny", "description": "a test model", "tile": [32, 32]})
    assert main(["models"]) == 0
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if "attnseg models --add" in x)
    command = line.split("add it with: ", 1)[1].rstrip(".")
    assert shlex.split(command)[:4] == ["attnseg", "models", "--add", str(path)]


def test_the_label_table_note_names_the_napari_field_too(tmp_path):
    """A mask with values 0 and 3 only: the note about the label table told the Correct tab's user to use command-line
    options (--foreground, --label-names) that the tab does not have."""
    import numpy as np

    image = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    labels = np.zeros((32, 32), np.uint8)
    labels[4:12, 4:12] = 3
    result = export_case(image, labels, tmp_path / "ds", format="tiff")
    notes = " ".join(getattr(result, "notes", None) or getattr(result, "warnings", []) or [])
    assert "Class names field" in notes, notes


def test_the_cli_says_a_short_runs_new_class_is_noise_and_counts_one_epoch(tmp_path, monkeypatch, capsys):
    """attnseg finetune of brain-mri-3d with a tumour class added, 4 of 25 steps in its minute: the CLI said "the
    model has hardly changed from the start" (the Fine-tune tab: the new class is close to noise) and "after 1
    epochs"."""
    from types import SimpleNamespace

    from napari_attnseg.checkpoint import ModelCard
    from napari_attnseg.cli import _train_common
    from napari_attnseg.training.config import TrainResult

    torch.manual_seed(0)
    path = tmp_path / "best.safetensors"
    save_model(create_model("attention_unet", spatial_dims=2, out_channels=4, features=(4, 8, 16, 32, 64)), path,
               ModelCard(arch="", config={}, name="brain-mri-3d-finetuned", tile=[32, 32],
                         classes=["background", "grey matter", "white matter", "tumour"],
                         training={"head_reinitialised": True, "start_model": "brain-mri-3d"}))

    def fake_train(cfg, progress=None, on_step=None, on_split=None):
        for step in range(1, 5):
            on_step({"epoch": 1, "epochs": None, "step": step, "steps": 25, "loss": 1.0, "lr": 1e-4, "elapsed": 1.0,
                     "budget": 60.0})
        progress({"epoch": 1, "epochs": 1, "loss": 1.0, "val_dice": 0.01, "val_dice_per_class": [0.9, 0.9, 0.0003],
                  "best": 0.01, "lr": 1e-4, "elapsed": 60.0, "budget": 60.0, "steps_done": 4})
        return TrainResult(str(path), 0.0, 0.01, None, 1, 60.0, "split", val_dice_per_class=[0.9, 0.9, 0.0003])

    monkeypatch.setattr("napari_attnseg.training.train", fake_train)
    cfg = SimpleNamespace(out=str(tmp_path), start_model="brain-mri-3d", minutes=1.0, dataset=str(tmp_path))
    assert _train_common.run_training(cfg) == 0
    out, err = capsys.readouterr()
    assert "after 1 epoch," in out, out
    assert "new class (tumour)" in err and "close to noise" in err and "hardly changed" not in err, err


def test_the_progress_bar_of_a_run_its_budget_ended_ends_full():
    """A budget that ended inside epoch 2 of 3: the closed bar stayed at 30/75 steps with minutes 'remaining'."""
    import io

    from napari_attnseg.cli._train_run import ProgressBar

    stream = io.StringIO()
    bar = ProgressBar(stream)
    for step in range(1, 26):
        bar.step({"epoch": 1, "epochs": None, "step": step, "steps": 25, "loss": 1.0, "elapsed": step, "budget": 60})
    bar.epoch({"epoch": 1, "epochs": 3, "loss": 1.0, "val_dice": 0.5, "best": 0.5, "elapsed": 25, "budget": 60})
    for step in range(1, 6):
        bar.step({"epoch": 2, "epochs": 3, "step": step, "steps": 25, "loss": 1.0, "elapsed": 25 + step, "budget": 60})
    bar.finish()
    assert bar.bar.n == bar.bar.total == 30
    bar.close()
    assert "30/30" in stream.getvalue().replace(" ", "")
