"""Fine-tuning turns each case to the start model's orientation, as inference does: a 2D model learnt on axial
slices, fine-tuned on a sagittal-stored CT, keeps training on axial slices and its card keeps its orientation
(before, it trained on the stored sagittal planes and its card said the sagittal orientation, tile and spacing).
Slice numbers given for the run are those of the stored case."""

from __future__ import annotations

import re

import nibabel as nib
import numpy as np
import pytest
import torch
from nibabel import orientations as ornt

from napari_attnseg import create_model, load_model, save_model
from napari_attnseg.checkpoint import ModelCard
from napari_attnseg.data.export import export_case
from napari_attnseg.data.io import read_image
from napari_attnseg.training import TrainConfig, train
from napari_attnseg.training.trainer import Trainer

AXIAL = ("S", "A", "R")  # array (z, y, x) codes of the axial storage below
SPACING = (4.0, 0.8, 0.7)  # (z, y, x) mm


def _axial():
    lab = np.zeros((12, 32, 40), np.int64)
    lab[3:9, 10:20, 12:24] = 1
    img = (lab * 200.0 + 100 + np.random.default_rng(0).normal(0, 20, lab.shape)).astype(np.float32)
    return img, lab


def _sagittal_dataset(tmp_path, name="ds"):
    """The axial volume saved as NIfTI, then stored again sagittal-first (array axis 0 runs right-left, the
    file's k; a flipped A-P axis too), with the affine that keeps every voxel where it was; exported whole."""
    img, lab = _axial()
    affine = np.diag([SPACING[2], SPACING[1], SPACING[0], 1.0])  # file (i, j, k) = (x, y, z): RAS
    paths = {}
    for what, arr in (("image", img), ("labels", lab.astype(np.int16))):
        ax = nib.Nifti1Image(arr.transpose(2, 1, 0), affine)
        sag = ax.as_reoriented(ornt.ornt_transform(nib.io_orientation(affine), ornt.axcodes2ornt(("P", "S", "R"))))
        paths[what] = tmp_path / f"sag_{what}.nii.gz"
        nib.save(sag, paths[what])
    vol, labs = read_image(paths["image"]), read_image(paths["labels"])
    assert vol.data.shape == (40, 12, 32)  # sagittal planes of 12 x 32 along the first axis
    export_case(vol.data, labs.data.astype(np.int64), tmp_path / name, "nnunet", spacing=vol.spacing, affine=vol.affine,
                label_names=["background", "x"], case_id="sag")
    return tmp_path / name, vol, labs


def _start(tmp_path, orientation=AXIAL):
    torch.manual_seed(0)
    path = tmp_path / "start.safetensors"
    save_model(create_model("unet", spatial_dims=2, features=[8, 16, 32]), path,
               ModelCard(arch="", config={}, name="start", classes=["background", "x"], tile=[32, 32],
                         orientation=list(orientation) if orientation else None))
    return path


COMMON = dict(epochs=1, iters_per_epoch=2, batch_size=2, patch=[32, 32], refit=0.0)


def test_finetune_keeps_the_start_models_orientation(tmp_path):
    ds, _vol, _labs = _sagittal_dataset(tmp_path)
    r = train(TrainConfig(dataset=str(ds), out=str(tmp_path / "ft"), start_model=str(_start(tmp_path)), **COMMON))
    card = load_model(r.checkpoint).card
    assert card.orientation == list(AXIAL), card.orientation  # before: the sagittal storage's ['R', 'S', 'P']
    assert card.tile == [32, 32], card.tile  # axial planes 32 x 40 (before: [12, 32], sagittal planes)
    assert np.allclose(card.spacing, [0.8, 0.7]), card.spacing  # axial in-plane (before: [4.0, 0.8])
    turned = [n for n in r.notes if "turned" in n]
    assert len(turned) == 1 and "PSR -> RAS" in turned[0], r.notes
    held = re.search(r"validation sag slices ([\d,-]+)", r.split)  # held out: axial slices of the turned case
    assert held and max(int(v) for v in held.group(1).replace("-", ",").split(",")) < 12, r.split
    assert "(of the case turned PSR -> RAS for the model)" in r.split, r.split  # not the stored file's numbers


