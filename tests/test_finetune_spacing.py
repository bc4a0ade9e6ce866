"""Fine-tuning resamples each case to the start model's spacing, as inference does: a 1 mm (or thick-slice) scan
fine-tuned from a 2 mm model trains at 2 mm and its card keeps [2, 2, 2] (before, it trained at the scan's own
spacing and its card said so: the model's scale changed silently and the next scan was segmented at 1 mm).
Slice numbers given for the run are those of the stored case: the held-out slices' labels, and only theirs, are
validated; reviewed slices survive the resampling and only reviewed voxels train."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_attnseg import create_model, load_model, save_model
from napari_attnseg.checkpoint import ModelCard
from napari_attnseg.data.export import export_case
from napari_attnseg.training import TrainConfig, train
from napari_attnseg.training.trainer import Trainer

N_Z = 24
COMMON = dict(epochs=1, iters_per_epoch=2, batch_size=1, refit=0.0)


def _start(tmp_path, spacing=(2.0, 2.0, 2.0), dims=3):
    torch.manual_seed(0)
    path = tmp_path / f"start{dims}.safetensors"
    save_model(create_model("unet", spatial_dims=dims, features=[4, 8, 16]), path,
               ModelCard(arch="", config={}, name="start", classes=["background", "x"], tile=[16] * dims,
                         spacing=list(spacing) if spacing else None))
    return path


def _dataset(tmp_path, spacing, reviewed=None, name="ds"):
    """Stored slice z has its foreground in row z only (rows 0..N_Z-1 of a 32 x 16 plane): on any grid, the rows
    holding foreground say which stored slices the labels came from. NIfTI with the affine of ``spacing``."""
    lab = np.zeros((N_Z, 32, 16), np.int64)
    for z in range(N_Z):
        lab[z, z, 2:14] = 1
    img = (lab * 100.0 + np.random.default_rng(0).normal(0, 10, lab.shape)).astype(np.float32)
    affine = np.diag([spacing[2], spacing[1], spacing[0], 1.0])
    export_case(img, lab, tmp_path / name, "nnunet", spacing=spacing, affine=affine, label_names=["background", "x"],
                reviewed_slices=reviewed, case_id="c")
    return tmp_path / name


def _sources(lab: np.ndarray, ignore) -> set[int]:
    """The stored slices whose (labelled) foreground is in ``lab``."""
    fg = (lab == 1) if ignore is None else (lab == 1) & (lab != ignore)
    return set(np.flatnonzero(fg.any(axis=(0, 2)) if fg.ndim == 3 else fg.any(axis=1)).tolist())


def test_finetune_trains_at_the_start_models_spacing(tmp_path):
    ds = _dataset(tmp_path, (1.0, 2.0, 2.0))
    r = train(TrainConfig(dataset=str(ds), out=str(tmp_path / "ft"), start_model=str(_start(tmp_path)),
                          patch=[16, 16, 16], **COMMON))
    card = load_model(r.checkpoint).card
    assert card.spacing == [2.0, 2.0, 2.0], card.spacing  # before: [1.0, 2.0, 2.0], the dataset's
    said = [n for n in r.notes if "resampled" in n]
    assert len(said) == 1 and "case c resampled from (1, 2, 2) to (2, 2, 2) mm, the start model's spacing" in said[0]
    t = Trainer(TrainConfig(dataset=str(ds), out=str(tmp_path / "t"), start_model=str(_start(tmp_path)),
                            patch=[16, 16, 16], **COMMON))
    assert t.raw[0][0].shape == (1, N_Z // 2, 32, 16) and t.raw[0][2] == (2.0, 2.0, 2.0)
    assert "resampled to (2, 2, 2) mm for the model" in t.split.describe()


def test_from_scratch_and_without_spacing_train_as_stored(tmp_path):
    ds = _dataset(tmp_path, (1.0, 2.0, 2.0))
    scratch = Trainer(TrainConfig(dataset=str(ds), out=str(tmp_path / "a"), arch="unet", spatial_dims=3,
                                  model_config={"features": [4, 8, 16]}, patch=[16, 16, 16], **COMMON))
    plain = Trainer(TrainConfig(dataset=str(ds), out=str(tmp_path / "b"), start_model=str(_start(tmp_path, None)),
                                patch=[16, 16, 16], **COMMON))
    for t in (scratch, plain):
        assert t.raw[0][1].shape == (N_Z, 32, 16) and t.spacing == [1.0, 2.0, 2.0]
        assert not any("resampled" in n for n in t.notes)


@pytest.mark.parametrize("z_mm", [1.0, 4.0, 3.0])
@pytest.mark.parametrize("given", [{"val_slices": [7, 8, 15]},
                                   {"split": '{"train": ["0:7", "9:15", "16:24"], "val": ["7:9", "15:16"]}'},
                                   {"val_region": "7:9", "train_region": "0:7;9:24"}])
def test_given_slices_are_the_stored_cases_and_nothing_leaks(tmp_path, z_mm, given):
    """Held-out stored slices 7, 8 (and 15), in 1 mm (2x coarser once resampled), 4 mm (2x finer) and 3 mm
    slices: the validation holds exactly their labels, the training none of theirs and all the others."""
    ds = _dataset(tmp_path, (z_mm, 2.0, 2.0))
    t = Trainer(TrainConfig(dataset=str(ds), out=str(tmp_path / "m"), start_model=str(_start(tmp_path)),
                            patch=[4, 16, 16], **COMMON, **given))
    lab = t._labels[0]
    assert lab.shape[0] == round(N_Z * z_mm / 2)
    held = {7, 8} if "val_region" in given else {7, 8, 15}
    val = set().union(*(_sources(lab[p.slices], t.ignore) for p in t.split.val))
    trained = set().union(*(_sources(lab[p.slices], t.ignore) for p in t.split.train))
    assert not trained & held, trained & held  # no held-out label trained on
    if z_mm > 2:  # upsampled: every held-out slice validated, nothing else; every other stored slice trains
        assert val == held and trained == set(range(N_Z)) - held, (val, t.split.describe())
    else:  # a 2 mm voxel holds one of two 1 mm slices: each held-out run is validated, on its own labels only
        assert val <= held and val & {7, 8} and (15 in val or 15 not in held), (val, t.split.describe())
    if "val_slices" in given:
        assert "validation c slices 7-8,15" in t.split.describe(), t.split.describe()


def test_reviewed_slices_survive_and_only_they_train(tmp_path):
    """A 1 mm case exported with --reviewed-slices, resampled 2x coarser: every reviewed slice, odd or even, is
    still labelled and the unreviewed ones stay 'ignore' (nearest neighbour alone dropped the even ones)."""
    reviewed = [2, 5, 9, 10, 14, 17, 20]
    ds = _dataset(tmp_path, (1.0, 2.0, 2.0), reviewed=reviewed)
    t = Trainer(TrainConfig(dataset=str(ds), out=str(tmp_path / "m"), start_model=str(_start(tmp_path)),
                            patch=[4, 16, 16], **COMMON, val_slices=[14]))
    lab = t._labels[0]
    assert lab.shape[0] == N_Z // 2 and t.ignore is not None and (lab == t.ignore).any()
    assert _sources(lab, t.ignore) == set(reviewed)
    trained = set().union(*(_sources(lab[p.slices], t.ignore) for p in t.split.train))
    assert trained == set(reviewed) - {14}
    assert set().union(*(_sources(lab[p.slices], t.ignore) for p in t.split.val)) == {14}
    for z in np.flatnonzero((lab != t.ignore).reshape(lab.shape[0], -1).any(1)):  # labelled: one reviewed slice
        assert (lab[z] != t.ignore).all() and len(_sources(lab[z], t.ignore)) == 1, z


def test_a_2d_model_is_resampled_in_plane_only(tmp_path):
    """A 2D model with an in-plane spacing on its card (a fine-tuned CT model): inference resamples the planes
    of a volume, not its slices; so does fine-tuning. Within inference's tolerance nothing is resampled, and the
    card keeps the start's spacing either way."""
    start = _start(tmp_path, (1.0, 1.0), dims=2)
    ds = _dataset(tmp_path, (4.0, 2.0, 2.0))
    t = Trainer(TrainConfig(dataset=str(ds), out=str(tmp_path / "m"), start_model=str(start), patch=[32, 32],
                            **COMMON))
    assert t.raw[0][1].shape == (N_Z, 64, 32) and t.raw[0][2] == (4.0, 1.0, 1.0)
    assert t._card_spacing(t.base_card) == [1.0, 1.0]
    near = _dataset(tmp_path, (4.0, 1.01, 1.01), name="near")
    t = Trainer(TrainConfig(dataset=str(near), out=str(tmp_path / "n"), start_model=str(start), patch=[32, 32],
                            **COMMON))
    assert t.raw[0][1].shape == (N_Z, 32, 16) and not any("resampled" in n for n in t.notes)
    assert t._card_spacing(t.base_card) == [1.0, 1.0]


def test_the_next_round_resamples_the_same_way(tmp_path):
    """Round 2 from the round-1 model (2 mm on its card) resamples the case to the same grid: the image digest
    the card recorded matches, so trained_rows (resampled rows) keep their meaning."""
    ds = _dataset(tmp_path, (1.0, 2.0, 2.0))
    r1 = train(TrainConfig(dataset=str(ds), out=str(tmp_path / "m1"), start_model=str(_start(tmp_path)),
                           patch=[4, 16, 16], **COMMON))
    card = load_model(r1.checkpoint).card
    t = Trainer(TrainConfig(dataset=str(ds), out=str(tmp_path / "m2"), start_model=r1.checkpoint,
                            patch=[4, 16, 16], **COMMON))
    assert t.image_digest() == card.training["image_sha256"] and t.raw[0][1].shape[0] == N_Z // 2
    assert all(r < N_Z // 2 for r in card.training.get("trained_rows", []))
