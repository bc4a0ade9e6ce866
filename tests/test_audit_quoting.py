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
