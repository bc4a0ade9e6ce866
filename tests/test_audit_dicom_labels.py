"""A radiologist's reference segmentation as DICOM: an RTSTRUCT (contours per ROI) or a DICOM SEG (segment frames)
beside the CT series, as TCIA's NSCLC-Radiomics ships them. A 7-slice, 128 x 128 crop of the radiomics lung CT
around its tumour (slices 32-34) is written as a CT series with pydicom; the tumour of the NIfTI labels becomes an
RTSTRUCT (skimage contours in patient LPS mm, written with pydicom) and a SEG (written with highdicom); both are read
back onto the series' grid and compared with the NIfTI labels."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_attnseg.data import read_image
from napari_attnseg.errors import InputError

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "radiomics"
K0, J0, I0 = 30, 296, 154  # the crop's first (k, j, i)
SHAPE = (7, 128, 128)
CT_SOP = "1.2.840.10008.5.1.4.1.1.2"
RTSTRUCT_SOP = "1.2.840.10008.5.1.4.1.1.481.3"
FOR = "1.2.826.0.1.3680043.8.498.1"


@pytest.fixture(scope="module")
def lung():
    """(CT crop, labels crop, the crop's RAS affine, its LPS affine, spacing)."""
    if not (DATA / "lung1_image.nii.gz").exists():
        pytest.skip(f"{DATA} is not here")
    vol, lab = read_image(DATA / "lung1_image.nii.gz"), read_image(DATA / "lung1_labels.nii.gz")
    box = tuple(slice(o, o + n) for o, n in zip((K0, J0, I0), SHAPE))
    affine = np.array(vol.affine, float)
    affine[:, 3] = affine @ [I0, J0, K0, 1]
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    labels = np.asarray(lab.data[box]).astype(np.uint8)
    assert labels[2:5].any() and not labels[:2].any() and not labels[5:].any()  # (slices 32-34)
    return np.asarray(vol.data[box]).astype(np.int16), labels, affine, lps, vol.spacing


def _ct_dataset(lung, k: int, series: str, feet_first: bool, frame_of_reference: str = FOR):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    crop, _, _, lps, spacing = lung
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CT_SOP, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("x", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = CT_SOP, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = "CT", series, "1.2.826.0.1.3680043.8.498.2"
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = frame_of_reference, ""
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Doe^Jane", "LUNG1", "", "F"
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "20200101", "1200", "1", "", ""
    ds.SeriesNumber, ds.Manufacturer = 2, "test"
    ds.Rows, ds.Columns = SHAPE[1], SHAPE[2]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.InstanceNumber = (SHAPE[0] - k) if feet_first else k + 1
    pixels = crop[k]
    if feet_first:  # (supine, feet first: the rows run from the patient's left to right)
        ds.PatientPosition, ds.ImageOrientationPatient = "FFS", [-1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [float(v) for v in lps @ [SHAPE[2] - 1, 0, k, 1]][:3]
        pixels = pixels[:, ::-1]
    else:
        ds.PatientPosition, ds.ImageOrientationPatient = "HFS", [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [float(v) for v in lps @ [0, 0, k, 1]][:3]
    ds.PixelSpacing, ds.SliceThickness = [spacing[1], spacing[2]], spacing[0]
    ds.RescaleSlope, ds.RescaleIntercept = 1, 0
    ds.PixelData = np.ascontiguousarray(pixels).astype(np.int16).tobytes()
    return ds


def ct_series(lung, folder: Path, feet_first=False, shuffled=False, frame_of_reference=FOR) -> list:
    """The crop as a CT series in ``folder``; returns its datasets in slice order (k)."""
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series, out = generate_uid(), []
    names = np.random.default_rng(1).permutation(SHAPE[0]) if shuffled else range(SHAPE[0])
    for k, name in zip(range(SHAPE[0]), names):
        ds = _ct_dataset(lung, k, series, feet_first, frame_of_reference)
        ds.save_as(str(folder / (f"{generate_uid()[-12:]}.dcm" if shuffled else f"CT{name:03d}.dcm")),
                   enforce_file_format=True)
        out.append(ds)
    return out


def _contours(mask: np.ndarray) -> list[np.ndarray]:
    """The outlines of a 2D mask as (row, column) polygons through the pixel edges' midpoints."""
    from skimage.measure import find_contours

    return [c - 1 for c in find_contours(np.pad(mask.astype(float), 1), 0.5)]


def rtstruct(lung, cts: list, path: Path, rois: dict[str, dict[int, list[np.ndarray]]], frame_of_reference=FOR,
             dk: float = 0.0) -> Path:
    """An RT Structure Set: ``rois`` name -> {slice k: [(row, column) polygons in the crop's voxels]}, in patient
    LPS mm (``dk``: contours moved by this many slices)."""
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    lps = lung[3]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = RTSTRUCT_SOP, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("x", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = RTSTRUCT_SOP, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = "RTSTRUCT", generate_uid(), cts[0].StudyInstanceUID
    ds.PatientName, ds.PatientID, ds.StructureSetLabel = "Doe^Jane", "LUNG1", "GTV"
    ref_series, ref_study, ref_for = Dataset(), Dataset(), Dataset()
    images = []
    for ct in cts:
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = ct.SOPClassUID, ct.SOPInstanceUID
        images.append(item)
    ref_series.SeriesInstanceUID, ref_series.ContourImageSequence = cts[0].SeriesInstanceUID, Sequence(images)
    ref_study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    ref_study.ReferencedSOPInstanceUID = cts[0].StudyInstanceUID
    ref_study.RTReferencedSeriesSequence = Sequence([ref_series])
    ref_for.FrameOfReferenceUID, ref_for.RTReferencedStudySequence = frame_of_reference, Sequence([ref_study])
    ds.ReferencedFrameOfReferenceSequence = Sequence([ref_for])
    structure, roi_contours, observations = [], [], []
    for number, (name, planes) in enumerate(rois.items(), start=1):
        roi = Dataset()
        roi.ROINumber, roi.ReferencedFrameOfReferenceUID, roi.ROIName = number, frame_of_reference, name
        roi.ROIGenerationAlgorithm = "MANUAL"
        structure.append(roi)
        contours = []
        for k, polygons in sorted(planes.items()):
            for poly in polygons:
                ijk = np.c_[poly[:, 1], poly[:, 0], np.full(len(poly), k + dk), np.ones(len(poly))]
                c = Dataset()
                image = Dataset()
                image.ReferencedSOPClassUID, image.ReferencedSOPInstanceUID = CT_SOP, cts[k].SOPInstanceUID
                c.ContourImageSequence = Sequence([image])
                c.ContourGeometricType, c.NumberOfContourPoints = "CLOSED_PLANAR", len(poly)
                c.ContourData = [round(float(v), 4) for v in (lps @ ijk.T)[:3].T.ravel()]
                contours.append(c)
        item = Dataset()
        item.ReferencedROINumber, item.ROIDisplayColor = number, [255, 0, 0]
        if contours:
            item.ContourSequence = Sequence(contours)
        roi_contours.append(item)
        obs = Dataset()
        obs.ObservationNumber, obs.ReferencedROINumber, obs.RTROIInterpretedType = number, number, "GTV"
        obs.ROIInterpreter = ""
        observations.append(obs)
    ds.StructureSetROISequence = Sequence(structure)
    ds.ROIContourSequence = Sequence(roi_contours)
    ds.RTROIObservationsSequence = Sequence(observations)
    ds.save_as(str(path), enforce_file_format=True)
    return path


def tumour_rois(labels: np.ndarray) -> dict[int, list[np.ndarray]]:
    return {k: _contours(labels[k] > 0) for k in range(SHAPE[0]) if labels[k].any()}


def seg(cts: list, path: Path, masks: dict[str, np.ndarray], fractional=False) -> Path:
    """A DICOM SEG written by highdicom: ``masks`` segment label -> (k, j, i) mask on the series (``cts`` in k order)."""
    hd = pytest.importorskip("highdicom")
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    descriptions = [hd.seg.SegmentDescription(
        segment_number=n, segment_label=name, segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
        for n, name in enumerate(masks, start=1)]
    stack = np.stack(list(masks.values()), axis=-1)  # (frames, rows, columns, segments)
    if cts[0].ImageOrientationPatient[0] < 0:  # (the series stores its rows flipped)
        stack = stack[:, :, ::-1]
    pixels = np.where(stack > 0, 0.75, 0.25).astype(np.float32) if fractional else stack.astype(np.uint8)
    obj = hd.seg.Segmentation(
        source_images=cts, pixel_array=pixels, segmentation_type="FRACTIONAL" if fractional else "BINARY",
        segment_descriptions=descriptions, series_instance_uid=generate_uid(), series_number=9,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="test", manufacturer_model_name="test",
        software_versions="1", device_serial_number="1")
    obj.save_as(str(path))
    return path


def rtdose(lung, path: Path) -> Path:
    """A coarse RT dose grid (3 frames of 8 x 8), as a treatment-planning export puts beside the CT."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    sop = "1.2.840.10008.5.1.4.1.1.481.2"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("x", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = sop, meta.MediaStorageSOPInstanceUID, "RTDOSE"
    ds.SeriesInstanceUID, ds.FrameOfReferenceUID, ds.SeriesNumber = generate_uid(), FOR, 7
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.2"  # (the CT's study)
    ds.Rows, ds.Columns, ds.NumberOfFrames = 8, 8, 3
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.ImageOrientationPatient, ds.PixelSpacing = [1, 0, 0, 0, 1, 0], [10.0, 10.0]
    ds.ImagePositionPatient = [float(v) for v in lung[3] @ [0, 0, 0, 1]][:3]
    ds.GridFrameOffsetVector, ds.DoseGridScaling = [0.0, 10.0, 20.0], 0.001
    ds.PixelData = np.ones((3, 8, 8), np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float(np.count_nonzero(a & b)) / max(1, np.count_nonzero(a) + np.count_nonzero(b))


def test_an_rtstruct_and_a_seg_beside_the_ct_read_onto_its_grid(tmp_path, lung):
    """`--labels RS.dcm` / `SEG.dcm` was read as an image (or refused); now the tumour's contours land on the NIfTI
    labels' voxels (Dice >= 0.9; the SEG exactly), named by ROIName / SegmentLabel, and the CT folder holding both
    files still reads as the CT series (the SEG made it a folder of two axial series, refused)."""
    from napari_attnseg.data.labels_in import dicom_labels_kind, read_labels

    crop, labels, affine, _, _ = lung
    folder = tmp_path / "CT"
    cts = ct_series(lung, folder)
    rs = rtstruct(lung, cts, folder / "RS.dcm", {"GTV-1": tumour_rois(labels)})
    sg = seg(cts, folder / "SEG.dcm", {"GTV-1": labels})
    rtdose(lung, folder / "RD.dcm")
    image = read_image(folder)  # (the RTSTRUCT, SEG and RT dose beside the images are left out)
    np.testing.assert_array_equal(image.data, crop)
    np.testing.assert_allclose(image.affine, affine, atol=1e-4)
    assert "warning" not in image.meta
    assert dicom_labels_kind(rs) == "RTSTRUCT" and dicom_labels_kind(sg) == "SEG"
    assert dicom_labels_kind(DATA / "lung1_labels.nii.gz") is None
    ref = read_labels(rs, image)
    assert ref.data.shape == SHAPE and ref.meta["class_names"] == ["background", "GTV-1"]
    assert set(np.unique(ref.data)) == {0, 1} and "warning" not in ref.meta
    assert dice(ref.data == 1, labels == 1) >= 0.9
    assert not ref.data[:2].any() and not ref.data[5:].any()  # (slices 32-34 only)
    np.testing.assert_allclose(ref.affine, image.affine)
    ref = read_labels(sg, image)
    np.testing.assert_array_equal(ref.data, labels)
    assert ref.meta["class_names"] == ["background", "GTV-1"]
    with pytest.raises(InputError, match="a DICOM SEG, not an image"):  # (the CT beside it was read instead)
        read_image(sg)
    # on the NIfTI the series was converted to (dcm2niix): no frame of reference to compare, the same voxels
    nib.save(nib.Nifti1Image(np.ascontiguousarray(crop.transpose(2, 1, 0)), affine), tmp_path / "ct.nii.gz")
    ct = read_image(tmp_path / "ct.nii.gz")
    assert dice(read_labels(rs, ct).data == 1, labels == 1) >= 0.9
    np.testing.assert_array_equal(read_labels(sg, ct).data, labels)
    # a plain label file still reads as one
    assert read_labels(DATA / "lung1_labels.nii.gz", image).data.shape == (48, 512, 512)


def test_a_fractional_seg_and_a_folder_of_its_own(tmp_path, lung):
    """TCIA keeps the SEG in a folder of its own: the folder names it; a FRACTIONAL SEG is taken from 0.5 up."""
    from napari_attnseg.data.labels_in import read_labels

    _, labels, _, _, _ = lung
    cts = ct_series(lung, tmp_path / "CT")
    (tmp_path / "SEG").mkdir()
    seg(cts, tmp_path / "SEG" / "1-1.dcm", {"tumour": labels}, fractional=True)
    ref = read_labels(tmp_path / "SEG", read_image(tmp_path / "CT"))
    np.testing.assert_array_equal(ref.data, labels)
    assert ref.meta["class_names"] == ["background", "tumour"]


def test_a_feet_first_series_with_shuffled_file_names_still_aligns(tmp_path, lung):
    """Stored feet first (rows flipped left-right, slices from the feet) and named by UID: the contours and frames
    land where the same anatomy is stored."""
    from napari_attnseg.data.labels_in import read_labels

    crop, labels, _, _, _ = lung
    cts = ct_series(lung, tmp_path / "CT", feet_first=True, shuffled=True)
    image = read_image(tmp_path / "CT")
    np.testing.assert_array_equal(image.data, crop[::-1, :, ::-1])  # (k from the feet, i from the patient's left)
    moved = labels[::-1, :, ::-1]
    rs = read_labels(rtstruct(lung, cts, tmp_path / "RS.dcm", {"GTV-1": tumour_rois(labels)}), image)
    assert dice(rs.data == 1, moved == 1) >= 0.9
    sg = read_labels(seg(cts, tmp_path / "SEG.dcm", {"GTV-1": labels}), image)
    np.testing.assert_array_equal(sg.data, moved)


def test_another_frame_of_reference_is_refused_naming_both_files(tmp_path, lung):
    from napari_attnseg.data.labels_in import read_labels

    _, labels, _, _, _ = lung
    cts = ct_series(lung, tmp_path / "CT")
    rs = rtstruct(lung, cts, tmp_path / "RS.dcm", {"GTV-1": tumour_rois(labels)}, frame_of_reference="1.2.3.4")
    with pytest.raises(InputError) as err:
        read_labels(rs, read_image(tmp_path / "CT"))
    assert "RS.dcm" in str(err.value) and str(tmp_path / "CT") in str(err.value)
    assert "another frame of reference" in str(err.value) and "1.2.3.4" in str(err.value)
    other = ct_series(lung, tmp_path / "other", frame_of_reference="1.2.3.5")
    sg = seg(other, tmp_path / "SEG.dcm", {"GTV-1": labels})
    with pytest.raises(InputError, match="another frame of reference"):
        read_labels(sg, read_image(tmp_path / "CT"))
    with pytest.raises(InputError, match="no position in space"):  # (a picture: nowhere to draw mm contours)
        from napari_attnseg.data import Volume

        read_labels(sg, Volume(np.zeros(SHAPE, np.int16), (1.0, 1.0, 1.0)))


def test_empty_roi_holes_overlaps_roi_choice_and_contours_between_slices(tmp_path, lung):
    """An empty ROI warns; an inner contour is a hole (even-odd); overlapping ROIs: the smaller wins, with a note;
    --roi picks and orders the classes; contours half a slice off are left out with a warning (all of them:
    refused)."""
    from napari_attnseg.data.labels_in import read_labels

    _, labels, _, _, _ = lung
    cts = ct_series(lung, tmp_path / "CT")
    image = read_image(tmp_path / "CT")
    outer, inner = np.zeros((128, 128), bool), np.zeros((128, 128), bool)
    outer[10:40, 10:40], inner[20:30, 20:30] = True, True
    box = np.zeros((128, 128), bool)
    box[40:90, 40:70] = True  # (over part of the tumour on slice 3)
    rois = {"GTV-1": tumour_rois(labels), "Empty": {}, "Ring": {1: _contours(outer) + _contours(inner)},
            "Box": {3: _contours(box)}}
    rs = rtstruct(lung, cts, tmp_path / "RS.dcm", rois)
    ref = read_labels(rs, image)
    assert ref.meta["class_names"] == ["background", "GTV-1", "Empty", "Ring", "Box"]
    assert "ROI 'Empty' has no contours: class 2 is empty" in ref.meta["warning"]
    np.testing.assert_array_equal(ref.data[1] == 3, outer & ~inner)  # the hole
    tumour = labels[3] == 1
    taken = int(np.count_nonzero(tumour & box))
    assert taken and f"{taken} voxel(s) of 'Box' went to 'GTV-1'" in ref.meta["warning"]  # (GTV-1, smaller, wins)
    assert np.all(ref.data[3][box & ~tumour] == 4) and np.all(ref.data[3][box & tumour] == 1)
    ref = read_labels(rs, image, roi=["box", "GTV-1"])  # (case and spaces aside; in this order)
    assert ref.meta["class_names"] == ["background", "Box", "GTV-1"]
    assert np.all(ref.data[3][box & ~tumour] == 1) and np.all(ref.data[3][box & tumour] == 2)  # (GTV-1 still wins)
    assert f"{taken} voxel(s) of 'Box' went to 'GTV-1'" in ref.meta["warning"]
    with pytest.raises(InputError, match="no ROI named 'Lung'.*'GTV-1', 'Empty', 'Ring', 'Box'"):
        read_labels(rs, image, roi=["Lung"])
    half = rtstruct(lung, cts, tmp_path / "RS_half.dcm", {"GTV-1": {**tumour_rois(labels)}}, dk=0.5)
    with pytest.raises(InputError, match="none of its contours lies on a slice.*between the slices"):
        read_labels(half, image)


def test_a_seg_and_contours_onto_a_coarser_grid_and_part_between_slices(tmp_path, lung):
    """The scan resampled to 2x coarser pixels (a NIfTI of the same place): the SEG's frames are sampled at the nearest
    frame pixel, the contours filled on the coarse grid; an RTSTRUCT with some contours between slices keeps the others,
    with a warning giving their z."""
    from napari_attnseg.data.labels_in import read_labels

    crop, labels, affine, _, _ = lung
    cts = ct_series(lung, tmp_path / "CT")
    coarse = affine.copy()
    coarse[:3, :2] *= 2
    nib.save(nib.Nifti1Image(np.ascontiguousarray(crop[:, ::2, ::2].transpose(2, 1, 0)), coarse), tmp_path / "ct2.nii.gz")
    image = read_image(tmp_path / "ct2.nii.gz")
    sg = read_labels(seg(cts, tmp_path / "SEG.dcm", {"GTV-1": labels}), image)
    assert sg.data.shape == (7, 64, 64)
    np.testing.assert_array_equal(sg.data, labels[:, ::2, ::2])  # (coarse voxel j: at fine pixel 2j)
    rs = read_labels(rtstruct(lung, cts, tmp_path / "RS.dcm", {"GTV-1": tumour_rois(labels)}), image)
    assert dice(rs.data == 1, labels[:, ::2, ::2] == 1) >= 0.9
    # one ROI on the slices, one drawn half a slice off
    rois = {"GTV-1": tumour_rois(labels), "Off": {}}
    path = rtstruct(lung, cts, tmp_path / "RS2.dcm", rois)
    half = rtstruct(lung, cts, tmp_path / "RS_half.dcm", {"Off": tumour_rois(labels)}, dk=0.5)
    import pydicom

    ds, off = pydicom.dcmread(path), pydicom.dcmread(half)
    ds.ROIContourSequence[1].ContourSequence = off.ROIContourSequence[0].ContourSequence
    ds.save_as(path)
    ref = read_labels(path, read_image(tmp_path / "CT"))
    assert dice(ref.data == 1, labels == 1) == 1.0 and not (ref.data == 2).any()
    assert "3 contour(s) lie between the slices of" in ref.meta["warning"]
    assert "ROI 'Off' has no contour on this image's slices: class 2 is empty" in ref.meta["warning"]


def _tiny_model(tmp_path):
    import torch

    from napari_attnseg import create_model, save_model

    torch.manual_seed(0)
    model = create_model("attention_unet", spatial_dims=3, features=(4, 8, 16, 32)).eval()
    with torch.no_grad():  # shift the head so that random weights give a mix of both classes
        d = (lambda lg: lg[:, 1] - lg[:, 0])(model(torch.randn(1, 1, 32, 32, 32)))
        model.head.bias[1] -= torch.quantile(d.flatten(), 0.9)
    path = tmp_path / "tiny3d.safetensors"
    save_model(model, path, card={"name": "tiny3d", "arch": model.arch, "config": model.config,
                                  "classes": ["background", "tumour"], "normalization": {"scheme": "zscore"},
                                  "tile": [32, 32, 32], "overlap": 0.25})
    return path


def test_attnseg_evaluate_scores_against_an_rtstruct_or_seg(tmp_path, lung, capsys):
    """`attnseg evaluate --image CT_FOLDER --labels RS.dcm` failed ('not on the grid' / a one-slice image); now it
    scores as against the NIfTI labels: the SEG exactly, the RTSTRUCT within its rasterisation."""
    from napari_attnseg.cli import main

    _, labels, affine, _, _ = lung
    folder = tmp_path / "CT"
    cts = ct_series(lung, folder)
    rtstruct(lung, cts, folder / "RS.dcm", {"GTV-1": tumour_rois(labels)})
    seg(cts, folder / "SEG.dcm", {"GTV-1": labels})
    nib.save(nib.Nifti1Image(np.ascontiguousarray(labels.transpose(2, 1, 0)), affine), tmp_path / "labels.nii.gz")
    model = str(_tiny_model(tmp_path))
    scores = {}
    for name, ref in (("nifti", tmp_path / "labels.nii.gz"), ("seg", folder / "SEG.dcm"), ("rs", folder / "RS.dcm")):
        assert main(["evaluate", "--model", model, "--image", str(folder), "--labels", str(ref), "--json"]) == 0
        out = capsys.readouterr()
        scores[name] = json.loads(out.out)["dice"]["tumour"]
        if name != "nifti":
            assert "classes 1 GTV-1" in out.err
    assert scores["seg"] == pytest.approx(scores["nifti"], abs=1e-9)
    assert scores["rs"] == pytest.approx(scores["nifti"], abs=0.05)
    assert main(["evaluate", "--model", model, "--image", str(folder), "--labels", str(folder / "RS.dcm"),
                 "--roi", "Lung"]) != 0
    assert "no ROI named 'Lung'" in capsys.readouterr().err


@pytest.mark.skipif("read_labels" not in (Path(__file__).parents[1] / "napari_attnseg/cli/export.py").read_text(),
                    reason="attnseg export does not read RTSTRUCT/SEG labels yet (the patch in h_dicomseg's report)")
def test_attnseg_export_of_an_rtstruct_and_a_seg_builds_a_dataset(tmp_path, lung, capsys):
    """`attnseg export --image CT_FOLDER --labels SEG.dcm --dataset DS`: the segments on the CT's grid, named by their
    SegmentLabel in the manifest; --roi takes one ROI of an RTSTRUCT."""
    from napari_attnseg.cli import main

    _, labels, _, _, _ = lung
    folder = tmp_path / "CT"
    cts = ct_series(lung, folder)
    box = np.zeros_like(labels)
    box[3, 40:90, 40:70] = 1
    rtstruct(lung, cts, folder / "RS.dcm", {"Box": {3: _contours(box[3] > 0)}, "GTV-1": tumour_rois(labels)})
    seg(cts, folder / "SEG.dcm", {"GTV-1": labels})
    for ref, ds, extra in ((folder / "SEG.dcm", tmp_path / "ds_seg", []),
                           (folder / "RS.dcm", tmp_path / "ds_rs", ["--roi", "GTV-1"])):
        assert main(["export", "--image", str(folder), "--labels", str(ref), "--dataset", str(ds), *extra]) == 0
        manifest = json.loads((ds / "manifest.json").read_text())
        assert manifest["label_names"] == ["background", "GTV-1"]
        out = nib.load(ds / manifest["cases"][0]["files"]["label"])
        np.testing.assert_array_equal(np.asarray(out.dataobj).transpose(2, 1, 0), labels)
    capsys.readouterr()
