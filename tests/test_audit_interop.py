"""Exports as nnU-Net v2 and Fiji read them.

The nnU-Net rules asserted here are those its own ``nnUNetv2_plan_and_preprocess --verify_dataset_integrity``
(nnunetv2 2.8.1) applied to our exports of the shared lung CT (two sizes, with and without reviewed slices),
the MNI152 grey/white case and the 2D nuclei sample: ``dataset.json`` keys, ``labels`` with ``background`` = 0
(LabelManager: "Background label not declared"), ``ignore`` = highest value + 1, consecutive values,
``numTraining`` = the cases found as ``imagesTr/<case>_<c:04d><file_ending>`` + ``labelsTr/<case><file_ending>``,
and image and label of one shape, spacing and affine. nnunetv2 itself is not needed.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_attnseg.cli import main as cli
from napari_attnseg.data.dataset import read_dataset
from napari_attnseg.data.export import export_case
from napari_attnseg.errors import InputError

AFFINE = np.array([[-0.57, 0, 0, 146.0], [0, -0.57, 0, 325.0], [0, 0, 5.0, -777.5], [0, 0, 0, 1]])


def _ct(shape=(12, 40, 48), seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(-1024, 400, shape).astype(np.int16)
    labels = np.zeros(shape, np.uint8)
    labels[4:7, 10:20, 12:24] = 1
    return image, labels


def nnunet_problems(folder: Path) -> list[str]:
    """What nnU-Net v2's verify_dataset_integrity would reject in ``folder`` (empty: it passes)."""
    meta = json.loads((folder / "dataset.json").read_text())
    out = [f"missing key {k}" for k in ("labels", "channel_names", "numTraining", "file_ending") if k not in meta]
    if out:
        return out
    ending, labels = meta["file_ending"], dict(meta["labels"])
    if labels.get("background") != 0:
        out.append(f"'background' must be label 0: {labels}")
    ignore = labels.pop("ignore", None)
    values = sorted(int(v) for v in labels.values())
    if ignore is not None and ignore != max(values) + 1:
        out.append(f"ignore {ignore} is not the highest label value + 1 ({values})")
    expected = values + ([ignore] if ignore is not None else [])
    if np.any(np.diff(expected) != 1) or expected[0] != 0:
        out.append(f"labels not consecutive from 0: {expected}")
    cases = sorted(p.name[: -len(ending)] for p in (folder / "labelsTr").iterdir() if p.name.endswith(ending))
    if len(cases) != meta["numTraining"]:
        out.append(f"numTraining {meta['numTraining']} but {len(cases)} label files")
    for cid in cases:
        lab = nib.load(folder / "labelsTr" / f"{cid}{ending}")
        found = set(np.unique(np.asarray(lab.dataobj)).tolist())
        if not found <= set(expected):
            out.append(f"{cid}: unexpected label values {sorted(found - set(expected))}")
        for c in range(len(meta["channel_names"])):
            path = folder / "imagesTr" / f"{cid}_{c:04d}{ending}"
            if not path.is_file():
                out.append(f"{cid}: missing {path.name}")
                continue
            img = nib.load(path)
            if img.shape != lab.shape or not np.allclose(img.header.get_zooms(), lab.header.get_zooms()):
                out.append(f"{cid}: image {img.shape} {img.header.get_zooms()} vs label {lab.shape}")
            if not np.allclose(img.affine, lab.affine, atol=1e-4):
                out.append(f"{cid}: affine mismatch")
    return out


