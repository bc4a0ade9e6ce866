"""The correction loop of a colour model: predict on an RGB picture, correct, export, fine-tune that model.

A model trained on RGB pictures (3 input channels) could not be fine-tuned on its corrections: ``attnseg export``
wrote the picture's grey, and ``attnseg finetune --model <colour model>`` refused 'The dataset's images have 1
channel ... the model reads 3 (colour)'. A mask made by a model that reads colour (or ``--keep-colour``) now keeps the
picture's colours in every layout (one RGB TIFF a case, channels R, G, B); a one-channel model's mask stays grey, a
dataset never mixes both. And a one-slice NIfTI image with a 2D mask takes ``--reviewed-slices 0`` (its one plane),
as a 2D pair now does.
"""

from __future__ import annotations

import json
import re

import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch

from napari_attnseg import create_model, save_model
from napari_attnseg.checkpoint import ModelCard, read_card
from napari_attnseg.cli import main as cli
from napari_attnseg.data import read_image
from napari_attnseg.data.dataset import read_dataset
from napari_attnseg.data.io import write_image

DATA = "/work/shared/data/nuclei2d"


def _picture(tmp_path, size: int = 64):
    """An H&E-like RGB crop of the nuclei image (nuclei purple on pink) saved as pic.tif, and its nuclei labels."""
    grey = tifffile.imread(f"{DATA}/image.tif")[:size, :size].astype(np.float32)
    labels = (tifffile.imread(f"{DATA}/labels.tif")[:size, :size] > 0).astype(np.uint8)
    g = grey / grey.max()
    rgb = np.stack([255 - 90 * g, 235 - 200 * g, 245 - 60 * g], -1).clip(0, 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "pic.tif", rgb, photometric="rgb")
    return rgb, labels


def _model(tmp_path, channels: int):
    torch.manual_seed(0)
    path = tmp_path / f"m{channels}.safetensors"
    save_model(create_model("unet", spatial_dims=2, in_channels=channels, features=[4, 8]), path,
               ModelCard(arch="", config={}, name=f"m{channels}", classes=["background", "nucleus"], tile=[32, 32]))
    return path


def _corrected(tmp_path, capsys, channels: int):
    """``attnseg predict`` of the picture with a model of ``channels`` inputs, its mask then corrected (the nuclei
    labels written over it with the model saved with it, as napari's Save mask writes a corrected mask)."""
    rgb, labels = _picture(tmp_path)
    model = _model(tmp_path, channels)
    assert cli(["predict", str(tmp_path / "pic.tif"), "--model", str(model), "--out", str(tmp_path / "pred")]) == 0, \
        capsys.readouterr().err
    mask = tmp_path / "pred" / "pic_mask.tif"
    info = read_image(mask).meta["model_info"]
    write_image(mask, labels, None, spacing=(1.0, 1.0), model_info=info)
    capsys.readouterr()
    return rgb, labels, model, mask


def _export(tmp_path, mask, ds, *extra) -> int:
    return cli(["export", "--image", str(tmp_path / "pic.tif"), "--labels", str(mask), "--dataset", str(ds), *extra])


@pytest.mark.parametrize("fmt", ["nnunet", "monai", "tiff"])
def test_a_colour_models_corrections_keep_their_colours_in_every_layout(tmp_path, capsys, fmt):
    rgb, labels, _, mask = _corrected(tmp_path, capsys, 3)
    ds = tmp_path / "ds"
    assert _export(tmp_path, mask, ds, "--format", fmt) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "its colours (R, G, B) go into the dataset" in err and "reads 3 channels" in err, err
    manifest = json.loads((ds / "manifest.json").read_text())
    assert manifest["colour"] is True and manifest["channel_names"] == ["R", "G", "B"]
    case = manifest["cases"][0]
    assert len(case["files"]["images"]) == 1 and case["files"]["images"][0].endswith(".tif")
    np.testing.assert_array_equal(tifffile.imread(ds / case["files"]["images"][0]), rgb)  # one RGB TIFF
    np.testing.assert_array_equal(tifffile.imread(ds / case["files"]["label"]), labels)
    if fmt == "nnunet":  # nnU-Net v2's natural images: one file with the colours, channel names R, G, B
        index = json.loads((ds / "dataset.json").read_text())
        assert index["channel_names"] == {"0": "R", "1": "G", "2": "B"} and index["file_ending"] == ".tif"
        assert case["files"]["images"] == ["imagesTr/case_0000_0000.tif"] and case["files"]["label"] == "labelsTr/case_0000.tif"
    if fmt == "monai":
        assert json.loads((ds / "datalist.json").read_text())["training"] == [
            {"image": "images/case_0000.tif", "label": "labels/case_0000.tif"}]
    read = read_dataset(ds).cases[0]  # our reader: the colours as the channels, the case a colour picture
    image, got, _ = read.load()
    assert read.colour == "uint8" and image.shape == (3, *labels.shape)
    np.testing.assert_array_equal(np.moveaxis(image, 0, -1), rgb)
    np.testing.assert_array_equal(got, labels)


