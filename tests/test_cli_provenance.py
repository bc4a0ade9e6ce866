"""`attnseg suggest --uncertainty` writes its map with the input's header (qform, sform and codes), and
`attnseg export` records the model saved with a mask when no `--model` is given: the CLI follow-ups of
the output-geometry audit, on small real files and the bundled brain model."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np

from napari_attnseg.cli import main
from napari_attnseg.data.io import read_image, write_image


def _scan_with_differing_qform(path):
    """A small NIfTI whose sform (code 2, aligned) and qform (code 1, shifted 20 mm) differ."""
    data = np.random.default_rng(0).normal(100, 20, (40, 40, 8)).astype(np.float32)
    sform = np.diag([2.0, 2.0, 2.0, 1.0])
    qform = sform.copy()
    qform[:3, 3] = (20.0, -15.0, 7.0)
    img = nib.Nifti1Image(data, sform)
    img.set_sform(sform, code=2)
    img.set_qform(qform, code=1)
    nib.save(img, path)
    return path, sform, qform


def test_suggest_uncertainty_map_keeps_the_inputs_qform_and_codes(tmp_path, capsys):
    src, sform, qform = _scan_with_differing_qform(tmp_path / "scan.nii.gz")
    unc = tmp_path / "unc.nii.gz"
    assert main(["suggest", str(src), "--model", "brain-mri-3d", "--no-flips", "--device", "cpu", "-n", "2",
                 "--uncertainty", str(unc)]) == 0
    capsys.readouterr()
    out = nib.load(unc)
    assert out.shape == (40, 40, 8)
    assert int(out.header["sform_code"]) == 2 and int(out.header["qform_code"]) == 1
    np.testing.assert_allclose(out.get_sform(), sform, atol=1e-4)
    np.testing.assert_allclose(out.get_qform(), qform, atol=1e-4)  # was the sform, code 1: 20 mm off in ITK


def test_export_records_the_model_saved_with_the_mask(tmp_path, capsys):
    src, _, _ = _scan_with_differing_qform(tmp_path / "scan.nii.gz")
    image = read_image(src)
    mask = np.zeros(image.data.shape, np.uint8)
    mask[3, 10:20, 10:20] = 1
    info = {"model": "brain-mri-3d", "weights_sha256": "ab" * 32, "checkpoint": None}
    labels = tmp_path / "mask.nii.gz"
    write_image(labels, mask, like=image, model_info=info)
    assert read_image(labels).meta["model_info"]["model"] == "brain-mri-3d"

    assert main(["export", "--image", str(src), "--labels", str(labels), "--dataset", str(tmp_path / "ds"),
                 "--format", "nnunet", "--foreground"]) == 0
    err = capsys.readouterr().err
    assert "recording the model saved with the mask: brain-mri-3d" in err
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    (case,) = manifest["cases"]
    assert case["model"] == {"model": "brain-mri-3d", "weights_sha256": "ab" * 32}

    # --model overrides what the mask carries
    assert main(["export", "--image", str(src), "--labels", str(labels), "--dataset", str(tmp_path / "ds2"),
                 "--format", "nnunet", "--foreground", "--model", "nuclei-2d"]) == 0
    case = json.loads((tmp_path / "ds2" / "manifest.json").read_text())["cases"][0]
    assert case["model"]["model"] == "nuclei-2d"
