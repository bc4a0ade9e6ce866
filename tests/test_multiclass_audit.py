"""Masks of several classes through the CLI loop: export (names, stray values), fine-tune summary, predict -> export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch

from napari_attnseg import create_model, save_model
from napari_attnseg.checkpoint import ModelCard
from napari_attnseg.cli import main as cli
from napari_attnseg.cli._train_common import print_summary
from napari_attnseg.data.export import export_case
from napari_attnseg.errors import InputError
from napari_attnseg.training import TrainConfig, train


def _three_class_volume(shape=(12, 32, 32)):
    """A 'tumour': core 1, rim 2, oedema shell 3, on slices 3-8."""
    z, y, x = np.indices(shape)
    r = np.hypot(y - shape[1] / 2, x - shape[2] / 2)
    lab = np.zeros(shape, np.uint8)
    rows = (z >= 3) & (z <= 8)
    lab[rows & (r < 11)] = 3
    lab[rows & (r < 8)] = 2
    lab[rows & (r < 5)] = 1
    image = (lab * 50 + np.random.default_rng(0).normal(100, 5, shape)).astype(np.float32)
    return image, lab


def test_label_names_typed_with_spaces_are_the_same_names(tmp_path):
    image, lab = _three_class_volume()
    names = "background, necrotic, enhancing, oedema".split(",")
    export_case(image, lab, tmp_path / "ds", label_names=names)
    table = json.loads((tmp_path / "ds" / "dataset.json").read_text())["labels"]
    assert list(table) == ["background", "necrotic", "enhancing", "oedema"]
    # the second round, typed without spaces, is the same table (it had been refused as 'different')
    export_case(image, lab, tmp_path / "ds", label_names=["background", "necrotic", "enhancing", "oedema"])


def test_an_empty_label_name_is_refused(tmp_path):
    image, lab = _three_class_volume()
    with pytest.raises(InputError, match="must not be empty"):
        export_case(image, lab, tmp_path / "ds", label_names=["background", "", "enhancing", "oedema"])
    assert not (tmp_path / "ds").exists()


def test_a_value_outside_the_table_names_the_file_the_value_and_its_slice(tmp_path, capsys):
    image, lab = _three_class_volume()
    export_case(image, lab, tmp_path / "ds", label_names=["background", "necrotic", "enhancing", "oedema"])
    stray = lab.copy()
    stray[7, 2, 2] = 4  # one voxel of a value the table has no name for, on reviewed slice 7
    img_path, lab_path = tmp_path / "image.tif", tmp_path / "corrected.tif"
    tifffile.imwrite(img_path, image)
    tifffile.imwrite(lab_path, stray)
    rc = cli(["export", "--image", str(img_path), "--labels", str(lab_path), "--dataset", str(tmp_path / "ds"),
              "--reviewed-slices", "5-8"])
    err = capsys.readouterr().err
    assert rc != 0
    assert "Label value 4 (1 voxel, slice 7) in " in err and "corrected.tif is not in the dataset's label table" in err


def test_finetune_summary_names_each_class(tmp_path, capsys):
    image, lab = _three_class_volume()
    export_case(image, lab, tmp_path / "ds", "nnunet", label_names=["background", "necrotic", "enhancing", "oedema"])
    res = train(TrainConfig(dataset=str(tmp_path / "ds"), out=str(tmp_path / "o"), arch="unet", spatial_dims=2,
                            model_config={"features": [4, 8, 16]}, epochs=1, iters_per_epoch=1, batch_size=2,
                            patch=[32, 32]))
    assert res.class_names == ["background", "necrotic", "enhancing", "oedema"]
    capsys.readouterr()
    print_summary(res)
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("validation Dice"))
    assert "necrotic " in line and "enhancing " in line and "oedema " in line


def test_a_predict_mask_exports_with_its_models_class_names(tmp_path, capsys):
    torch.manual_seed(0)
    net = create_model("unet", spatial_dims=2, out_channels=3, features=[4, 8, 16])
    ckpt = tmp_path / "nuclei3.safetensors"
    save_model(net, ckpt, ModelCard(arch="", config={}, name="nuclei3", classes=["background", "nucleus", "boundary"],
                                    tile=[64, 64]))
    img = tmp_path / "cells.tif"
    tifffile.imwrite(img, np.random.default_rng(1).integers(0, 200, (64, 64)).astype(np.uint16))
    assert cli(["predict", str(img), "--model", str(ckpt), "--out", str(tmp_path / "pred")]) == 0
    mask = tmp_path / "pred" / "cells_mask.tif"
    fixed = np.zeros((64, 64), np.uint8)
    fixed[10:20, 10:20] = 1  # the user's corrected mask holds nuclei only (no boundary drawn yet)
    tifffile.imwrite(mask, fixed, description=tifffile.TiffFile(mask).pages[0].description)
    capsys.readouterr()
    assert cli(["export", "--image", str(img), "--labels", str(mask), "--dataset", str(tmp_path / "ds"),
                "--format", "tiff"]) == 0
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["label_names"] == ["background", "nucleus", "boundary"]  # not background/foreground
    assert "class names of the model saved with the mask" in capsys.readouterr().err


def test_label_names_without_the_background_are_warned_about(tmp_path, capsys):
    """--label-names necrotic,enhancing,oedema for a mask of values 0-2 made 'necrotic' the background's name
    without a word; the export now warns and shows the names with the background first."""
    image, lab = _three_class_volume()
    lab = np.minimum(lab, 2)
    img_path, lab_path = tmp_path / "image.tif", tmp_path / "corrected.tif"
    tifffile.imwrite(img_path, image)
    tifffile.imwrite(lab_path, lab)
    args = ["export", "--image", str(img_path), "--labels", str(lab_path), "--format", "tiff"]
    assert cli([*args, "--dataset", str(tmp_path / "ds"), "--label-names", "necrotic,enhancing,oedema"]) == 0
    assert "--label-names background,necrotic,enhancing,oedema" in capsys.readouterr().err
    assert cli([*args, "--dataset", str(tmp_path / "ds2"), "--label-names", "Background,necrotic,enhancing"]) == 0
    assert "warning" not in capsys.readouterr().err
