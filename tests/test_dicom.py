"""DICOM reader edge cases from real-world exports: enhanced (functional groups), gantry tilt, scouts in
the series, missing positions, radiographs (MONOCHROME1), compressed pixel data, odd folders, colour,
memory. Every series is written with pydicom into tmp_path (CT values from a crop of the radiomics CT)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from napari_attnseg.data import read_image
from napari_attnseg.data.dicom import is_dicom_path
from napari_attnseg.errors import InputError

LUNG = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "radiomics" / "lung1_image.nii.gz"
CT, ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1"
I0, J0, K0 = 200, 180, 20  # the crop of the lung CT: (i, j, k) start
SHAPE = (6, 24, 20)  # (k, j, i)


def dataset(sop=CT, modality="CT", series=None, rows=8, cols=6):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("x.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = sop, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID = modality, series or generate_uid()
    ds.PatientName = "Doe^Jane"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    return ds


def save(ds, path: Path, pixels: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if pixels is not None:
        ds.PixelData = np.ascontiguousarray(pixels).astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


def ct_series(folder: Path, n=5, rows=8, cols=6, dz=2.5, series=None, extra=None, values=None) -> list[Path]:
    """A classic CT series: slice k at z = 40 + k*dz, value 10*k HU (intercept -1024)."""
    from pydicom.uid import generate_uid

    series = series or generate_uid()
    files = []
    for k in range(n):
        ds = dataset(series=series, rows=rows, cols=cols)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-100.0, -80.0, 40.0 + k * dz]
        ds.SliceLocation = 40.0 + k * dz
        ds.PixelSpacing, ds.SliceThickness = [0.8, 0.6], dz
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        if extra:
            extra(ds, k)
        pix = values[k] if values is not None else np.full((rows, cols), 1024 + 10 * k)
        files.append(save(ds, folder / f"IM{k + 1:04d}.dcm", pix))
    return files


@pytest.fixture(scope="module")
def lung():
    return lung_crop()


def lung_crop():
    """A 6 x 24 x 20 crop of the shared lung CT: (crop, its RAS affine, the LPS one, spacing); skips without it."""
    if not LUNG.exists():
        pytest.skip(f"{LUNG} is not here")
    vol = read_image(LUNG)
    k, j, i = SHAPE
    crop = np.asarray(vol.data[K0:K0 + k, J0:J0 + j, I0:I0 + i]).astype(np.int16)
    affine = np.array(vol.affine, float)
    affine[:, 3] = affine @ [I0, J0, K0, 1]
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    return crop, affine, lps, vol.spacing


def shared_groups(spacing):
    """An Enhanced file's shared functional groups: axial orientation, the crop's pixel spacing and thickness."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    shared, measures, orient = Dataset(), Dataset(), Dataset()
    measures.PixelSpacing, measures.SliceThickness = [spacing[1], spacing[2]], spacing[0]
    orient.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared.PixelMeasuresSequence, shared.PlaneOrientationSequence = Sequence([measures]), Sequence([orient])
    return Sequence([shared])


