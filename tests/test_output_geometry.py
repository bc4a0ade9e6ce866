"""Every file `attnseg predict` and the napari writer produce opens aligned with its input in the next tool:
ITK-based viewers (3D Slicer, ITK-SNAP: the sform or the qform, by the codes), Fiji (the ImageJ
calibration of a TIFF), napari (this plugin's reader); and a mask saved from napari says which model made
it. Real files (crops of the radiomics CT, the nuclei image, DICOM series written with pydicom), checked
with nibabel / tifffile, not with the package's own readers."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile

from napari_attnseg.cli import main

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LUNG = DATA / "radiomics" / "lung1_image.nii.gz"
NUCLEI = DATA / "nuclei2d" / "image.tif"
PLUGIN = "napari-attnseg"


def need(*paths: Path):
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        pytest.skip(f"real data not available: {', '.join(missing)}")


def lung_crop(i0=200, j0=200, k0=20, n=(64, 64, 24)):
    """A crop of the lung CT as stored, (i, j, k), with the affine of its first voxel."""
    need(LUNG)
    src = nib.load(str(LUNG))
    data = np.asanyarray(src.dataobj)[i0:i0 + n[0], j0:j0 + n[1], k0:k0 + n[2]].astype(np.int16)
    affine = src.affine.copy()
    affine[:3, 3] = (src.affine @ [i0, j0, k0, 1])[:3]
    return data, affine


def rotation(degrees: float, axis: int) -> np.ndarray:
    t = np.deg2rad(degrees)
    a, b = [x for x in range(3) if x != axis]
    r = np.eye(4)
    r[a, a], r[a, b], r[b, a], r[b, b] = np.cos(t), -np.sin(t), np.sin(t), np.cos(t)
    return r


def save_nifti(path: Path, data, sform, qform=None, qcode=1, scode=1) -> Path:
    img = nib.Nifti1Image(data, sform)
    img.set_sform(sform, code=scode)
    img.set_qform(sform if qform is None else qform, code=qcode)
    nib.save(img, str(path))
    return path


def grid_of(amap: dict) -> np.ndarray:
    """The map's voxel (i, j, k) -> the image's voxel (i, j, k), from the record (array axes are (k, j, i))."""
    m = np.eye(4)
    m[:3, :3] = np.diag(list(reversed(amap["scale"])))
    m[:3, 3] = list(reversed(amap["translate"]))
    return m


def outputs(out: Path, stem: str) -> tuple[dict, list[tuple[str, np.ndarray]]]:
    """The record and (file, map-grid -> image-grid index change) of every image file it names."""
    record = json.loads((out / f"{stem}_predict.json").read_text())
    files = [(record["mask"], np.eye(4))]
    if record.get("probability"):
        files.append((record["probability"], np.eye(4)))
    files += [(m["file"], grid_of(m)) for m in record["attention"]]
    return record, files


def codes(img) -> tuple[int, int]:
    return int(img.header["qform_code"]), int(img.header["sform_code"])


# ------------------------------------------------------------------------------------------------
# 1. a NIfTI whose qform and sform differ (both codes > 0)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scode", [1, 2])
def test_every_output_keeps_the_inputs_qform_and_sform_on_its_own_grid(tmp_path, scode):
    """ITK takes the sform (code 1) or the qform (sform code 2-4): an output with the sform copied into its
    qform (the attention maps before; the mask too for sform code 1) lies elsewhere than the scan in the
    viewer that reads that qform (45 mm on lung1 with a 10 degree turn and a shift)."""
    data, sform = lung_crop()
    qform = rotation(10, 2) @ sform
    qform[:3, 3] += [20.0, -15.0, 7.0]
    src = save_nifti(tmp_path / "ct.nii.gz", data, sform, qform, qcode=1, scode=scode)
    out = tmp_path / "out"
    assert main(["predict", str(src), "--model", "brain-mri-3d", "--out", str(out), "--attention",
                 "--device", "cpu"]) == 0
    source = nib.load(str(src))
    record, files = outputs(out, "ct")
    assert len(files) == 5  # mask, probability, three attention levels
    for name, grid in files:
        img = nib.load(str(out / name))
        assert codes(img) == (1, scode), name
        for form in ("qform", "sform"):
            np.testing.assert_allclose(getattr(img, f"get_{form}")(), getattr(source, f"get_{form}")() @ grid,
                                       atol=2e-3, err_msg=f"{name} {form}")
        # each tool (qform or sform) finds the output's voxel centres on the same voxels of the scan
        np.testing.assert_allclose(np.linalg.inv(source.get_qform()) @ img.get_qform(),
                                   np.linalg.inv(source.get_sform()) @ img.get_sform(), atol=1e-4, err_msg=name)


def test_mni_codes_qform_0_sform_4_stay_on_the_maps(tmp_path):
    """A template-space file (MNI152: qform 0, sform 4) keeps its codes on every output, maps included
    (they were written as scanner space, codes 1/1)."""
    data, sform = lung_crop(n=(48, 48, 16))
    src = save_nifti(tmp_path / "mni.nii.gz", data, sform, qcode=0, scode=4)
    out = tmp_path / "out"
    assert main(["predict", str(src), "--model", "brain-mri-3d", "--out", str(out), "--attention", "--no-prob",
                 "--device", "cpu"]) == 0
    source = nib.load(str(src))
    for name, grid in outputs(out, "mni")[1]:
        img = nib.load(str(out / name))
        assert codes(img) == (0, 4), name
        np.testing.assert_allclose(img.get_sform(), source.get_sform() @ grid, atol=2e-3, err_msg=name)


def test_a_label_file_stored_in_another_orientation_keeps_its_own_qform_when_moved(tmp_path):
    """`attnseg export` and the napari reader move a mask stored in another orientation onto the image's grid;
    its differing qform was replaced by the sform, so a mask saved from it lay elsewhere in ITK."""
    from napari_attnseg.data import read_image, write_image
    from napari_attnseg.data.grid import on_image_grid

    data, sform = lung_crop(n=(32, 40, 12))
    qform = rotation(-8, 0) @ sform
    qform[:3, 3] += [5.0, 12.0, -3.0]
    image = save_nifti(tmp_path / "ct.nii.gz", data, sform, qform, qcode=1, scode=2)
    # the same grid stored with i and k swapped and j reversed (another tool's export)
    flipped = np.flip(data.transpose(2, 1, 0), axis=1)
    change = np.array([[0, 0, 1, 0], [0, -1, 0, data.shape[1] - 1], [1, 0, 0, 0], [0, 0, 0, 1]], float)
    labels = save_nifti(tmp_path / "ct_seg.nii.gz", (flipped > 0).astype(np.uint8), sform @ change, qform @ change,
                        qcode=1, scode=2)
    moved, note = on_image_grid(read_image(image), read_image(labels))
    assert note and "moved onto the image's grid" in note
    written = write_image(tmp_path / "moved_mask.nii.gz", moved.data, like=moved)
    img, source = nib.load(str(written)), nib.load(str(image))
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), (data > 0).astype(np.uint8))
    assert codes(img) == (1, 2)
    np.testing.assert_allclose(img.get_sform(), source.get_sform(), atol=1e-3)
    np.testing.assert_allclose(img.get_qform(), source.get_qform(), atol=1e-3)


# ------------------------------------------------------------------------------------------------
# 2. attention maps of a TIFF: Fiji's calibration
# ------------------------------------------------------------------------------------------------
def imagej_geometry(path: Path) -> tuple[str | None, list[float], list[float]]:
    """(unit, pixel size per array axis, origin in pixels per array axis) as ImageJ reads the file: only an
    ImageJ description is read (a JSON one is not), the resolution tags give x and y."""
    with tifffile.TiffFile(str(path)) as tif:
        ij = tif.imagej_metadata or {}
        page, ndim = tif.pages[0], len(tif.series[0].shape)
        x, y = (lambda r: r[1] / r[0])(page.tags["XResolution"].value), (lambda r: r[1] / r[0])(page.tags["YResolution"].value)
    size = ([float(ij.get("spacing", 1.0))] if ndim == 3 else []) + [y, x]
    origin = ([float(ij.get("zorigin", 0.0))] if ndim == 3 else []) + [float(ij.get("yorigin", 0.0)), float(ij.get("xorigin", 0.0))]
    return ij.get("unit"), size, origin


@pytest.mark.parametrize("kind", ["2d", "3d"])
def test_attention_tiffs_carry_the_images_calibration(tmp_path, kind):
    """A map opened alone in Fiji had no unit (and, 3D, its z spacing only in a JSON description Fiji does not
    read): it did not overlay the image's calibrated extent. Each map now lies on the image, in its unit."""
    if kind == "2d":
        need(NUCLEI)
        pixels = tifffile.imread(str(NUCLEI))[:128, :160]
        src = tmp_path / "cells.tif"
        tifffile.imwrite(src, pixels, imagej=True, resolution=(4.0, 4.0), metadata={"unit": "micron", "axes": "YX"})
        model, unit = "nuclei-2d", "micron"
    else:
        data, affine = lung_crop(n=(64, 64, 24))
        src = tmp_path / "ct.tif"
        zooms = np.linalg.norm(affine[:3, :3], axis=0)
        tifffile.imwrite(src, data.transpose(2, 1, 0).astype(np.float32), imagej=True,
                         resolution=(1 / zooms[0], 1 / zooms[1]), metadata={"unit": "mm", "axes": "ZYX", "spacing": float(zooms[2])})
        model, unit = "brain-mri-3d", "mm"
    out = tmp_path / "out"
    assert main(["predict", str(src), "--model", model, "--out", str(out), "--attention", "--device", "cpu"]) == 0
    record = json.loads((out / f"{src.stem}_predict.json").read_text())
    img_unit, img_size, img_origin = imagej_geometry(src)
    shape = tifffile.imread(str(src)).shape
    assert img_unit == unit and len(record["attention"]) == 3
    for amap in record["attention"]:
        f = out / amap["file"]
        map_unit, size, origin = imagej_geometry(f)
        n = tifffile.imread(str(f)).shape
        assert map_unit == unit, f.name
        for ax in range(len(shape)):
            np.testing.assert_allclose(size[ax], img_size[ax] * amap["scale"][ax], rtol=1e-5, err_msg=f.name)
            # ImageJ's calibrated x of a pixel edge: (pixel - origin) * size. The first and last map pixels are
            # centred where the record puts them on the image (image pixel translate + m * scale)
            for m in (0, n[ax] - 1):
                centre = (amap["translate"][ax] + m * amap["scale"][ax] + 0.5 - img_origin[ax]) * img_size[ax]
                np.testing.assert_allclose((m + 0.5 - origin[ax]) * size[ax], centre, rtol=1e-5, err_msg=f.name)


