"""Far negatives (training/far.py): the model's foreground on unreviewed slices that connects to no reviewed
foreground is trained towards background with a low weight; what continues a reviewed object is left alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_attnseg import create_model, save_model
from napari_attnseg.checkpoint import ModelCard
from napari_attnseg.data.export import export_case
from napari_attnseg.errors import InputError
from napari_attnseg.training import TrainConfig
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
    with pytest.raises(InputError, match="their sum must be below 0.5"):
        check_config(TrainConfig(dataset="d", out="o", start_model="m", fg_fraction=0.5, hard_negatives=0.3,
                                 far_negatives=0.3))


def _lookalike_case(tmp_path, reviewed: list[int]):
    """A volume with a disc on slices 3-8 and a brighter look-alike on 11-13, exported to ``tmp_path/ds`` with
    ``reviewed`` slices, and an untrained start model ``tmp_path/s.safetensors``; the labels and the look-alike."""
    rng = np.random.default_rng(0)
    shape = (16, 32, 32)
    lab = np.zeros(shape, np.int64)
    yy, xx = np.indices(shape[1:])
    lab[3:9][:, (yy - 16) ** 2 + (xx - 12) ** 2 <= 25] = 1
    other = np.zeros(shape, bool)
    other[11:14][:, (yy - 12) ** 2 + (xx - 22) ** 2 <= 25] = True
    img = (lab * 1.0 + other * 2.0 + rng.normal(0, 0.2, shape)).astype(np.float32) * 100 + 300
    export_case(img, lab, tmp_path / "ds", "nnunet", reviewed_slices=reviewed, label_names=["background", "disc"])
    torch.manual_seed(0)
    save_model(create_model("unet", spatial_dims=2, features=[8, 16, 32]), tmp_path / "s.safetensors",
               ModelCard(arch="", config={}, name="s", classes=["background", "disc"], tile=[32, 32]))
    return lab, other


def _record_far(t, shape) -> np.ndarray:
    """A mask that gathers every far negative the run ``t`` hands its sampler."""
    seen = np.zeros(shape, bool)
    real = t.set_far_masks

    def record():
        real()
        for p, w in zip(t._far_parts, t.sampler.weak):
            seen[p.slices] |= w

    t.set_far_masks = record
    return seen


def test_far_negatives_find_the_look_alike_and_spare_the_object_beyond_a_validation_slice(tmp_path):
    """A volume with the object on slices 3-8 (reviewed 4, 5 and 7, plus tumour-free slice 1; 1 and 7 validate)
    and a brighter look-alike on slices 11-13 nobody reviewed. Once the model finds the object, the far
    negatives it trains on cover the look-alike and never the object on the untouched slices 3, 6 and 8 (8 lies
    beyond the validation slice 7, in another training slab: connected through the model's own prediction on
    slice 7, whose labels are not used)."""
    from napari_attnseg.training.trainer import Trainer

    lab, other = _lookalike_case(tmp_path, [1, 4, 5, 7])
    shape = lab.shape
    t = Trainer(TrainConfig(dataset=str(tmp_path / "ds"), out=str(tmp_path / "o"), start_model=str(tmp_path / "s.safetensors"),
                            epochs=6, iters_per_epoch=8, batch_size=4, patch=[32, 32], lr=3e-3, val_slices=[1, 7],
                            refit=0.0, far_negatives=0.3))
    assert [p.box[0] for p in t.split.train] == [(0, 1), (2, 7), (8, 16)]
    seen = _record_far(t, shape)
    res = t.fit()
    assert any("far negatives:" in n for n in res.notes), res.notes
    assert seen[11:14][other[11:14]].mean() > 0.5, seen.sum()  # the look-alike was pushed down
    assert not (seen & (lab > 0)).any()  # the object never, on any slice
    assert not seen[[1, 4, 5, 7]].any()  # nor anything on reviewed or held-out slices


def test_far_negatives_need_two_reviewed_foreground_slices_to_train_on(tmp_path):
    from napari_attnseg.training.trainer import Trainer

    lab = np.zeros((12, 32, 32), np.int64)
    lab[4:8, 10:18, 10:18] = 1
    img = (lab * 200.0 + 100).astype(np.float32)
    export_case(img, lab, tmp_path / "ds", "nnunet", reviewed_slices=[2, 5, 6, 9], label_names=["background", "x"])
    torch.manual_seed(0)
    save_model(create_model("unet", spatial_dims=2, features=[8, 16, 32]), tmp_path / "s.safetensors",
               ModelCard(arch="", config={}, name="s", classes=["background", "x"], tile=[32, 32]))
    common = dict(dataset=str(tmp_path / "ds"), start_model=str(tmp_path / "s.safetensors"), epochs=1,
                  iters_per_epoch=1, batch_size=2, patch=[32, 32], far_negatives=0.15)
    one = Trainer(TrainConfig(out=str(tmp_path / "a"), val_slices=[2, 6], **common))
    assert not one._far_on and any("far negatives off: 1 reviewed" in n for n in one.notes), one.notes
    two = Trainer(TrainConfig(out=str(tmp_path / "b"), val_slices=[2, 9], **common))
    assert two._far_on
    assert set(two._far_rows[0]) == {0, 1, 2, 3, 4, 7, 8, 9, 10, 11}  # unreviewed + held out (segmented, never trained)
    default = Trainer(TrainConfig(out=str(tmp_path / "c"), val_slices=[2, 9], **{**common, "far_negatives": None}))
    assert default._far_on and default.settings["far_negatives"] == 0.15  # a fine-tuning default
    off = Trainer(TrainConfig(out=str(tmp_path / "d"), val_slices=[2, 9], **{**common, "far_negatives": 0.0}))
    assert not off._far_on


def test_far_negatives_start_at_the_refit_when_the_validation_slices_bring_a_second_foreground_slice(tmp_path):
    """lung1's round (tumour slices 32 and 34 reviewed, 34 validating) trained on one tumour slice, so far negatives
    stayed off for the whole run, though the refit trains on both. Now they start at the refit: every unreviewed
    slice is segmented once with the chosen weights and the look-alike nobody reviewed is trained towards background,
    the object on the untouched slices between the reviewed ones never."""
    from napari_attnseg.training.trainer import Trainer

    lab, other = _lookalike_case(tmp_path, [1, 4, 7])
    shape = lab.shape
    t = Trainer(TrainConfig(dataset=str(tmp_path / "ds"), out=str(tmp_path / "o"), start_model=str(tmp_path / "s.safetensors"),
                            epochs=6, iters_per_epoch=8, batch_size=4, patch=[32, 32], lr=3e-3, val_slices=[1, 7],
                            refit=0.34, far_negatives=0.3))
    assert not t._far_on and any("they start at the refit" in n for n in t.notes), t.notes
    seen = _record_far(t, shape)
    res = t.fit()
    assert any("(from the refit on" in n for n in res.notes), res.notes
    assert any("trained 2 more epochs on all reviewed slices" in n for n in res.notes), res.notes
    assert seen[11:14][other[11:14]].mean() > 0.5, seen.sum()  # the look-alike was pushed down
    assert not (seen & (lab > 0)).any() and not seen[[1, 4, 7]].any()  # never the object, nor a reviewed slice
