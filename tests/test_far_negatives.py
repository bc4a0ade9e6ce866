"""Far negatives (training/far.py): the model's foreground on unreviewed slices that connects to no reviewed
foreground is trained towards background with a low weight; what continues a reviewed object is left alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_attnseg import create_model, load_model, save_model
from napari_attnseg.checkpoint import ModelCard
from napari_attnseg.data.export import export_case
from napari_attnseg.errors import InputError
from napari_attnseg.training import TrainConfig, train
from napari_attnseg.training.config import check_config
from napari_attnseg.training.far import FAR_WEIGHT, far_components
from napari_attnseg.training.losses import WEAK, dice_ce_loss
from napari_attnseg.training.sampling import PatchSampler

IGN = 255


def test_far_components_keep_what_continues_a_reviewed_object():
    lab = np.full((10, 16, 16), IGN, np.int64)
    lab[[2, 5]] = 0
    lab[2, 6:10, 6:10] = 1  # reviewed object on slice 2 ...
    lab[5, 6:10, 6:10] = 1  # ... and 5
    pred = np.zeros(lab.shape, bool)
    pred[3:5, 7:11, 7:11] = True  # continues it through the untouched slices 3-4
    pred[8, 1:4, 1:4] = True  # a blob on slice 8, far from anything reviewed
    pred[4, 12:15, 12:15] = True  # a blob next to the object's slices but not touching it
    far = far_components(pred, lab, IGN)
    assert far[8, 1:4, 1:4].all() and far[4, 12:15, 12:15].all()
    assert not far[3:5, 7:11, 7:11].any()
    assert far.sum() == 18
    # nothing reviewed with foreground: every predicted component on unreviewed slices is far
    lab[lab == 1] = 0
    assert far_components(pred, lab, IGN).sum() == pred[[3, 4, 8]].sum()


def test_weak_voxels_count_as_background_with_their_weight_only():
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 8, 8, requires_grad=True)
    target = torch.full((2, 8, 8), IGN)
    target[0, :4] = 1
    target[0, 4:] = 0
    target[1, 2:5, 2:5] = WEAK
    ignored = target.clone()
    ignored[ignored == WEAK] = IGN
    assert torch.allclose(dice_ce_loss(logits, target, IGN, 0.0), dice_ce_loss(logits, ignored, IGN))
    loss = dice_ce_loss(logits, target, IGN, FAR_WEIGHT)
    loss.backward()
    g = logits.grad[1, :, 2:5, 2:5]
    assert (g[0] < 0).all() and (g[1] > 0).all()  # pushed towards background there ...
    assert logits.grad[1, :, 6:, 6:].abs().sum() == 0  # ... and nothing elsewhere on the unlabelled patch
    only_weak = torch.full((1, 8, 8), IGN)
    only_weak[0, :2] = WEAK
    assert dice_ce_loss(logits[1:].detach(), only_weak, IGN, FAR_WEIGHT) > 0


def test_sampler_marks_only_unlabelled_voxels_of_the_mask_and_centres_patches_on_them():
    lab = np.full((6, 32, 32), IGN, np.uint8)
    lab[1] = 0
    lab[1, 10:14, 10:14] = 1
    img = np.zeros((1, *lab.shape), np.float32)
    weak = np.zeros(lab.shape, bool)
    weak[4, 20:24, 20:24] = True
    weak[1, 0:2, 0:2] = True  # on a reviewed slice: the label wins
    s = PatchSampler([img], [lab], (1, 16, 16), np.random.default_rng(0), fg_fraction=0.0, ignore_index=IGN)
    s.set_weak([weak], 0.99)
    _, y = s.sample(16)
    assert (y == WEAK).any(1).any(1).any(1).mean() > 0.8
    assert not (y[:, 0] == WEAK).sum() > 16 * 16  # never more than the planted 16 voxels per patch
    _, y_all = PatchSampler([img], [lab], (1, 32, 32), np.random.default_rng(0), fg_fraction=0.0,
                            ignore_index=IGN).sample(1)
    assert not (y_all == WEAK).any()


def test_far_negatives_are_a_checked_fine_tuning_default():
    with pytest.raises(InputError, match="far_negatives"):
        check_config(TrainConfig(dataset="d", out="o", far_negatives=1.5))
    with pytest.raises(InputError, match="sum < 1"):
        check_config(TrainConfig(dataset="d", out="o", start_model="m", fg_fraction=0.5, hard_negatives=0.3,
                                 far_negatives=0.3))


def test_fine_tuning_unlearns_a_look_alike_on_slices_nobody_reviewed(tmp_path):
    """A volume with the object on slices 3-8 (reviewed 4 and 7, plus tumour-free slice 1) and a brighter
    look-alike on slices 11-13 nobody reviewed: with far negatives the fine-tuned model calls much less of the
    look-alike foreground, and still finds the object on the untouched slices 5-6 between the reviewed ones."""
    from napari_attnseg.inference import predict

    rng = np.random.default_rng(0)
    shape = (16, 32, 32)
    lab = np.zeros(shape, np.int64)
    yy, xx = np.indices(shape[1:])
    lab[3:9][:, (yy - 16) ** 2 + (xx - 12) ** 2 <= 25] = 1
    other = np.zeros(shape, bool)
    other[11:14][:, (yy - 12) ** 2 + (xx - 22) ** 2 <= 25] = True
    img = (lab * 1.0 + other * 2.0 + rng.normal(0, 0.2, shape)).astype(np.float32) * 100 + 300
    export_case(img, lab, tmp_path / "ds", "nnunet", reviewed_slices=[1, 4, 7], label_names=["background", "disc"])
    torch.manual_seed(0)
    save_model(create_model("unet", spatial_dims=2, features=[8, 16, 32]), tmp_path / "s.safetensors",
               ModelCard(arch="", config={}, name="s", classes=["background", "disc"], tile=[32, 32]))
    common = dict(dataset=str(tmp_path / "ds"), start_model=str(tmp_path / "s.safetensors"), epochs=12,
                  iters_per_epoch=8, batch_size=4, patch=[32, 32], lr=3e-3, val_slices=[1, 7], refit=0.0)
    results = {}
    for far in (0.0, 0.3):
        res = train(TrainConfig(out=str(tmp_path / f"far{far}"), far_negatives=far, **common))
        pred = np.asarray(predict(load_model(res.checkpoint), img, device="cpu", return_probabilities=False).labels)
        inside = pred[5:7][lab[5:7] > 0].mean()
        results[far] = (int((pred[11:14] > 0).sum()), float(inside), res.notes)
    (fp_off, _, _), (fp_on, inside_on, notes) = results[0.0], results[0.3]
    assert any("far negatives" in n for n in notes)
    assert fp_off > 40, results  # without them the look-alike is found
    assert fp_on < 0.5 * fp_off, results
    assert inside_on > 0.8, results
