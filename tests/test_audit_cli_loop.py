"""Audit of the command-line learning loop (export, finetune, suggest, evaluate, train) as an analyst new to it runs
it, with the usual mistakes: a reference saved transposed is said (not scored silently); the fit warning advises for
fine-tuning during a training run; Ctrl+C says what is left in --out (the best model so far, usable, or none);
``--overwrite`` never moves the start model away; a short budget is said; the from-scratch hint never sends a CT to
the brain MRI model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile
import torch

from napari_attnseg import create_model, save_model
from napari_attnseg._paths import samples_dir
from napari_attnseg.checkpoint import ModelCard
from napari_attnseg.cli import main
from napari_attnseg.data.export import export_case


def _tiny(path: Path, dims: int = 2, **card) -> Path:
    torch.manual_seed(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(create_model("unet", spatial_dims=dims, features=[4, 8, 16]), path,
               ModelCard(arch="", config={}, name=card.pop("name", "tiny"), classes=["background", "x"],
                         tile=[32] * dims, **card))
    return path


def _dataset(root: Path) -> Path:
    lab = np.zeros((14, 32, 32), np.int64)
    lab[3:11, 10:18, 10:18] = 1
    img = (100.0 + lab * 200 + np.random.default_rng(0).normal(0, 20, lab.shape)).astype(np.float32)
    export_case(img, lab, root, "nnunet", reviewed_slices=[1, 4, 6, 8, 12], label_names=["background", "x"])
    return root


# -- 1: a reference saved transposed --------------------------------------------------------------------------------
def test_evaluate_says_when_the_reference_is_transposed(tmp_path, capsys):
    """nuclei labels.tif transposed (square: same shape) scored Dice 0.21 instead of 0.95 with no word."""
    labels = tifffile.imread(samples_dir() / "nuclei2d_labels.tif")
    turned = tmp_path / "labels_T.tif"
    tifffile.imwrite(turned, np.ascontiguousarray(labels.T))
    image = str(samples_dir() / "nuclei2d_image.tif")
    assert main(["evaluate", "--model", "nuclei-2d", "--image", image, "--labels", str(turned)]) == 0
    out, err = capsys.readouterr()
    assert "transposed" in err and "np.swapaxes(labels, -1, -2)" in err, err
    assert "nucleus: Dice 0.2" in out  # (the file as given is still what is scored)
    assert main(["evaluate", "--model", "nuclei-2d", "--image", image, "--labels", str(turned), "--json"]) == 0
    assert "transposed" in json.loads(capsys.readouterr().out)["note"]


def test_the_transposed_check_does_not_cry_wolf():
    """A good prediction as given, a poor one (both orientations low) and a symmetric object are not flagged."""
    from napari_attnseg.evaluation import transposed_note

    ref = tifffile.imread(samples_dir() / "nuclei2d_labels.tif") > 0
    assert transposed_note(ref.astype(np.uint8), ref.astype(np.uint8), 2, "ref") == ""
    assert "transposed" in transposed_note(ref.T.astype(np.uint8), ref.astype(np.uint8), 2, "ref")
    poor = np.random.default_rng(0).random(ref.shape) < 0.5  # noise: Dice ~0.3 either way
    assert transposed_note(poor.astype(np.uint8), ref.astype(np.uint8), 2, "ref") == ""
    yy, xx = np.mgrid[:64, :64]
    disc = ((yy - 32) ** 2 + (xx - 30) ** 2 < 200).astype(np.uint8)  # a shifted disc: both fits alike
    assert transposed_note(np.roll(disc, 6, 1), disc, 2, "ref") == ""
    vol = np.stack([ref, ref]).astype(np.uint8)  # (a volume: the in-plane axes are the last two)
    ignore = vol.astype(np.int32)
    ignore[0] = -1
    assert "transposed" in transposed_note(np.swapaxes(vol, -1, -2), ignore, 2, "ref", ignore_index=-1)


def test_evaluate_says_when_labels_of_another_shape_are_transposed(tmp_path, capsys):
    image = tifffile.imread(samples_dir() / "nuclei2d_image.tif")[:, :300]
    labels = tifffile.imread(samples_dir() / "nuclei2d_labels.tif")[:, :300]
    tifffile.imwrite(tmp_path / "image.tif", image)
    tifffile.imwrite(tmp_path / "labels.tif", np.ascontiguousarray(labels.T))
    assert main(["evaluate", "--model", "nuclei-2d", "--image", str(tmp_path / "image.tif"),
                 "--labels", str(tmp_path / "labels.tif")]) == 1
    assert "transposed" in capsys.readouterr().err


# -- 2: the fit warning's advice during a training run -------------------------------------------------------------
def test_the_fit_warning_advises_for_fine_tuning_inside_a_run(monkeypatch):
    """"invert the image first (in Python: image.max() - image)" was the advice in a fine-tuning run too, where the
    images are the training data: fine-tuning on inverted images is fine, the contrast of later images matters."""
    from napari_attnseg.inference import checks
    from napari_attnseg.inference.checks import domain_warning, fine_tuning_advice

    card = SimpleNamespace(name="nuclei-2d", normalization={"scheme": "percentile"}, metrics={"median_position": 0.15})
    image = 1000.0 - tifffile.imread(samples_dir() / "nuclei2d_image.tif").astype(np.float32)
    assert "invert the image first" in domain_warning(card, image, False)
    with fine_tuning_advice():
        inside = domain_warning(card, image, False)
    assert "invert the image first" not in inside and "Fine-tuning on such images as they are is fine" in inside
    assert "same contrast" in inside
    assert "invert the image first" in domain_warning(card, image, False)  # (only inside the block)
    assert checks.median_position is not None and checks._background_warning is not None  # (still importable)

    from napari_attnseg.cli import _train_common
    seen = []

    def fake_train(cfg, **kw):
        seen.append(domain_warning(card, image, False))
        raise RuntimeError("stop here")

    monkeypatch.setattr("napari_attnseg.training.train", fake_train)
    with pytest.raises(RuntimeError, match="stop here"):
        _train_common.run_training(SimpleNamespace(out=str(Path("/nonexistent-attnseg-out")), start_model="x"))
    assert "Fine-tuning on such images" in seen[0]  # the CLI's runs advise for training


# -- 3: Ctrl+C in the middle of a run ------------------------------------------------------------------------------
def _interrupt_at(monkeypatch, epoch: int) -> None:
    from napari_attnseg.cli._train_common import ProgressBar

    step = ProgressBar.step

    def interrupting(self, info):
        if info["epoch"] >= epoch:
            raise KeyboardInterrupt
        step(self, info)

    monkeypatch.setattr(ProgressBar, "step", interrupting)


def test_ctrl_c_after_an_epoch_says_the_best_model_is_usable(tmp_path, monkeypatch, capsys):
    """Ctrl+C said "the epochs finished so far are saved in --out" and not that best.safetensors, the best so far,
    can be used as it is (it can: it loads and predicts)."""
    ds, out = _dataset(tmp_path / "ds"), tmp_path / "out"
    _interrupt_at(monkeypatch, 2)
    rc = main(["train", str(ds), "--arch", "unet", "--dims", "2", "--config", '{"features": [4, 8, 16]}', "--out", str(out),
               "--epochs", "3", "--iters-per-epoch", "2", "--batch", "2", "--patch", "32,32"])
    err = capsys.readouterr().err
    assert rc == 130
    assert f"{out / 'best.safetensors'} is the best model so far (epoch 1, validation Dice" in err, err
    assert "usable as it is" in err and "--resume" in err
    from napari_attnseg import load_model
    assert load_model(out / "best.safetensors").card.training["finished"] is False


def test_ctrl_c_before_any_epoch_says_nothing_was_saved(tmp_path, monkeypatch, capsys):
    """Ctrl+C in epoch 1 said "the epochs finished so far are saved" (none were), and left a training_log.csv that
    made the same command refuse the folder ("already holds a model")."""
    ds, out = _dataset(tmp_path / "ds"), tmp_path / "out"
    _interrupt_at(monkeypatch, 1)
    args = ["train", str(ds), "--arch", "unet", "--dims", "2", "--config", '{"features": [4, 8, 16]}', "--out", str(out),
            "--epochs", "1", "--iters-per-epoch", "2", "--batch", "2", "--patch", "32,32"]
    assert main(args) == 130
    err = capsys.readouterr().err
    assert "no epoch had finished: no model was written" in err and "saved" not in err, err
    assert not list(out.iterdir())
    monkeypatch.undo()
    assert main(args) == 0  # the same command runs again


# -- 4: --overwrite with the start model in --out ------------------------------------------------------------------
def test_overwrite_never_moves_the_start_model_away(tmp_path, capsys):
    """finetune --model OUT --out OUT --overwrite moved OUT/best.safetensors to OUT/replaced-1, then failed on
    "Model file OUT/best.safetensors does not exist"."""
    out = tmp_path / "ft"
    _tiny(out / "best.safetensors")
    for model in (str(out), str(out / "best.safetensors")):
        assert main(["finetune", str(tmp_path / "ds"), "--model", model, "--out", str(out), "--overwrite"]) == 1
        assert "--overwrite would move away" in capsys.readouterr().err
    assert (out / "best.safetensors").is_file() and not (out / "replaced-1").exists()


def test_overwrite_moves_the_state_json_with_the_model(tmp_path):
    from napari_attnseg.cli._train_common import check_out

    out = tmp_path / "o"
    out.mkdir()
    for name in ("best.safetensors", "best.json", "state.safetensors", "state.json", "training_log.csv"):
        (out / name).write_text("x")
    check_out(argparse.Namespace(out=str(out), resume=False, overwrite=True))
    assert sorted(p.name for p in (out / "replaced-1").iterdir()) == sorted(
        ["best.safetensors", "best.json", "state.safetensors", "state.json", "training_log.csv"])
    assert [p.name for p in out.iterdir()] == ["replaced-1"]


# -- 5: --minutes 0.2 ------------------------------------------------------------------------------------------------
def test_less_than_one_epoch_is_said(tmp_path, monkeypatch, capsys):
    """--minutes 0.2: 4 of 25 steps, "start 0.0062 -> result 0.0063" and a checkpoint, with no word that the model is
    hardly trained (the Fine-tune panel says "Less than one epoch ran ...")."""
    from napari_attnseg.cli import _train_common
    from napari_attnseg.training.config import TrainResult

    def fake_train(cfg, progress=None, on_step=None, on_split=None):
        for step in range(1, 5):
            on_step({"epoch": 1, "epochs": None, "step": step, "steps": 25, "loss": 1.0, "lr": 1e-4, "elapsed": 1.0,
                     "budget": 12.0})
        progress({"epoch": 1, "epochs": 1, "loss": 1.0, "val_dice": 0.0063, "val_dice_per_class": [0.0063],
                  "best": 0.0063, "lr": 1e-4, "elapsed": 12.0, "budget": 12.0, "steps_done": 4})
        return TrainResult(str(tmp_path / "best.safetensors"), 0.0062, 0.0063, None, 1, 12.0, "split",
                           val_dice_per_class=[0.0063], setup_seconds=6.8)

    monkeypatch.setattr("napari_attnseg.training.train", fake_train)
    cfg = SimpleNamespace(out=str(tmp_path), start_model="nuclei-2d", minutes=0.2, dataset=str(tmp_path))
    assert _train_common.run_training(cfg) == 0
    err = capsys.readouterr().err
    assert "less than one epoch ran (4 of 25 steps; the setup took 7 s of the 0.2 min budget)" in err, err


# -- 6: the from-scratch hint --------------------------------------------------------------------------------------
def test_the_scratch_hint_does_not_send_a_ct_to_the_brain_model(tmp_path):
    """attnseg train on the lung1 export (a 3D CT) hinted "attnseg finetune ds --model brain-mri-3d": a skull-
    stripping T1 model; nuclei-2d fine-tuned slice by slice is what docs/finetuning.md measured on it."""
    from napari_attnseg.cli._train_common import scratch_hint

    ckpt = _tiny(tmp_path / "o" / "best.safetensors", dims=3, normalization={"scheme": "ct", "window": [-1000, 400]})
    result = SimpleNamespace(cancelled=False, criterion="val_dice", val_dice_after=0.0025, checkpoint=str(ckpt))
    hint = scratch_hint(SimpleNamespace(start_model=None, dataset=str(tmp_path / "none")), result)
    assert hint and "--model nuclei-2d " in hint and "brain-mri-3d" not in hint, hint
    mri = _tiny(tmp_path / "m" / "best.safetensors", dims=3, normalization={"scheme": "scale", "nonzero": True})
    result.checkpoint = str(mri)  # (an MRI volume still gets the 3D brain model)
    assert "--model brain-mri-3d " in scratch_hint(SimpleNamespace(start_model=None, dataset=str(tmp_path)), result)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