@pytest.mark.parametrize("first", ["Background", "bg", "none"])
def test_nnunet_labels_name_value_0_background_whatever_the_user_called_it(tmp_path, first):
    """`--label-names Background,tumour` (or bg, none: names the CLI accepts without a warning) wrote
    {"Background": 0, ...}; nnU-Net stops with "Background label not declared (remember that this should be
    label 0!)". dataset.json now says 'background'; the manifest (attnseg's own table) keeps the user's name."""
    image, labels = _ct()
    ds = tmp_path / "Dataset501_Lung"
    export_case(image, labels, ds, "nnunet", spacing=(5.0, 0.57, 0.57), affine=AFFINE,
                label_names=[first, "tumour"], reviewed_slices=[3, 4, 5, 6])
    meta = json.loads((ds / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "tumour": 1, "ignore": 2}
    assert nnunet_problems(ds) == []
    assert read_dataset(ds).label_names == [first, "tumour"]


def test_background_named_for_another_value_is_refused(tmp_path):
    """`tumour,background` made {"tumour": 0, "background": 1}: 'background' is not 0 for nnU-Net."""
    image, labels = _ct()
    with pytest.raises(InputError, match="'background' names label value 0.*--label-names background,tumour"):
        export_case(image, labels, tmp_path / "ds", "nnunet", label_names=["tumour", "background"])
    assert not (tmp_path / "ds").exists()


def test_nnunet_exports_pass_the_checks_nnunet_makes(tmp_path):
    """The cases checked with nnU-Net itself: two CT sizes (one with reviewed slices), 2D, multi-class."""
    lung = tmp_path / "Dataset501_Lung"
    image, labels = _ct()
    export_case(image, labels, lung, "nnunet", spacing=(5.0, 0.57, 0.57), affine=AFFINE,
                label_names=["background", "tumour"], reviewed_slices=[2, 4, 5, 6])
    small, small_labels = _ct((6, 30, 32), seed=1)
    export_case(small, small_labels, lung, "nnunet", spacing=(5.0, 0.57, 0.57), affine=AFFINE)
    meta = json.loads((lung / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "CT"} and meta["numTraining"] == 2 and meta["file_ending"] == ".nii.gz"
    assert sorted(p.name for p in (lung / "imagesTr").iterdir()) == ["case_0000_0000.nii.gz", "case_0001_0000.nii.gz"]
    assert nnunet_problems(lung) == []
    first = np.asarray(nib.load(lung / "labelsTr" / "case_0000.nii.gz").dataobj)  # stored (x, y, z): k = slice
    assert (first[..., [0, 1, 3, 7, 8]] == 2).all() and (first[..., [2, 4, 5, 6]] < 2).all()

    nuclei = tmp_path / "Dataset503_Nuclei"
    rng = np.random.default_rng(2)
    export_case(rng.integers(0, 4000, (64, 48)).astype(np.uint16), rng.integers(0, 30, (64, 48)), nuclei,
                "nnunet", foreground=True)
    assert nnunet_problems(nuclei) == [] and nib.load(nuclei / "imagesTr" / "case_0000_0000.nii.gz").ndim == 2

    brain = tmp_path / "Dataset504_Brain"
    classes = np.zeros((10, 20, 24), np.uint8)
    classes[2:8, 4:16, 4:12], classes[2:8, 4:16, 12:20] = 1, 2
    export_case(rng.normal(100, 20, classes.shape).astype(np.float32), classes, brain, "nnunet",
                spacing=(1.0, 1.0, 1.0), affine=np.diag([-1.0, 1.0, 1.0, 1.0]), label_names=["background", "grey", "white"])
    assert json.loads((brain / "dataset.json").read_text())["labels"] == {"background": 0, "grey": 1, "white": 2}
    assert nnunet_problems(brain) == []


def _imagej_tiff(path: Path, data: np.ndarray, axes: str = "YX") -> None:
    import tifffile

    tifffile.imwrite(path, data, imagej=True, resolution=(1 / 0.65, 1 / 0.65), metadata={"unit": "micron", "axes": axes})


def test_cli_tiff_export_keeps_the_micron_calibration_fiji_reads(tmp_path, capsys):
    """A Fiji TIFF at 0.65 micron exported by the CLI to the TIFF layout lost its unit (ResolutionUnit NONE, no
    ImageJ description: Fiji showed 0.65 with no unit); the napari panel kept it. Now both are ImageJ in micron."""
    import tifffile

    rng = np.random.default_rng(3)
    _imagej_tiff(tmp_path / "img.tif", rng.integers(0, 4000, (40, 48)).astype(np.uint16))
    mask = np.zeros((40, 48), np.uint16)
    mask[5:15, 5:20], mask[20:30, 25:40] = 1, 2
    _imagej_tiff(tmp_path / "mask.tif", mask)
    assert cli(["export", "--image", str(tmp_path / "img.tif"), "--labels", str(tmp_path / "mask.tif"),
                "--dataset", str(tmp_path / "ds"), "--format", "tiff", "--foreground"]) == 0
    for sub in ("images", "labels"):
        with tifffile.TiffFile(tmp_path / "ds" / sub / "case_0000.tif") as t:
            x_res = t.pages[0].tags["XResolution"].value
            assert t.is_imagej and t.imagej_metadata["unit"] == "micron", sub
            assert x_res[1] / x_res[0] == pytest.approx(0.65)


def test_a_two_channel_2d_tiff_opens_as_channels_in_fiji(tmp_path):
    """A (C, y, x) image in the TIFF layout was labelled ZYX: Fiji opened two z-slices 1 unit apart."""
    import tifffile

    rng = np.random.default_rng(4)
    image = rng.integers(0, 4000, (2, 40, 48)).astype(np.uint16)
    labels = (image[0] > 3000).astype(np.uint8)
    export_case(image, labels, tmp_path / "ds", "tiff", spacing=(0.65, 0.65), channel_axis=True, unit="µm")
    with tifffile.TiffFile(tmp_path / "ds" / "images" / "case_0000.tif") as t:
        assert t.series[0].axes == "CYX" and t.imagej_metadata["channels"] == 2
        assert "slices" not in t.imagej_metadata and t.imagej_metadata["unit"] == "micron"
    img, lab, spacing = read_dataset(tmp_path / "ds").cases[0].load()
    assert np.array_equal(img, image) and np.array_equal(lab, labels) and spacing == pytest.approx((0.65, 0.65))
