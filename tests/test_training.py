"""Training and fine-tuning on small synthetic datasets (seconds on a CPU)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from napari_attnseg import create_model, load_model, save_model
from napari_attnseg.checkpoint import ModelCard
from napari_attnseg.cli import main as cli
from napari_attnseg.data.export import export_case
from napari_attnseg.errors import Cancelled, DatasetError, InputError
from napari_attnseg.inference import CancelToken
from napari_attnseg.models.base import TrainOutput
from napari_attnseg.training import TrainConfig, train
from napari_attnseg.training.config import check_config
from napari_attnseg.training.losses import dice_ce_loss, dice_per_class, total_loss
from napari_attnseg.training.trainer import lr_at

FEATS = [4, 8, 16, 32]
TINY = {"features": [4, 8, 16]}


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
    m = create_model("attention_unet", spatial_dims=dims, features=FEATS + [64] if dims == 2 else [4, 8, 16])
    path = tmp_path / f"start{dims}.safetensors"
    save_model(m, path, ModelCard(arch="", config={}, name="start", classes=["background", "blob"], tile=[32] * dims))
    return path


def rows(path):
    return list(csv.DictReader(open(path)))


def test_finetune_2d_improves_validation_dice(tmp_path, dataset_2d):
    cfg = TrainConfig(dataset=str(dataset_2d), out=str(tmp_path / "out"), start_model=str(start_model(tmp_path)),
                      epochs=6, iters_per_epoch=8, batch_size=4, patch=[32, 32], lr=3e-3, patience=10, val_fraction=0.25)
    res = train(cfg)
    assert res.val_dice_after > res.val_dice_before + 0.1, (res.val_dice_before, res.val_dice_after)
    assert res.split.startswith("by case")
    model = load_model(res.checkpoint)
    t = model.card.training
    assert t["val_dice_before"] == pytest.approx(res.val_dice_before)
    assert t["val_dice_after"] == pytest.approx(res.val_dice_after) == model.card.metrics["val_dice"]
    assert t["dataset_manifest_sha256"] and t["finished"] and t["split_parts"]["val"]
    assert model.card.classes == ["background", "blob"] and model.card.normalization["scheme"] == "percentile"
    log = rows(tmp_path / "out" / "training_log.csv")
    assert len(log) == res.epochs and {"epoch", "lr", "train_loss", "val_dice"} <= set(log[0])


def test_finetune_3d_improves_validation_dice(tmp_path):
    for i in range(3):
        img, lab = blobs((24, 24, 24), 10 + i, n=5)
        export_case(img, lab, tmp_path / "ds3", "nnunet", spacing=(2.0, 1.0, 1.0))
    cfg = TrainConfig(dataset=str(tmp_path / "ds3"), out=str(tmp_path / "o3"), start_model=str(start_model(tmp_path, 3)),
                      epochs=4, iters_per_epoch=6, batch_size=2, patch=[16, 24, 24], lr=5e-3, val_fraction=0.34)
    res = train(cfg)
    assert res.val_dice_after > res.val_dice_before + 0.1, (res.val_dice_before, res.val_dice_after)
    model = load_model(res.checkpoint)
    assert model.spatial_dims == 3 and model.card.spacing == [2.0, 1.0, 1.0]


def test_one_volume_default_split_is_disjoint_slabs(tmp_path):
    img, lab = blobs((32, 32, 32), 7, n=10)
    export_case(img, lab, tmp_path / "ds3", "nnunet")
    cfg = TrainConfig(dataset=str(tmp_path / "ds3"), out=str(tmp_path / "o3"), arch="unet", model_config=TINY,
                      epochs=3, iters_per_epoch=5, batch_size=2, patch=[16, 32, 32], lr=5e-3)
    res = train(cfg)
    cut = 32 - round(32 * 0.2)
    assert res.split.startswith(f"slabs along axis 0: train case_0000[0:{cut},0:32,0:32]; validation case_0000[{cut}:32,0:32,0:32] (validation: ")
    assert load_model(res.checkpoint).card.training["split_parts"]["train"] == [{"case": "case_0000", "region": f"0:{cut},0:32,0:32"}]


def test_ignored_voxels_contribute_nothing():
    torch.manual_seed(0)
    ignore = 3
    target = torch.randint(0, 3, (2, 8, 8))
    target[:, :4] = ignore
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    head = torch.randn(2, 3, 8, 8, requires_grad=True)
    out = TrainOutput(logits, heads=[(0.5, head)], aux_loss=torch.tensor(0.0), main_weight=1.0)
    loss = total_loss(out, target, ignore)
    loss.backward()
    assert torch.all(logits.grad[:, :, :4] == 0) and torch.all(head.grad[:, :, :4] == 0)
    assert logits.grad[:, :, 4:].abs().sum() > 0
    # anything under the ignored voxels (logits there, the class ids there) leaves the loss unchanged
    other_logits, other_head = logits.detach().clone(), head.detach().clone()
    other_logits[:, :, :4] = torch.randn(2, 3, 4, 8) * 10
    other_head[:, :, :4] = torch.randn(2, 3, 4, 8) * 10
    again = total_loss(TrainOutput(other_logits, heads=[(0.5, other_head)]), target, ignore)
    assert torch.isclose(again, loss.detach())
    # the metric too: predictions under ignore do not count
    pred = np.random.default_rng(0).integers(0, 3, (2, 8, 8))
    t = target.numpy()
    scrambled = pred.copy()
    scrambled[:, :4] = 2
    assert dice_per_class(pred, t, 3, ignore) == dice_per_class(scrambled, t, 3, ignore)
    assert dice_ce_loss(logits, torch.full_like(target, ignore), ignore).item() == 0.0


def test_sparse_annotation_trains_on_reviewed_slices_only(tmp_path):
    """Unreviewed slices are 'ignore': patches come from reviewed slices and the split validates on them."""
    from napari_attnseg.training.sampling import PatchSampler

    img, lab = blobs((12, 32, 32), 3, n=8)
    export_case(img, lab, tmp_path / "sparse", "nnunet", reviewed_slices=[4, 5, 6, 7, 10, 11])
    ignore = 2
    sparse = np.full(lab.shape, ignore, np.int64)
    sparse[[4, 5, 6, 7]] = lab[[4, 5, 6, 7]]
    sampler = PatchSampler([img[None]], [sparse], (1, 32, 32), np.random.default_rng(0), ignore_index=ignore)
    _, y = sampler.sample(64)
    assert all((yi != ignore).any() for yi in y)  # every 2D patch carries loss
    res = train(TrainConfig(dataset=str(tmp_path / "sparse"), out=str(tmp_path / "o"), arch="unet", spatial_dims=2,
                            model_config=TINY, epochs=1, iters_per_epoch=2, batch_size=2, patch=[32, 32]))
    # default split for a 2D model: reviewed slices with foreground held out, spread over them
    assert res.split.startswith("held-out slices along axis 0: validation case_0000 slices ")
    held = load_model(res.checkpoint).card.training["split_parts"]["val"]
    rows = [i for e in held for i in range(*map(int, e["region"].split(",")[0].split(":")))]
    assert set(rows) <= {4, 5, 6, 7, 10, 11} and any(lab[i].any() for i in rows) and res.criterion == "val_dice"
    res = train(TrainConfig(dataset=str(tmp_path / "sparse"), out=str(tmp_path / "o2"), arch="unet", spatial_dims=2,
                            model_config=TINY, epochs=1, iters_per_epoch=2, batch_size=2, patch=[32, 32],
                            val_region="6:8"))
    assert "train case_0000[0:6,0:32,0:32], case_0000[8:12,0:32,0:32]; validation case_0000[6:8" in res.split


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_resume_continues_the_schedule_exactly(tmp_path, dataset_2d, ema):
    common = dict(dataset=str(dataset_2d), arch="unet", model_config=TINY, iters_per_epoch=3, batch_size=2,
                  patch=[32, 32], patience=50, warmup_epochs=1, ema=ema)
    straight = train(TrainConfig(out=str(tmp_path / "s"), epochs=4, **common))
    token = CancelToken()

    def stop_after_two(info):
        if info["epoch"] == 2:
            token.cancel()

    train(TrainConfig(out=str(tmp_path / "r"), epochs=4, **common), progress=stop_after_two, cancel=token)
    state = json.loads((tmp_path / "r" / "state.json").read_text())
    assert state["info"]["progress"]["epoch"] == 2
    resumed = train(TrainConfig(out=str(tmp_path / "r"), epochs=4, resume=True, **common))
    assert resumed.epochs == 4
    assert any(n.startswith(f"resumed from {tmp_path / 'r'} after epoch 2") for n in resumed.notes), resumed.notes
    a, b = rows(tmp_path / "s" / "training_log.csv"), rows(tmp_path / "r" / "training_log.csv")
    assert [int(r["epoch"]) for r in b] == [1, 2, 3, 4]
    # same learning rates, losses and validation Dice as the uninterrupted run
    for ra, rb in zip(a, b):
        assert {k: ra[k] for k in ("lr", "train_loss", "val_dice")} == {k: rb[k] for k in ("lr", "train_loss", "val_dice")}
    assert float(b[2]["lr"]) == pytest.approx(lr_at(3, 4, 1e-3, 1), rel=1e-3)
    assert resumed.val_dice_after == straight.val_dice_after
    # a different run's state is refused, not silently mixed in
    with pytest.raises(DatasetError, match="different run"):
        train(TrainConfig(out=str(tmp_path / "r"), epochs=5, resume=True, **{**common, "batch_size": 3}))


def test_weight_average_is_what_is_validated_and_saved(tmp_path, dataset_2d):
    from napari_attnseg.training.trainer import Trainer

    cfg = TrainConfig(dataset=str(dataset_2d), out=str(tmp_path / "e"), arch="unet", model_config=TINY,
                      iters_per_epoch=2, batch_size=2, patch=[32, 32], epochs=2, ema=0.5)
    t = Trainer(cfg)
    assert t.eval_model is t.ema_model and t.ema_model is not t.model
    with torch.no_grad():
        for p in t.model.parameters():
            p.fill_(1.0)
        for p in t.ema_model.parameters():
            p.fill_(0.0)
        bn = next(m for m in t.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
        bn.running_mean.fill_(4.0)
    t._update_ema(1000)  # past the ramp: decay 0.5
    assert all(torch.all(p == 0.5) for p in t.ema_model.parameters())
    ema_bn = next(m for m in t.ema_model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert torch.all(ema_bn.running_mean == 2.0)  # BN statistics are averaged too
    t._update_ema(0)  # first step: decay (1 + 0) / 10 = 0.1, the average follows the weights closely
    assert all(torch.allclose(p, torch.tensor(0.95)) for p in t.ema_model.parameters())
    result = t.fit()
    saved = load_model(result.checkpoint).state_dict()
    assert all(torch.equal(saved[k].float(), v.float()) for k, v in t.ema_model.state_dict().items())
    card = json.loads(Path(result.checkpoint).with_suffix(".json").read_text())
    assert card["training"]["config"]["ema"] == 0.5
    with pytest.raises(InputError, match="ema"):
        Trainer(TrainConfig(dataset=str(dataset_2d), out=str(tmp_path / "f"), ema=1.0))


def test_schedule_warms_up_then_decays():
    lrs = [lr_at(p / 10, 10, 1.0, 1.0) for p in range(1, 101)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:])) and lrs[-1] == pytest.approx(0.02)
    assert lr_at(0.5, None, 1.0, 1.0) == pytest.approx(0.5)  # minutes: total not known during epoch 1


def test_cancel_keeps_a_valid_checkpoint(tmp_path, dataset_2d):
    token = CancelToken()
    seen = []

    def progress(info):
        seen.append(info)
        if info["epoch"] == 2:
            token.cancel()

    cfg = TrainConfig(dataset=str(dataset_2d), out=str(tmp_path / "c"), arch="unet", model_config=TINY,
                      epochs=50, iters_per_epoch=3, batch_size=2, patch=[32, 32])
    res = train(cfg, progress=progress, cancel=token)
    assert res.cancelled and res.epochs == 2
    model = load_model(res.checkpoint)
    assert model.card.metrics["val_dice"] == pytest.approx(max(s["val_dice"] for s in seen))
    assert model.card.training["finished"] is False
    # cancelled before any validation: nothing half-written pretends to be a model
    token2 = CancelToken()
    token2.cancel()
    with pytest.raises(Cancelled):
        train(TrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "c2")}), cancel=token2)
    assert not (tmp_path / "c2" / "best.safetensors").exists()


def test_bad_datasets_give_clear_errors(tmp_path, dataset_2d):
    with pytest.raises(DatasetError, match="not a folder"):
        train(TrainConfig(dataset=str(tmp_path / "nope"), out=str(tmp_path / "o")))
    img, lab = blobs((40, 40), 1)
    # mismatched shapes
    export_case(img, lab, tmp_path / "shape", "tiff")
    import tifffile

    tifffile.imwrite(tmp_path / "shape" / "labels" / "case_0000.tif", lab[:30])
    with pytest.raises(DatasetError, match="differ in shape"):
        train(TrainConfig(dataset=str(tmp_path / "shape"), out=str(tmp_path / "o")))
    # nothing labelled: every slice unreviewed
    export_case(np.stack([img] * 4), np.stack([lab] * 4), tmp_path / "unrev", "nnunet", reviewed_slices=[])
    with pytest.raises(DatasetError, match="no labelled voxels"):
        train(TrainConfig(dataset=str(tmp_path / "unrev"), out=str(tmp_path / "o")))
    # one labelled slice cannot give a training and a validation part
    export_case(np.stack([img] * 4), np.stack([lab] * 4), tmp_path / "one", "nnunet", reviewed_slices=[2])
    with pytest.raises(DatasetError, match="at least two"):
        train(TrainConfig(dataset=str(tmp_path / "one"), out=str(tmp_path / "o"), spatial_dims=2))
    export_case(img, np.zeros((40, 40), np.uint8), tmp_path / "empty", "tiff")
    with pytest.raises(DatasetError, match="nothing to learn"):
        train(TrainConfig(dataset=str(tmp_path / "empty"), out=str(tmp_path / "o")))
    export_case(img, lab, tmp_path / "good", "tiff")
    with pytest.raises(DatasetError, match="overlap"):
        train(TrainConfig(dataset=str(tmp_path / "good"), out=str(tmp_path / "o"), train_region="0:30",
                          val_region="20:40"))
    with pytest.raises(DatasetError, match="no validation part|needs --val-region"):
        train(TrainConfig(dataset=str(tmp_path / "good"), out=str(tmp_path / "o"), train_region="0:30"))
    (dataset_2d / "labels" / "case_0001.tif").unlink()
    with pytest.raises(DatasetError, match="case_0001.*missing"):
        train(TrainConfig(dataset=str(dataset_2d), out=str(tmp_path / "o")))


def test_precision_options(tmp_path, dataset_2d):
    with pytest.raises(InputError, match="fp16 training needs a CUDA GPU"):
        train(TrainConfig(dataset=str(dataset_2d), out=str(tmp_path / "p"), device="cpu", precision="fp16"))
    res = train(TrainConfig(dataset=str(dataset_2d), out=str(tmp_path / "b"), arch="unet", model_config=TINY,
                            device="cpu", precision="bf16", epochs=1, iters_per_epoch=2, batch_size=2, patch=[32, 32]))
    assert res.precision == "bf16" and load_model(res.checkpoint).card.training["precision"] == "bf16"
    assert train(TrainConfig(dataset=str(dataset_2d), out=str(tmp_path / "f"), arch="unet", model_config=TINY,
                             device="cpu", epochs=1, iters_per_epoch=1, batch_size=2, patch=[32, 32])).precision == "fp32"


def test_cli_train_regions_test_region_and_finetune(tmp_path, capsys):
    img, lab = blobs((64, 64), 5, n=14)
    export_case(img, lab, tmp_path / "one", "tiff", case_id="img", label_names=["background", "blob"])
    rc = cli(["train", str(tmp_path / "one"), "--arch", "unet", "--config", json.dumps(TINY), "--out",
              str(tmp_path / "t"), "--minutes", "0.05", "--iters-per-epoch", "2", "--batch", "2", "--patch", "32,32",
              "--train-region", "0:64,0:24", "--val-region", "0:64,24:32", "--test-region", "0:64,32:64",
              "--normalization", "zscore"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "split: regions: train img[0:64,0:24]; validation img[0:64,24:32]; test img[0:64,32:64]" in out
    assert "checkpoint:" in out and "validation Dice" in out and "test Dice per class" in out
    card = load_model(tmp_path / "t" / "best.safetensors").card
    assert card.normalization == {"scheme": "zscore"}
    # the test Dice in the card is the printed one and the one a user measures on the test region
    printed = float(out.split("test Dice per class: ")[1].split()[0].rstrip(","))
    assert printed == pytest.approx(card.metrics["test_dice"], abs=5e-5)
    tifffile.imwrite(tmp_path / "img.tif", img)
    tifffile.imwrite(tmp_path / "lab.tif", lab)
    assert cli(["evaluate", "--model", str(tmp_path / "t" / "best.safetensors"), "--image", str(tmp_path / "img.tif"),
                "--labels", str(tmp_path / "lab.tif"), "--region", "0:64,32:64", "--precision", "fp32", "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)["dice"]["blob"]
    assert measured == pytest.approx(card.metrics["test_dice"], abs=1e-3), (measured, card.metrics["test_dice"])
    planned = card.training["epochs_planned"]
    assert card.training["reproduce"].endswith(f"--epochs {planned}") and "--minutes" not in card.training["reproduce"]
    assert card.training["command"].startswith("attnseg train")
    rc = cli(["finetune", str(tmp_path / "one"), "--model", str(tmp_path / "t" / "best.safetensors"), "--out",
              str(tmp_path / "f"), "--epochs", "1", "--iters-per-epoch", "2", "--batch", "2", "--patch", "32,32",
              "--freeze-encoder", "--split", json.dumps({"train": ["0:64,0:24"], "val": ["0:64,24:32"],
                                                           "test": ["0:64,32:64"]})])
    assert rc == 0
    out = capsys.readouterr().out
    assert "start 0." in out and "test Dice per class: start" in out
    assert card.normalization == load_model(tmp_path / "f" / "best.safetensors").card.normalization
    assert cli(["train", str(tmp_path / "missing"), "--arch", "unet", "--out", str(tmp_path / "x")]) == 1
    assert "not a folder" in capsys.readouterr().err
    assert cli(["train", str(tmp_path / "one"), "--arch", "unet", "--out", str(tmp_path / "x"),
                "--normalization", "sometimes"]) == 1
    assert "--normalization" in capsys.readouterr().err


def test_train_runs_off_the_main_thread(tmp_path, dataset_2d):
    # the napari panel runs the trainer on a worker thread; nothing in it may assume the main thread
    result = {}
    cfg = TrainConfig(dataset=str(dataset_2d), out=str(tmp_path / "th"), arch="unet", model_config=TINY,
                      epochs=1, iters_per_epoch=2, batch_size=2, patch=[32, 32])
    t = threading.Thread(target=lambda: result.setdefault("r", train(cfg)))
    t.start()
    t.join(120)
    assert result["r"].epochs == 1


def test_torchrun_data_parallel_on_cpu(tmp_path, dataset_2d):
    """Two gloo processes under torchrun: rank 0 writes one checkpoint, the card records the world size."""
    pytest.importorskip("torch.distributed.run")
    if not torch.distributed.is_available():
        pytest.skip("torch without distributed support")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "napari_attnseg.cli", "train", str(dataset_2d), "--arch", "unet", "--config", json.dumps(TINY),
           "--out", str(tmp_path / "ddp"), "--epochs", "2", "--iters-per-epoch", "2", "--batch", "2",
           "--patch", "32,32", "--device", "cpu"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("checkpoint:") == 1 and "2 processes" in proc.stdout
    card = load_model(Path(tmp_path / "ddp" / "best.safetensors")).card
    assert card.training["world_size"] == 2 and card.training["epochs"] == 2
    assert len(rows(tmp_path / "ddp" / "training_log.csv")) == 2


@pytest.mark.parametrize("shape", [(6, 1, 24, 24), (3, 1, 8, 16, 16)])
def test_augmentation_keeps_labels_on_the_image(shape):
    """Spatial changes move image and labels together (2D and 3D), per sample, reproducibly."""
    from napari_attnseg.training.augment import augment

    y = (torch.rand(shape[:1] + shape[2:], generator=torch.Generator().manual_seed(1)) > 0.6).long()
    y[..., :6] = 1  # an asymmetric block so that flips and rotations show
    x = y.unsqueeze(1).float()
    xa, ya = augment(x, y, torch.Generator().manual_seed(0), ignore_index=2, p_gamma=0, p_noise=0, p_affine=0)
    assert torch.equal((xa > 0.5).long().squeeze(1), ya)
    assert not all(torch.equal(ya[i], y[i]) for i in range(shape[0]))  # something moved
    xb, yb = augment(x, y, torch.Generator().manual_seed(0), ignore_index=2, p_gamma=0, p_noise=0, p_affine=0)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    xc, yc = augment(x, y, torch.Generator().manual_seed(3), ignore_index=2, p_affine=1.0)
    inside = yc != 2
    assert inside.float().mean() > 0.7
    assert ((xc > 0.5).long().squeeze(1) == yc)[inside].float().mean() > 0.85
    # without intensity changes the resampled labels are exactly the bilinearly resampled image
    # thresholded at one half (nearest-neighbour labels disagreed on 3-6 % of these voxels)
    xd, yd = augment(x, y, torch.Generator().manual_seed(3), ignore_index=2, p_affine=1.0, p_gamma=0, p_noise=0,
                     intensity_p=0)
    inside = yd != 2
    assert inside.float().mean() > 0.7
    assert ((xd > 0.5).long().squeeze(1) == yd)[inside].float().mean() > 0.999


@pytest.mark.parametrize("arch, config", [("msga", {"width": 4, "channels": 8, "latent": 4}), ("transfuse", {"width": 8, "embed_dim": 16,
                                                                                            "depth": 1, "heads": 2}),
                                          ("attention_unet", {"features": [4, 8, 16], "deep_supervision": True})])
def test_every_architecture_trains(tmp_path, dataset_2d, arch, config):
    """Heads (deep supervision, TransFuse's three) and msga's auxiliary losses go through the trainer."""
    res = train(TrainConfig(dataset=str(dataset_2d), out=str(tmp_path / arch), arch=arch, model_config=config,
                            epochs=1, iters_per_epoch=2, batch_size=2, patch=[32, 32]))
    model = load_model(res.checkpoint)
    assert model.arch == arch and model.card.metrics["val_dice"] == pytest.approx(res.val_dice_after)
    log = rows(tmp_path / arch / "training_log.csv")
    assert len(log) == res.epochs and all(np.isfinite(float(r["train_loss"])) for r in log)
    # the loss the trainer minimises counts the heads and the auxiliary losses, not only the main output
    torch.manual_seed(0)
    x, y = torch.randn(2, 1, 32, 32), (torch.rand(2, 32, 32) > 0.5).long()
    out = model.train().forward_train(x)
    assert out.heads or torch.is_tensor(out.aux_loss)
    main_only = out.main_weight * dice_ce_loss(out.logits, y)
    assert float(total_loss(out, y)) > float(main_only) + 1e-3


def test_fp16_loss_scaling_path_and_its_resume(tmp_path, dataset_2d, monkeypatch):
    """The CUDA fp16 path (autocast + GradScaler, scaler state in the resume file), exercised on the CPU."""
    from napari_attnseg.training import setup as setup_mod  # where the trainer chooses its precision

    monkeypatch.setattr(setup_mod, "training_precision", lambda device, requested: "fp16")
    common = dict(dataset=str(dataset_2d), out=str(tmp_path / "h"), arch="unet", model_config=TINY,
                  iters_per_epoch=2, batch_size=2, patch=[32, 32])
    res = train(TrainConfig(epochs=1, **common))
    assert res.precision == "fp16"
    state = json.loads((tmp_path / "h" / "state.json").read_text())
    assert state["info"]["scaler"]["scale"] > 0
    assert train(TrainConfig(epochs=2, resume=True, **common)).epochs == 2


def test_split_rules():
    from napari_attnseg.training.split import make_split, parse_box

    assert parse_box("0:512,-56:", (512, 512)) == ((0, 512), (456, 512))
    assert parse_box("5", (10, 4)) == ((5, 6), (0, 4))
    with pytest.raises(DatasetError, match="start:stop"):
        parse_box("a:b", (10,))
    lab = np.ones((20, 8), np.int64)
    s = make_split([lab], ["c"], ignore=None, val_region="8:12", test_region="16:20")
    assert s.parts_text() == "regions: train c[0:8,0:8], c[12:16,0:8]; validation c[8:12,0:8]; test c[16:20,0:8]"
    with pytest.raises(DatasetError, match="slabs along one axis"):
        make_split([lab], ["c"], ignore=None, val_region="8:12,0:4")
    three = [lab, lab, lab]
    s = make_split(three, ["a", "b", "c"], ignore=None, val_fraction=0.3, seed=1)
    assert len(s.val) == 1 and len(s.train) == 2 and s.how == "by case"
    assert make_split(three, ["a", "b", "c"], ignore=None, val_fraction=0.3, seed=1).as_json() == s.as_json()
    with pytest.raises(DatasetError, match="--case"):
        make_split(three, ["a", "b", "c"], ignore=None, val_region="0:5")
    s = make_split(three, ["a", "b", "c"], ignore=None, val_region="0:5", case="b")
    assert s.parts_text() == "regions: train b[5:20,0:8]; validation b[0:5,0:8]"
    spec = json.dumps({"train": ["a", {"case": "b", "region": "0:10"}], "val": [{"case": "b", "region": "10:20"}],
                       "test": "c"})
    s = make_split(three, ["a", "b", "c"], ignore=None, split_file=spec)
    assert s.parts_text() == "split file: train a, b[0:10,0:8]; validation b[10:20,0:8]; test c"
    with pytest.raises(DatasetError, match="not a case id"):
        make_split(three, ["a", "b", "c"], ignore=None, split_file='{"train": ["a"], "val": ["z"]}')
    with pytest.raises(DatasetError, match="overlap"):
        make_split(three, ["a", "b", "c"], ignore=None, split_file='{"train": ["a"], "val": ["a"]}')
    sparse = np.full((20, 8), 2)
    sparse[3] = 0
    with pytest.raises(DatasetError, match="validation part has no labelled voxels"):
        make_split([sparse], ["c"], ignore=2, val_region="10:20")
    # a 2D image: the validation is described by its objects, not by 'slices'
    blobs = np.zeros((40, 40), np.int64)
    blobs[30:33, 2:5] = 1
    blobs[2:5, 2:5] = blobs[10:13, 20:23] = 1
    s = make_split([blobs], ["c"], ignore=None, val_region="28:40")
    assert "1 part(s) of 2D images, 1 object(s) (9 foreground pixels)" in s.describe()
    assert s.warnings == ["the validation holds 1 object(s) only: its Dice is a weak guide (label more objects, "
                          "or give a validation region that holds more)"]
    blobs[34:36, 10:12] = blobs[36:38, 30:32] = 1
    assert make_split([blobs], ["c"], ignore=None, val_region="28:40").warnings == []


def test_default_split_validates_on_foreground_held_in_one_slab():
    """The only foreground sits in one slab (slices 30-33 of 48): the default split still validates on
    foreground (2D model: held-out slices; 3D model: a slab placed over part of it), and says so."""
    from napari_attnseg.training.split import make_split

    lab = np.zeros((48, 16, 16), np.int64)
    lab[30:34, 4:10, 4:10] = 1
    for slices in (True, False):
        s = make_split([lab], ["c"], ignore=None, slices=slices)
        val_fg = sum(int(lab[p.slices].sum()) for p in s.val)
        train_fg = sum(int(lab[p.slices].sum()) for p in s.train)
        assert val_fg > 0 and train_fg > 0 and s.criterion == "val_dice", s.describe()
        assert "with foreground" in s.describe()
    s = make_split([lab], ["c"], ignore=None, slices=True)
    held = [i for p in s.val for i in range(*p.box[0])]
    assert any(30 <= i < 34 for i in held) and any(not lab[i].any() for i in held)  # foreground and empty slices
    # reviewed slices (the rest 'ignore'): validation only on reviewed ones, some with foreground
    sparse = np.full(lab.shape, 2)
    for i in (10, 31, 32, 33, 40):
        sparse[i] = lab[i]
    s = make_split([sparse], ["c"], ignore=2, slices=True)
    held = [i for p in s.val for i in range(*p.box[0]) if (sparse[i] != 2).any()]
    assert set(held) <= {10, 31, 32, 33, 40} and any(i in (31, 32, 33) for i in held)
    assert "weak" in " ".join(s.warnings)  # one foreground slice in the validation
    # foreground on one slice only: it trains, and the checkpoint is chosen by the training loss (said)
    one = np.zeros_like(lab)
    one[40, 4:10, 4:10] = 1
    s = make_split([one], ["c"], ignore=None, slices=True)
    assert s.criterion == "train_loss" and "training loss" in s.describe() and s.warnings
    assert sum(int(one[p.slices].sum()) for p in s.train) > 0


def test_finetune_from_a_model_with_other_classes_reinitialises_the_head(tmp_path, dataset_2d):
    torch.manual_seed(0)
    m = create_model("attention_unet", spatial_dims=2, out_channels=3, features=FEATS + [64])
    path = tmp_path / "three.safetensors"
    save_model(m, path, ModelCard(arch="", config={}, name="three", classes=["background", "a", "b"], tile=[32, 32]))
    res = train(TrainConfig(dataset=str(dataset_2d), out=str(tmp_path / "o"), start_model=str(path), epochs=4,
                            iters_per_epoch=8, batch_size=4, patch=[32, 32], lr=3e-3))
    assert any("output head re-initialised (no class in common)" in n for n in res.notes), res.notes
    assert not res.kept_start, res.notes
    model = load_model(res.checkpoint)
    assert model.out_channels == 2 and model.card.classes == ["background", "blob"]
    assert model.card.name == "three-finetuned" and model.card.description == f"three fine-tuned on {dataset_2d.name}"
    # what inference compares new images and results with (inference/checks.py)
    assert 0 < model.card.metrics["foreground_share"] < 1 and 0 <= model.card.metrics["median_position"] <= 1
    # no epoch beats the start (a rate too small to move it): the start with an untrained head is no model, so
    # nothing is written (audit: a 1-minute brain1 fine-tune listed such a model; tumour Dice 0.00-0.01)
    still = train(TrainConfig(dataset=str(dataset_2d), out=str(tmp_path / "still"), start_model=str(path), epochs=1,
                              iters_per_epoch=1, batch_size=2, patch=[32, 32], lr=1e-12, refit=0.0))
    assert still.kept_start and still.checkpoint is None and not (tmp_path / "still" / "best.safetensors").exists()
    assert any("output layer is new" in n and "nothing was learned" in n for n in still.notes), still.notes


def test_finetune_is_never_worse_than_the_start(tmp_path, dataset_2d):
    """A learning rate that wrecks the model: no epoch beats the start, so the start weights are kept."""
    first = train(TrainConfig(dataset=str(dataset_2d), out=str(tmp_path / "a"), start_model=str(start_model(tmp_path)),
                              epochs=6, iters_per_epoch=8, batch_size=4, patch=[32, 32], lr=3e-3, val_fraction=0.25))
    res = train(TrainConfig(dataset=str(dataset_2d), out=str(tmp_path / "b"), start_model=first.checkpoint, epochs=2,
                            iters_per_epoch=3, batch_size=2, patch=[32, 32], lr=5.0, val_fraction=0.25, grad_clip=1e9))
    assert res.val_dice_after >= res.val_dice_before == pytest.approx(first.val_dice_after)
    if res.kept_start:
        assert any("start weights are kept" in n for n in res.notes) and res.best_epoch == 0
        a, b = load_model(first.checkpoint).state_dict(), load_model(res.checkpoint).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_intensity_augmentation_is_a_training_option(tmp_path, dataset_2d):
    """--intensity-aug sets how often a patch gets a contrast change and a brightness shift."""
    from napari_attnseg.training.trainer import Trainer

    def batch(p, out):  # gamma, noise and affine off, so only the contrast/brightness changes touch the values
        t = Trainer(TrainConfig(dataset=str(dataset_2d), out=str(tmp_path / out), arch="unet", model_config=TINY,
                                batch_size=16, patch=[32, 32], intensity_aug=p, gamma_aug=0, noise_aug=0,
                                affine_aug=0))
        t.sampler.sample = lambda n: (np.ones((n, 1, 32, 32), np.float32), np.zeros((n, 32, 32), np.int64))
        return t, t._batch()[0]

    _, flat = batch(0.0, "a")
    assert torch.all(flat == 1)  # only flips and rotations: a constant patch stays as it was
    t, changed = batch(1.0, "b")
    per_sample = changed.flatten(1)
    assert torch.all(per_sample.std(1) < 1e-6) and per_sample[:, 0].unique().numel() == 16  # every patch changed
    assert t._fingerprint()["intensity_aug"] == 1.0  # a resumed run must keep it
    with pytest.raises(InputError, match="intensity_aug"):
        Trainer(TrainConfig(dataset=str(dataset_2d), out=str(tmp_path / "c"), intensity_aug=1.5))


def test_gamma_noise_and_affine_augmentation_are_training_options(tmp_path, dataset_2d):
    """--gamma-aug / --noise-aug / --affine-aug set how often a patch gets a random gamma, Gaussian noise
    and a small rotation/scaling; with all of them (and the contrast changes) off a patch keeps its
    values apart from flips and 90-degree turns."""
    from napari_attnseg.training.trainer import Trainer

    ramp = np.tile(np.linspace(0, 1, 32, dtype=np.float32), (32, 1))

    def batch(out, **aug):
        t = Trainer(TrainConfig(dataset=str(dataset_2d), out=str(tmp_path / out), arch="unet", model_config=TINY,
                                batch_size=16, patch=[32, 32], intensity_aug=0, **aug))
        t.sampler.sample = lambda n: (np.broadcast_to(ramp, (n, 1, 32, 32)).copy(), np.zeros((n, 32, 32), np.int64))
        return t, t._batch()[0]

    def holds_ramp_values(b):  # per patch: the ramp's own values, only moved around (flips, 90-degree turns)
        return [np.allclose(np.sort(x.flatten()), np.sort(np.broadcast_to(ramp, (32, 32)).flatten()), atol=1e-6)
                for x in b[:, 0].numpy()]

    _, kept = batch("a", gamma_aug=0, noise_aug=0)
    # the affine change (p 0.3) still interpolates; outside it every patch holds the ramp's values
    assert sum(holds_ramp_values(kept)) >= 8
    _, exact = batch("a0", gamma_aug=0, noise_aug=0, affine_aug=0)
    assert all(holds_ramp_values(exact))
    t, turned = batch("a1", gamma_aug=0, noise_aug=0, affine_aug=1)
    assert not any(holds_ramp_values(turned))  # every patch rotated/scaled and interpolated
    assert t._fingerprint()["affine_aug"] == 1
    t, gamma = batch("b", gamma_aug=1, noise_aug=0)
    medians = gamma.flatten(1).median(1).values
    assert medians.unique().numel() >= 12  # a different gamma per patch moves the ramp's middle
    assert t._fingerprint()["gamma_aug"] == 1 and t._fingerprint()["noise_aug"] == 0  # a resumed run keeps them

    def roughness(b):  # per patch, the median |second difference|: ~0 on a (flipped, rotated, scaled) ramp
        d2 = torch.cat([b[..., 2:, :] - 2 * b[..., 1:-1, :] + b[..., :-2, :],
                        (b[..., 2:] - 2 * b[..., 1:-1] + b[..., :-2]).transpose(-1, -2)], -1)
        return d2.abs().flatten(1).median(1).values

    _, noisy = batch("c", gamma_aug=0, noise_aug=1)
    assert torch.all(roughness(kept) < 1e-3) and (roughness(noisy) > 5e-3).sum() >= 12
    with pytest.raises(InputError, match="noise_aug"):
        Trainer(TrainConfig(dataset=str(dataset_2d), out=str(tmp_path / "d"), noise_aug=-0.1))
    for option, value in (("--gamma-aug", "2"), ("--affine-aug", "-1")):  # (refused by argparse: status 2)
        with pytest.raises(SystemExit, match="2"):
            cli(["train", str(dataset_2d), "--arch", "unet", "--out", str(tmp_path / "e"), option, value])


def test_flat_margin_augmentation_adds_an_empty_band(tmp_path, dataset_2d):
    """--margin-aug: a flat band (the patch's minimum) along one side, labelled background, as the
    zero-filled margins of a mosaic look to the model; off by default, so it draws nothing then."""
    from napari_attnseg.training.augment import augment
    from napari_attnseg.training.trainer import Trainer

    ramp = torch.linspace(0.2, 1, 32).expand(16, 1, 32, 32).contiguous()
    ones = torch.ones(16, 32, 32, dtype=torch.long)
    off = dict(p_affine=0, p_gamma=0, p_noise=0, intensity_p=0)
    xa, ya = augment(ramp, ones, torch.Generator().manual_seed(0), **off, p_margin=1)
    widths = set()
    for xi, yi in zip(xa[:, 0], ya):
        empty = yi == 0
        full_rows, full_cols = empty.all(1), empty.all(0)
        assert empty.sum() in (full_rows.sum() * 32, full_cols.sum() * 32)  # whole rows or whole columns
        assert torch.all(xi[empty] == xi.min()) and torch.all(yi[~empty] == 1)
        widths.add(int(max(full_rows.sum(), full_cols.sum())))
    assert len(widths) >= 5  # random widths, 1 to half the patch
    two = torch.cat([ramp, ramp + 5], 1)  # two channels: each band takes its own channel's minimum
    xb, yb = augment(two, ones, torch.Generator().manual_seed(1), **off, p_margin=1)
    for xi, yi in zip(xb, yb):
        assert torch.all(xi[0][yi == 0] == 0.2) and torch.all(xi[1][yi == 0] == 5.2)
    g0, g1 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    augment(ramp, ones, g0, p_margin=0)
    augment(ramp, ones, g1)
    assert torch.equal(g0.get_state(), g1.get_state())  # off: the random sequence of older runs is unchanged
    t = Trainer(TrainConfig(dataset=str(dataset_2d), out=str(tmp_path / "m"), arch="unet", model_config=TINY,
                            margin_aug=0.5))
    assert t._fingerprint()["margin_aug"] == 0.5
    with pytest.raises(SystemExit, match="2"):  # (refused by argparse)
        cli(["train", str(dataset_2d), "--arch", "unet", "--out", str(tmp_path / "n"), "--margin-aug", "1.5"])


def test_finetune_with_few_reviewed_slices_improves_the_untouched_slices(tmp_path):
    """Four reviewed slices of a volume (the rest 'ignore'), fine-tuning with the default settings (only the
    budget and a learning rate for a start model that knows nothing): Dice on the slices nobody touched rises."""
    from napari_attnseg.inference import predict

    rng = np.random.default_rng(3)
    shape = (16, 32, 32)
    lab = np.zeros(shape, np.int64)
    yy, xx = np.indices(shape[1:])
    for z in range(shape[0]):
        cy, cx, r = rng.uniform(8, 24), rng.uniform(8, 24), rng.uniform(3, 6)
        lab[z][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
    img = (lab * 1.0 + rng.normal(0, 0.3, shape)).astype(np.float32) * 100 + 300
    reviewed = [2, 6, 9, 13]
    export_case(img, lab, tmp_path / "ds", "nnunet", reviewed_slices=reviewed, label_names=["background", "disc"])
    torch.manual_seed(0)
    m = create_model("unet", spatial_dims=2, features=[8, 16, 32])
    save_model(m, tmp_path / "s.safetensors", ModelCard(arch="", config={}, name="s", classes=["background", "disc"],
                                                         tile=[32, 32]))
    res = train(TrainConfig(dataset=str(tmp_path / "ds"), out=str(tmp_path / "o"), start_model=str(tmp_path / "s.safetensors"),
                            epochs=8, iters_per_epoch=8, batch_size=4, lr=3e-3))
    untouched = [z for z in range(shape[0]) if z not in reviewed]

    def dice(path):
        pred = np.asarray(predict(load_model(path), img, device="cpu", return_probabilities=False).labels)
        return dice_per_class(pred[untouched], lab[untouched], 2)[0]

    before, after = dice(tmp_path / "s.safetensors"), dice(res.checkpoint)
    assert after > max(before, 0) + 0.3 and res.val_dice_after >= res.val_dice_before, (before, after, res.notes)


def test_ct_in_hounsfield_units_gets_a_ct_window(tmp_path):
    rng = np.random.default_rng(0)
    lab = np.zeros((8, 32, 32), np.int64)
    lab[:, 10:18, 10:18] = 1
    hu = np.where(rng.random(lab.shape) < 0.5, -1000, 40).astype(np.float32)  # air and soft tissue
    hu[lab > 0] = 60
    hu[:, 0, :] = 1200  # bone along one edge
    export_case(hu.astype(np.int16), lab, tmp_path / "ct", "nnunet", label_names=["background", "tumour"])
    common = dict(dataset=str(tmp_path / "ct"), epochs=1, iters_per_epoch=2, batch_size=2, patch=[32, 32])
    res = train(TrainConfig(out=str(tmp_path / "a"), arch="unet", spatial_dims=2, model_config=TINY, **common))
    assert load_model(res.checkpoint).card.normalization == {"scheme": "ct", "window": [-1000.0, 400.0]}
    assert any("Hounsfield" in n for n in res.notes)
    res = train(TrainConfig(out=str(tmp_path / "b"), start_model=str(start_model(tmp_path)), **common))
    assert any("CT window" in n for n in res.notes), res.notes  # both normalisations were compared
    res = train(TrainConfig(out=str(tmp_path / "c"), arch="unet", spatial_dims=2, model_config=TINY, ct_window=None, **common))
    assert load_model(res.checkpoint).card.normalization["scheme"] == "percentile"


def test_validation_slices_are_any_set_of_slices(tmp_path):
    """--val-slices 20,33: validation on exactly those (non-adjacent) slices, training on all the others; bad
    indices and a second way of giving the validation are clear errors."""
    from napari_attnseg.training.split import make_split

    lab = np.zeros((40, 16, 16), np.int64)
    lab[30:36, 4:10, 4:10] = 1
    s = make_split([lab], ["c"], ignore=None, slices=True, val_slices=[20, 33])
    assert [p.box[0] for p in s.val] == [(20, 21), (33, 34)]
    assert [p.box[0] for p in s.train] == [(0, 20), (21, 33), (34, 40)]
    assert s.parts_text() == "held-out slices along axis 0: validation c slices 20,33; train c the other slices"
    assert "2 labelled slices, 1 with foreground" in s.validation
    with pytest.raises(DatasetError, match="outside case c"):
        make_split([lab], ["c"], ignore=None, val_slices=[41])
    with pytest.raises(InputError, match="once"):
        check_config(TrainConfig(dataset="d", out="o", val_slices=[1], val_region="0:2"))
    export_case(lab.astype(np.float32) * 100, lab, tmp_path / "ds", "nnunet", label_names=["background", "x"])
    out = tmp_path / "m"
    assert cli(["train", str(tmp_path / "ds"), "--arch", "unet", "--dims", "2", "--config", json.dumps(TINY),
                "--out", str(out), "--epochs", "1", "--iters-per-epoch", "1", "--batch", "2", "--patch", "16,16",
                "--val-slices", "20,33"]) == 0
    split = load_model(out / "best.safetensors").card.training["split_parts"]
    assert [v["region"].split(",")[0] for v in split["val"]] == ["20:21", "33:34"]
    assert cli(["train", str(tmp_path / "ds"), "--arch", "unet", "--out", str(out), "--val-slices", "3-x"]) == 1


def test_hard_negatives_follow_the_models_new_false_positives(tmp_path, monkeypatch):
    """The hard negatives are the start model's false positives on reviewed background and, after every
    epoch, the current model's as well."""
    from napari_attnseg.training.trainer import Trainer

    lab = np.zeros((12, 32, 32), np.int64)
    lab[4:8, 10:18, 10:18] = 1
    img = (lab * 200.0 + 100).astype(np.float32)
    export_case(img, lab, tmp_path / "ds", "nnunet", reviewed_slices=[2, 5, 6, 9], label_names=["background", "x"])
    t = Trainer(TrainConfig(dataset=str(tmp_path / "ds"), out=str(tmp_path / "o"), start_model=str(start_model(tmp_path)),
                            epochs=2, iters_per_epoch=2, batch_size=2, patch=[32, 32], refit=0.0))
    calls = []
    real = t._false_positives

    def counted(*rows_of):
        calls.append(1)
        return real(*rows_of)

    monkeypatch.setattr(t, "_false_positives", counted)
    t.fit()
    assert len(calls) == 2  # one refresh per epoch
    assert any("own false positives" in n for n in t.notes)
    planted = [np.array([[2, 1, 1]])]
    t.sampler.set_hard(planted)
    assert np.array_equal(t.sampler.hard[0], planted[0])


def test_the_refresh_resegments_a_few_slices_per_epoch_in_turn(tmp_path, monkeypatch):
    """A fully labelled volume: the refresh after each epoch re-segments at most REFRESH_ROWS slices of a part,
    in turn, and keeps the other slices' false positives (all 38 slices of a 512 x 512 CT took 13 s of each 45 s
    epoch); the sampler's hard negatives always hold the start model's."""
    from napari_attnseg.training import setup as setup_module
    from napari_attnseg.training.trainer import Trainer

    lab = np.zeros((24, 32, 32), np.int64)
    lab[8:14, 10:18, 10:18] = 1
    img = (lab * 200.0 + 100).astype(np.float32)
    export_case(img, lab, tmp_path / "ds", "nnunet", label_names=["background", "x"])  # every slice labelled
    t = Trainer(TrainConfig(dataset=str(tmp_path / "ds"), out=str(tmp_path / "o"), start_model=str(start_model(tmp_path)),
                            epochs=4, iters_per_epoch=1, batch_size=2, patch=[32, 32], refit=0.0, patience=99,
                            val_slices=[23]))
    seen, real = [], t._next_rows

    def recorded(k, rows):
        out = real(k, rows)
        seen.append((k, len(rows), [int(z) for z in out]))
        return out

    monkeypatch.setattr(t, "_next_rows", recorded)
    start = [len(h) for h in t._start_hard]
    t.fit()
    big = [(k, n, rows) for k, n, rows in seen if n > setup_module.REFRESH_ROWS]
    assert big and all(len(rows) == setup_module.REFRESH_ROWS for _, _, rows in big)
    k, n, _ = big[0]
    visited = [z for kk, _, rows in seen if kk == k for z in rows]
    assert len(set(visited)) == min(n, 4 * setup_module.REFRESH_ROWS)  # in turn: no slice twice before all once
    assert set(t._fp_rows[k]) == set(visited)  # the slices not re-segmented this epoch keep theirs
    assert all(len(h) >= s for h, s in zip(t.sampler.hard, start))


def _blob_case(tmp_path) -> None:
    """A one-case dataset ``tmp_path/ds`` (a blob on slices 3-8, slices 1, 4, 6, 8, 10 reviewed) and an untrained start
    model ``tmp_path/s.safetensors``: the refit tests'."""
    lab = np.zeros((12, 32, 32), np.int64)
    lab[3:9, 10:18, 10:18] = 1
    img = (lab * 200.0 + 100 + np.random.default_rng(0).normal(0, 20, lab.shape)).astype(np.float32)
    export_case(img, lab, tmp_path / "ds", "nnunet", reviewed_slices=[1, 4, 6, 8, 10], label_names=["background", "blob"])
    torch.manual_seed(0)
    save_model(create_model("unet", spatial_dims=2, features=[8, 16, 32]), tmp_path / "s.safetensors",
               ModelCard(arch="", config={}, name="s", classes=["background", "blob"], tile=[32, 32]))


def test_refit_trains_the_chosen_checkpoint_on_the_validation_slices_too(tmp_path):
    """Fine-tuning keeps the last quarter of the epochs for the validation slices too (after the choice), says
    so, and never reports a validation Dice measured on slices it trained on."""
    from napari_attnseg.training.trainer import Trainer

    _blob_case(tmp_path)
    common = dict(dataset=str(tmp_path / "ds"), start_model=str(tmp_path / "s.safetensors"), epochs=8, iters_per_epoch=8,
                  batch_size=4, patch=[32, 32], lr=3e-3)
    t = Trainer(TrainConfig(out=str(tmp_path / "a"), **common))
    held = {i for p in t.split.val for i in range(*p.box[0])}
    assert t.refit_epochs(8) == 2 and held & {4, 6, 8}
    res = t.fit()
    log = rows(res.log)
    assert not res.kept_start, res.notes
    assert res.refit_epochs == 2 and [r["val_dice_per_class"] for r in log[-2:]] == ["refit", "refit"]
    assert len(log) == 8 and all(r["val_dice"] for r in log[:6])
    assert any("validation ones included" in n for n in res.notes), res.notes
    assert len(t.sampler.images) == len(t.split.train) + len(t.split.val)  # the validation slices trained
    card = load_model(res.checkpoint).card
    assert card.metrics["val_dice"] == pytest.approx(res.val_dice_after)
    assert res.val_dice_after == pytest.approx(max(float(r["val_dice"]) for r in log[:6]), abs=1e-4)
    assert card.training["epochs"] == 8
    off = train(TrainConfig(out=str(tmp_path / "b"), refit=0.0, **common))
    assert off.refit_epochs == 0 and len(rows(off.log)) == 8 and all(r["val_dice"] for r in rows(off.log))

    # no epoch beats the start by the time the refit is due (lr ~0): its epochs validate instead of idling
    stuck = train(TrainConfig(out=str(tmp_path / "c"), **{**common, "start_model": res.checkpoint, "lr": 1e-12,
                                                           "patience": 99}))
    log = rows(stuck.log)
    assert stuck.kept_start and stuck.refit_epochs == 0 and len(log) == 8, stuck.notes
    assert all(r["val_dice_per_class"] != "refit" for r in log)
    assert any("went to more validated epochs" in n for n in stuck.notes), stuck.notes


def test_finetune_records_the_object_diameter_of_its_training_objects(tmp_path, dataset_2d):
    """A start model sized for its objects (a card with object_diameter) gives a fine-tuned model sized for
    the objects it was fine-tuned on (measured on the labels), unless the start weights were kept (then
    the start's); a start model without one gives none."""
    from napari_attnseg.data.dataset import read_dataset
    from napari_attnseg.inference.diameter import measure_diameter

    torch.manual_seed(0)
    found = [measure_diameter(c.load_labels() > 0) for c in read_dataset(dataset_2d).cases]
    measured = float(np.average([d for d, _ in found], weights=[n for _, n in found]))
    assert abs(measured - 25.0) > 5  # the blobs are not the start model's objects
    common = dict(dataset=str(dataset_2d), epochs=1, iters_per_epoch=2, batch_size=2, patch=[32, 32])
    for n_out, classes, out, diameter in ((2, ["background", "blob"], "same", 25.0),
                                          (3, ["background", "a", "b"], "other", 25.0),
                                          (2, ["background", "blob"], "none", None)):
        m = create_model("attention_unet", spatial_dims=2, out_channels=n_out, features=TINY["features"])
        path = tmp_path / f"{out}.safetensors"
        save_model(m, path, ModelCard(arch="", config={}, name=out, classes=classes, tile=[32, 32],
                                      object_diameter=diameter))
        # a new head must beat the start for a checkpoint to be written (else nothing was learned): train it more
        more = dict(epochs=4, iters_per_epoch=8, batch_size=4, lr=3e-3) if out == "other" else {}
        res = train(TrainConfig(out=str(tmp_path / out), start_model=str(path), **{**common, **more}))
        got = load_model(res.checkpoint or tmp_path / out / "best.safetensors").card.object_diameter
        if diameter is None:
            assert got is None
        elif res.kept_start and out == "same":  # the start weights kept: their objects' size too
            assert got == diameter
        else:  # "other": re-headed, never the start's weights
            assert got == pytest.approx(measured, abs=0.01), out


def test_the_refit_takes_the_epochs_early_stopping_left(tmp_path):
    """lung1's round (tumour slices 32 and 34 reviewed): the validation peaked at epoch 1 and early stopping ended the
    validated epochs at 11 of 17; the refit trained its 4 and 2 epochs were left unused, though it is the refit that
    learns there (slice 33 0.90). Now it takes what is left of the plan. The validation is scripted (a peak at epoch
    1, then lower) so the early stop is certain."""
    from napari_attnseg.training.trainer import Trainer

    _blob_case(tmp_path)
    t = Trainer(TrainConfig(dataset=str(tmp_path / "ds"), out=str(tmp_path / "a"), start_model=str(tmp_path / "s.safetensors"),
                            epochs=10, iters_per_epoch=2, batch_size=2, patch=[32, 32], patience=2))
    assert t.refit_epochs(10) == 2
    scripted = iter([[0.1], [0.6], [0.3], [0.3]])  # the start, epochs 1-3; then the refit's check
    t.evaluate = lambda parts: next(scripted, [0.6])
    res = t.fit()
    log = rows(res.log)
    assert [r["val_dice"] for r in log[:3]] == ["0.6000", "0.3000", "0.3000"], log
    assert any("stopped early at epoch 3" in n for n in res.notes), res.notes
    assert any("the refit takes the 7 epochs early stopping left (its share was 2)" in n for n in res.notes), res.notes
    assert res.refit_epochs == 7 and [r["val_dice_per_class"] for r in log[3:]] == ["refit"] * 7
    # early stopping's patience: 5 for such a run (its refit takes the rest), 10 without a refit, or as given
    common = dict(dataset=str(tmp_path / "ds"), start_model=str(tmp_path / "s.safetensors"), epochs=10)
    assert t.patience() == 2 and TrainConfig.patience is None
    assert Trainer(TrainConfig(out=str(tmp_path / "b"), **common)).patience() == 5
    assert Trainer(TrainConfig(out=str(tmp_path / "c"), refit=0.0, **common)).patience() == 10
