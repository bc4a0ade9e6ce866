"""DICOM as a PACS exports it: one folder holding a scout, the axial series, a coronal reformat, a dose report
and a presentation state (files without suffix, a DICOMDIR, IM0001-style subfolders); MR echoes, time points
and repeated acquisitions sharing one series UID (classic and Enhanced); per-slice rescale, 12-bit signed and
unsigned pixels, InstanceNumber against position, RLE and JPEG 2000. Series are written with pydicom from a
crop of the radiomics lung CT; every read is compared with the NIfTI crop it came from."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from test_dicom import CT, SHAPE, lung_crop, shared_groups

from napari_attnseg.data import read_image
from napari_attnseg.errors import InputError

MR, ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.4.1"


@pytest.fixture(scope="module")
def lung():
    return lung_crop()  # (the crop test_dicom.py uses)



def dataset(sop=CT, modality="CT", series="1.2.3", rows=SHAPE[1], cols=SHAPE[2], signed=True):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("x", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = sop, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = modality, series, "1.2.9"
    ds.PatientName = "Doe^Jane"
    if rows:
        ds.Rows, ds.Columns = rows, cols
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, int(signed)
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    return ds


def axial(lung, folder: Path, series="1.2.3", name="IM{:04d}", number=2, rescale=None, bits=16, signed=True,
          extra=None, slices=None) -> list[Path]:
    """The crop as a classic axial CT series (files without suffix); ``rescale(k)`` -> (slope, intercept)."""
    crop, _, lps, spacing = lung
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for n, k in enumerate(range(SHAPE[0]) if slices is None else slices):
        ds = dataset(series=series, signed=signed)
        ds.SeriesNumber, ds.InstanceNumber, ds.ImageType = number, n + 1, ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [float(v) for v in lps[:3, 3] + lps[:3, 2] * k]
        ds.PixelSpacing, ds.SliceThickness = [spacing[1], spacing[2]], spacing[0]
        slope, intercept = rescale(k) if rescale else (1, -1024)
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        stored = np.round((crop[k].astype(np.float64) - intercept) / slope)
        if bits == 12:
            ds.BitsStored, ds.HighBit = 12, 11
            assert stored.min() >= (-2048 if signed else 0) and stored.max() < (2048 if signed else 4096)
        if extra:
            extra(ds, k)
        ds.PixelData = stored.astype(np.int16 if signed else np.uint16).tobytes()
        files.append(folder / name.format(n + 1))
        ds.save_as(str(files[-1]), enforce_file_format=True)
    return files


def others(folder: Path, coronal=True, scout=True):
    """What a PACS export puts beside the axial series: a two-image scout, a coronal reformat, a dose report,
    a presentation state and a DICOMDIR."""
    from pydicom.sequence import Sequence

    folder.mkdir(parents=True, exist_ok=True)
    for n in range(2 if scout else 0):
        ds = dataset(series="1.2.1", rows=16, cols=16)
        ds.SeriesNumber, ds.InstanceNumber, ds.ImageType = 1, n + 1, ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.ImageOrientationPatient = [[1, 0, 0, 0, 0, -1], [0, 1, 0, 0, 0, -1]][n]
        ds.ImagePositionPatient, ds.PixelSpacing = [-250.0, 0.0, -500.0], [5.0, 5.0]
        ds.PixelData = np.full((16, 16), 1000, np.int16).tobytes()
        ds.save_as(str(folder / f"SCOUT{n}"), enforce_file_format=True)
    for n in range(8 if coronal else 0):
        ds = dataset(series="1.2.4", rows=10, cols=20)
        ds.SeriesNumber, ds.InstanceNumber, ds.ImageType = 3, n + 1, ["DERIVED", "SECONDARY", "REFORMATTED"]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
        ds.ImagePositionPatient, ds.PixelSpacing = [-100.0, -80.0 + 3 * n, 0.0], [2.0, 0.7]
        ds.PixelData = np.zeros((10, 20), np.int16).tobytes()
        ds.save_as(str(folder / f"COR{n:03d}"), enforce_file_format=True)
    for sop, modality, name in (("1.2.840.10008.5.1.4.1.1.88.67", "SR", "DOSE_SR"),
                                ("1.2.840.10008.5.1.4.1.1.11.1", "PR", "GSPS")):
        ds = dataset(sop, modality, series=f"1.2.{len(name)}", rows=0)
        ds.save_as(str(folder / name), enforce_file_format=True)
    index = dataset("1.2.840.10008.1.3.10", "", series="", rows=0)
    index.DirectoryRecordSequence = Sequence([])
    index.save_as(str(folder / "DICOMDIR"), enforce_file_format=True)


def _same_as_nifti(vol, lung):
    crop, affine, _, spacing = lung
    np.testing.assert_array_equal(vol.data, crop)  # Hounsfield units, the NIfTI's values
    assert vol.spacing == pytest.approx(spacing)
    np.testing.assert_allclose(vol.affine, affine, atol=1e-5)


def test_a_pacs_folder_of_several_series_reads_the_axial_one_and_names_the_others(tmp_path, lung):
    """Was: 'holds 3 DICOM series ...; open one file of the series you want' for the commonest export, a
    scout and a reformat beside the axial series."""
    folder = tmp_path / "export"
    axial(lung, folder, name="CT{:04d}")
    others(folder)
    vol = read_image(folder)
    _same_as_nifti(vol, lung)
    note = vol.meta["warning"]
    assert "read series 2 (CT, axial, 6 files, e.g. CT0001)" in note
    assert "series 1 (CT, localizer, 2 files, e.g. SCOUT0)" in note and "series 3 (CT, coronal, 8 files" in note
    assert "open one file of the series you want" in note
    assert read_image(folder / "COR002").data.shape == (8, 10, 20)  # one file still picks its own series
    axial(lung, folder, series="1.2.5", name="LUNG{:04d}", number=4)  # a second axial series (another kernel)
    with pytest.raises(InputError, match=r"export holds 4 DICOM series .*2 of them are axial volumes, so none is "
                                         r"chosen for you: open one file of the series you want .*e\.g\. CT0001"):
        read_image(folder)


def test_a_cd_export_reads_its_series_from_the_subfolders_below_the_dicomdir(tmp_path, lung):
    """Was: refused, pointing at the first subfolder, which held the scout."""
    cd = tmp_path / "cd"
    others(cd, coronal=False, scout=False)  # DICOMDIR, dose report and presentation state on top
    others(cd / "S0001", coronal=False)
    axial(lung, cd / "S0002")
    for path in (cd, cd / "DICOMDIR"):
        vol = read_image(path)
        _same_as_nifti(vol, lung)
        assert "read series 2 (CT, axial, 6 files, e.g. S0002/IM0001)" in vol.meta["warning"]
        assert "S0001/SCOUT0" in vol.meta["warning"] and "series' own folder" in vol.meta["warning"]
    import pydicom

    for f in (cd / "S0001").iterdir():  # the scout of another examination: nothing is chosen across studies
        ds = pydicom.dcmread(f)
        ds.StudyInstanceUID = "1.2.8"
        ds.save_as(str(f))
    with pytest.raises(InputError, match=r"cd holds 2 DICOM series .*2 studies.*open the series' own folder .*S0002"):
        read_image(cd)


def test_echoes_time_points_and_repeated_scans_in_one_series_read_one_volume(tmp_path, lung):
    """Was: 'E1 and E2 lie at the same position ...: open one file of the series you want', which gave the same
    error: every file is of that series."""
    crop = lung[0]
    for key, values in (("EchoNumbers", (1, 2)), ("TemporalPositionIdentifier", (1, 2, 3)), ("AcquisitionNumber", (1, 2))):
        folder = tmp_path / key
        for v in values:
            def tag(ds, k, v=v, key=key):
                setattr(ds, key, v)
            axial(lung, folder, name=f"V{v}_{{:04d}}", extra=tag, slices=range(SHAPE[0]) if v == 1 else range(2, 6))
        vol = read_image(folder)
        _same_as_nifti(vol, lung)  # the first, complete volume
        assert f"{len(values)} volumes at the same slice positions" in vol.meta["warning"], key
        assert "V2_0001" in vol.meta["warning"]  # how to read another
        second = read_image(folder / "V2_0003")  # one file opened: its own volume, slices 2-5
        np.testing.assert_array_equal(second.data, crop[2:6])
        np.testing.assert_allclose(second.affine, vol.affine @ np.diag([1.0, 1, 1, 1]) + np.outer(vol.affine[:, 2] * 2, [0, 0, 0, 1]))


def test_an_enhanced_mr_file_of_two_echoes_reads_the_first(tmp_path, lung):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    crop, affine, lps, spacing = lung
    ds = dataset(ENHANCED_MR, "MR")
    ds.NumberOfFrames = 2 * SHAPE[0]
    ds.SharedFunctionalGroupsSequence = shared_groups(spacing)
    per = []
    for echo in (1, 2):
        for k in range(SHAPE[0]):
            item, pos, te = Dataset(), Dataset(), Dataset()
            pos.ImagePositionPatient = [float(v) for v in lps[:3, 3] + lps[:3, 2] * k]
            te.EffectiveEchoTime = 12.0 * echo
            item.PlanePositionSequence, item.MREchoSequence = Sequence([pos]), Sequence([te])
            per.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per)
    ds.PixelData = np.concatenate([crop, crop // 2]).astype(np.int16).tobytes()
    path = tmp_path / "mr" / "MR_ENH"
    path.parent.mkdir()
    ds.save_as(str(path), enforce_file_format=True)
    vol = read_image(path.parent)
    _same_as_nifti(vol, lung)
    assert "one per echo time (12.0, 24.0)" in vol.meta["warning"] and "dcm2niix" in vol.meta["warning"]


def test_true_duplicates_in_one_series_give_advice_that_works(tmp_path, lung):
    """Two copies of a scan, nothing telling them apart: the advice was to open one file of the series, which
    fails the same way."""
    folder = tmp_path / "dup"
    axial(lung, folder, name="A{:04d}")
    axial(lung, folder, name="B{:04d}")
    for path in (folder, folder / "B0002"):
        with pytest.raises(InputError, match=r"A0001 and B0001 of one series lie at the same position.*move one of "
                                             r"each pair out of the folder") as err:
            read_image(path)
        assert "open one file" not in str(err.value)


@pytest.mark.parametrize("variant", ["per-slice rescale", "12-bit signed", "12-bit unsigned", "instance reversed"])
def test_pixel_and_order_variants_give_the_nifti_values(tmp_path, lung, variant):
    """Already right (a check, not a fix): per-slice RescaleSlope/Intercept, BitsStored 12 signed and unsigned,
    InstanceNumber against position."""
    kwargs = {"per-slice rescale": {"rescale": lambda k: (0.5, -2000.0) if k % 2 else (1, -1024 - 7 * k)},
              "12-bit signed": {"bits": 12, "rescale": lambda k: (1, 1024)},
              "12-bit unsigned": {"bits": 12, "signed": False},
              "instance reversed": {"extra": lambda ds, k: setattr(ds, "InstanceNumber", 10 - k)}}[variant]
    axial(lung, tmp_path / "s", **kwargs)
    vol = read_image(tmp_path / "s")
    _same_as_nifti(vol, lung)
    assert "warning" not in vol.meta


def test_rle_and_jpeg2000_decode_to_the_nifti_values(tmp_path, lung):
    """Already right (a check): RLE natively, JPEG 2000 through Pillow's OpenJPEG when it has it."""
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless, RLELossless

    for f in axial(lung, tmp_path / "rle"):
        ds = pydicom.dcmread(f)
        ds.compress(RLELossless)
        ds.save_as(f)
    _same_as_nifti(read_image(tmp_path / "rle"), lung)
    from PIL import Image, features

    if not features.check("jpg_2000"):
        pytest.skip("Pillow without OpenJPEG")
    for f in axial(lung, tmp_path / "j2k", signed=False, rescale=lambda k: (1, -1024)):
        ds = pydicom.dcmread(f)
        out = io.BytesIO()
        Image.fromarray(ds.pixel_array.astype(np.uint16)).save(out, format="JPEG2000", irreversible=False, no_jp2=True)
        ds.PixelData = encapsulate([out.getvalue()])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
        ds.save_as(f)
    _same_as_nifti(read_image(tmp_path / "j2k"), lung)


def test_export_of_a_pacs_folder_says_which_series_it_took(tmp_path, lung, capsys):
    """`attnseg export --image FOLDER` read the axial series silently (predict says which series and which were left)."""
    import nibabel as nib

    from napari_attnseg.cli import main

    folder = tmp_path / "export"
    axial(lung, folder, name="CT{:04d}")
    others(folder)
    crop, affine, _, _ = lung
    labels = np.zeros(crop.shape[::-1], np.uint8)  # (i, j, k), as the NIfTI the series came from
    labels[5:9, 5:9, 2:4] = 1
    nib.save(nib.Nifti1Image(labels, affine), str(tmp_path / "mask.nii.gz"))
    rc = main(["export", "--image", str(folder), "--labels", str(tmp_path / "mask.nii.gz"), "--dataset",
               str(tmp_path / "ds"), "--format", "nnunet"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "read series 2 (CT, axial, 6 files" in err and "series 1 (CT, localizer" in err, err
