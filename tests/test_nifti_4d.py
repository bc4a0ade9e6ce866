"""4D NIfTI (MRI sequences of one patient stacked, as the Medical Segmentation Decathlon ships its brain tumour and
prostate cases; diffusion or functional series): `attnseg predict --channel K` segments volume K, a cohort too, and
napari opens each volume as its own layer. Before, every path refused the file with "split multi-volume (4D)
files into one file per volume" and no way to do it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_attnseg.cli import main
from napari_attnseg.data import read_image
from napari_attnseg.errors import InputError

BRAIN1 = Path("/work/shared/data/radiomics/brain1_image.nii.gz")


@pytest.fixture(scope="module")
def stacked(tmp_path_factory):
    """A real brain MRI (radiomics brain1, or the bundled MNI152 T1) cropped, stacked with a gamma-changed copy as a
    second 'sequence' (4D, int16), and volume 1 alone as a 3D file on the same grid."""
    from napari_attnseg._paths import samples_dir

    src = BRAIN1 if BRAIN1.exists() else samples_dir() / "mni152_t1.nii.gz"
    img = nib.load(str(src))
    data = np.asarray(img.dataobj)[48:208:2, 48:208:2] if src == BRAIN1 else np.asarray(img.dataobj)[::3, ::3, ::3]
    data = data.astype(np.float32)
    other = (data.max() * (data / data.max()) ** 0.7)
    folder = tmp_path_factory.mktemp("four")
    four = np.stack([data, other], -1).astype(np.int16)
    affine = img.affine.copy()
    nib.save(nib.Nifti1Image(four, affine), str(folder / "case.nii.gz"))
    nib.save(nib.Nifti1Image(four[..., 1], affine), str(folder / "second.nii.gz"))
    return folder


def _predict(*argv) -> int:
    return main(["predict", *map(str, argv), "--model", "brain-mri-3d", "--device", "cpu", "--no-prob"])


def test_predict_segments_the_chosen_volume_of_a_4d_nifti(stacked, tmp_path, capsys):
    assert _predict(stacked / "case.nii.gz", "--out", tmp_path / "none") != 0
    err = capsys.readouterr().err
    assert "case.nii.gz is a 4D NIfTI of 2 volumes" in err and "--channel K (K from 0 to 1)" in err
    assert _predict(stacked / "case.nii.gz", "--out", tmp_path / "a", "--channel", "1") == 0
    assert _predict(stacked / "second.nii.gz", "--out", tmp_path / "b") == 0
    mask, alone = (nib.load(str(tmp_path / d / f"{n}_mask.nii.gz")) for d, n in (("a", "case"), ("b", "second")))
    assert mask.shape == alone.shape == nib.load(str(stacked / "second.nii.gz")).shape
    np.testing.assert_array_equal(np.asarray(mask.dataobj), np.asarray(alone.dataobj))  # the volume, as a 3D file
    np.testing.assert_allclose(mask.affine, alone.affine)
    assert _predict(stacked / "case.nii.gz", "--out", tmp_path / "c", "--channel", "2") != 0
    assert "has 2 volumes (4D NIfTI); --channel is 0 to 1, not 2" in capsys.readouterr().err
    assert _predict(stacked / "second.nii.gz", "--out", tmp_path / "d", "--channel", "1") != 0
    assert "second.nii.gz has no channel axis" in capsys.readouterr().err  # a 3D file: "leave --channel out"


def test_a_cohort_of_4d_niftis_runs_with_channel(stacked, tmp_path):
    folder = tmp_path / "cohort"
    folder.mkdir()
    for name in ("p1", "p2"):
        shutil.copy(stacked / "case.nii.gz", folder / f"{name}.nii.gz")
    assert _predict(folder, "--out", tmp_path / "o", "--channel", "0") == 0
    summary = (tmp_path / "o" / "cohort_summary.csv").read_text()
    assert summary.count(",done,") == 2, summary
    with pytest.raises(InputError, match="4D NIfTI of 2 volumes"):
        read_image(stacked / "case.nii.gz")


def test_napari_opens_each_volume_of_a_4d_nifti_as_a_layer(stacked):
    from napari_attnseg._napari.io_hooks import get_nifti_reader

    path = str(stacked / "case.nii.gz")
    layers = get_nifti_reader(path)(path)
    assert [kw["name"] for _, kw, _ in layers] == ["case [0]", "case [1]"] and all(k == "image" for *_, k in layers)
    second = read_image(stacked / "second.nii.gz")
    np.testing.assert_array_equal(layers[1][0], second.data)
    assert tuple(layers[1][1]["scale"]) == tuple(second.spacing)
    assert layers[1][1]["metadata"]["nifti"]["stored_shape"] == list(nib.load(path).shape[:3])


def test_the_record_of_a_4d_volume_reopens_on_that_volume(stacked, tmp_path):
    from napari_attnseg.results import read_record, record_layers

    assert _predict(stacked / "case.nii.gz", "--out", tmp_path / "o", "--channel", "1") == 0
    assert read_record(tmp_path / "o" / "case_predict.json")["channel"] == 1
    layers = record_layers(tmp_path / "o" / "case_predict.json")
    image = next(d for d, kw, kind in layers if kind == "image" and kw["name"] == "case")
    np.testing.assert_array_equal(image, read_image(stacked / "second.nii.gz").data)


def test_export_takes_the_volume_the_mask_was_made_on(stacked, tmp_path, capsys):
    """A mask of `predict --channel 1` on a 4D NIfTI: `attnseg export` reads volume 1 (the record beside the mask
    says so; --channel overrides). Before, export could not read the 4D image at all and had no --channel."""
    assert _predict(stacked / "case.nii.gz", "--out", tmp_path / "o", "--channel", "1") == 0
    mask = tmp_path / "o" / "case_mask.nii.gz"
    assert main(["export", "--image", str(stacked / "case.nii.gz"), "--labels", str(mask), "--dataset",
                 str(tmp_path / "ds"), "--format", "nnunet"]) == 0
    assert "exporting channel 1 of" in capsys.readouterr().err
    (image,) = sorted((tmp_path / "ds" / "imagesTr").glob("*.nii.gz"))
    np.testing.assert_array_equal(read_image(image).data, read_image(stacked / "second.nii.gz").data)
    assert main(["export", "--image", str(stacked / "case.nii.gz"), "--labels", str(mask), "--dataset",
                 str(tmp_path / "ds0"), "--format", "nnunet", "--channel", "0"]) == 0
    (image,) = sorted((tmp_path / "ds0" / "imagesTr").glob("*.nii.gz"))
    np.testing.assert_array_equal(read_image(image).data, np.asarray(nib.load(str(stacked / "case.nii.gz")).dataobj)[
        ..., 0].transpose(2, 1, 0))


def test_suggest_and_evaluate_take_the_volume_too(stacked, tmp_path, capsys):
    """Their refusal of a 4D NIfTI said "choose one with --channel K", which neither command had."""
    image = str(stacked / "case.nii.gz")
    assert main(["suggest", image, "--model", "brain-mri-3d", "--device", "cpu", "-n", "2", "--no-flips"]) != 0
    assert "4D NIfTI of 2 volumes" in capsys.readouterr().err
    assert main(["suggest", image, "--model", "brain-mri-3d", "--device", "cpu", "-n", "2", "--no-flips",
                 "--channel", "1"]) == 0
    assert len([ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]) >= 2
    assert _predict(stacked / "second.nii.gz", "--out", tmp_path / "o") == 0
    capsys.readouterr()
    assert main(["evaluate", "--model", "brain-mri-3d", "--image", image, "--labels",
                 str(tmp_path / "o" / "second_mask.nii.gz"), "--device", "cpu", "--channel", "1", "--json"]) == 0
    dice = json.loads(capsys.readouterr().out)["dice"]  # volume 1 against its own prediction saved alone
    assert dice and min(dice.values()) > 0.999, dice
