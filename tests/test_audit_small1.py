"""A 2D slice saved as NIfTI (X, Y, 1) with its 2D mask through attnseg export / evaluate, and finetune's advice for
a colour start model on a dataset of grey images."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import tifffile

from napari_attnseg import create_model, save_model
from napari_attnseg.checkpoint import ModelCard
from napari_attnseg.cli import main as cli
from napari_attnseg.data.export import export_case
from napari_attnseg.training.channel_advice import channel_mismatch

DATA = "/work/shared/data/nuclei2d"


def _pair(tmp_path):
    """A crop of the nuclei image saved as NIfTI (X, Y, 1) (a 2D slice, one z), its labels as a 2D TIFF (Y, X) and a
    2D NIfTI (X, Y) and a NIfTI (X, Y, 1), and the same crop as a 2D TIFF."""
    image = tifffile.imread(f"{DATA}/image.tif")[:64, :80]
    labels = (tifffile.imread(f"{DATA}/labels.tif")[:64, :80] > 0).astype(np.uint8)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(image.T[:, :, None]).astype(np.float32), np.eye(4)),
             tmp_path / "slice.nii.gz")
    nib.save(nib.Nifti1Image(np.ascontiguousarray(labels.T), np.eye(4)), tmp_path / "mask2d.nii.gz")
    nib.save(nib.Nifti1Image(np.ascontiguousarray(labels.T[:, :, None]), np.eye(4)), tmp_path / "mask1z.nii.gz")
    tifffile.imwrite(tmp_path / "mask.tif", labels)
    tifffile.imwrite(tmp_path / "slice.tif", image)
    return image, labels


def test_export_takes_a_one_slice_nifti_with_its_2d_mask(tmp_path, capsys):
    """`attnseg export --image slice.nii.gz` (X, Y, 1) with a (Y, X) mask was refused: 'has shape (64, 80), but
    --image has shape (1, 64, 80)'; the pair is one 2D plane, exported as the 2D case a one-plane TIFF makes."""
    image, labels = _pair(tmp_path)
    for source, mask, ds in (("slice.nii.gz", "mask.tif", "ds"), ("slice.nii.gz", "mask2d.nii.gz", "ds2"),
                             ("slice.tif", "mask1z.nii.gz", "ds3")):  # (and a 2D image with a one-slice mask)
        assert cli(["export", "--image", str(tmp_path / source), "--labels", str(tmp_path / mask),
                    "--dataset", str(tmp_path / ds), "--format", "tiff"]) == 0, capsys.readouterr().err
        assert "shape [64, 80]" in capsys.readouterr().out
        got = json.loads((tmp_path / ds / "manifest.json").read_text())["cases"][0]
        img = tifffile.imread(tmp_path / ds / got["files"]["images"][0])
        lab = tifffile.imread(tmp_path / ds / got["files"]["label"])
        assert img.shape == lab.shape == (64, 80)
        np.testing.assert_array_equal(lab, labels)
        np.testing.assert_array_equal(img, image.astype(img.dtype))


def test_evaluate_scores_a_one_slice_nifti_as_its_2d_tiff(tmp_path, capsys):
    """`attnseg evaluate` refused the same pair ('they must match (one label per voxel of every slice)'); it now
    scores the plane, with the Dice of the TIFF pair."""
    _pair(tmp_path)
    dice = []
    for image, mask in (("slice.tif", "mask.tif"), ("slice.nii.gz", "mask.tif"), ("slice.nii.gz", "mask2d.nii.gz"),
                        ("slice.tif", "mask1z.nii.gz")):
        assert cli(["evaluate", "--model", "nuclei-2d", "--image", str(tmp_path / image), "--labels",
                    str(tmp_path / mask), "--json"]) == 0, capsys.readouterr().err
        dice.append(json.loads(capsys.readouterr().out)["dice"]["nucleus"])
    assert dice[0] > 0.8 and dice[1] == dice[0] == dice[2] == dice[3]


def test_finetune_a_colour_model_on_grey_images_says_what_fits(tmp_path, capsys):
    """A 3-channel start model on a dataset of 1-channel images was told 'keep the channel(s) it reads (attnseg
    export --channel K adds an image's channel K)': no channel of a grey image makes colour. It is now told that the
    dataset holds grey images and the model reads colour: fine-tune a 1-channel model or train anew."""
    image = tifffile.imread(f"{DATA}/image.tif")[:64, :64].astype(np.float32)
    labels = (tifffile.imread(f"{DATA}/labels.tif")[:64, :64] > 0).astype(np.uint8)
    export_case(image, labels, tmp_path / "ds", "tiff", label_names=["background", "nucleus"])
    start = tmp_path / "rgb.safetensors"
    save_model(create_model("unet", spatial_dims=2, in_channels=3, features=[4, 8]), start,
               ModelCard(arch="", config={}, name="rgb", classes=["background", "nucleus"], tile=[32, 32]))
    assert cli(["finetune", str(tmp_path / "ds"), "--model", str(start), "--out", str(tmp_path / "ft")]) == 1
    err = capsys.readouterr().err
    assert "grey images" in err and "reads 3 (colour)" in err and "fine-tune a 1-channel model" in err, err
    assert "--channel K" not in err
    assert not (tmp_path / "ft").exists() or not any((tmp_path / "ft").glob("*.safetensors"))


def test_other_channel_mismatches_keep_their_advice():
    """Two stains against a 1-channel model (or grey against a 2-channel one): keep the channel(s) it reads."""
    for have, want in ((2, 1), (1, 2), (3, 1)):
        said = channel_mismatch(have, want, "m.safetensors")
        assert "--channel K" in said and f"have {have} channel(s)" in said and f"takes {want}" in said
    assert "grey" in channel_mismatch(1, 4, "m.safetensors")