def enhanced(lung, first: int, count: int, series: str):
    """An Enhanced CT holding frames first..first+count-1 of the crop; geometry and rescale only in the
    functional groups (orientation, spacing shared; position and rescale per frame)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    crop, _, lps, spacing = lung
    ds = dataset(ENHANCED_CT, series=series, rows=SHAPE[1], cols=SHAPE[2])
    ds.NumberOfFrames, ds.InstanceNumber = count, first + 1
    ds.SharedFunctionalGroupsSequence = shared_groups(spacing)
    per = []
    for k in range(first, first + count):
        item, pos, pvt = Dataset(), Dataset(), Dataset()
        pos.ImagePositionPatient = [float(v) for v in lps[:3, 3] + lps[:3, 2] * k]
        pvt.RescaleSlope, pvt.RescaleIntercept, pvt.RescaleType = 1, -1024 - k, "HU"  # per-frame rescale
        item.PlanePositionSequence, item.PixelValueTransformationSequence = Sequence([pos]), Sequence([pvt])
        per.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per)
    pixels = np.stack([crop[k].astype(np.int32) + 1024 + k for k in range(first, first + count)])
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    return ds


def test_enhanced_ct_one_frame_per_file_uses_the_functional_groups(tmp_path, lung):
    from pydicom.uid import generate_uid

    crop, affine, _, spacing = lung
    series = generate_uid()
    for k in np.random.default_rng(0).permutation(SHAPE[0]):
        save(enhanced(lung, int(k), 1, series), tmp_path / "enh" / f"IM{k:03d}.dcm")
    vol = read_image(tmp_path / "enh")
    np.testing.assert_array_equal(vol.data, crop)  # Hounsfield units, not raw values
    assert vol.spacing == pytest.approx(spacing)  # not 1 mm
    np.testing.assert_allclose(vol.affine, affine, atol=1e-6)  # not the identity
    assert "warning" not in vol.meta


def test_a_multiframe_enhanced_file_reads_like_its_classic_series(tmp_path, lung):
    from pydicom.uid import generate_uid

    crop, affine, _, spacing = lung
    path = save(enhanced(lung, 0, SHAPE[0], generate_uid()), tmp_path / "enh" / "enhanced_ct.dcm")
    for p in (path, path.parent):
        vol = read_image(p)
        np.testing.assert_array_equal(vol.data, crop)
        assert vol.spacing == pytest.approx(spacing)
        np.testing.assert_allclose(vol.affine, affine, atol=1e-6)


def test_gantry_tilt_gives_an_exact_sheared_affine(tmp_path):
    tilt = np.radians(10)
    col = [0.0, np.cos(tilt), -np.sin(tilt)]  # image planes tilted about x

    def tilted(ds, k):
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, *col]
        ds.ImagePositionPatient = [-100.0, -80.0, 40.0 + 5.0 * k]  # the table advances along z

    files = ct_series(tmp_path / "tilt", n=9, dz=5.0, extra=tilted)
    vol = read_image(tmp_path / "tilt")
    assert "sheared" in vol.meta["warning"]
    for k, _ in enumerate(files):  # every slice where its file says, the last one included (was 41 mm off)
        for i, j in ((0, 0), (5, 7)):
            lps = np.array([-100.0, -80.0, 40.0 + 5.0 * k]) + i * 0.6 * np.array([1, 0, 0]) + j * 0.8 * np.array(col)
            np.testing.assert_allclose(vol.affine @ [i, j, k, 1], [-lps[0], -lps[1], lps[2], 1], atol=1e-6)
    assert vol.spacing[0] == pytest.approx(5.0 * np.cos(tilt))  # between the slice planes


def test_scouts_in_the_series_are_left_out_and_named(tmp_path):
    folder = tmp_path / "ct"
    files = ct_series(folder)
    import pydicom

    scout = dataset(series=pydicom.dcmread(files[0]).SeriesInstanceUID)
    scout.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    scout.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    scout.ImagePositionPatient = [-250.0, 0.0, -500.0]
    scout.PixelSpacing = [1.0, 1.0]
    save(scout, folder / "ZZ_scout.dcm", np.full((8, 6), 1024))
    for p in (folder, files[2]):
        vol = read_image(p)
        assert vol.data.shape == (5, 8, 6)
        np.testing.assert_array_equal(vol.data[:, 0, 0], [0, 10, 20, 30, 40])
        assert "left out 1 image" in vol.meta["warning"] and "ZZ_scout.dcm" in vol.meta["warning"]


def test_mixed_sizes_and_duplicates_name_the_files(tmp_path):
    ct_series(tmp_path / "sizes", n=3)
    ds = dataset(rows=10, cols=6)
    import pydicom

    ds.SeriesInstanceUID = pydicom.dcmread(tmp_path / "sizes" / "IM0001.dcm").SeriesInstanceUID
    ds.ImageOrientationPatient, ds.ImagePositionPatient = [1, 0, 0, 0, 1, 0], [-100.0, -80.0, 90.0]
    save(ds, tmp_path / "sizes" / "odd.dcm", np.zeros((10, 6)))
    with pytest.raises(InputError, match=r"odd\.dcm"):
        read_image(tmp_path / "sizes")
    files = ct_series(tmp_path / "dup", n=3)
    ds = pydicom.dcmread(files[1])
    ds.SOPInstanceUID = "1.2.3.4"
    ds.save_as(str(tmp_path / "dup" / "copy.dcm"))
    with pytest.raises(InputError, match=r"(IM0002\.dcm and copy\.dcm|copy\.dcm and IM0002\.dcm).*same position"):
        read_image(tmp_path / "dup")


def test_missing_positions_use_slice_location_or_spacing_and_say_so(tmp_path):
    def no_position(ds, k):
        del ds.ImagePositionPatient

    ct_series(tmp_path / "loc", dz=3.0, extra=no_position)
    vol = read_image(tmp_path / "loc")
    assert vol.spacing == pytest.approx((3.0, 0.8, 0.6))  # not 1 mm
    np.testing.assert_array_equal(vol.data[:, 0, 0], [0, 10, 20, 30, 40])
    assert "position in space is unknown" in vol.meta["warning"]

    def instance_only(ds, k):
        del ds.ImagePositionPatient, ds.SliceLocation
        ds.SpacingBetweenSlices = 4.0
        ds.InstanceNumber = 5 - k  # reversed in the file names

    ct_series(tmp_path / "inst", extra=instance_only)
    vol = read_image(tmp_path / "inst")
    assert vol.spacing[0] == pytest.approx(4.0)
    np.testing.assert_array_equal(vol.data[:, 0, 0], [40, 30, 20, 10, 0])  # by InstanceNumber
    assert "position in space is unknown" in vol.meta["warning"] and "SpacingBetweenSlices" in vol.meta["warning"]


def test_a_monochrome1_radiograph_is_2d_inverted_with_its_detector_spacing(tmp_path):
    shown = np.add.outer(np.arange(8) * 100, np.arange(6) * 10)  # bright = dense, as displayed
    ds = dataset("1.2.840.10008.5.1.4.1.1.1.1", "DX")
    ds.PhotometricInterpretation, ds.BitsStored, ds.HighBit = "MONOCHROME1", 12, 11
    ds.ImagerPixelSpacing = [0.143, 0.15]
    path = save(ds, tmp_path / "dx" / "chest.dcm", 4095 - shown)
    vol = read_image(path)
    assert vol.data.shape == (8, 6) and vol.meta["axis_order"] == "ji"
    assert vol.spacing == pytest.approx((0.143, 0.15))
    stored = 4095 - shown
    np.testing.assert_array_equal(vol.data, stored.max() + stored.min() - stored)  # max + min - value
    assert np.corrcoef(vol.data.ravel(), shown.ravel())[0, 1] > 0.999  # bright = dense again
    assert "MONOCHROME1" in vol.meta["photometric"]
    out = tmp_path / "dx.nii.gz"  # a 2D image writes and reads back as 2D
    from napari_attnseg.data import write_image

    assert read_image(write_image(out, vol.data, like=vol)).data.shape == (8, 6)


def test_compressed_pixels_without_a_decoder_say_what_to_install(tmp_path):
    import importlib.util

    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGLossless

    if any(importlib.util.find_spec(m) for m in ("pylibjpeg", "gdcm")):
        pytest.skip("a JPEG decoder is installed")
    ds = dataset()
    ds.file_meta.TransferSyntaxUID = JPEGLossless
    ds.ImageOrientationPatient, ds.ImagePositionPatient = [1, 0, 0, 0, 1, 0], [0.0, 0.0, 0.0]
    ds.PixelData = encapsulate([b"\xff\xd8" + b"\0" * 64 + b"\xff\xd9"])
    ds["PixelData"].VR = "OB"
    path = tmp_path / "jpeg" / "IM0001.dcm"
    path.parent.mkdir()
    ds.save_as(str(path), enforce_file_format=True)
    with pytest.raises(InputError, match=r"IM0001\.dcm.*pip install pylibjpeg pylibjpeg-libjpeg .*dcm2niix"):
        read_image(path.parent)


def test_folders_without_preamble_with_appledouble_or_a_dicomdir(tmp_path):
    import pydicom

    raw = ct_series(tmp_path / "raw")
    for f in raw:  # no preamble, no meta header, implicit VR: an old PACS/CD export
        ds = pydicom.dcmread(f)
        del ds.file_meta
        ds.preamble = None
        with open(f, "wb") as fh:
            pydicom.dcmwrite(fh, ds, implicit_vr=True, little_endian=True, enforce_file_format=False)
        f.rename(f.with_suffix(""))
    assert is_dicom_path(tmp_path / "raw")
    np.testing.assert_array_equal(read_image(tmp_path / "raw").data[:, 0, 0], [0, 10, 20, 30, 40])

    mac = tmp_path / "mac"
    ct_series(mac)
    for n in range(60):  # a Mac-copied stick: ._ companions sort first
        (mac / f"._IM{n:04d}.dcm").write_bytes(b"\x00\x05\x16\x07" + b"\0" * 200)
    assert is_dicom_path(mac)
    assert read_image(mac).data.shape == (5, 8, 6)

    cd = tmp_path / "cd"
    ct_series(cd / "DICOM" / "PT0" / "SE1")
    ct_series(cd / "DICOM" / "PT0" / "SE2")
    index = dataset()  # stands in for the DICOMDIR: a DICOM file that is no image
    del index.Rows, index.Columns, index.BitsAllocated
    save(index, cd / "DICOMDIR")
    with pytest.raises(InputError, match=r"open the series' own folder.*SE1"):
        read_image(cd)


def test_colour_images_name_their_sample_axis(tmp_path):
    from napari_attnseg.cohort.inputs import pick_channel

    rgb = np.random.default_rng(0).integers(0, 255, (8, 6, 3)).astype(np.uint8)
    ds = dataset("1.2.840.10008.5.1.4.1.1.7", "OT")
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = rgb.tobytes()
    path = tmp_path / "sc" / "screen.dcm"
    path.parent.mkdir()
    ds.save_as(str(path), enforce_file_format=True)
    vol = read_image(path)
    assert vol.data.shape == (8, 6, 3) and vol.meta["axes"] == "YXS"
    np.testing.assert_array_equal(vol.data, rgb)
    green = pick_channel(vol, 1, 1, path)
    np.testing.assert_array_equal(green.data, rgb[..., 1])
    with pytest.raises(InputError, match="3 channels"):
        pick_channel(vol, None, 1, path)


def test_reading_keeps_about_one_copy_in_memory(tmp_path):
    n, size = 40, 128
    values = np.random.default_rng(0).integers(0, 2000, (n, size, size))
    ct_series(tmp_path / "ct", n=n, rows=size, cols=size, values=values)
    tracemalloc.start()
    try:
        vol = read_image(tmp_path / "ct")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(vol.data, values - 1024)
    assert peak < 2.5 * vol.data.nbytes, f"peak {peak / 1e6:.1f} MB for a {vol.data.nbytes / 1e6:.1f} MB volume"
