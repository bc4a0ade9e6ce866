"""A T1 brain MRI from another scanner (sagittal, stored PIR with a tilted affine, thick slices, 12-bit, a
bias field, a DICOM series), segmented with the bundled ``brain-mri-3d``: the outputs lie on the anatomy
(Dice against the MNI152 reference resampled to the variant), their files agree with the record, and in
napari the mask and heatmaps lie on the image and reopen there from ``<stem>_predict.json``."""

from __future__ import annotations

import json
import random

import nibabel as nib
import numpy as np
import pytest

from napari_attnseg._paths import samples_dir
from napari_attnseg.cli import main
from napari_attnseg.models.registry import bundled_models

pytestmark = pytest.mark.skipif("brain-mri-3d" not in bundled_models(), reason="no bundled brain model")

_DIRS = {"R": (0, 1), "L": (0, -1), "A": (1, 1), "P": (1, -1), "S": (2, 1), "I": (2, -1)}


def _rotation(deg: float) -> np.ndarray:
    """A tilt about the left-right axis (pitch), the usual oblique of a sagittal/axial planning."""
    t = np.deg2rad(deg)
    return np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])


def _variant(folder, codes: str, spacing, deg: float, shape, scale: float = 1.0, bias: bool = False):
    """The bundled MNI152 T1 and its reference labels resampled onto a grid stored with axis ``codes`` (file
    order i, j, k), ``spacing`` mm and tilted ``deg``: (image path, reference labels (i, j, k), affine)."""
    from scipy.ndimage import map_coordinates

    t1 = nib.load(samples_dir() / "mni152_t1.nii.gz")
    ref = np.asarray(nib.load(samples_dir() / "mni152_labels.nii.gz").dataobj)
    m = np.zeros((3, 3))
    for n, c in enumerate(codes):
        row, sign = _DIRS[c]
        m[row, n] = sign
    m = _rotation(deg) @ m @ np.diag(spacing)
    affine = np.eye(4)
    affine[:3, :3] = m
    affine[:3, 3] = (t1.affine @ [98, 116, 94, 1.0])[:3] - m @ ((np.array(shape) - 1) / 2)
    ijk = np.indices(shape).reshape(3, -1)
    inv = np.linalg.inv(t1.affine) @ affine
    src = inv[:3, :3] @ ijk + inv[:3, 3:4]
    image = map_coordinates(np.asarray(t1.dataobj, np.float32), src, order=1).reshape(shape)
    labels = map_coordinates(ref, src, order=0).reshape(shape).astype(np.uint8)
    if bias:
        x = np.linspace(-1, 1, shape[0])[:, None, None]
        image = image * (1 + 0.2 * x)
    image = np.round(image * scale).astype(np.int16)
    img = nib.Nifti1Image(image, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    path = folder / f"t1_{codes.lower()}.nii.gz"
    nib.save(img, path)
    return path, labels, affine


def _dice(a: np.ndarray, b: np.ndarray, c: int) -> float:
    a, b = a == c, b == c
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


def test_sagittal_thick_slices_record_spacing_in_the_files_order(tmp_path):
    """A sagittal PIR T1 with 3 mm slices, 12-bit, tilted 15 degrees: the mask lies on the anatomy, every output
    keeps the scan's affine with qform = sform (ITK viewers overlay them too), and the record's
    ``params.spacing`` is the scan's spacing in its own (stored) order, like the record's ``spacing``; it
    was the spacing turned to the model's orientation (``[2, 2, 3]`` beside ``spacing: [3, 2, 2]``)."""
    path, ref, affine = _variant(tmp_path, "PIR", (2.0, 2.0, 3.0), 15.0, (117, 95, 66), scale=4095 / 255)
    out = tmp_path / "out"
    assert main(["predict", str(path), "--model", "brain-mri-3d", "--out", str(out), "--attention"]) == 0
    record = json.loads((out / "t1_pir_predict.json").read_text())
    assert record["params"]["reoriented"] == "PIR -> RAS"
    assert record["spacing"] == pytest.approx([3.0, 2.0, 2.0])
    assert record["params"]["spacing"] == pytest.approx(record["spacing"])
    mask = nib.load(out / "t1_pir_mask.nii.gz")
    np.testing.assert_allclose(mask.affine, affine, atol=1e-4)
    labels = np.asarray(mask.dataobj)
    assert _dice(labels, ref, 1) > 0.85 and _dice(labels, ref, 2) > 0.85
    for f in [out / "t1_pir_mask.nii.gz", *sorted(out.glob("t1_pir_attention_*.nii.gz"))]:
        img = nib.load(f)
        np.testing.assert_allclose(img.get_qform(), img.get_sform(), atol=1e-4, err_msg=f.name)
        assert int(img.header["qform_code"]) == int(img.header["sform_code"]) == 1, f.name


def _dicom_series(folder, path) -> None:
    """``path`` (a NIfTI) written as an MR DICOM series, one file per k slice, file names shuffled."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    img = nib.load(path)
    a, data = img.affine, np.asarray(img.dataobj)
    lps = np.diag([-1.0, -1.0, 1.0])
    sp = np.linalg.norm(a[:3, :3], axis=0)
    row, col = lps @ a[:3, 0] / sp[0], lps @ a[:3, 1] / sp[1]
    series, names = generate_uid(), list(range(data.shape[2]))
    random.Random(1).shuffle(names)
    folder.mkdir()
    for k in range(data.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = MRImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = MRImageStorage, meta.MediaStorageSOPInstanceUID, "MR"
        ds.SeriesInstanceUID, ds.InstanceNumber = series, k + 1
        ds.ImagePositionPatient = [f"{v:.4f}" for v in lps @ (a[:3, :3] @ [0, 0, k] + a[:3, 3])]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in [*row, *col]]
        ds.PixelSpacing, ds.SliceThickness = [f"{sp[1]:.4f}", f"{sp[0]:.4f}"], f"{sp[2]:.4f}"
        px = np.ascontiguousarray(data[:, :, k].T).astype(np.uint16)
        ds.Rows, ds.Columns = px.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = px.tobytes()
        pydicom.dcmwrite(folder / f"IM{names[k]:04d}", ds, enforce_file_format=True)


@pytest.mark.gui
def test_sagittal_dicom_series_in_napari_lies_on_the_anatomy_and_reopens_aligned(segment_panel, qtbot, tmp_path):
    """A tilted sagittal 12-bit MR series with a bias field, opened (folder, shuffled file names) through the
    plugin's reader and segmented with the Segment tab's defaults: the preset model is ``brain-mri-3d``, the
    mask matches the reference, heatmaps and mask lie on the image, and File > Open of the CLI record of the
    same series brings back the same mask on the same place."""
    viewer, w = segment_panel
    path, ref, _ = _variant(tmp_path, "PIR", (2.0, 2.0, 2.0), 12.0, (117, 95, 99), scale=4095 / 255, bias=True)
    series = tmp_path / "series"
    _dicom_series(series, path)
    image = viewer.open(str(series), plugin="napari-attnseg")[0]
    assert image.data.shape == (99, 95, 117)
    assert w.model_combo.value == "brain-mri-3d"
    with qtbot.waitSignal(w.run_done, timeout=300000) as done:
        assert w.run() is not None, w.messages
    assert done.args == [True], w.messages
    mask = viewer.layers[f"{image.name} mask"]
    labels = np.asarray(mask.data)
    r = ref.transpose(2, 1, 0)
    assert _dice(labels, r, 1) > 0.85 and _dice(labels, r, 2) > 0.8
    far = tuple(s - 1 for s in image.data.shape)
    for p in [(0, 0, 0), far]:
        np.testing.assert_allclose(mask.data_to_world(p), image.data_to_world(p), atol=1e-6)
    heatmaps = [lay for lay in viewer.layers if " attention " in lay.name]
    assert heatmaps
    for lay in heatmaps:  # each heatmap covers the image, at most one map pixel beyond it
        lo, hi = (np.asarray(lay.data_to_world(q)) for q in ((-0.5,) * 3, tuple(s - 0.5 for s in lay.data.shape)))
        ilo, ihi = (np.asarray(image.data_to_world(q)) for q in ((-0.5,) * 3, tuple(s - 0.5 for s in image.data.shape)))
        step = np.asarray(lay.scale)
        assert np.all(lo <= ilo + 1e-6) and np.all(lo >= ilo - step - 1e-6), lay.name
        assert np.all(hi >= ihi - 1e-6) and np.all(hi <= ihi + step + 1e-6), lay.name
    out = tmp_path / "out"
    assert main(["predict", str(series), "--model", "brain-mri-3d", "--out", str(out), "--attention"]) == 0
    reopened = viewer.open(str(out / "series_predict.json"), plugin="napari-attnseg")
    rec_mask = next(lay for lay in reopened if lay._type_string == "labels")
    assert np.mean(np.asarray(rec_mask.data) == labels) > 0.999
    for p in [(0, 0, 0), far]:
        np.testing.assert_allclose(rec_mask.data_to_world(p), image.data_to_world(p), atol=1e-4)
