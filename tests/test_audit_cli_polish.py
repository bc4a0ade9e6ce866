"""Small defects of the command line a user met: a missing fine-tuning dataset said "is not a folder"; validation
slices past the volume's end did not say which slices are reviewed; an export of labels of another shape named
neither file; a NIfTI without voxel sizes printed nibabel's unnamed message twice and assumed 1 mm silently; the
qform of a gantry-tilted series written as NIfTI was an unsaid, needlessly rough approximation."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile

from napari_attnseg.cli import main
from napari_attnseg.data import read_image
from napari_attnseg.data.export import export_case

LUNG = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "radiomics" / "lung1_image.nii.gz"


def lung_crop(n: int, size: int) -> tuple[np.ndarray, float]:
    """``n`` slices of ``size`` x ``size`` from the shared lung CT (HU) and its pixel size; skips without it."""
    if not LUNG.exists():
        pytest.skip(f"{LUNG} is not here")
    vol = read_image(LUNG)
    return np.asarray(vol.data[20:20 + n, 200:200 + size, 200:200 + size]).astype(np.int16), float(vol.spacing[1])


def test_finetune_of_a_missing_dataset_says_it_does_not_exist_and_moves_no_model(tmp_path, capsys):
    out = tmp_path / "model"
    out.mkdir()
    (out / "best.safetensors").write_bytes(b"an earlier model")
    missing = tmp_path / "no" / "such"
    assert main(["finetune", str(missing), "--model", "nuclei-2d", "--out", str(out), "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert f"Dataset {missing} does not exist" in err and "attnseg export" in err, err
    assert (out / "best.safetensors").exists() and not (out / "replaced-1").exists()  # not moved away for nothing


def test_validation_slices_past_the_end_name_the_reviewed_slices(tmp_path, capsys):
    labels = np.zeros((48, 24, 24), np.uint8)
    labels[32:35, 8:16, 8:16] = 1
    image = np.random.default_rng(0).normal(0, 50, labels.shape).astype(np.float32) + 200 * labels
    export_case(image, labels, tmp_path / "ds", "nnunet", reviewed_slices=[20, 32, 34], spacing=(5.0, 0.7, 0.7))
    argv = ["finetune", str(tmp_path / "ds"), "--val-slices", "99", "--model", "nuclei-2d", "--out", str(tmp_path / "m")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "99 is outside case case_0000 (slices 0-47)" in err, err
    assert "reviewed slices are 20,32,34 (with foreground: 32,34)" in err, err
    assert not (tmp_path / "m").exists()


def test_export_of_labels_of_another_shape_names_both_files(tmp_path, capsys):
    tifffile.imwrite(tmp_path / "img.tif", np.random.default_rng(0).random((64, 60)).astype(np.float32))
    tifffile.imwrite(tmp_path / "lab.tif", np.ones((60, 64), np.uint8))
    argv = ["export", "--image", str(tmp_path / "img.tif"), "--labels", str(tmp_path / "lab.tif"),
            "--dataset", str(tmp_path / "ds"), "--format", "tiff"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"--labels {tmp_path / 'lab.tif'} has shape (60, 64)" in err, err
    assert f"--image {tmp_path / 'img.tif'} has shape (64, 60)" in err and "transposed" in err, err
    assert not (tmp_path / "ds").exists()


def test_a_nifti_without_voxel_sizes_gives_one_named_warning(tmp_path, capfd):
    crop, _ = lung_crop(6, 48)
    img = nib.Nifti1Image(crop.transpose(2, 1, 0), None)  # (qform and sform codes 0)
    img.header["pixdim"][1:4] = 0
    path = tmp_path / "nopix.nii.gz"
    nib.save(img, str(path))
    capfd.readouterr()
    vol = read_image(path)
    assert vol.spacing == (1.0, 1.0, 1.0)
    assert "voxel size of 0" in vol.meta["warning"] and "1 mm was assumed" in vol.meta["warning"]
    assert "pixdim[1,2,3] should be non-zero" not in capfd.readouterr().err  # nibabel's unnamed message: silenced
    assert main(["predict", str(path), "--model", "nuclei-2d", "--out", str(tmp_path / "out")]) == 0
    err = capfd.readouterr().err
    assert "pixdim[1,2,3] should be non-zero" not in err, err
    said = [line for line in err.splitlines() if "voxel size of 0" in line]
    assert len(said) == 1 and said[0].startswith(f"{path}: warning:") and "1 mm" in said[0], err


def tilted_series(folder: Path, n: int = 12, size: int = 48, tilt: float = 10.0, step: float = 5.0) -> Path:
    """A CT series of the lung crop with its gantry tilted by ``tilt`` degrees (planes turned about x, the table
    advancing ``step`` mm along z), written with pydicom."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    crop, ps = lung_crop(n, size)
    col = [0.0, float(np.cos(np.radians(tilt))), -float(np.sin(np.radians(tilt)))]
    series = generate_uid()
    folder.mkdir(parents=True)
    for k in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset("x", {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = "CT", series, "1.2.9"
        ds.Rows = ds.Columns = size
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.ImageType, ds.InstanceNumber = ["ORIGINAL", "PRIMARY", "AXIAL"], k + 1
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, *col]
        ds.ImagePositionPatient = [-40.0, -30.0, -200.0 + step * k]
        ds.PixelSpacing, ds.SliceThickness, ds.GantryDetectorTilt = [ps, ps], step, tilt
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.PixelData = (crop[k].astype(np.int32) + 1024).astype(np.int16).tobytes()
        ds.save_as(str(folder / f"IM{k + 1:04d}"), enforce_file_format=True)
    return folder


def test_a_tilted_series_written_as_nifti_says_how_far_off_its_qform_is(tmp_path, capsys):
    folder = tilted_series(tmp_path / "tilt")
    off = 5.0 * np.sin(np.radians(10.0)) * 11 / 2  # half the shear over 11 steps: 4.8 mm
    assert main(["predict", str(folder), "--model", "nuclei-2d", "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "sheared (gantry tilt of 10.0 degrees)" in err and "ITK-based viewers" in err, err
    assert f"the first and last {off:.1f} mm off" in err, err
    img = nib.load(str(tmp_path / "out" / "tilt_mask.nii.gz"))
    q, s = img.get_qform(), img.get_sform()
    np.testing.assert_allclose(s, read_image(folder).affine, atol=1e-4)  # the sform: exact
    gaps = [max(np.linalg.norm(((q - s) @ [i, j, k, 1])[:3]) for i in (0, 47) for j in (0, 47)) for k in range(12)]
    assert max(gaps) == pytest.approx(off, abs=0.05)  # (nibabel's own approximation: 5.5 mm)
    assert min(gaps) < 0.5 * off / 5  # the middle slices where the sform has them
    assert img.header.get_zooms()[2] == pytest.approx(5.0 * np.cos(np.radians(10.0)), abs=1e-4)  # between planes
