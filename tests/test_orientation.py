"""Volumes stored in another orientation than the model's training data are turned to it for inference
and the results turned back (axis permutations and flips, no resampling)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_attnseg.cli import main
from napari_attnseg.data.io import read_image
from napari_attnseg.data.orientation import axis_codes, reorientation, volume_codes

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "radiomics"
ALL = [tuple(p[i] if not f[i] else {"S": "I", "A": "P", "R": "L"}[p[i]] for i in range(3))
       for p in itertools.permutations("SAR") for f in itertools.product([False, True], repeat=3)]


def test_every_orientation_turns_exactly_and_back():
    rng = np.random.default_rng(0)
    a = rng.random((2, 3, 4, 5))
    for src in ALL:
        turn = reorientation(src, ("S", "A", "R"))
        if turn is None:
            assert src == ("S", "A", "R")
            continue
        moved = turn.apply(a)
        assert np.array_equal(turn.undo(moved), a)
        assert moved.shape[1:] == tuple(a.shape[1:][p] for p in turn.perm)
        assert turn.spacing((1.0, 2.0, 3.0)) == tuple((1.0, 2.0, 3.0)[p] for p in turn.perm)
    with pytest.raises(ValueError, match="three orientation letters"):
        reorientation(("S", "S", "R"), ("S", "A", "R"))


def test_a_coarse_map_goes_back_to_where_it_was_on_the_stored_grid():
    """Each map pixel carries the moved-image coordinate of its centre; after undo_map, the pixel
    placed at stored coordinate u must carry the moved coordinate of u."""
    stored = (10, 12, 14)
    for src in ALL:
        turn = reorientation(src, ("S", "A", "R"))
        if turn is None:
            continue
        moved_shape = tuple(stored[p] for p in turn.perm)
        scale, translate = (2.0, 4.0, 3.0), (0.5, 1.5, 1.0)
        n = [int((moved_shape[i] - translate[i]) // scale[i]) for i in range(3)]
        grids = np.meshgrid(*[translate[i] + np.arange(n[i]) * scale[i] for i in range(3)], indexing="ij")
        data = np.stack(grids)  # (3, *n): the centre of every map pixel in moved-image coordinates
        back, sc, tr = turn.undo_map(data, scale, translate, moved_shape)
        for j in [(0, 0, 0), tuple(s - 1 for s in back.shape[1:]), (1, 1, 1)]:
            u = np.array([tr[k] + j[k] * sc[k] for k in range(3)])  # stored coordinate of this pixel
            expect = np.array([stored[p] - 1 - u[p] if f else u[p] for p, f in zip(turn.perm, turn.flip)])
            assert np.allclose(back[(slice(None), *j)], expect)


def _store(path: Path, data_kji: np.ndarray, affine: np.ndarray) -> None:
    img = nib.Nifti1Image(data_kji, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, str(path))


@pytest.mark.skipif(not (DATA / "brain1_image.nii.gz").exists(), reason="shared radiomics data not present")
def test_the_brain_model_gives_the_same_mask_on_a_sagittally_stored_volume(tmp_path, capsys):
    """brain1 (a real T1, stored axially, LAS) cropped, and the same voxels stored sagittally (axes
    permuted, the affine permuted with them): `attnseg predict` writes masks that are the same voxels
    (before: grey matter Dice 0.044 between the two), each with its input's geometry."""
    src = nib.load(str(DATA / "brain1_image.nii.gz"))
    stored = np.asarray(src.dataobj)[48:208, 40:216, :]  # (i, j, k), the head with some margin
    affine = src.affine.copy()
    affine[:3, 3] = (src.affine @ [48, 40, 0, 1])[:3]
    _store(tmp_path / "axial.nii.gz", stored, affine)
    perm = affine.copy()
    perm[:3, :3] = affine[:3, [2, 1, 0]]
    _store(tmp_path / "sagittal.nii.gz", stored.transpose(2, 1, 0), perm)
    ax, sag = read_image(tmp_path / "axial.nii.gz"), read_image(tmp_path / "sagittal.nii.gz")
    assert volume_codes(ax) == ("S", "A", "L") and volume_codes(sag) == ("L", "A", "S")

    assert main(["predict", str(tmp_path / "axial.nii.gz"), str(tmp_path / "sagittal.nii.gz"),
                 "--model", "brain-mri-3d", "--out", str(tmp_path / "out"), "--no-prob"]) == 0
    masks = {n: nib.load(str(tmp_path / "out" / f"{n}_mask.nii.gz")) for n in ("axial", "sagittal")}
    assert np.allclose(masks["axial"].affine, affine) and np.allclose(masks["sagittal"].affine, perm)
    a, s = np.asarray(masks["axial"].dataobj), np.asarray(masks["sagittal"].dataobj)
    assert s.shape == a.shape[::-1] and (a > 0).sum() > 10_000
    assert np.array_equal(s.transpose(2, 1, 0), a)
    record = json.loads((tmp_path / "out" / "sagittal_predict.json").read_text())
    # the turn is said in the file's (x, y, z) codes, nibabel's (and the napari reader's notes'): SAL -> RAS
    assert f"{''.join(nib.aff2axcodes(perm))} -> RAS" in json.dumps(record)
    assert "turned" in capsys.readouterr().out


def test_a_card_without_orientation_or_an_image_without_geometry_runs_as_stored():
    assert axis_codes(None) is None and axis_codes(np.eye(4)) is None
    assert axis_codes(np.diag([-1.0, -1.0, 5.0, 1.0])) == ("S", "P", "L")
    assert reorientation(None, ("S", "A", "R")) is None and reorientation(("S", "A", "R"), None) is None


def test_turned_outputs_written_to_a_folder_are_on_the_stored_grid(tmp_path):
    """predict(out=...) memory-maps its outputs in a folder: after the turn they hold the stored grid too,
    and equal the in-memory run's; attention maps come back with the stored axes' placement."""
    import torch

    from napari_attnseg import create_model, predict
    from napari_attnseg.checkpoint import ModelCard

    torch.manual_seed(0)
    model = create_model("attention_unet", spatial_dims=3, features=[4, 8, 16]).eval()
    model.card = ModelCard(arch="attention_unet", config={}, orientation=["S", "A", "R"], tile=[16, 16, 16])
    image = np.random.default_rng(0).random((24, 20, 16)).astype(np.float32)  # stored (L, A, S): axes reversed
    kwargs = dict(orientation=("L", "A", "S"), attention=True, device="cpu")
    mem = predict(model, image, **kwargs)
    disk = predict(model, image, out=tmp_path / "out", **kwargs)
    # said in the file's (x, y, z) order, as the napari reader and nibabel say it
    assert mem.params["reoriented"] == "SAL -> RAS" and mem.labels.shape == image.shape
    assert np.array_equal(np.load(tmp_path / "out" / "labels.npy"), mem.labels)
    assert np.array_equal(np.asarray(disk.labels), mem.labels)  # what the run returns is the rewritten file
    assert np.load(tmp_path / "out" / "probabilities.npy").shape == (2, *image.shape)
    from napari_attnseg.errors import InputError

    with pytest.raises(InputError, match="orientation: .*three orientation letters"):
        predict(model, image, orientation=("S", "S", "R"), device="cpu")
    plain = predict(model, image.transpose(2, 1, 0).copy(), attention=True, device="cpu")  # the model's own storage
    assert np.array_equal(plain.labels.transpose(2, 1, 0), mem.labels)
    for a, b in zip(plain.attention, mem.attention):
        assert b.data.shape == a.data.shape[::-1] and b.scale == a.scale[::-1] and b.translate == a.translate[::-1]