def test_from_scratch_keeps_the_stored_orientation(tmp_path):
    ds, _vol, _labs = _sagittal_dataset(tmp_path)
    t = Trainer(TrainConfig(dataset=str(ds), out=str(tmp_path / "m"), arch="unet", spatial_dims=2,
                            model_config={"features": [8, 16, 32]}, **COMMON))
    assert t.raw[0][1].shape == (40, 12, 32) and not any("turned" in n for n in t.notes)
    assert t._card_orientation(None) == ["R", "S", "P"]


def test_a_start_model_without_orientation_trains_as_stored(tmp_path):
    ds, _vol, _labs = _sagittal_dataset(tmp_path)
    t = Trainer(TrainConfig(dataset=str(ds), out=str(tmp_path / "m"), start_model=str(_start(tmp_path, None)), **COMMON))
    assert t.raw[0][1].shape == (40, 12, 32) and not any("turned" in n for n in t.notes)


@pytest.mark.parametrize("given", [{"val_slices": [15, 30]},
                                   {"split": '{"train": ["0:15", "16:30", "31:40"], "val": ["15:16", "30:31"]}'},
                                   {"val_region": "15:31,0:12,0:32", "train_region": "0:15;31:40"}])
def test_slices_given_are_the_stored_cases(tmp_path, given):
    """--val-slices 15,30 (as napari showed the sagittal file), a split file or regions: those sagittal planes
    validate (the same voxels in the turned arrays), every other plane trains; the split text keeps the stored
    numbers."""
    ds, _vol, labs = _sagittal_dataset(tmp_path)
    t = Trainer(TrainConfig(dataset=str(ds), out=str(tmp_path / "m"), start_model=str(_start(tmp_path)), **COMMON,
                            **given))
    turn = t._turns[0]
    assert t.raw[0][1].shape == (12, 32, 40)  # axial, as the model was trained
    index = turn.apply(np.arange(labs.data.size).reshape(labs.data.shape))  # stored voxel number, on the turned grid
    planes = {0: set(), 1: set()}
    held = set(range(15, 31)) if "val_region" in given else {15, 30}
    for role, parts in ((0, t.split.train), (1, t.split.val)):
        for p in parts:
            planes[role] |= set(np.unique(index[p.slices] // (12 * 32)).tolist())  # stored first-axis position
    assert planes[1] == held and planes[0] == set(range(40)) - held, planes
    assert np.array_equal(t._labels[0], turn.apply(labs.data.astype(np.int64)))
    if "val_slices" in given:
        assert "slices 15,30" in t.split.describe(), t.split.describe()


def test_the_next_round_knows_what_the_turned_case_trained_on(tmp_path):
    """Round 2 from the round-1 model (the same orientation) turns the case the same way: its trained_rows (axial
    rows) and the image digest match, so the default validation avoids what round 1 trained on."""
    ds, _vol, _labs = _sagittal_dataset(tmp_path)
    r1 = train(TrainConfig(dataset=str(ds), out=str(tmp_path / "m1"), start_model=str(_start(tmp_path)),
                           **{**COMMON, "epochs": 3, "iters_per_epoch": 4, "lr": 3e-3}))
    assert not r1.kept_start
    card = load_model(r1.checkpoint).card
    assert card.orientation == list(AXIAL)
    t = Trainer(TrainConfig(dataset=str(ds), out=str(tmp_path / "m2"), start_model=r1.checkpoint, **COMMON))
    assert t._seen_rows() == card.training["trained_rows"]
    held = {i for p in t.split.val for i in range(*p.box[0])}
    assert held and held <= set(range(12)), held
