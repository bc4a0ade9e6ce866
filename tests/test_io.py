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


def write_dicom_series(folder: Path, volume: np.ndarray, spacing=(2.5, 0.8, 0.6), slope=2.0, intercept=-1024.0, shuffle=True,
                       series_uid=None, prefix=""):
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series = series_uid or generate_uid()
    order = np.random.default_rng(1).permutation(len(volume)) if shuffle else range(len(volume))
    for n, k in enumerate(order):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = pydicom.uid.CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"{prefix}{n:03d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
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
        stored = np.round((volume[k] - intercept) / slope).astype(np.uint16)
        ds.PixelData = stored.tobytes()
        ds.save_as(str(folder / f"{prefix}{n:03d}.dcm"), enforce_file_format=True)
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


def test_dicom_geometry_matches_its_nifti_conversion(tmp_path):
    hu = np.random.default_rng(2).integers(-1000, 1000, (6, 12, 10)).astype(np.float32)
    vol = read_image(write_dicom_series(tmp_path / "ct", hu, slope=1.0, intercept=-1024.0))
    assert vol.data.dtype == np.int16 and vol.meta["modality"] == "CT"
    np.testing.assert_array_equal(vol.data, hu)
    # voxel (i=column, j=row, k=slice) -> RAS mm: DICOM's LPS position with x and y negated
    np.testing.assert_allclose(vol.affine @ [0, 0, 0, 1], [100.0, 80.0, 40.0, 1])
    np.testing.assert_allclose(vol.affine @ [2, 3, 4, 1], [100.0 - 2 * 0.6, 80.0 - 3 * 0.8, 40.0 + 4 * 2.5, 1])
    out = write_image(tmp_path / "ct.nii.gz", vol.data, like=vol)
    nii = read_image(out)  # the NIfTI conversion displays exactly like the series
    np.testing.assert_array_equal(nii.data, vol.data)
    np.testing.assert_allclose(nii.affine, vol.affine)
    assert nii.spacing == pytest.approx(vol.spacing)
    assert not any(k in str(vol.meta) for k in ("Doe", "PID", "1970", "Hospital"))


def test_dicom_fractional_rescale_gives_float_hounsfield(tmp_path):
    hu = np.full((3, 8, 8), -500.5, np.float32)
    vol = read_image(write_dicom_series(tmp_path / "ct", hu, slope=0.5, intercept=-1024.0))
    assert vol.data.dtype == np.float32 and np.allclose(vol.data, -500.5)


def test_two_series_in_a_folder_are_listed_not_mixed(tmp_path):
    folder = tmp_path / "mixed"
    write_dicom_series(folder, np.zeros((3, 8, 8), np.float32), prefix="a")
    write_dicom_series(folder, np.full((4, 8, 8), 100, np.float32), prefix="b")
    with pytest.raises(InputError, match="2 DICOM series") as err:
        read_image(folder)
    assert "3 files" in str(err.value) and "4 files" in str(err.value)
    assert read_image(folder / "b000.dcm").data.shape == (4, 8, 8)  # one file picks its series
    assert (read_image(folder / "a001.dcm").data == 0).all()


def test_nifti_header_codes_and_scaling(tmp_path):
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    affine = np.array([[0, -1.0, 0, 5], [1.5, 0, 0, -2], [0, 0, 3.0, 1], [0, 0, 0, 1]])
    img = nib.Nifti1Image(data, affine)
    img.set_sform(affine, code=2)  # aligned space
    img.set_qform(affine, code=1)
    nib.save(img, tmp_path / "a.nii")
    vol = read_image(tmp_path / "a.nii")
    assert vol.data.dtype == np.int16 and vol.meta["nifti"]["sform_code"] == 2
    assert vol.spacing == pytest.approx((3.0, 1.0, 1.5))
    back = nib.load(write_image(tmp_path / "b.nii.gz", vol.data, like=vol))
    assert int(back.header["sform_code"]) == 2 and int(back.header["qform_code"]) == 1
    np.testing.assert_allclose(back.affine, affine)
    np.testing.assert_array_equal(np.asarray(back.dataobj), data)
    values = np.linspace(-5000, 90000, 24).reshape(2, 3, 4)
    scaled = nib.Nifti1Image(values, affine)
    scaled.set_data_dtype(np.int16)  # too wide for int16: nibabel stores a scl_slope / scl_inter
    nib.save(scaled, tmp_path / "s.nii.gz")
    s = read_image(tmp_path / "s.nii.gz")
    assert s.data.dtype.kind == "f" and s.meta["nifti"]["scl_slope"] not in (None, 1.0)
    np.testing.assert_allclose(s.data, values.transpose(2, 1, 0), atol=2.0)
    json_safe = __import__("json").dumps(vol.meta)  # layer metadata can be saved as JSON
    assert "nifti" in json_safe


