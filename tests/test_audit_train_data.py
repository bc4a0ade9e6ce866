"""Training on TIFF folders made elsewhere (audit 2026-12-05): RGB pictures and (C, Y, X) channel stacks in
images/ train (a new model on their channels; a one-channel start model on what ``attnseg predict`` reads), label
values beyond the table and a 2D-only architecture in 3D are refused with what to do, and a 3D model's next round
validates on reviewed slices it never trained on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from napari_attnseg.checkpoint import save_model
from napari_attnseg.cohort.inputs import pick_channel
from napari_attnseg.data.io import read_image
from napari_attnseg.errors import DatasetError, InputError
from napari_attnseg.model_card import ModelCard
from napari_attnseg.models.registry import create_model
from napari_attnseg.training import TrainConfig
from napari_attnseg.training.split import make_split
from napari_attnseg.training.trainer import Trainer

TINY = {"features": [4, 8, 16]}


def discs(seed: int, shape=(64, 64), n: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.indices(shape)
    mask = np.zeros(shape, np.uint8)
    for _ in range(n):
        cy, cx, r = rng.uniform(8, shape[0] - 8), rng.uniform(8, shape[1] - 8), rng.uniform(4, 7)
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
    return mask


def tiff_folder(root: Path, image_of, n: int = 4, labels_of=None) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for k in range(n):
        mask = discs(k)
        tifffile.imwrite(root / "images" / f"c{k}.tif", image_of(mask, k))
        tifffile.imwrite(root / "labels" / f"c{k}.tif", (labels_of or (lambda m, k: m))(mask, k))
    return root


def he(mask: np.ndarray, k: int) -> np.ndarray:
    """A bright-field H&E-like picture: purple nuclei on a near-white slide."""
    rng = np.random.default_rng(100 + k)
    rgb = np.empty((*mask.shape, 3), np.float32)
    rgb[:] = (235, 225, 238)
    rgb[mask > 0] = (110, 60, 150)
    return np.clip(rgb + rng.normal(0, 6, rgb.shape), 0, 255).astype(np.uint8)


def colours(mask: np.ndarray, k: int) -> np.ndarray:
    """An RGB picture whose colours hold different images (no grey, no stain)."""
    rng = np.random.default_rng(200 + k)
    return np.stack([mask * 200 + rng.integers(0, 40, mask.shape), rng.integers(0, 255, mask.shape),
                     (1 - mask) * 150 + rng.integers(0, 40, mask.shape)], -1).astype(np.uint8)


def cfg(root: Path, tmp_path: Path, **kw) -> TrainConfig:
    base = dict(dataset=str(root), out=str(tmp_path / "out"), arch="unet", model_config=TINY, spatial_dims=2,
                epochs=1, iters_per_epoch=1, batch_size=2, patch=[32, 32])
    return TrainConfig(**{**base, **kw})


def start_model(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "start.safetensors"
    save_model(create_model("unet", spatial_dims=2, **TINY), path,
               ModelCard(arch="", config={}, name="start", classes=["background", "nucleus"], tile=[32, 32]))
    return path


def test_an_rgb_tiff_folder_trains_a_model_on_its_three_colours_as_predict_then_reads_them(tmp_path):
    root = tiff_folder(tmp_path / "rgb", colours)
    t = Trainer(cfg(root, tmp_path))  # was: "image (64, 64, 3) and labels (64, 64) differ in shape"
    assert t.model.in_channels == 3
    assert any("RGB pictures" in n and "in_channels 3" in n for n in t.notes), t.notes
    img = read_image(root / "images" / "c0.tif")
    given = pick_channel(img, None, t.model.in_channels, root / "images" / "c0.tif").data  # what predict gives it
    k = t.case_ids.index("c0")
    assert np.array_equal(t.raw[k][0], np.asarray(given, np.float32))


def test_an_rgb_tiff_folder_fine_tunes_a_one_channel_model_on_what_predict_reads(tmp_path):
    root = tiff_folder(tmp_path / "he", he)
    t = Trainer(cfg(root, tmp_path, start_model=str(start_model(tmp_path)), arch="attention_unet", model_config={}))
    assert t.model.in_channels == 1 and t.raw[0][0].shape == (1, 64, 64)
    for cid, (image, _lab, _sp) in zip(t.case_ids, t.raw):
        path = root / "images" / f"{cid}.tif"
        grey = pick_channel(read_image(path), None, 1, path)  # attnseg predict's choice: the hematoxylin
        assert grey.meta["channel"] == "hematoxylin"
        np.testing.assert_allclose(image[0], grey.data, rtol=1e-6)
    assert any("RGB pictures" in n and "hematoxylin" in n for n in t.notes), t.notes


def test_an_rgb_picture_a_one_channel_start_model_cannot_read_says_what_to_do(tmp_path):
    root = tiff_folder(tmp_path / "mixed", colours)
    with pytest.raises(DatasetError, match=r"c0\.tif is an RGB picture whose colours hold different images.*"
                                           r"--channel K"):
        Trainer(cfg(root, tmp_path, start_model=str(start_model(tmp_path)), arch="attention_unet", model_config={}))


def test_a_tiff_folder_of_two_channel_stacks_trains_a_two_channel_model(tmp_path):
    def stack(mask, k):
        rng = np.random.default_rng(k)
        return np.stack([mask.astype(np.int64) * 3000 + rng.integers(0, 500, mask.shape),
                         rng.integers(0, 4000, mask.shape)]).astype(np.uint16)

    root = tiff_folder(tmp_path / "fluo2", stack)
    t = Trainer(cfg(root, tmp_path))  # was: "image (2, 64, 64) and labels (64, 64) differ in shape"
    assert t.model.in_channels == 2 and t.raw[0][0].shape == (2, 64, 64)
    assert len(t.spacing) == 2
    with pytest.raises(DatasetError, match=r"takes 1: keep the channel\(s\) it reads .*attnseg export --channel K"):
        Trainer(cfg(root, tmp_path, start_model=str(start_model(tmp_path)), arch="attention_unet", model_config={}))


def test_an_image_and_labels_of_other_grids_say_what_a_label_file_needs(tmp_path):
    root = tiff_folder(tmp_path / "odd", lambda m, k: (m * 100).astype(np.uint8), labels_of=lambda m, k: m[:32])
    with pytest.raises(DatasetError, match=r"differ in shape .*RGB picture \(Y, X, 3\).*imagesTr/<case>_0000"):
        Trainer(cfg(root, tmp_path))


def test_label_values_beyond_a_tiff_folders_table_name_the_file_that_holds_one(tmp_path):
    root = tiff_folder(tmp_path / "multi", lambda m, k: (m * 100).astype(np.uint8),
                       labels_of=lambda m, k: (m * (1 + np.indices(m.shape)[1] * 3 // m.shape[1])).astype(np.uint8))
    with pytest.raises(DatasetError) as info:
        Trainer(cfg(root, tmp_path))
    said = str(info.value)
    assert "label value 3 is not in the label table" in said
    assert "put a datalist.json beside images/" in said and '"3": "NAME"' in said
    assert "--label-names background,class1,class2,class3" in said
    # what it says works: a datalist.json naming the classes
    table = {"0": "background", "1": "a", "2": "b", "3": "c"}
    (root / "datalist.json").write_text(json.dumps({
        "training": [{"image": f"images/c{k}.tif", "label": f"labels/c{k}.tif"} for k in range(4)], "labels": table}))
    t = Trainer(cfg(root, tmp_path))
    assert t.n_classes == 4 and t.model.out_channels == 4


def test_a_2d_only_architecture_in_3d_is_refused_with_the_registrys_message_alone(tmp_path):
    def volume(mask, k):
        return np.repeat((mask * 100)[None], 8, 0).astype(np.uint8)

    root = tiff_folder(tmp_path / "vol", volume, labels_of=lambda m, k: np.repeat(m[None], 8, 0))
    with pytest.raises(InputError) as info:
        Trainer(cfg(root, tmp_path, arch="msga", model_config={}, spatial_dims=3, patch=[8, 32, 32]))
    assert str(info.value).startswith("msga supports spatial_dims 2, not 3: it is a 2D architecture.")


def test_a_3d_models_next_round_validates_on_reviewed_slices_it_never_trained_on():
    lab = np.full((25, 16, 16), 2, np.int64)  # 2: 'ignore' (unreviewed slices)
    for z in (3, 6, 7, 9, 11, 14, 17):
        lab[z] = 0
    for z in (7, 9, 11, 14, 17):
        lab[z, 4:8, 4:8] = 1
    first = make_split([lab], ["c"], ignore=2)  # round 1: validation on the last reviewed slice
    assert [p.box[0] for p in first.val] == [(17, 25)]
    # round 2: the start model trained on 3, 6, 11, 14 and (after its refit) 17; 7 and 9 were corrected since
    split = make_split([lab], ["c"], ignore=2, seen=[3, 6, 11, 14, 17])
    (a, b), = [p.box[0] for p in split.val]
    held = [z for z in range(a, b) if (lab[z] != 2).any()]
    assert held and set(held) <= {7, 9}
    assert any("never trained on" in w for w in split.warnings)
    every = make_split([lab], ["c"], ignore=2, seen=[3, 6, 7, 9, 11, 14, 17])
    assert any("optimistic" in w for w in every.warnings)
