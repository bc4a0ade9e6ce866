"""A second round of fine-tuning on the same image: the card of round 1 says which slices it trained on, and
round 2's default validation uses reviewed slices that model never saw (its 'before' is then fair)."""

from __future__ import annotations

import numpy as np
import torch

from napari_attnseg import create_model, load_model, save_model
from napari_attnseg.checkpoint import ModelCard
from napari_attnseg.data.export import export_case
from napari_attnseg.training import TrainConfig, train
from napari_attnseg.training.trainer import Trainer


def _volume():
    lab = np.zeros((14, 32, 32), np.int64)
    lab[3:11, 10:18, 10:18] = 1
    img = (lab * 200.0 + 100 + np.random.default_rng(0).normal(0, 20, lab.shape)).astype(np.float32)
    return img, lab


def test_round_two_validates_on_slices_round_one_never_trained_on(tmp_path):
    img, lab = _volume()
    export_case(img, lab, tmp_path / "r1", "nnunet", reviewed_slices=[1, 4, 6, 8, 12], label_names=["background", "x"])
    torch.manual_seed(0)
    save_model(create_model("unet", spatial_dims=2, features=[8, 16, 32]), tmp_path / "s.safetensors",
               ModelCard(arch="", config={}, name="s", classes=["background", "x"], tile=[32, 32]))
    common = dict(epochs=2, iters_per_epoch=2, batch_size=2, patch=[32, 32], refit=0.0)
    r1 = train(TrainConfig(dataset=str(tmp_path / "r1"), out=str(tmp_path / "m1"), start_model=str(tmp_path / "s.safetensors"),
                           **{**common, "epochs": 4, "iters_per_epoch": 4, "lr": 3e-3}))
    assert not r1.kept_start  # an epoch beat the untrained start: its weights trained on round 1's slices
    card = load_model(r1.checkpoint).card.training
    held1 = {int(v["region"].split(",")[0].split(":")[0]) for v in card["split_parts"]["val"]}
    assert set(card["trained_rows"]) == {1, 4, 6, 8, 12} - held1 and len(card["image_sha256"]) == 64

    # round 2 reviews two more tumour slices: validation among the slices round 1 did not train on
    export_case(img, lab, tmp_path / "r2", "nnunet", reviewed_slices=[1, 4, 5, 6, 8, 9, 12, 13],
                label_names=["background", "x"])
    t = Trainer(TrainConfig(dataset=str(tmp_path / "r2"), out=str(tmp_path / "m2"), start_model=r1.checkpoint, **common))
    held = {i for p in t.split.val for i in range(*p.box[0])}
    assert held & {5, 6, 8, 9} and not held & set(card["trained_rows"]), held  # foreground the start never trained on
    assert any("never trained on" in n for n in t.notes), t.notes

    # round 2 adds an empty slice to what round 1 trained on: the validation has to reuse seen slices, the notes say so
    export_case(img, lab, tmp_path / "r3", "nnunet", reviewed_slices=sorted(set(card["trained_rows"]) | {13}),
                label_names=["background", "x"])
    t = Trainer(TrainConfig(dataset=str(tmp_path / "r3"), out=str(tmp_path / "m3"), start_model=r1.checkpoint, **common))
    assert any("optimistic" in n for n in t.notes), t.notes

    # another image: what round 1 trained on says nothing about it
    export_case(img[:, ::-1].copy(), lab[:, ::-1].copy(), tmp_path / "r4", "nnunet", reviewed_slices=[1, 4, 5, 6, 8, 9, 12],
                label_names=["background", "x"])
    t = Trainer(TrainConfig(dataset=str(tmp_path / "r4"), out=str(tmp_path / "m4"), start_model=r1.checkpoint, **common))
    assert t._seen_rows() is None
    assert not any("never trained on" in n or "optimistic" in n for n in t.notes)


def test_a_round_that_kept_the_start_weights_claims_no_trained_slices(tmp_path):
    """No epoch beat the start (learning rate ~0): the weights are the start's, so the card must not say they
    trained on this round's slices (a next round would then validate elsewhere for nothing)."""
    img, lab = _volume()
    export_case(img, lab, tmp_path / "r1", "nnunet", reviewed_slices=[1, 4, 6, 8, 12], label_names=["background", "x"])
    torch.manual_seed(0)
    save_model(create_model("unet", spatial_dims=2, features=[8, 16, 32]), tmp_path / "s.safetensors",
               ModelCard(arch="", config={}, name="s", classes=["background", "x"], tile=[32, 32]))
    r = train(TrainConfig(dataset=str(tmp_path / "r1"), out=str(tmp_path / "m"), start_model=str(tmp_path / "s.safetensors"),
                          epochs=1, iters_per_epoch=1, batch_size=2, patch=[32, 32], refit=0.0, lr=1e-12))
    assert r.kept_start
    assert load_model(r.checkpoint).card.training["trained_rows"] == []


def test_an_image_exported_twice_trains_as_one_case_with_held_out_slices(tmp_path):
    """A second round exported as a new case of the same image (the napari default: no case id): the trainer
    merges both into one case (the newest labels, the older ones on slices only they reviewed), so the split is
    one case's held-out slices, not a by-case split that validates on a copy of the training image."""
    from napari_attnseg.training.trainer import Trainer

    img, lab = _volume()
    wrong = lab.copy()
    wrong[6] = 0  # round 1 had slice 6 wrong; round 2 corrected it
    export_case(img, wrong, tmp_path / "ds", "nnunet", reviewed_slices=[1, 4, 6], label_names=["background", "x"])
    export_case(img, lab, tmp_path / "ds", "nnunet", reviewed_slices=[6, 8, 12], label_names=["background", "x"])
    t = Trainer(TrainConfig(dataset=str(tmp_path / "ds"), out=str(tmp_path / "m"), arch="unet", spatial_dims=2,
                            model_config={"features": [8, 16, 32]}, epochs=1, iters_per_epoch=1, batch_size=2,
                            patch=[32, 32]))
    assert t.case_ids == ["case_0001"] and t.split.how.startswith("held-out slices"), (t.case_ids, t.split.how)
    merged = t.raw[0][1]
    reviewed = [z for z in range(lab.shape[0]) if (merged[z] != t.ignore).all()]
    assert reviewed == [1, 4, 6, 8, 12]
    assert (merged[6] == lab[6]).all() and (merged[[1, 4]] == lab[[1, 4]]).all()  # the newest wins on slice 6
    assert any("hold the same image" in n and "case_0000" in n for n in t.notes), t.notes
