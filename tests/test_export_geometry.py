"""`attnseg export` on real CT files stored in different ways: the channel is named CT for an image
in Hounsfield units whatever its format, and labels that are the image's grid stored in another
orientation are moved onto it (not refused as another grid)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_attnseg.cli import main
from napari_attnseg.data.io import read_image, write_image

LUNG = Path(__file__).resolve().parents[2] / "shared" / "data" / "radiomics"
pytestmark = pytest.mark.skipif(not (LUNG / "lung1_image.nii.gz").exists(), reason="shared radiomics data not present")


def _crop(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """lung1 slices 28-38 around the tumour, 128 x 128 in-plane, as NIfTI files with the real geometry."""
    img, lab = nib.load(str(LUNG / "lung1_image.nii.gz")), nib.load(str(LUNG / "lung1_labels.nii.gz"))
    zyx = np.argwhere(np.asarray(lab.dataobj).transpose(2, 1, 0) > 0).mean(0).astype(int)
    y0, x0 = zyx[1] - 64, zyx[2] - 64
    box = (slice(x0, x0 + 128), slice(y0, y0 + 128), slice(28, 38))  # stored (i, j, k)
    affine = img.affine.copy()
    affine[:3, 3] = (img.affine @ [x0, y0, 28, 1])[:3]
    paths = []
    for name, src, dtype in (("ct", img, np.int16), ("ct_labels", lab, np.uint8)):
        out = nib.Nifti1Image(np.asarray(src.dataobj)[box].astype(dtype), affine)
        out.set_qform(affine, code=1)
        out.set_sform(affine, code=1)
        nib.save(out, str(tmp_path / f"{name}.nii.gz"))
        paths.append(tmp_path / f"{name}.nii.gz")
    return paths[0], paths[1], affine, np.asarray(lab.dataobj)[box]


def test_a_nifti_ct_gets_the_ct_channel_and_a_mismatch_says_what_to_do(tmp_path, capsys):
    ct, labels, _, _ = _crop(tmp_path)
    assert main(["export", "--image", str(ct), "--labels", str(labels), "--dataset", str(tmp_path / "ds"),
                 "--format", "nnunet"]) == 0
    assert json.loads((tmp_path / "ds" / "dataset.json").read_text())["channel_names"] == {"0": "CT"}
    # a second case without names joins the dataset's table; different names are refused, and the
    # message names the dataset and the way out
    assert main(["export", "--image", str(ct), "--labels", str(labels), "--dataset", str(tmp_path / "ds"),
                 "--format", "nnunet", "--case-id", "again"]) == 0
    assert main(["export", "--image", str(ct), "--labels", str(labels), "--dataset", str(tmp_path / "ds"),
                 "--format", "nnunet", "--case-id", "mri", "--channel-names", "T1"]) == 1
    err = capsys.readouterr().err
    assert f"differ from those of the dataset in {tmp_path / 'ds'}" in err and "--channel-names" in err


def test_labels_stored_in_another_orientation_are_moved_onto_the_image(tmp_path, capsys):
    ct, _, affine, stored_labels = _crop(tmp_path)
    # the same grid stored with i and j reversed (LPS -> RAS): another file layout, the same voxels in space
    flip = affine @ np.array([[-1, 0, 0, 127], [0, -1, 0, 127], [0, 0, 1, 0], [0, 0, 0, 1]], float)
    img = nib.Nifti1Image(stored_labels[::-1, ::-1, :].copy(), flip)
    img.set_qform(flip, code=1)
    img.set_sform(flip, code=1)
    nib.save(img, str(tmp_path / "flipped_labels.nii.gz"))
    assert main(["export", "--image", str(ct), "--labels", str(tmp_path / "flipped_labels.nii.gz"),
                 "--dataset", str(tmp_path / "ds"), "--format", "nnunet"]) == 0
    assert "moved onto the image's grid" in capsys.readouterr().err
    written = read_image(tmp_path / "ds" / "labelsTr" / "case_0000.nii.gz")
    assert np.array_equal(np.asarray(written.data), stored_labels.transpose(2, 1, 0))
    assert np.asarray(written.data).sum() > 100
    # reviewed marks saved in the flipped file's own slice numbers are not reused silently
    write_image(tmp_path / "marked_labels.nii.gz", read_image(tmp_path / "flipped_labels.nii.gz").data,
                affine=flip, reviewed_slices=[4, 5])
    assert main(["export", "--image", str(ct), "--labels", str(tmp_path / "marked_labels.nii.gz"),
                 "--dataset", str(tmp_path / "ds2"), "--format", "nnunet"]) == 1
    assert "pass --reviewed-slices" in capsys.readouterr().err
    # another grid (shifted by 1 cm) is still refused, naming both files
    shifted = affine.copy()
    shifted[:3, 3] += 10.0
    write_image(tmp_path / "shifted_labels.nii.gz", np.asarray(written.data), affine=shifted)
    assert main(["export", "--image", str(ct), "--labels", str(tmp_path / "shifted_labels.nii.gz"),
                 "--dataset", str(tmp_path / "ds3"), "--format", "nnunet"]) == 1
    assert "is not on the grid of" in capsys.readouterr().err