def test_a_map_that_does_not_start_at_the_images_corner_gets_an_imagej_origin(tmp_path):
    """A coarse map whose first pixel is centred on image pixel 0 (translate 0, scale 2), written beside an
    ImageJ image with an origin of its own: each map pixel's calibrated centre is the image's at that place."""
    from napari_attnseg.data import read_image, write_image
    from napari_attnseg.inference.outputs import map_origin
    from napari_attnseg.inference.prediction import AttentionMap

    src = tmp_path / "image.tif"
    tifffile.imwrite(src, np.zeros((20, 30), np.uint16), imagej=True, resolution=(2.0, 2.0),
                     metadata={"unit": "micron", "axes": "YX", "xorigin": 3.0})
    vol = read_image(src)
    amap = AttentionMap("level2", 0, np.ones((10, 15), np.float32), (2.0, 2.0), (0.0, 0.0))
    f = write_image(tmp_path / "map.tif", amap.data, like=vol, spacing=(1.0, 1.0), origin=map_origin(amap, vol.meta))
    unit, size, origin = imagej_geometry(f)
    _, img_size, img_origin = imagej_geometry(src)
    assert unit == "micron" and img_origin == [0.0, 3.0]
    for ax in range(2):
        for m in range(amap.data.shape[ax]):
            image_px = amap.translate[ax] + m * amap.scale[ax]  # the image pixel the map pixel is centred on
            np.testing.assert_allclose((m + 0.5 - origin[ax]) * size[ax], (image_px + 0.5 - img_origin[ax]) * img_size[ax])


