"""Readers and writers on real files: NIfTI, TIFF and a synthetic DICOM series written with pydicom."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_attnseg.data import read_image, write_image
from napari_attnseg.errors import InputError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_nifti_axis_convention_and_round_trip(tmp_path):
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)  # stored (i, j, k)
    affine = np.array([[-0.7, 0, 0, 10], [0, 0.8, 0, -5], [0, 0, 2.5, 3], [0, 0, 0, 1]])
    src = tmp_path / "a.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), src)
    vol = read_image(src)
    assert vol.data.shape == (6, 5, 4)  # (k, j, i): slice n is k = n
    np.testing.assert_array_equal(vol.data[2], data[:, :, 2].T)
    assert vol.spacing == pytest.approx((2.5, 0.8, 0.7))
    out = write_image(tmp_path / "b.nii.gz", vol.data, like=vol)
    back = nib.load(out)
    np.testing.assert_array_equal(np.asarray(back.dataobj), data)
    np.testing.assert_allclose(back.affine, affine)


@pytest.mark.skipif(not (SHARED / "radiomics").exists(), reason="shared data not present")
def test_real_ct_reads_in_hounsfield_with_spacing():
    vol = read_image(SHARED / "radiomics" / "lung1_image.nii.gz")
    assert vol.data.shape == (48, 512, 512) and vol.data.dtype == np.int16
    assert vol.spacing == pytest.approx((5.0, 0.5703125, 0.5703125))
    assert vol.data.min() == -1024


def test_tiff_round_trip_keeps_spacing(tmp_path):
    data = np.random.default_rng(0).integers(0, 3, (7, 20, 30)).astype(np.uint8)
    write_image(tmp_path / "m.tif", data, spacing=(3.0, 0.5, 0.25))
    vol = read_image(tmp_path / "m.tif")
    np.testing.assert_array_equal(vol.data, data)
    assert vol.spacing == pytest.approx((3.0, 0.5, 0.25))


def write_dicom_series(folder: Path, volume: np.ndarray, spacing=(2.5, 0.8, 0.6), slope=2.0, intercept=-1024.0, shuffle=True):
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series = generate_uid()
    order = np.random.default_rng(1).permutation(len(volume)) if shuffle else range(len(volume))
    for n, k in enumerate(order):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = pydicom.uid.CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"{n:03d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.PatientName = "Doe^Jane"
        ds.PatientID = "PID-12345"
        ds.PatientBirthDate = "19700101"
        ds.StudyDate = "20240102"
        ds.InstitutionName = "General Hospital"
        ds.Modality = "CT"
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-100.0, -80.0, 40.0 + k * spacing[0]]
        ds.PixelSpacing = [spacing[1], spacing[2]]
        ds.SliceThickness = spacing[0]
        ds.InstanceNumber = int(k) + 1
        ds.Rows, ds.Columns = volume.shape[1:]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 0
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        stored = ((volume[k] - intercept) / slope).astype(np.uint16)
        ds.PixelData = stored.tobytes()
        ds.save_as(str(folder / f"{n:03d}.dcm"), enforce_file_format=True)
    return folder


def test_dicom_series_sorted_by_position_in_hounsfield(tmp_path):
    hu = (np.arange(5)[:, None, None] * 100 - 1000 + np.zeros((5, 12, 10))).astype(np.float32)
    folder = write_dicom_series(tmp_path / "ct", hu)
    vol = read_image(folder)
    assert vol.data.shape == (5, 12, 10)
    np.testing.assert_array_equal(vol.data[:, 0, 0], [-1000, -900, -800, -700, -600])
    assert vol.spacing == pytest.approx((2.5, 0.8, 0.6))
    # one file of the series opens the whole series
    assert read_image(next(folder.iterdir())).data.shape == (5, 12, 10)
    assert not any("Doe" in str(v) for v in vol.meta.values())


def test_foreign_and_missing_files_are_clear_errors(tmp_path):
    bogus = tmp_path / "x.nii.gz"
    bogus.write_text("not nifti")
    with pytest.raises(InputError, match="x.nii.gz"):
        read_image(bogus)
    with pytest.raises(InputError, match="does not exist"):
        read_image(tmp_path / "missing.tif")
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(InputError, match="unsupported format"):
        read_image(other)
