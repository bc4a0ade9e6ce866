"""A big 2D held-out part is validated on a fixed set of blocks (the same for the start model and every
epoch, at most ``VAL_MAX_PX`` px, said in the split text and the card), not segmented whole at setup and
after every epoch; ordinary parts are validated whole, as before."""

from __future__ import annotations

import json

import numpy as np
import torch

from napari_attnseg import create_model, save_model
from napari_attnseg.checkpoint import ModelCard
from napari_attnseg.data.export import export_case
from napari_attnseg.training import TrainConfig, setup, train, valblocks
from napari_attnseg.training import trainer as trainer_module
from napari_attnseg.training.split import Part


def _run(tmp_path, monkeypatch, shape=(320, 320)):
    """Fine-tune a tiny 2D model on one 2D image; returns the result and what each validation scored on."""
    rng = np.random.default_rng(0)
    lab = np.zeros(shape, np.int64)
    for y, x in rng.integers(4, min(shape) - 12, (60, 2)):
        lab[y:y + 8, x:x + 8] = 1
    img = (lab * 150.0 + 100 + rng.normal(0, 20, lab.shape)).astype(np.float32)
    export_case(img, lab, tmp_path / "ds", "tiff", label_names=["background", "x"])
    torch.manual_seed(0)
    start = tmp_path / "start.safetensors"
    save_model(create_model("unet", spatial_dims=2, features=[4, 8, 16]), start,
               ModelCard(arch="", config={}, name="start", classes=["background", "x"], tile=[32, 32]))
    scored = []
    real = trainer_module.Trainer._evaluate

    def spy(self, parts, precision):
        if parts is self.val_parts:
            scored.append([(lab.shape, int(lab.sum()), img.shape) for img, lab, _ in parts])
        return real(self, parts, precision)

    monkeypatch.setattr(trainer_module.Trainer, "_evaluate", spy)
    ds = tmp_path / "ds"
    res = train(TrainConfig(dataset=str(ds), out=str(tmp_path / "o"), start_model=str(start), epochs=2,
                            batch_size=2, patch=[32, 32], iters_per_epoch=2, refit=0.0,
                            command=f"attnseg finetune {ds} --model s --out o --epochs 2"))
    return res, scored


def test_big_2d_validation_on_fixed_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(setup, "FP_BLOCK", 64)  # blocks of about 64 x 64 px
    monkeypatch.setattr(valblocks, "VAL_MAX_PX", 2 * 64 * 64)  # the 64 x 320 validation part counts as big
    res, scored = _run(tmp_path, monkeypatch)
    assert len(scored) == 3  # the start model and 2 epochs
    assert all(s == scored[0] for s in scored), "every validation must score the same pixels"
    px = sum(int(np.prod(shape)) for shape, _, _ in scored[0])
    assert len(scored[0]) == 2 and px <= valblocks.VAL_MAX_PX, scored[0]
    assert all(img[-1] < 320 for _, _, img in scored[0]), "the whole part was segmented"
    assert sum(fg for _, fg, _ in scored[0]) > 0
    said = "validated on 2 fixed blocks of the 64 x 320 px part, 8,192 of its 20,480 px"
    assert said in res.split and said in res.validation
    assert said in json.dumps(json.loads((tmp_path / "o" / "best.json").read_text()))  # the card


def test_ordinary_2d_validation_is_whole(tmp_path, monkeypatch):
    res, scored = _run(tmp_path, monkeypatch, shape=(160, 160))  # 32 x 160 px held out: under the limit
    assert len(scored) == 3 and all(s == scored[0] for s in scored)
    assert [shape for shape, _, _ in scored[0]] == [(32, 160)]
    assert "blocks" not in res.split


def test_val_blocks_spread_and_bounded():
    lab = np.zeros((1200, 6000), np.uint8)
    part = Part(0, ((4800, 6000), (0, 6000)))
    full = np.zeros((6000, 6000), np.uint8)
    full[4800:] = lab
    blocks = valblocks.val_blocks(part, full, None)
    assert blocks == valblocks.val_blocks(part, full, None)  # deterministic
    assert sum(b.size for b in blocks) <= valblocks.VAL_MAX_PX and len(blocks) == 3
    assert {b.box[0] for b in blocks} == {(4800, 5400), (5400, 6000)}  # both rows of blocks
    assert len({b.box[1] for b in blocks}) == 3  # three columns
    assert all(4800 <= b.box[0][0] and b.box[0][1] <= 6000 for b in blocks)
    small = Part(0, ((0, 100), (0, 6000)))
    assert valblocks.val_blocks(small, full, None) == [small]  # 600,000 px: whole
    vol = np.zeros((10, 2000, 2000), np.uint8)
    assert valblocks.val_blocks(Part(0, ((0, 10), (0, 2000), (0, 2000))), vol, None) == [
        Part(0, ((0, 10), (0, 2000), (0, 2000)))]  # volumes: whole
    ignore = np.full((6000, 6000), 255, np.uint8)
    ignore[5400:5500, 100:200] = 0  # one labelled spot: only its block is validated
    assert [b.box for b in valblocks.val_blocks(part, ignore, 255)] == [((5400, 6000), (0, 1000))]


def test_val_blocks_take_the_blocks_with_foreground():
    """A slide with sparse cells: blocks of background only would leave the validation Dice undefined, so the
    blocks chosen are those with foreground (evenly spread over them) when any block has some."""
    full = np.zeros((6000, 6000), np.uint8)
    part = Part(0, ((4800, 6000), (0, 6000)))
    for y, x in ((4900, 150), (5500, 5900), (5000, 3100), (5600, 2100)):  # four cells in four of the 12 blocks
        full[y : y + 20, x : x + 20] = 1
    blocks = valblocks.val_blocks(part, full, None)
    assert len(blocks) == 3
    assert all(full[b.slices].any() for b in blocks)
