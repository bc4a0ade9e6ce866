"""Inputs the audit found mishandled: few but large instance ids taken as hundreds of classes, probability
maps as a prediction or an evaluation reference, a DICOM series with missing slices placed on the mean
step, and a pickled PyTorch file called "truncated or corrupt". Real files, tiny arrays."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from napari_attnseg import create_model, save_model
from napari_attnseg.cli import main
from napari_attnseg.data import read_image
from napari_attnseg.data.export import export_case
from napari_attnseg.errors import CheckpointError, InputError


def _image(shape=(40, 40)) -> np.ndarray:
    return np.random.default_rng(0).normal(100, 10, shape).astype(np.float32)


def _objects(ids) -> np.ndarray:
    """One 3x3 object per id, on a 40x40 grid."""
    labels = np.zeros((40, 40), np.uint16)
    for n, v in enumerate(ids):
        y, x = divmod(n, 8)
        labels[y * 5:y * 5 + 3, x * 5:x * 5 + 3] = v
    return labels


def _error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert f"attnseg {command}: error: " in err and "Traceback" not in err, err
    return err


# 1. few but large instance ids -------------------------------------------------------------------------


@pytest.mark.parametrize("ids", [list(range(1, 12)) + [178], [300, 1000]])
def test_few_large_instance_ids_are_refused_without_names(tmp_path, ids):
    labels = _objects(ids)
    with pytest.raises(InputError, match=f"up to {max(ids)}.*instance ids.*--foreground.*--label-names"):
        export_case(_image(), labels, tmp_path / "ds", "tiff")
    assert not (tmp_path / "ds").exists()
    rec = export_case(_image(), labels, tmp_path / "ds", "tiff", foreground=True)
    assert rec.label_names == ["background", "foreground"]


def test_cli_refuses_large_ids_and_writes_nothing(tmp_path, capsys):
    tifffile.imwrite(tmp_path / "img.tif", _image())
    tifffile.imwrite(tmp_path / "lab.tif", _objects(list(range(1, 12)) + [178]))
    args = ["export", "--image", str(tmp_path / "img.tif"), "--labels", str(tmp_path / "lab.tif"),
            "--dataset", str(tmp_path / "ds"), "--format", "tiff"]
    assert main(args) == 1
    assert "179 classes" in _error(capsys, "export")
    assert not (tmp_path / "ds").exists()
    assert main([*args, "--foreground"]) == 0
    assert json.loads((tmp_path / "ds" / "manifest.json").read_text())["label_names"] == ["background", "foreground"]


def test_a_few_ordinary_classes_with_a_gap_get_a_note(tmp_path):
    rec = export_case(_image(), _objects([1, 7]), tmp_path / "gap", "tiff")
    assert len(rec.label_names) == 8
    assert any("no voxel of value(s) 2, 3, 4, 5, 6" in w for w in rec.warnings), rec.warnings
    assert export_case(_image(), _objects([1, 2, 3]), tmp_path / "dense", "tiff").warnings == []
    named = ["background", "a", "b", "c", "d", "e", "f", "g"]
    assert export_case(_image(), _objects([1, 7]), tmp_path / "named", "tiff", label_names=named).warnings == []
    # the largest value that is still taken as a class id without names
    assert len(export_case(_image(), _objects([20]), tmp_path / "twenty", "tiff").label_names) == 21


# 2. a probability map as --prediction ------------------------------------------------------------------


def test_a_probability_map_as_prediction_is_refused_by_name(tmp_path, capsys):
    labels = _objects([1, 1, 1]).astype(np.uint8)
    tifffile.imwrite(tmp_path / "img.tif", _image())
    tifffile.imwrite(tmp_path / "lab.tif", labels)
    tifffile.imwrite(tmp_path / "prob.tif", labels.astype(np.float32) * 0.9)
    assert main(["export", "--image", str(tmp_path / "img.tif"), "--labels", str(tmp_path / "lab.tif"),
                 "--prediction", str(tmp_path / "prob.tif"), "--dataset", str(tmp_path / "ds"),
                 "--format", "tiff"]) == 1
    err = _error(capsys, "export")
    assert "prob.tif (prediction) must be whole numbers" in err and "probability map" in err
    assert not (tmp_path / "ds").exists()
    with pytest.raises(InputError, match="prediction.*whole numbers"):
        export_case(_image(), labels, tmp_path / "ds", "tiff", prediction=labels * 0.9)
    with pytest.raises(InputError, match="prediction.*negative"):
        export_case(_image(), labels, tmp_path / "ds", "tiff", prediction=-labels.astype(np.int8))
    with pytest.raises(InputError, match="prediction.*whole numbers"):  # not hidden by --foreground's > 0
        export_case(_image(), labels, tmp_path / "ds", "tiff", prediction=labels * 0.9, foreground=True)
    assert not (tmp_path / "ds").exists()
    rec = export_case(_image(), labels, tmp_path / "ds", "tiff", prediction=labels.astype(np.float32))
    assert rec.edit_stats is not None


# 3. a probability map as evaluate's reference -----------------------------------------------------------


@pytest.fixture
def model2d(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "m.safetensors"
    save_model(create_model("attention_unet", spatial_dims=2, features=[4, 8, 16]), path,
               card={"tile": [32, 32], "normalization": {"scheme": "zscore"}})
    return path


@pytest.mark.parametrize("reference, says", [
    (lambda m: m.astype(np.float32) * 0.9, "whole numbers"),
    (lambda m: np.where(m > 0, np.nan, 0).astype(np.float32), "whole numbers"),
    (lambda m: -m.astype(np.int16), "must not be negative"),
])
def test_evaluate_refuses_a_reference_that_is_not_class_ids(tmp_path, model2d, capsys, monkeypatch,
                                                             reference, says):
    import napari_attnseg.inference as inference

    monkeypatch.setattr(inference, "predict", lambda *a, **k: pytest.fail("ran the model on a bad reference"))
    mask = (_objects([1, 2, 3]) > 0).astype(np.uint8)
    tifffile.imwrite(tmp_path / "img.tif", _image())
    tifffile.imwrite(tmp_path / "ref.tif", reference(mask))
    assert main(["evaluate", "--model", str(model2d), "--image", str(tmp_path / "img.tif"),
                 "--labels", str(tmp_path / "ref.tif"), "--device", "cpu"]) == 1
    err = _error(capsys, "evaluate")
    assert "ref.tif (the reference labels)" in err and says in err


def test_evaluate_still_takes_whole_float_labels(tmp_path, model2d, capsys):
    tifffile.imwrite(tmp_path / "img.tif", _image())
    tifffile.imwrite(tmp_path / "ref.tif", (_objects([1, 2]) > 0).astype(np.float32))
    assert main(["evaluate", "--model", str(model2d), "--image", str(tmp_path / "img.tif"),
                 "--labels", str(tmp_path / "ref.tif"), "--device", "cpu", "--json"]) == 0
    assert "foreground" in json.loads(capsys.readouterr().out)["dice"]


# 4. a DICOM series with missing slices ------------------------------------------------------------------


def _series(folder: Path, n: int, dz: float = 2.5, positions: bool = True) -> Path:
    """n CT slices at z = 10 + k*dz, value 100 + 10*k HU, InstanceNumber k + 1, files IM<k+1>.dcm."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True)
    series = generate_uid()
    for k in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset("x.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.SeriesInstanceUID, ds.InstanceNumber = "CT", series, k + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        if positions:
            ds.ImagePositionPatient = [-20.0, -10.0, 10.0 + k * dz]
        ds.SliceLocation = 10.0 + k * dz
        ds.PixelSpacing, ds.SliceThickness = [0.8, 0.6], dz
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.Rows, ds.Columns = 6, 5
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.PixelData = np.full((6, 5), 1124 + 10 * k, np.uint16).tobytes()
        ds.save_as(str(folder / f"IM{k + 1:04d}.dcm"), enforce_file_format=True)
    return folder


@pytest.mark.parametrize("positions", [True, False], ids=["ImagePositionPatient", "SliceLocation"])
def test_missing_slices_are_inserted_empty_so_the_others_keep_their_place(tmp_path, positions):
    full = read_image(_series(tmp_path / "full", 10, positions=positions))
    gappy = _series(tmp_path / "gappy", 10, positions=positions)
    for k in (4, 8, 9):  # instance 4 (one slice) and 8-9 (two in a row)
        (gappy / f"IM{k:04d}.dcm").unlink()
    vol = read_image(gappy)
    assert vol.data.shape == full.data.shape == (10, 6, 5)
    np.testing.assert_allclose(vol.affine, full.affine)
    assert vol.spacing == full.spacing
    kept = [k for k in range(10) if k + 1 not in (4, 8, 9)]
    np.testing.assert_array_equal(vol.data[kept], full.data[kept])
    assert (vol.data[[3, 7, 8]] == vol.data.min()).all()
    warning = vol.meta["warning"]
    assert "3 slice(s) look missing" in warning and "uneven slice spacing" in warning
    assert "1 between IM0003.dcm (instance 3, at" in warning and "2 between IM0007.dcm (instance 7" in warning
    assert "2.5 mm apart" in warning and "inserted" in warning and "mean step" not in warning


def test_uneven_spacing_that_is_not_missing_slices_keeps_the_mean_step(tmp_path):
    import pydicom

    folder = _series(tmp_path / "odd", 6)
    last = folder / "IM0006.dcm"
    ds = pydicom.dcmread(str(last))
    ds.ImagePositionPatient = [-20.0, -10.0, 10.0 + 4 * 2.5 + 4.0]  # the last gap 4 mm: not a whole number of steps
    ds.save_as(str(last))
    vol = read_image(folder)
    assert vol.data.shape[0] == 6
    assert "uneven slice spacing (2.5-4 mm); using the mean step" in vol.meta["warning"]
    many = _series(tmp_path / "sparse", 12)  # most slices gone: a sparse series, not a few missing ones
    for k in (2, 3, 5, 6, 8, 9, 11):
        (many / f"IM{k:04d}.dcm").unlink()
    assert "mean step" in read_image(many).meta["warning"]


def test_predict_writes_the_mask_on_the_full_grid(tmp_path, model2d, capsys):
    import nibabel as nib

    folder = _series(tmp_path / "ct", 6)
    (folder / "IM0003.dcm").unlink()
    assert main(["predict", str(folder), "--model", str(model2d), "--out", str(tmp_path / "out"),
                 "--device", "cpu", "--no-prob"]) == 0
    assert "1 slice(s) look missing" in capsys.readouterr().err
    mask = nib.load(next((tmp_path / "out").glob("*_mask.nii.gz")))
    assert mask.shape[-1] == 6
    np.testing.assert_allclose(mask.affine, read_image(_series(tmp_path / "full", 6)).affine)


# 5. a pickled PyTorch file as the model ----------------------------------------------------------------


class _Boom:
    def __reduce__(self):
        return (Path.touch, (Path(_Boom.target),))


@pytest.mark.parametrize("name, legacy", [("model.pt", False), ("model.pth", True), ("weights.bin", False),
                                          ("weights.dat", True)])
def test_a_pytorch_pickle_is_named_and_never_unpickled(tmp_path, name, legacy, capsys):
    from napari_attnseg.checkpoint import load_model

    _Boom.target = str(tmp_path / "ran")
    path = tmp_path / name
    torch.save({"state": _Boom()}, path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(CheckpointError, match="PyTorch pickle.*never unpickles.*safetensors") as err:
        load_model(path)
    assert str(path) in str(err.value) and "Converting a PyTorch checkpoint" in str(err.value)
    tifffile.imwrite(tmp_path / "img.tif", _image())
    assert main(["evaluate", "--model", str(path), "--image", str(tmp_path / "img.tif"),
                 "--labels", str(tmp_path / "img.tif")]) == 1
    assert "PyTorch pickle" in _error(capsys, "evaluate")
    assert not (tmp_path / "ran").exists()  # nothing in it ran


def test_a_truncated_safetensors_file_is_still_called_corrupt(tmp_path, model2d):
    from napari_attnseg.checkpoint import load_model

    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(model2d.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_model(bad)


def test_a_nifti_whose_qform_and_sform_differ_keeps_both_in_its_outputs(tmp_path, tiny_checkpoint, capsys):
    """sform code 2 (aligned) and a qform (code 1) placing the volume elsewhere: ITK-based viewers (Slicer,
    ITK-SNAP) place such a file by its qform, nibabel and napari by its sform. The mask was written with the
    sform as both, so in ITK it lay 20 mm off the scan, turned 15 degrees (audit with SimpleITK). Now the
    outputs keep the source's qform and sform, and the reader says the two differ."""
    import nibabel as nib

    data = np.random.default_rng(0).normal(100, 20, (32, 32, 8)).astype(np.float32)
    qform = np.diag([0.8, 0.8, 3.0, 1.0])
    qform[:3, 3] = (-12.0, -12.0, -10.0)
    c, s = np.cos(np.deg2rad(15)), np.sin(np.deg2rad(15))
    turn = np.eye(4)
    turn[1:3, 1:3] = [[c, -s], [s, c]]
    sform = turn @ qform
    sform[:3, 3] += (5.0, -7.0, 3.0)
    img = nib.Nifti1Image(data, sform)
    img.set_qform(qform, code=1)
    img.set_sform(sform, code=2)
    nib.save(img, tmp_path / "scan.nii.gz")
    model = tiny_checkpoint(dims=3)
    assert main(["predict", str(tmp_path / "scan.nii.gz"), "--model", str(model), "--out", str(tmp_path / "o"),
                 "--device", "cpu"]) == 0
    assert "qform and sform place it differently" in capsys.readouterr().err
    out = nib.load(tmp_path / "o" / "scan_mask.nii.gz")
    np.testing.assert_allclose(out.get_qform(), qform, atol=1e-4)
    np.testing.assert_allclose(out.get_sform(), sform, atol=1e-4)
    assert (int(out.header["qform_code"]), int(out.header["sform_code"])) == (1, 2)


def test_a_tiff_export_of_a_scan_carries_its_calibration_for_fiji(tmp_path):
    """The TIFF layout of a NIfTI/DICOM source kept the z spacing only in tifffile's own description and lost
    the unit: Fiji showed pixels. Now it is an ImageJ file in mm, which Fiji and the dataset reader read back."""
    image = np.random.default_rng(0).random((5, 16, 16)).astype(np.float32)
    export_case(image, (image > 0.5).astype(np.uint8), tmp_path / "ds", "tiff", spacing=(6.5, 0.78, 0.78),
                affine=np.diag([0.78, 0.78, 6.5, 1.0]))
    for sub in ("images", "labels"):
        with tifffile.TiffFile(tmp_path / "ds" / sub / "case_0000.tif") as tif:
            assert tif.is_imagej and tif.imagej_metadata["unit"] == "mm"
            assert tif.imagej_metadata["spacing"] == pytest.approx(6.5)
        assert read_image(tmp_path / "ds" / sub / "case_0000.tif").spacing == pytest.approx((6.5, 0.78, 0.78))


def test_a_symlinked_inputs_reference_is_named_after_the_input_as_given(tmp_path, tiny_checkpoint):
    """Audit: predicting `brain1.nii.gz`, a symlink to `brain1_image.nii.gz`, named the outputs brain1_* but the
    reference link brain1_image_image.nii.gz (after the link's target)."""
    (tmp_path / "store").mkdir()
    tifffile.imwrite(tmp_path / "store" / "scan_v2_final.tif", np.random.default_rng(0).random((40, 40)).astype(np.float32))
    (tmp_path / "slide.tif").symlink_to(tmp_path / "store" / "scan_v2_final.tif")
    assert main(["predict", str(tmp_path / "slide.tif"), "--model", str(tiny_checkpoint(dims=2)), "--out",
                 str(tmp_path / "o"), "--device", "cpu"]) == 0
    record = json.loads((tmp_path / "o" / "slide_predict.json").read_text())
    assert record["input_reference"] == "slide_image.tif" and (tmp_path / "o" / "slide_image.tif").is_symlink()
    assert (tmp_path / "o" / "slide_mask.tif").exists()


# 2D MetaImage and NRRD, upper-case output names, a read-only --uncertainty folder ------------------------------
# (audit of inputs as they come from other sites' systems: ITK / Grand Challenge 2D files, names like scan.NII.GZ)

_CELLS = (np.arange(24 * 30) * 37 % 251).reshape(24, 30).astype(np.uint8)  # (y, x): 24 rows of 30


def _mha_2d(path: Path, data: np.ndarray = _CELLS, detached: bool = False) -> Path:
    """A 2D MetaImage as ITK writes one (x fastest; Offset, ElementSpacing and TransformMatrix with 2 axes)."""
    header = ("ObjectType = Image\nNDims = 2\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
              "TransformMatrix = 0 1 1 0\nOffset = 10 -20\nElementSpacing = 0.5 0.25\n"
              f"DimSize = {data.shape[1]} {data.shape[0]}\nElementType = MET_UCHAR\n")
    if detached:
        path.with_suffix(".raw").write_bytes(data.tobytes())
        path.write_text(header + f"ElementDataFile = {path.with_suffix('.raw').name}\n")
    else:
        path.write_bytes((header + "ElementDataFile = LOCAL\n").encode() + data.tobytes())
    return path


def _lps_point(index_xy, origin, spacing, matrix) -> np.ndarray:
    """ITK's TransformIndexToPhysicalPoint for a 2D image: origin + D diag(spacing) index (D's columns: axes)."""
    d = np.asarray(matrix, float).reshape(2, 2).T
    return np.asarray(origin, float) + d @ (np.asarray(spacing, float) * np.asarray(index_xy, float))


@pytest.mark.parametrize("detached", [False, True])
def test_a_2d_metaimage_reads_as_a_2d_image_with_its_spacing_and_placement(tmp_path, detached):
    """Audit: a 2D MetaImage (a Grand Challenge / ITK pipeline's X-ray or microscopy tile) was refused: 'a 2D
    MetaImage; napari-attnseg reads 3D MetaImages'. It reads as (y, x) with its spacing, placed as ITK places it."""
    vol = read_image(_mha_2d(tmp_path / ("tile.mhd" if detached else "Tile ä.MHA"), detached=detached))
    np.testing.assert_array_equal(vol.data, _CELLS)
    assert vol.spacing == pytest.approx((0.25, 0.5)) and vol.meta["axis_order"] == "ji"
    for i, j in ((0, 0), (29, 23), (7, 3)):
        lps = _lps_point((i, j), (10, -20), (0.5, 0.25), (0, 1, 1, 0))
        np.testing.assert_allclose((vol.affine @ [i, j, 0, 1])[:2], lps * [-1, -1], atol=1e-9)


@pytest.mark.parametrize("space", ["space dimension: 2", "space: left-posterior-superior"])
def test_a_2d_nrrd_reads_as_a_2d_image(tmp_path, space):
    """Audit: a 2D NRRD was refused ('a 2-dimensional NRRD; napari-attnseg reads 3D volumes'). ITK writes a 2D image
    in a 2D space without a name (read as ITK reads it: LPS); a 2D slice may also lie in a named 3D space."""
    three = "space:" in space
    dirs = "(0.5,0,0) (0,0.25,0)" if three else "(0.5,0) (0,0.25)"
    header = (f"NRRD0004\ntype: uint8\ndimension: 2\n{space}\nsizes: 30 24\nspace directions: {dirs}\n"
              f"encoding: gzip\nspace origin: ({'10,-20,5' if three else '10,-20'})\n\n")
    import gzip

    path = tmp_path / "slice.NRRD"
    path.write_bytes(header.encode() + gzip.compress(_CELLS.tobytes()))
    vol = read_image(path)
    np.testing.assert_array_equal(vol.data, _CELLS)
    assert vol.spacing == pytest.approx((0.25, 0.5))
    np.testing.assert_allclose(vol.affine[:3, 3], [-10, 20, 5 if three else 0], atol=1e-9)
    np.testing.assert_allclose(vol.affine[:2, :2], np.diag([-0.5, -0.25]), atol=1e-9)


def test_predict_on_a_2d_metaimage_writes_2d_nifti_on_its_grid(tmp_path, tiny_checkpoint, capsys):
    """Outputs of a 2D MetaImage are what a 3D one gets (NIfTI, the same placement), in 2D: the same mask as the
    same pixels given as TIFF, on the MetaImage's grid, so ITK viewers overlay it on the .mha."""
    src = _mha_2d(tmp_path / "Tile ä.MHA", np.kron(_CELLS, np.ones((2, 2), np.uint8)))
    tifffile.imwrite(tmp_path / "same.tif", read_image(src).data)
    model = str(tiny_checkpoint(dims=2))
    for name in ("Tile ä.MHA", "same.tif"):
        assert main(["predict", str(tmp_path / name), "--model", model, "--out", str(tmp_path / "o"),
                     "--device", "cpu", "--attention"]) == 0, capsys.readouterr().err
    import nibabel as nib

    mask = nib.load(str(tmp_path / "o" / "Tile ä_mask.nii.gz"))
    assert mask.shape == (60, 48)  # (x, y): a 2D file
    np.testing.assert_allclose(mask.affine, read_image(src).affine, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(mask.dataobj).T, tifffile.imread(tmp_path / "o" / "same_mask.tif"))
    assert nib.load(str(tmp_path / "o" / "Tile ä_prob.nii.gz")).shape[:2] == (60, 48)
    assert list((tmp_path / "o").glob("Tile ä_attention_*.nii.gz"))


def test_a_2d_metaimage_opens_in_napari_as_a_2d_layer(tmp_path):
    from napari_attnseg._napari.io_hooks import get_nifti_reader

    path = str(_mha_2d(tmp_path / "tile.mha"))
    [(data, kwargs, kind)] = get_nifti_reader(path)(path)
    assert kind == "image" and data.shape == (24, 30) and tuple(kwargs["scale"]) == pytest.approx((0.25, 0.5))


def test_a_4d_metaimage_is_still_refused_by_name(tmp_path):
    path = tmp_path / "series.mha"
    path.write_bytes(b"NDims = 4\nDimSize = 2 2 2 2\nElementType = MET_UCHAR\nElementDataFile = LOCAL\n" + bytes(16))
    with pytest.raises(InputError, match=r"series.mha: a MetaImage of NDims 4.*each volume on its own"):
        read_image(path)


@pytest.mark.parametrize("name", ["unc.NII.GZ", "unc.NII", "unc.TIF", "unc.TIFF"])
def test_upper_case_output_names_are_written_in_their_format(tmp_path, name):
    """Audit: `attnseg suggest ... --uncertainty ../unc.NII.GZ` computed everything, then failed: 'ImageFileError:
    Cannot work out file type of ".unc.NII.GZ.iyr1o84q.tmp.GZ"' (the temporary file kept only '.GZ')."""
    from napari_attnseg.data import write_image

    data = np.random.default_rng(0).random((3, 4, 5)).astype(np.float32)
    out = write_image(tmp_path / name, data, spacing=(2.0, 1.0, 1.0))
    assert out.name == name and sorted(p.name for p in tmp_path.iterdir()) == [name]
    np.testing.assert_allclose(read_image(out).data, data)
    assert (out.read_bytes()[:2] == b"\x1f\x8b") == name.lower().endswith(".gz")


def test_suggest_refuses_a_read_only_uncertainty_folder_before_running(tmp_path, capsys, monkeypatch):
    """Audit: an --uncertainty file in a read-only folder ran the whole model, then failed with 'OSError: [Errno 30]
    Read-only file system' (a read-only folder is simulated: the tests may run as root)."""
    import tempfile

    from napari_attnseg import suggest

    src = tmp_path / "scan.nii.gz"
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4), np.int16), np.eye(4)), str(src))
    locked = tmp_path / "locked"
    locked.mkdir()
    real = tempfile.NamedTemporaryFile

    def refuse(*args, **kwargs):
        if Path(kwargs.get("dir") or ".") == locked:
            raise OSError(30, "Read-only file system")
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)
    monkeypatch.setattr(suggest, "predict_uncertainty", lambda *a, **k: pytest.fail("ran the model before checking"))
    assert main(["suggest", str(src), "--model", "brain-mri-3d", "--uncertainty", str(locked / "unc.nii.gz")]) == 1
    line = _error(capsys, "suggest")
    assert f"{locked}" in line and "cannot be written in" in line and "Read-only file system" in line