# ------------------------------------------------------------------------------------------------
# DICOM input, oblique NIfTI
# ------------------------------------------------------------------------------------------------
def oblique_dicom_series(folder: Path, data: np.ndarray, spacing=(0.8, 0.6, 2.5)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``data`` (i, j, k) = (column, row, slice) as a CT series turned 20 degrees about two axes; returns the
    orientation (row direction, column direction: LPS) and the first slice's position."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    turn = (rotation(20, 0) @ rotation(-20, 2))[:3, :3]
    row_dir, col_dir = turn[:, 0], turn[:, 1]
    normal = np.cross(row_dir, col_dir)
    origin = np.array([-60.0, 40.0, 110.0])
    series, frame = generate_uid(), generate_uid()
    folder.mkdir(parents=True)
    for k in range(data.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(f"IM{k:04d}.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = "CT", series, frame
        ds.Rows, ds.Columns = data.shape[1], data.shape[0]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.ImageType, ds.InstanceNumber = ["ORIGINAL", "PRIMARY", "AXIAL"], k + 1
        ds.ImageOrientationPatient = [float(v) for v in (*row_dir, *col_dir)]
        ds.ImagePositionPatient = [float(v) for v in origin + k * spacing[2] * normal]
        ds.PixelSpacing, ds.SliceThickness = [spacing[1], spacing[0]], spacing[2]  # (row spacing, column spacing)
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.PixelData = np.ascontiguousarray((data[:, :, k].T.astype(np.int32) + 1024).clip(0, 65535)).astype(np.uint16).tobytes()
        ds.save_as(str(folder / f"IM{k:04d}.dcm"), enforce_file_format=True)
    return row_dir, col_dir, origin


def test_dicom_input_nifti_outputs_keep_the_patient_position(tmp_path, tiny_checkpoint):
    """Mask, probability and maps of an oblique DICOM series place each voxel centre where the DICOM tags do
    (ImagePositionPatient + i * column spacing * row direction + j * row spacing * column direction, LPS ->
    RAS), in qform and sform alike."""
    data, _ = lung_crop(n=(40, 32, 8))
    spacing = (0.8, 0.6, 2.5)
    row_dir, col_dir, origin = oblique_dicom_series(tmp_path / "series", data, spacing)
    normal = np.cross(row_dir, col_dir)
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "series"), "--model", str(tiny_checkpoint(dims=3)), "--out", str(out),
                 "--attention", "--device", "cpu"]) == 0
    _, files = outputs(out, "series")
    assert len(files) >= 3
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    for name, grid in files:
        img = nib.load(str(out / name))
        assert codes(img) == (1, 1), name
        n = img.shape[:3]
        for corner in [(0, 0, 0), (n[0] - 1, 0, 0), (0, n[1] - 1, n[2] - 1), (n[0] - 1, n[1] - 1, n[2] - 1)]:
            i, j, k = (grid @ [*corner, 1.0])[:3]  # on the image's grid
            expected = lps_to_ras @ (origin + i * spacing[0] * row_dir + j * spacing[1] * col_dir + k * spacing[2] * normal)
            for form in (img.get_qform(), img.get_sform()):
                np.testing.assert_allclose((form @ [*corner, 1.0])[:3], expected, atol=2e-3, err_msg=f"{name} {corner}")
    mask = nib.load(str(out / "series_mask.nii.gz"))
    assert mask.shape == data.shape