def test_large_uncompressed_tiff_is_memory_mapped_copy_on_write(tmp_path, monkeypatch):
    import tifffile

    from napari_attnseg.data import tiff

    data = np.arange(4 * 64 * 64, dtype=np.uint16).reshape(4, 64, 64)
    tifffile.imwrite(tmp_path / "big.tif", data, imagej=True, resolution=(2.0, 2.0), metadata={"spacing": 3.0})
    monkeypatch.setattr(tiff, "MEMMAP_MIN_BYTES", 1024)
    vol = read_image(tmp_path / "big.tif")
    assert isinstance(vol.data, np.memmap) and vol.meta["memory_mapped"]
    assert vol.spacing == pytest.approx((3.0, 0.5, 0.5))
    vol.data[0, 0, 0] = 999  # painting into it never touches the file
    assert tifffile.imread(tmp_path / "big.tif")[0, 0, 0] == 0
    write_image(tmp_path / "small.tif", data)  # compressed: read into memory
    assert not isinstance(read_image(tmp_path / "small.tif").data, np.memmap)


def test_can_read_never_raises(tmp_path):
    from napari_attnseg.data import can_read

    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    write_image(tmp_path / "a.tif", np.zeros((4, 4), np.uint8))
    dcm = write_dicom_series(tmp_path / "dcm", np.zeros((2, 4, 4), np.float32))
    assert can_read(tmp_path / "a.tif") and can_read(dcm) and can_read(next(dcm.iterdir()))
    assert not can_read(tmp_path / "notes.txt") and not can_read(tmp_path / "empty")
    assert not can_read(tmp_path / "missing.nii.gz") and not can_read("\0bad")


def test_a_dots_per_inch_resolution_is_not_a_pixel_size_but_calibrations_are(tmp_path):
    """72 dpi (an image editor's or camera's default, TIFF unit INCH) is ignored: taken as 1/72 per pixel it
    made nuclei-2d shrink the image 72x (Dice 0.09). ImageJ calibrations, centimetre units and this
    package's own files (older ones were written with INCH) keep their spacing."""
    import tifffile

    from napari_attnseg.data.tiff import write_tiff

    img = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    tifffile.imwrite(tmp_path / "dpi.tif", img, resolution=(72, 72), resolutionunit="INCH")
    tifffile.imwrite(tmp_path / "untagged_unit.tif", img, resolution=(300, 300))
    tifffile.imwrite(tmp_path / "ij.tif", img, imagej=True, resolution=(1 / 0.65, 1 / 0.65), metadata={"unit": "um"})
    tifffile.imwrite(tmp_path / "cm.tif", img, resolution=(2.0, 4.0), resolutionunit="CENTIMETER")
    tifffile.imwrite(tmp_path / "old_ours.tif", img, resolution=(2.0, 4.0), metadata={"axes": "YX"})
    write_tiff(tmp_path / "ours.tif", img, (0.25, 0.5))
    assert read_image(tmp_path / "dpi.tif").spacing == (1.0, 1.0)
    assert read_image(tmp_path / "untagged_unit.tif").spacing == (1.0, 1.0)
    assert read_image(tmp_path / "ij.tif").spacing == pytest.approx((0.65, 0.65))
    assert read_image(tmp_path / "cm.tif").spacing == pytest.approx((0.25, 0.5))
    assert read_image(tmp_path / "old_ours.tif").spacing == pytest.approx((0.25, 0.5))
    assert read_image(tmp_path / "ours.tif").spacing == pytest.approx((0.25, 0.5))