def _nii(path, shape=(6, 5, 4), dtype=np.int16):
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.arange(np.prod(shape)).reshape(shape).astype(dtype), np.diag([2.0, 1.0, 1.0, 1.0])),
             str(path.with_name("written.nii.gz")))  # nibabel itself saves scan.Nii.gz as scan.nii.gz
    return path.with_name("written.nii.gz").rename(path)


@pytest.mark.parametrize("name,layer", [("sub-01.ses-2.T1w.nii.gz", "sub-01.ses-2.T1w"), ("brain1.seg.nrrd", None),
                                        ("scan.Nii.gz", "scan")])
def test_napari_layer_names_keep_every_dot_before_the_image_suffix(tmp_path, name, layer):
    """Audit: sub-01.ses-2.T1w.nii.gz opened as layer 'sub-01' (two sequences of a subject: 'sub-01', 'sub-01 [1]'),
    while its _predict.json reopens as 'sub-01.ses-2.T1w'; scan.Nii.gz could not be read at all (nibabel looked
    for scan.nii.gz)."""
    from napari_attnseg._napari.io_hooks import get_nifti_reader

    if name.endswith(".nrrd"):
        path = tmp_path / name
        path.write_bytes(b"NRRD0004\ntype: uint8\ndimension: 3\nsizes: 4 5 6\nencoding: raw\n\n" + bytes(120))
        layer = "brain1.seg"
    else:
        path = _nii(tmp_path / name)
    [(data, kwargs, _)] = get_nifti_reader(str(path))(str(path))
    assert kwargs["name"] == layer and sorted(data.shape) == [4, 5, 6]