def test_the_colour_model_fine_tunes_on_its_exported_corrections(tmp_path, capsys):
    """Was refused: 'The dataset's images have 1 channel (grey images: attnseg export writes an RGB picture's grey)
    but the model ... reads 3 (colour)'. A one-channel model fine-tuned on the same colour dataset still reads each
    picture's grey as predict gives it (its hematoxylin here: an H&E-like picture)."""
    _, _, model, mask = _corrected(tmp_path, capsys, 3)
    ds = tmp_path / "ds"
    assert _export(tmp_path, mask, ds, "--format", "tiff") == 0, capsys.readouterr().err
    capsys.readouterr()
    short = ["--epochs", "2", "--iters-per-epoch", "3", "--patch", "32,32", "--batch", "2"]
    assert cli(["finetune", str(ds), "--model", str(model), "--out", str(tmp_path / "ft"), *short]) == 0, \
        capsys.readouterr().err
    out = capsys.readouterr()
    tuned = tmp_path / "ft" / "best.safetensors"
    assert tuned.exists() and read_card(tuned).in_channels == 3, out.err
    dice = re.search(r"validation Dice: start ([\d.]+) -> result ([\d.]+)", out.out + out.err)
    assert dice and float(dice[2]) >= float(dice[1]), out.out + out.err  # improved, or the start weights kept
    grey = _model(tmp_path, 1)
    assert cli(["finetune", str(ds), "--model", str(grey), "--out", str(tmp_path / "ft1"), *short]) == 0, \
        capsys.readouterr().err
    said = capsys.readouterr()
    assert "are RGB pictures and the start model reads one channel" in said.out + said.err
    assert read_card(tmp_path / "ft1" / "best.safetensors").in_channels == 1


def test_a_one_channel_models_mask_stays_grey(tmp_path, capsys):
    rgb, labels, _, mask = _corrected(tmp_path, capsys, 1)
    ds = tmp_path / "ds"
    assert _export(tmp_path, mask, ds, "--format", "tiff") == 0, capsys.readouterr().err
    manifest = json.loads((ds / "manifest.json").read_text())
    assert "colour" not in manifest and manifest["channel_names"] == ["image"]
    assert tifffile.imread(ds / manifest["cases"][0]["files"]["images"][0]).shape == labels.shape
    assert _export(tmp_path, mask, tmp_path / "kept", "--format", "tiff", "--keep-colour") == 0  # asked: its colours
    kept = json.loads((tmp_path / "kept" / "manifest.json").read_text())["cases"][0]
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "kept" / kept["files"]["images"][0]), rgb)


def test_grey_and_colour_cases_of_a_picture_never_mix(tmp_path, capsys):
    _, _, _, mask = _corrected(tmp_path, capsys, 3)
    grey, colour = tmp_path / "grey", tmp_path / "colour"
    assert _export(tmp_path, mask, grey, "--grey") == 0, capsys.readouterr().err
    capsys.readouterr()
    assert _export(tmp_path, mask, grey) == 1  # the colour model's mask: its colours, refused beside grey cases
    err = capsys.readouterr().err
    assert f"The dataset in {grey} holds grey images" in err and "export into another folder" in err, err
    assert _export(tmp_path, mask, colour) == 0
    assert _export(tmp_path, mask, colour, "--grey") == 1
    err = capsys.readouterr().err
    assert f"The dataset in {colour} holds RGB pictures' colours" in err and "--keep-colour" in err, err
    for ds in (grey, colour):
        assert len(json.loads((ds / "manifest.json").read_text())["cases"]) == 1  # nothing written
    tifffile.imwrite(tmp_path / "g.tif", tifffile.imread(f"{DATA}/image.tif")[:64, :64])
    assert cli(["export", "--image", str(tmp_path / "g.tif"), "--labels", str(mask), "--dataset",
                str(tmp_path / "x"), "--keep-colour"]) == 1
    assert "is not an RGB picture" in capsys.readouterr().err


