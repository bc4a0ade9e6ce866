"""Audit of what `attnseg train` / `attnseg finetune` print: their --help without the training code (torch: 2-3 s
before the text), and the split with its warnings said once on a terminal (stderr before the first epoch; the
summary on the same terminal refers to it), in full on each stream when stdout goes to a file of its own."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_attnseg.cli import main as cli

LUNG = Path("/work/shared/data/radiomics")
TINY = {"features": [4, 8, 16]}
SPLIT = "split: held-out slices along axis 0: validation case_0000 slices 10,14"
WARNING = "the validation holds foreground on one slice only: its Dice is a weak guide"


# -- 1. --help without the training code ---------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["train", "finetune"])
def test_train_and_finetune_help_import_no_torch(command):
    """`attnseg train --help` took 2.1-3.1 s (median of 5; `attnseg --help` 0.3 s): building the parser imported
    napari_attnseg.training (for TrainConfig's augmentation defaults and the FT_* constants), which imports torch."""
    code = ("import sys\nfrom napari_attnseg.cli import main\n"
            f"try:\n    main([{command!r}, '--help'])\nexcept SystemExit:\n    pass\n"
            "print('LOADED', sorted(m for m in ('torch', 'napari_attnseg.training') if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"usage: attnseg {command}" in result.stdout, result.stdout
    assert result.stdout.splitlines()[-1] == "LOADED []", result.stdout.splitlines()[-1]


def _option_help(parser: argparse.ArgumentParser) -> dict[str, str]:
    return {a.option_strings[-1]: " ".join((a.help or "").split()) for a in parser._actions if a.option_strings}


def test_the_help_defaults_are_the_training_configs():
    """The defaults the help texts name are written out (no import of the training code); they are TrainConfig's and
    the fine-tuning constants, and an option not given still runs with TrainConfig's default."""
    from napari_attnseg.cli import build_parser
    from napari_attnseg.cli._train_common import config_kwargs
    from napari_attnseg.training.config import (
        AUGMENT_PROBABILITIES,
        FT_FAR_NEGATIVES,
        FT_HARD_NEGATIVES,
        FT_L2SP,
        FT_REFIT,
        TrainConfig,
    )

    parser = build_parser(["train", "finetune"])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    train, finetune = _option_help(sub.choices["train"]), _option_help(sub.choices["finetune"])
    for name in AUGMENT_PROBABILITIES:
        option = "--" + name.replace("_", "-")
        for helps in (train, finetune):
            assert re.search(rf"\(default {getattr(TrainConfig, name):g}[;)]", helps[option]), (option, helps[option])
    for option, value in (("--l2sp", FT_L2SP), ("--hard-negatives", FT_HARD_NEGATIVES), ("--refit", FT_REFIT),
                          ("--far-negatives", FT_FAR_NEGATIVES)):
        assert re.search(rf"\(default {value:g}[;,]", finetune[option]), (option, finetune[option])
    args = parser.parse_args(["train", "ds", "--out", "o", "--arch", "unet"])
    assert all(name not in config_kwargs(args) for name in AUGMENT_PROBABILITIES)  # TrainConfig's apply
    args = parser.parse_args(["train", "ds", "--out", "o", "--arch", "unet", "--gamma-aug", "0.5"])
    assert config_kwargs(args)["gamma_aug"] == 0.5


# -- 2. the split and its warnings once on a terminal -------------------------------------------------------------
@pytest.fixture(scope="module")
def lung_crop(tmp_path_factory) -> Path:
    """lung1 (CT, tumour on slices 32-34) cut to 20 slices of 64 x 64 around the tumour and exported with reviewed
    slices 6, 8, 10, 14 (tumour on 8 and 10): --val-slices 10,14 holds foreground on one slice."""
    nib = pytest.importorskip("nibabel")
    if not (LUNG / "lung1_image.nii.gz").exists():
        pytest.skip("the radiomics data is not here")
    root = tmp_path_factory.mktemp("lung")
    box = (slice(186, 250), slice(328, 392), slice(24, 44))
    for name in ("image", "labels"):
        src = nib.load(LUNG / f"lung1_{name}.nii.gz")
        data = np.asarray(src.dataobj)[box]
        nib.save(nib.Nifti1Image(data.astype(np.float32 if name == "image" else np.uint8), src.affine),
                 root / f"{name}.nii.gz")
    assert cli(["export", "--image", str(root / "image.nii.gz"), "--labels", str(root / "labels.nii.gz"),
                "--dataset", str(root / "ds"), "--reviewed-slices", "6,8,10,14"]) == 0
    return root / "ds"


def _run(command: str, ds: Path, out: Path) -> list[str]:
    model = ["--arch", "unet", "--dims", "2", "--config", json.dumps(TINY)] if command == "train" else \
        ["--model", "nuclei-2d"]
    return [command, str(ds), *model, "--out", str(out), "--epochs", "1", "--iters-per-epoch", "1", "--batch", "2",
            "--patch", "32,32", "--val-slices", "10,14"]


@pytest.mark.parametrize("command", ["train", "finetune"])
def test_one_terminal_reads_the_split_and_its_warning_once(tmp_path, monkeypatch, lung_crop, command):
    """On a terminal (or `> log 2>&1`) the split line and 'the validation holds foreground on one slice only' came
    twice: on stderr before the first epoch, and again in the summary (the warning as a note). Now the summary refers
    to them: 'split: as said before the first epoch, with its warning'."""
    log = tmp_path / "log.txt"
    with open(log, "w") as both:
        monkeypatch.setattr(sys, "stdout", both)
        monkeypatch.setattr(sys, "stderr", both)
        code = cli(_run(command, lung_crop, tmp_path / "m"))
    text = log.read_text()
    assert code == 0, text
    assert text.count(SPLIT) == 1, text
    assert text.count(WARNING) == 1, text
    assert f"warning: {WARNING}" in text and f"note: {WARNING}" not in text, text
    assert "split: as said before the first epoch, with its warning\n" in text, text
    assert text.index(f"warning: {WARNING}") < text.index("epoch 1/1 done") < text.index("split: as said"), text
    assert "validation Dice: start" in text and "checkpoint: " in text, text


def test_a_stdout_of_its_own_keeps_the_split_and_its_warning(tmp_path, monkeypatch, lung_crop):
    """`attnseg train ... > summary.txt`: the file is the run's record (the split the Dice was measured on, and what
    weakens it); the terminal (stderr) has them before the first epoch. Each stream carries them once."""
    with open(tmp_path / "out.txt", "w") as out, open(tmp_path / "err.txt", "w") as err:
        monkeypatch.setattr(sys, "stdout", out)
        monkeypatch.setattr(sys, "stderr", err)
        code = cli(_run("train", lung_crop, tmp_path / "m"))
    out, err = (tmp_path / "out.txt").read_text(), (tmp_path / "err.txt").read_text()
    assert code == 0, err
    assert out.count(SPLIT) == 1 and out.count(f"note: {WARNING}") == 1 and "as said before" not in out, out
    assert err.count(SPLIT) == 1 and err.count(f"warning: {WARNING}") == 1, err


def test_a_start_model_kept_with_its_own_normalisation_is_said_once(tmp_path, capsys, lung_crop):
    """When no epoch beat the start model scored with its own normalisation, the summary said three things: that
    it is kept as it is, that 'the start weights are kept' (again), and that after choosing epoch 1 it trained 1 more
    epochs on all reviewed slices (a refit whose model was thrown away)."""
    args = _run("finetune", lung_crop, tmp_path / "m")
    args[args.index("--epochs") + 1] = "2"
    args[args.index("--iters-per-epoch") + 1] = "2"
    args += ["--lr", "1e-9"]  # (no epoch can beat the start model: the case this summary is about)
    assert cli(args) == 0
    out = capsys.readouterr().out
    assert "it is kept as it is, with its own normalisation" in out, out  # (this crop: the start model's own wins)
    assert "the start weights are kept" not in out, out
    assert "more epoch" not in out and "after choosing epoch" not in out, out