def test_napari_save_as_upper_case_nifti_keeps_the_name(tmp_path):
    """Audit: File > Save as 'mask.NII.GZ' wrote 'mask.NII.GZ.nii.gz'."""
    from napari_attnseg._napari.io_hooks import write_labels_nifti

    out = write_labels_nifti(str(tmp_path / "mask.NII.GZ"), np.zeros((3, 4, 5), np.uint8), {"scale": (1, 1, 1)})
    assert out == [str(tmp_path / "mask.NII.GZ")] and read_image(out[0]).data.shape == (3, 4, 5)


def test_export_refuses_the_image_given_as_its_own_labels(tmp_path, capsys):
    """Audit: --labels X --image X answered '2413 distinct values ... instance ids' instead of naming the mix-up."""
    path = _nii(tmp_path / "ct.nii.gz")
    assert main(["export", "--image", str(path), "--labels", str(path), "--dataset", str(tmp_path / "ds")]) != 0
    assert "ct.nii.gz: --labels names the image itself" in capsys.readouterr().err
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("fmt", ["nnunet", "monai"])
def test_an_exported_label_file_opens_as_labels(tmp_path, fmt):
    """Audit: <dataset>/labelsTr/case_0000.nii.gz (no 'label' in its name) opened in napari as an image layer."""
    from napari_attnseg._napari.io_hooks import get_nifti_reader

    lab = np.zeros((6, 16, 16), np.uint8)
    lab[2:4, 4:9, 4:9] = 1
    image = np.random.default_rng(0).normal(100, 10, lab.shape).astype(np.float32)
    rec = export_case(image, lab, tmp_path / "ds", fmt, spacing=(2.0, 1.0, 1.0), affine=np.diag([1.0, 1.0, 2.0, 1.0]))
    path = str(tmp_path / "ds" / rec.files["label"])
    [(_, _, kind)] = get_nifti_reader(path)(path)
    assert kind == "labels"
    path = str(tmp_path / "ds" / rec.files["images"][0])
    assert get_nifti_reader(path)(path)[0][2] == "image"
