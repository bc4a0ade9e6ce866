"""Training and fine-tuning on small synthetic datasets (seconds on a CPU)."""

from __future__ import annotations

import csv
import json
import threading

import numpy as np
import pytest
import torch

from napari_attnseg import create_model, load_model, save_model
from napari_attnseg.checkpoint import ModelCard
from napari_attnseg.cli import main as cli
from napari_attnseg.data.export import export_case
from napari_attnseg.errors import DatasetError
from napari_attnseg.inference import CancelToken
from napari_attnseg.training import TrainConfig, train
from napari_attnseg.training.losses import dice_ce_loss

FEATS = [4, 8, 16, 32]


def blobs(shape, seed, n=6):
    """Bright discs/balls on a noisy background, and their mask."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape)
    mask = np.zeros(shape, np.uint8)
    for _ in range(n):
        c = [rng.uniform(4, s - 4) for s in shape]
        r = rng.uniform(3, 6)
        mask[sum((g - ci) ** 2 for g, ci in zip(grid, c)) <= r * r] = 1
    image = (mask * 1.0 + rng.normal(0, 0.35, shape)).astype(np.float32) * 100 + 300
    return image, mask


@pytest.fixture()
def dataset_2d(tmp_path):
    for i in range(4):
        img, lab = blobs((48, 48), i)
        export_case(img, lab, tmp_path / "ds2", "tiff", label_names=["background", "blob"])
    return tmp_path / "ds2"


def start_model(tmp_path, dims=2):
    torch.manual_seed(0)
    m = create_model("attention_unet", spatial_dims=dims, features=FEATS + [64] if dims == 2 else FEATS + [32])
    path = tmp_path / f"start{dims}.safetensors"
    save_model(m, path, ModelCard(arch="", config={}, name="start", classes=["background", "blob"], tile=[32] * dims))
    return path


def test_finetune_2d_improves_validation_dice(tmp_path, dataset_2d):
    cfg = TrainConfig(dataset=str(dataset_2d), out=str(tmp_path / "out"), start_model=str(start_model(tmp_path)),
                      epochs=6, iters_per_epoch=8, batch_size=4, patch=[32, 32], lr=3e-3, patience=10, val_fraction=0.25)
    res = train(cfg)
    assert res.val_dice_after > res.val_dice_before + 0.1, (res.val_dice_before, res.val_dice_after)
    assert "by case" in res.split
    model = load_model(res.checkpoint)
    assert model.card.training["val_dice_before"] == pytest.approx(res.val_dice_before)
    assert model.card.training["dataset_manifest_sha256"]
    rows = list(csv.DictReader(open(tmp_path / "out" / "training_log.csv")))
    assert len(rows) == res.epochs and {"epoch", "lr", "train_loss", "val_dice"} <= set(rows[0])


def test_train_3d_from_scratch_on_one_case_splits_by_slabs(tmp_path):
    img, lab = blobs((32, 32, 32), 7, n=10)
    export_case(img, lab, tmp_path / "ds3", "nnunet")
    cfg = TrainConfig(dataset=str(tmp_path / "ds3"), out=str(tmp_path / "o3"), arch="unet",
                      model_config={"features": [4, 8, 16]}, epochs=4, iters_per_epoch=6, batch_size=2,
                      patch=[16, 32, 32], lr=5e-3)
    res = train(cfg)
    assert "by regions" in res.split and "0:26" in res.split
    assert res.val_dice_after > 0.3
    assert load_model(res.checkpoint).spatial_dims == 3


def test_ignored_voxels_contribute_nothing():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    target = torch.randint(0, 3, (2, 8, 8))
    ignore = 3
    target[:, :4] = ignore
    loss = dice_ce_loss(logits, target, ignore)
    loss.backward()
    assert torch.all(logits.grad[:, :, :4] == 0)
    # changing the logits under the ignored voxels does not change the loss
    other = logits.detach().clone()
    other[:, :, :4] = torch.randn(2, 3, 4, 8) * 10
    assert torch.isclose(dice_ce_loss(other, target, ignore), loss.detach())


def test_resume_continues_the_schedule(tmp_path, dataset_2d):
    common = dict(dataset=str(dataset_2d), out=str(tmp_path / "r"), arch="unet", model_config={"features": FEATS},
                  iters_per_epoch=3, batch_size=2, patch=[32, 32], patience=50)
    train(TrainConfig(epochs=2, **common))
    state = json.loads((tmp_path / "r" / "state.json").read_text())
    assert state["info"]["epoch"] == 2
    res = train(TrainConfig(epochs=4, resume=True, **common))
    assert res.epochs == 4
    rows = list(csv.DictReader(open(tmp_path / "r" / "training_log.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]


def test_cancel_keeps_a_valid_checkpoint(tmp_path, dataset_2d):
    token = CancelToken()
    seen = []

    def progress(info):
        seen.append(info)
        if info["epoch"] == 2:
            token.cancel()

    cfg = TrainConfig(dataset=str(dataset_2d), out=str(tmp_path / "c"), arch="unet", model_config={"features": FEATS},
                      epochs=50, iters_per_epoch=3, batch_size=2, patch=[32, 32])
    res = train(cfg, progress=progress, cancel=token)
    assert res.cancelled and res.epochs == 2
    assert load_model(res.checkpoint).card.metrics["val_dice"] == pytest.approx(max(s["val_dice"] for s in seen))


def test_bad_datasets_give_clear_errors(tmp_path, dataset_2d):
    with pytest.raises(DatasetError, match="not a folder"):
        train(TrainConfig(dataset=str(tmp_path / "nope"), out=str(tmp_path / "o")))
    (dataset_2d / "labels" / "case_0001.tif").unlink()
    with pytest.raises(DatasetError, match="case_0001.*missing"):
        train(TrainConfig(dataset=str(dataset_2d), out=str(tmp_path / "o")))
    img, _ = blobs((40, 40), 1)
    export_case(img, np.zeros((40, 40), np.uint8), tmp_path / "empty", "tiff")
    with pytest.raises(DatasetError, match="no foreground|nothing to learn"):
        train(TrainConfig(dataset=str(tmp_path / "empty"), out=str(tmp_path / "o")))


def test_cli_train_and_finetune(tmp_path, dataset_2d, capsys):
    rc = cli(["train", str(dataset_2d), "--arch", "unet", "--config", json.dumps({"features": FEATS}), "--out",
              str(tmp_path / "t"), "--epochs", "2", "--iters-per-epoch", "3", "--batch", "2", "--patch", "32,32"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "checkpoint:" in out and "validation Dice" in out
    rc = cli(["finetune", str(dataset_2d), "--model", str(tmp_path / "t" / "best.safetensors"), "--out",
              str(tmp_path / "f"), "--epochs", "1", "--iters-per-epoch", "2", "--batch", "2", "--patch", "32,32",
              "--freeze-encoder"])
    assert rc == 0 and "start 0." in capsys.readouterr().out
    assert cli(["train", str(tmp_path / "missing"), "--arch", "unet", "--out", str(tmp_path / "x")]) == 1
    assert "not a folder" in capsys.readouterr().err


def test_train_runs_off_the_main_thread(tmp_path, dataset_2d):
    # the napari panel runs the trainer on a worker thread; nothing in it may assume the main thread
    result = {}
    cfg = TrainConfig(dataset=str(dataset_2d), out=str(tmp_path / "th"), arch="unet", model_config={"features": FEATS},
                      epochs=1, iters_per_epoch=2, batch_size=2, patch=[32, 32])
    t = threading.Thread(target=lambda: result.setdefault("r", train(cfg)))
    t.start()
    t.join(120)
    assert result["r"].epochs == 1