def test_an_oblique_nifti_keeps_its_affine_through_predict(tmp_path, tiny_checkpoint):
    data, sform = lung_crop(n=(40, 32, 12))
    oblique = rotation(25, 0) @ rotation(15, 1) @ sform
    src = save_nifti(tmp_path / "oblique.nii.gz", data, oblique)
    out = tmp_path / "out"
    assert main(["predict", str(src), "--model", str(tiny_checkpoint(dims=3)), "--out", str(out), "--attention",
                 "--device", "cpu"]) == 0
    source = nib.load(str(src))
    for name, grid in outputs(out, "oblique")[1]:
        img = nib.load(str(out / name))
        assert codes(img) == (1, 1), name
        for form in ("qform", "sform"):
            np.testing.assert_allclose(getattr(img, f"get_{form}")(), source.affine @ grid, atol=2e-3, err_msg=name)


# ------------------------------------------------------------------------------------------------
# napari: File > Save of a mask (this plugin's writer)
# ------------------------------------------------------------------------------------------------
@pytest.mark.gui
def test_a_mask_saved_in_napari_keeps_its_qform_and_the_model_that_made_it(make_napari_viewer, tmp_path,
                                                                            tiny_checkpoint):
    """File > Save of a predicted mask wrote no trace of the model (the CLI's record has it): a later export
    or fine-tune could not tell. The NIfTI and TIFF written now carry it (read back as meta["model_info"],
    and as the layer's provenance when reopened); an oblique file with a differing qform keeps both forms."""
    from napari_attnseg.checkpoint import model_identity
    from napari_attnseg.data import read_image

    data, sform = lung_crop(n=(40, 32, 12))
    oblique = rotation(25, 0) @ sform
    qform = rotation(-5, 2) @ oblique
    qform[:3, 3] += [4.0, 0.0, -9.0]
    src = save_nifti(tmp_path / "ct.nii.gz", data, oblique, qform, qcode=1, scode=1)
    model = tiny_checkpoint(dims=3)
    out = tmp_path / "out"
    assert main(["predict", str(src), "--model", str(model), "--out", str(out), "--device", "cpu"]) == 0
    viewer = make_napari_viewer()
    layers = viewer.open(str(out / "ct_predict.json"), plugin=PLUGIN)
    mask = next(ly for ly in layers if ly._type_string == "labels")
    expected = model_identity(str(model))
    assert model_identity(read_image(out / "ct_mask.nii.gz").meta["model_info"]) == expected  # the CLI's mask too
    mask.data[0, :4, :4] = 1  # a correction
    for name in ("corrected_mask.nii.gz", "corrected_mask.tif"):
        saved = tmp_path / name
        mask.save(str(saved), plugin=PLUGIN)
        info = read_image(saved).meta.get("model_info")
        assert info is not None and model_identity(info) == expected, name
        assert info["checkpoint"] == str(model)
    img, source = nib.load(str(tmp_path / "corrected_mask.nii.gz")), nib.load(str(src))
    assert codes(img) == (1, 1)
    np.testing.assert_allclose(img.get_sform(), source.get_sform(), atol=1e-3)
    np.testing.assert_allclose(img.get_qform(), source.get_qform(), atol=1e-3)
    back = viewer.open(str(tmp_path / "corrected_mask.nii.gz"), plugin=PLUGIN)[0]
    assert back._type_string == "labels"
    assert model_identity(back.metadata["attnseg"]) == expected and back.metadata["attnseg"]["checkpoint"] == str(model)