def test_reviewed_slice_0_of_a_one_slice_nifti_with_its_2d_mask(tmp_path, capsys):
    """`--reviewed-slices 0` with a one-slice NIfTI (X, Y, 1) and a 2D mask was refused ('Reviewed slices apply to 3D
    volumes') though the pair exports as one plane without it, as a 2D TIFF pair was: plane 0 is the image reviewed as
    a whole now for both; a mark on no plane of it is refused, saying which plane there is."""
    image = tifffile.imread(f"{DATA}/image.tif")[:48, :56]
    labels = (tifffile.imread(f"{DATA}/labels.tif")[:48, :56] > 0).astype(np.uint8)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(image.T[:, :, None]).astype(np.float32), np.eye(4)),
             tmp_path / "slice.nii.gz")
    tifffile.imwrite(tmp_path / "slice.tif", image)
    tifffile.imwrite(tmp_path / "mask.tif", labels)
    for k, source in enumerate(("slice.nii.gz", "slice.tif")):
        args = ["export", "--image", str(tmp_path / source), "--labels", str(tmp_path / "mask.tif"), "--dataset"]
        assert cli([*args, str(tmp_path / f"ds{k}"), "--reviewed-slices", "0"]) == 0, capsys.readouterr().err
        case = json.loads((tmp_path / f"ds{k}" / "manifest.json").read_text())["cases"][0]
        assert case["shape"] == [48, 56] and case["reviewed_slices"] is None and case["ignore_label"] is None
        capsys.readouterr()
        assert cli([*args, str(tmp_path / f"no{k}"), "--reviewed-slices", "1"]) == 1
        err = capsys.readouterr().err
        assert "mask.tif is one 2D plane" in err and "its one plane is 0" in err, err
        assert not (tmp_path / f"no{k}").exists()


def test_the_correct_tab_exports_the_colours_of_a_colour_models_mask(make_napari_viewer, qtbot, tmp_path):
    """The Correct tab's Export of an RGB layer's mask: the picture's colours when the model that made the mask reads
    colour (the mask layer's provenance), so that model fine-tunes on it; its grey layer for a one-channel model's mask
    (a new dataset: a dataset never mixes both)."""
    from napari_attnseg._napari.correct_widget import CorrectWidget

    rgb, labels = _picture(tmp_path)
    viewer = make_napari_viewer()
    viewer.add_image(rgb, name="pic", rgb=True)
    panel = CorrectWidget(viewer)
    for channels in (3, 1):
        path = _model(tmp_path, channels)
        made = {"model": f"m{channels}", "checkpoint": str(path), "checkpoint_sha256": read_card(path).weights_sha256}
        viewer.add_labels(labels, name=f"pic mask {channels}", metadata={"attnseg": made})
        panel.refresh()
        panel.image_combo.value, panel.labels_combo.value = "pic", f"pic mask {channels}"
        ds = tmp_path / f"ds{channels}"
        panel.dataset_edit.value = str(ds)
        assert panel.export() is not None
        qtbot.waitUntil(lambda ds=ds: (ds / "manifest.json").exists() and panel.export_button.enabled, timeout=30000)
        case = read_dataset(ds).cases[0]
        image, mask, _ = case.load()
        np.testing.assert_array_equal(mask, labels)
        if channels == 3:
            assert case.colour == "uint8" and sorted(p.name for p in (ds / "imagesTr").iterdir()) == ["case_0000_0000.tif"]
            np.testing.assert_array_equal(np.moveaxis(image, 0, -1), rgb)
        else:
            assert case.colour is None and image.shape == (1, *labels.shape)  # (its grey, as before)


def test_a_mask_whose_colour_model_is_gone_stays_grey_and_says_how_to_keep_colours(tmp_path, capsys):
    _, _, model, mask = _corrected(tmp_path, capsys, 3)
    model.rename(tmp_path / "moved.safetensors")  # (the checkpoint saved with the mask is no longer there)
    assert _export(tmp_path, mask, tmp_path / "ds", "--format", "tiff") == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "m3, was not found to tell whether it reads colours: if it does, pass --keep-colour" in err, err
    assert json.loads((tmp_path / "ds" / "manifest.json").read_text())["channel_names"] == ["image"]
