"""A user follows the documentation literally (trial 2026-12-06): the Fine-tune tab's messages tell to press *Run*,
a button that tab does not have (its button reads *Fine-tune*), and the `--help` of the commands said less than they
take: `--model` "bundled model name or .safetensors file" while your models by name and train/finetune folders load
(docs/cli.md), `export --labels` "TIFF or NIfTI" while a DICOM RTSTRUCT/SEG is read, `export --label-names` "default:
--model's class names" while the names saved with the mask come first.

On a crop of the real lung CT (radiomics lung1, tumour on slices 32-34) and the bundled nuclei-2d."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from napari_attnseg.cli import build_parser

LUNG = Path("/work/shared/data/radiomics")


@pytest.fixture()
def lung_ds(tmp_path):
    """lung1 cut to 8 slices of 64 x 64 around the tumour, exported with slices 1, 3, 5 reviewed (tumour on 3, 5)."""
    from napari_attnseg.data import read_image
    from napari_attnseg.data.export import export_case

    if not (LUNG / "lung1_image.nii.gz").exists():
        pytest.skip("no shared lung1 data")
    image = read_image(LUNG / "lung1_image.nii.gz").data  # (k, j, i): 48 x 512 x 512
    labels = read_image(LUNG / "lung1_labels.nii.gz").data
    box = (slice(29, 37), slice(330, 394), slice(185, 249))
    assert labels[box].any()
    ds = tmp_path / "ds"
    export_case(np.asarray(image[box], np.float32), np.asarray(labels[box], np.uint8), ds, "nnunet",
                reviewed_slices=[1, 3, 5], label_names=["background", "tumour"])
    return ds


def _panel(viewer, ds):
    from napari_attnseg._napari.finetune_widget import FinetuneWidget

    w = FinetuneWidget(viewer)
    w.dataset_edit.value = str(ds)
    w.model_combo.value = "nuclei-2d"
    return w


@pytest.mark.gui
def test_the_fine_tune_tabs_messages_name_its_own_button(make_napari_viewer, qtbot, lung_ds):
    """"An export is writing to the dataset ...: wait until it has finished, then press Run again" and "Cancelling:
    ... Run is available again then": the tab's button is *Fine-tune* (the Segment tab's is *Run*)."""
    from napari_attnseg.data.manifest import dataset_lock

    w = _panel(make_napari_viewer(), lung_ds)
    button = w.run_button.text
    assert button == "Fine-tune"
    held, release = threading.Event(), threading.Event()

    def export_running():  # what an export (the Correct tab, or attnseg export) holds while it writes
        with dataset_lock(lung_ds):
            held.set()
            release.wait(30)

    writer = threading.Thread(target=export_running)
    writer.start()
    try:
        held.wait(10)
        assert w.run() is None
        said = w.status.value
    finally:
        release.set()
        writer.join()
    assert "An export is writing to the dataset" in said and f"press {button} again" in said, said
    assert "press Run" not in said, said
    assert w.run() is not None  # free again: a run starts; Cancel says at once what comes back
    w.cancel_button.native.click()
    said = w.status.value
    assert said.startswith("Cancelling") and f"{button} is available again" in said, said
    qtbot.waitUntil(lambda: w.run_button.enabled and not w.running(), timeout=120000)


@pytest.mark.parametrize("command", ["predict", "evaluate", "suggest", "finetune"])
def test_the_model_help_names_every_model_the_command_takes(command):
    """`attnseg predict IMAGE --model my-model` (one of your models) and `--model my-run` (a folder finetune wrote)
    work, as docs/cli.md says; the help said only 'bundled model name or .safetensors file'."""
    sub = build_parser()._subparsers._group_actions[0].choices[command]
    text = next(a.help for a in sub._actions if "--model" in a.option_strings)
    assert "your models" in text and ".safetensors" in text and "folder" in text, text


def test_the_export_help_says_what_labels_and_class_names_it_takes():
    """`attnseg export --labels RS.dcm` reads a DICOM RTSTRUCT/SEG (docs/cli.md), and without --label-names a new
    dataset takes the names saved with the mask first ('using the class names saved with the mask' on stderr); the help
    said 'corrected mask (TIFF or NIfTI)' and 'default: --model's class names, else background,foreground'."""
    sub = build_parser()._subparsers._group_actions[0].choices["export"]
    helps = {a.option_strings[0]: a.help for a in sub._actions if a.option_strings}
    assert "RTSTRUCT" in helps["--labels"] and "SEG" in helps["--labels"], helps["--labels"]
    names = helps["--label-names"]
    assert "saved with the mask" in names and names.index("saved with the mask") < names.index("--model"), names


@pytest.mark.parametrize("command", ["train", "finetune"])
def test_the_training_help_names_the_defaults_a_run_uses(command):
    """docs/training.md sends to `--help` for the budget and split options, but `--iters-per-epoch`, `--batch`,
    `--patience`, `--val-fraction` and `--seed` named no default there nor in the docs (how long is an epoch? when does
    a run stop early?); the defaults the help now names are TrainConfig's, the ones a run uses."""
    import re

    from napari_attnseg.training.config import TrainConfig

    sub = build_parser([command])._subparsers._group_actions[0].choices[command]
    fmt = sub._get_formatter()
    helps = {a.option_strings[0]: fmt._expand_help(a) if a.help else "" for a in sub._actions if a.option_strings}
    for option, field in (("--iters-per-epoch", "iters_per_epoch"), ("--batch", "batch_size"),
                          ("--val-fraction", "val_fraction"),
                          ("--warmup-epochs", "warmup_epochs"), ("--seed", "seed")):
        text = helps[option]
        found = re.search(r"\(default ([0-9.e-]+)\)", text)
        assert found and float(found.group(1)) == float(getattr(TrainConfig, field)), (option, text)
    from napari_attnseg.training.config import FT_PATIENCE, PATIENCE

    assert TrainConfig.patience is None and f"(default {PATIENCE}; {FT_PATIENCE} when fine-tuning one case" in \
        helps["--patience"], helps["--patience"]  # (None: the run picks one, see Trainer.patience)
