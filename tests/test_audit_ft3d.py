"""Audit of the 3D fine-tuning loop (``brain-mri-3d`` on a thick-slice MRI with a tumour added): a validation the
run chooses on the resampled grid holds out whole reviewed slices, and the messages of a 3D run say what they mean."""

from __future__ import annotations

import numpy as np
import torch

from napari_attnseg import create_model, save_model
from napari_attnseg.checkpoint import ModelCard
from napari_attnseg.data.export import export_case
from napari_attnseg.training import TrainConfig
from napari_attnseg.training.trainer import Trainer

COMMON = dict(epochs=1, iters_per_epoch=2, batch_size=1, refit=0.0)


def _start(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "start3.safetensors"
    save_model(create_model("unet", spatial_dims=3, features=[4, 8, 16]), path,
               ModelCard(arch="", config={}, name="start", classes=["background", "x"], tile=[16] * 3,
                         spacing=[2.0, 2.0, 2.0]))
    return path


def _thick_dataset(tmp_path, n_z: int, z_mm: float, reviewed: list[int]):
    """Stored slice z has its foreground in plane row z only: the rows holding foreground on any grid say which
    stored slices the labels came from."""
    lab = np.zeros((n_z, 32, 16), np.int64)
    for z in range(n_z):
        lab[z, z, 2:14] = 1
    img = (lab * 100.0 + np.random.default_rng(0).normal(0, 10, lab.shape)).astype(np.float32)
    spacing = (z_mm, 2.0, 2.0)
    export_case(img, lab, tmp_path / "ds", "nnunet", spacing=spacing, affine=np.diag([2.0, 2.0, z_mm, 1.0]),
                label_names=["background", "x"], reviewed_slices=reviewed, case_id="c")
    return tmp_path / "ds"


def _stored(lab: np.ndarray, ignore) -> set[int]:
    fg = (lab == 1) & (lab != ignore)
    return set(np.flatnonzero(fg.any(axis=(0, 2))).tolist())


def test_automatic_3d_validation_holds_out_whole_reviewed_slices(tmp_path):
    # brain1: 6.5 mm slices, reviewed 11, 14, 17; at 2 mm slice 17 is rows 55-57 and the run's slab validated on
    # rows 56-57 while row 55 (slice 17's labels again) trained: the validation scored a slice it learnt
    ds = _thick_dataset(tmp_path, 10, 6.5, [3, 6, 9])
    t = Trainer(TrainConfig(dataset=str(ds), out=str(tmp_path / "t"), start_model=str(_start(tmp_path)),
                            patch=[16, 16, 16], **COMMON))
    lab = t._labels[0]
    val = set().union(*(_stored(lab[p.slices], t.ignore) for p in t.split.val))
    train = set().union(*(_stored(lab[p.slices], t.ignore) for p in t.split.train))
    assert val and train and not val & train, (val, train, t.split.describe())
    assert "validation: reviewed slice 9 of the stored case; on the (2, 2, 2) mm grid" in t.split.describe()
    assert any("one reviewed slice only" in w for w in t.split.warnings), t.split.warnings


def test_a_budget_cut_inside_the_first_epoch_says_what_one_epoch_takes(tmp_path, monkeypatch):
    # `attnseg finetune ds --model brain-mri-3d --minutes 1` on brain1: 4 of 25 steps of 8.5 s ran; the notes said
    # only "the time budget ended during epoch 1, after 4 of 25 steps", not that an epoch takes 3.6 min here, nor
    # that the tumour row added to the head had 4 steps from random weights (its 7,744 predicted voxels: noise)
    import time

    from napari_attnseg.training import train
    from napari_attnseg.training import trainer as trainer_module

    lab = np.zeros((14, 32, 32), np.int64)
    lab[3:11, 10:18, 10:18] = 1
    lab[5:9, 12:15, 12:15] = 2
    img = (lab * 100.0 + 100 + np.random.default_rng(0).normal(0, 20, lab.shape)).astype(np.float32)
    export_case(img, lab, tmp_path / "ds", "nnunet", reviewed_slices=[1, 4, 6, 8, 12],
                label_names=["background", "x", "tumour"])
    torch.manual_seed(0)
    start = tmp_path / "start.safetensors"
    save_model(create_model("unet", spatial_dims=2, features=[4, 8, 16]), start,
               ModelCard(arch="", config={}, name="start", classes=["background", "x"], tile=[32, 32]))
    step = trainer_module.Trainer._step

    def slow(self, x, y):
        time.sleep(0.3)
        return step(self, x, y)

    monkeypatch.setattr(trainer_module.Trainer, "_step", slow)
    res = train(TrainConfig(dataset=str(tmp_path / "ds"), out=str(tmp_path / "o"), start_model=str(start),
                            minutes=0.05, batch_size=2, patch=[32, 32]))
    cut = [n for n in res.notes if "ended during epoch 1" in n]
    assert cut and " s a step here: one epoch with its validation takes about " in cut[0], res.notes
    need = float(cut[0].split("a budget of at least ")[1].split(" min")[0])
    assert need >= 0.5 and need * 60 >= 25 * 0.3, cut[0]
    assert "the new class tumour had only these steps from random weights" in cut[0], cut[0]


def test_durations_in_minutes_are_rounded():
    from napari_attnseg.training.budget import _duration

    assert _duration(137) == "2.3 min" and _duration(180) == "3 min" and _duration(59.6) == "60 s"


def test_resuming_a_run_whose_budget_ran_out_says_nothing_more_was_trained(tmp_path, monkeypatch):
    # `attnseg finetune ds --model brain-mri-3d --out m --minutes 1 --resume` after a 1-minute run: it loaded the
    # state, trained nothing and said only "resumed from m after epoch 1 (48 s spent)"
    import time

    from napari_attnseg.training import train
    from napari_attnseg.training import trainer as trainer_module

    lab = np.zeros((14, 32, 32), np.int64)
    lab[3:11, 10:18, 10:18] = 1
    img = (lab * 100.0 + 100 + np.random.default_rng(0).normal(0, 20, lab.shape)).astype(np.float32)
    export_case(img, lab, tmp_path / "ds", "nnunet", reviewed_slices=[1, 4, 6, 8, 12], label_names=["background", "x"])
    torch.manual_seed(0)
    start = tmp_path / "start.safetensors"
    save_model(create_model("unet", spatial_dims=2, features=[4, 8, 16]), start,
               ModelCard(arch="", config={}, name="start", classes=["background", "x"], tile=[32, 32]))
    step = trainer_module.Trainer._step
    monkeypatch.setattr(trainer_module.Trainer, "_step", lambda self, x, y: (time.sleep(0.2), step(self, x, y))[1])
    cfg = dict(dataset=str(tmp_path / "ds"), out=str(tmp_path / "o"), start_model=str(start), minutes=0.05,
               batch_size=2, patch=[32, 32])
    first = train(TrainConfig(**cfg))
    assert first.epochs == 1
    again = train(TrainConfig(**cfg, resume=True))
    said = [n for n in again.notes if "had already ended" in n]
    assert said and "nothing more was trained" in said[0] and "--model " in said[0], again.notes
