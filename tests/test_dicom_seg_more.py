"""DICOM SEG leftovers (``attnseg predict --dicom-seg``, napari's Save mask as DICOM SEG).

1. Images without a position in space (a DX radiograph, a multi-frame secondary capture: no FrameOfReferenceUID nor
   ImagePositionPatient) get a SEG without a Frame of Reference (PS3.3 A.51.5.1: each frame lies pixel for pixel on
   the source image/frame its Derivation Image Sequence names); was: 'no DICOM SEG written'. Made from a crop of the
   nuclei2d picture and its labels, read back with highdicom and with our reader.
2. ``--dicom-seg`` on a case finished before without it writes only the SEG from the saved mask (was: the whole case
   computed again, or refused without --overwrite).
3. predict's SEG and napari's Save mask name the model alike: the full weights sha256 (was '<code> (weights sha256
   <12 digits>)' and 'weights sha256 <12 digits>'; predict kept no digest in the private block).
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from test_audit_dicom_labels import ct_series, lung  # noqa: F401  (lung: a fixture)

from napari_attnseg.cli import main
from napari_attnseg.data import read_image
from napari_attnseg.errors import InputError

NUCLEI = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nuclei2d"
DX_SOP, SC_SOP = "1.2.840.10008.5.1.4.1.1.1.1", "1.2.840.10008.5.1.4.1.1.7.3"  # (Multi-frame Grayscale Word SC)
BRAIN = ["--model", "brain-mri-3d", "--brain-extraction", "off", "--no-prob"]


@pytest.fixture(scope="module")
def nuclei():
    """(a 96 x 80 crop of the nuclei picture, its labels as 0/1)."""
    if not (NUCLEI / "image.tif").exists():
        pytest.skip(f"{NUCLEI} is not here")
    box = (slice(0, 96), slice(0, 80))
    image = np.asarray(read_image(NUCLEI / "image.tif").data[box]).astype(np.uint16)
    labels = (np.asarray(read_image(NUCLEI / "labels.tif").data[box]) > 0).astype(np.uint8)
    assert labels.any()
    return image, labels


def _picture(path: Path, sop: str, pixels: np.ndarray):
    """A DICOM image without a position in space (no FrameOfReferenceUID, ImagePositionPatient nor orientation):
    one frame (a DX radiograph) or several (a multi-frame secondary capture)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = sop, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX" if pixels.ndim == 2 else "OT"
    ds.SeriesInstanceUID, ds.StudyInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Doe^Jane", "NUC1", "", "F"
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "20200101", "1200", "1", "", ""
    ds.SeriesNumber, ds.InstanceNumber, ds.Manufacturer = 1, 1, "test"
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    if pixels.ndim == 3:
        ds.NumberOfFrames = pixels.shape[0]
    else:
        ds.ImagerPixelSpacing = [0.2, 0.2]
    ds.PixelData = np.ascontiguousarray(pixels, np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return ds


def test_a_radiograph_without_a_frame_of_reference_gets_a_seg(tmp_path, nuclei, capsys):
    """``attnseg predict dx.dcm --dicom-seg`` on a DX with no FrameOfReferenceUID nor position wrote no SEG ('the
    images of dx.dcm have no position in space'); now a SEG without a Frame of Reference whose one segment frame
    names the DX it lies on: highdicom and our reader read it back as the NIfTI mask."""
    import pydicom

    hd = pytest.importorskip("highdicom")
    from napari_attnseg.data.labels_in import read_labels

    dx = _picture(tmp_path / "dx.dcm", DX_SOP, nuclei[0])
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "dx.dcm"), "--model", "nuclei-2d", "--out", str(out), "--dicom-seg"]) == 0
    assert "no DICOM SEG written" not in capsys.readouterr().err
    mask = np.asarray(read_image(out / "dx_mask.nii.gz").data)
    assert mask.shape == nuclei[0].shape and mask.any()
    record = json.loads((out / "dx_predict.json").read_text())
    assert record["dicom_seg"] == "dx_seg.dcm" and "dx_seg.dcm" in record["outputs"] and not record["warnings"]

    ds = pydicom.dcmread(out / "dx_seg.dcm")
    assert "FrameOfReferenceUID" not in ds and ds.NumberOfFrames == 1
    frame = ds.PerFrameFunctionalGroupsSequence[0]
    assert "PlanePositionSequence" not in frame
    assert frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID == dx.SOPInstanceUID
    assert [d.DimensionIndexPointer for d in ds.DimensionIndexSequence] == [0x0062000B]  # (ReferencedSegmentNumber)

    seg = hd.seg.segread(out / "dx_seg.dcm")
    theirs = np.asarray(seg.get_pixels_by_source_instance([dx.SOPInstanceUID], combine_segments=True))[0]
    np.testing.assert_array_equal(theirs, mask)
    ours = read_labels(out / "dx_seg.dcm", read_image(tmp_path / "dx.dcm"))
    np.testing.assert_array_equal(ours.data, mask)


def test_a_multi_frame_picture_without_a_frame_of_reference_gets_a_seg_frame_by_frame(tmp_path, nuclei):
    """A 3-frame secondary capture without a position in space: each SEG frame names the frame of the file it lies
    on (ReferencedFrameNumber) and its slice (FrameLabel, the second dimension); read back frame by frame (highdicom)
    and onto the image (ours) as the mask. On another picture it is refused: none of its frames derives from it."""
    import pydicom

    hd = pytest.importorskip("highdicom")
    from napari_attnseg.data.dicom_seg_write import write_dicom_seg
    from napari_attnseg.data.labels_in import read_labels

    image, labels = nuclei
    sc = _picture(tmp_path / "sc.dcm", SC_SOP, np.stack([image, image[::-1], image[:, ::-1]]))
    mask = np.stack([labels, np.zeros_like(labels), 2 * labels[:, ::-1]])  # (two classes; no foreground on frame 2)
    vol = read_image(tmp_path / "sc.dcm")
    assert vol.data.shape == mask.shape
    done, note = write_dicom_seg(tmp_path / "sc_seg.dcm", tmp_path / "sc.dcm", mask, ["background", "a", "b"],
                                 "nuclei-2d", "1", vol.affine)
    assert done and note is None
    ds = pydicom.dcmread(tmp_path / "sc_seg.dcm")
    assert "FrameOfReferenceUID" not in ds and ds.NumberOfFrames == 2
    sources = [f.DerivationImageSequence[0].SourceImageSequence[0] for f in ds.PerFrameFunctionalGroupsSequence]
    assert [s.ReferencedFrameNumber for s in sources] == [1, 3]
    assert {str(s.ReferencedSOPInstanceUID) for s in sources} == {str(sc.SOPInstanceUID)}
    assert [f.FrameContentSequence[0].FrameLabel for f in ds.PerFrameFunctionalGroupsSequence] == ["slice 1", "slice 3"]

    seg = hd.seg.segread(tmp_path / "sc_seg.dcm")
    theirs = np.asarray(seg.get_pixels_by_source_frame(sc.SOPInstanceUID, [1, 2, 3], combine_segments=True))
    np.testing.assert_array_equal(theirs, mask)
    ours = read_labels(tmp_path / "sc_seg.dcm", vol)
    np.testing.assert_array_equal(ours.data, mask)
    assert ours.meta["class_names"] == ["background", "a", "b"]

    _picture(tmp_path / "other.dcm", SC_SOP, np.stack([image] * 3))
    with pytest.raises(InputError, match="none of its frames derives from an image of"):
        read_labels(tmp_path / "sc_seg.dcm", read_image(tmp_path / "other.dcm"))
    nib.save(nib.Nifti1Image(mask.transpose(2, 1, 0).astype(np.uint8), np.eye(4)), tmp_path / "sc.nii.gz")
    with pytest.raises(InputError, match="give that DICOM image"):
        read_labels(tmp_path / "sc_seg.dcm", read_image(tmp_path / "sc.nii.gz"))


def test_dicom_seg_on_a_finished_case_writes_only_the_seg(tmp_path, lung, capsys):  # noqa: F811
    """A CT predicted without --dicom-seg, then the same command with it: was refused ('pass --overwrite'); now only
    the SEG is written, from the saved mask (the same segments and frames as a fresh run's SEG), the record lists it,
    the mask is untouched. --overwrite computes the case again, as in a cohort (a newer version of the package may
    segment it otherwise). Another option (--tta) or a mask corrected since: the usual rules (refused without
    --overwrite)."""
    import pydicom

    folder, out, fresh = tmp_path / "CT", tmp_path / "out", tmp_path / "fresh"
    ct_series(lung, folder)
    assert main(["predict", str(folder), *BRAIN, "--out", str(out)]) == 0
    mask_stat = (out / "CT_mask.nii.gz").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["predict", str(folder), *BRAIN, "--out", str(out), "--dicom-seg"]) == 0
    said = capsys.readouterr()
    assert "wrote only its DICOM SEG (CT_seg.dcm) from the saved mask CT_mask.nii.gz, not computed again" in said.out
    assert " tiles on " not in said.out + said.err
    assert (out / "CT_mask.nii.gz").stat().st_mtime_ns == mask_stat
    record = json.loads((out / "CT_predict.json").read_text())
    assert record["dicom_seg"] == "CT_seg.dcm" and "CT_seg.dcm" in record["outputs"]
    assert record["request"]["dicom_seg"] is True and "CT_seg.dcm" in record["output_stats"]

    assert main(["predict", str(folder), *BRAIN, "--out", str(fresh), "--dicom-seg"]) == 0
    ours, theirs = pydicom.dcmread(out / "CT_seg.dcm"), pydicom.dcmread(fresh / "CT_seg.dcm")
    assert ours.PixelData == theirs.PixelData and ours.SegmentSequence == theirs.SegmentSequence
    assert [f.DerivationImageSequence for f in ours.PerFrameFunctionalGroupsSequence] == \
        [f.DerivationImageSequence for f in theirs.PerFrameFunctionalGroupsSequence]
    assert (ours.SoftwareVersions, ours.SeriesDescription) == (theirs.SoftwareVersions, theirs.SeriesDescription)

    # the SEG is there now: the same command is the usual refusal (nothing to add), and the case counts as finished
    capsys.readouterr()
    assert main(["predict", str(folder), *BRAIN, "--out", str(out), "--dicom-seg"]) != 0
    assert "pass --overwrite to replace them" in capsys.readouterr().err
    again = tmp_path / "again"  # (--overwrite on a case finished without the SEG: computed again, with it)
    assert main(["predict", str(folder), *BRAIN, "--out", str(again)]) == 0
    capsys.readouterr()
    assert main(["predict", str(folder), *BRAIN, "--out", str(again), "--dicom-seg", "--overwrite"]) == 0
    said = capsys.readouterr()
    assert " tiles on " in said.out + said.err and "not computed again" not in said.out
    assert (again / "CT_seg.dcm").is_file()

    # a mask corrected since, or other options: not the same case, computed only with --overwrite
    other = tmp_path / "other"
    assert main(["predict", str(folder), *BRAIN, "--out", str(other)]) == 0
    assert main(["predict", str(folder), *BRAIN, "--out", str(other), "--dicom-seg", "--tta"]) != 0
    assert "--overwrite computes the case again, with its DICOM SEG" in capsys.readouterr().err
    nii = nib.load(other / "CT_mask.nii.gz")
    edited = np.asarray(nii.dataobj).copy()
    edited[40:60, 40:60, 3] = 1
    nib.save(nib.Nifti1Image(edited, nii.affine, nii.header), other / "CT_mask.nii.gz")
    assert main(["predict", str(folder), *BRAIN, "--out", str(other), "--dicom-seg"]) != 0
    assert not (other / "CT_seg.dcm").exists()


def test_predict_and_save_mask_name_the_model_by_its_full_weights_digest(tmp_path, lung):  # noqa: F811
    """predict's SEG named '<code version> (weights sha256 <12 digits>)' and kept no digest in its private block;
    napari's Save mask named 'weights sha256 <12 digits>' and kept the full one there. Both now name the full sha256
    (64 hex digits: the LO limit of AlgorithmVersion) through one function, and keep it in the private block."""
    from types import SimpleNamespace

    import pydicom

    from napari_attnseg._napari.save_seg import seg_algorithm
    from napari_attnseg.checkpoint import load_model
    from napari_attnseg.data.dicom_seg_write import MANUFACTURER, REVIEWED_GROUP

    sha = load_model("brain-mri-3d").card.weights_sha256
    assert len(sha) == 64
    folder, out = tmp_path / "CT", tmp_path / "out"
    ct_series(lung, folder)
    assert main(["predict", str(folder), *BRAIN, "--out", str(out), "--dicom-seg"]) == 0
    ds = pydicom.dcmread(out / "CT_seg.dcm", stop_before_pixels=True)
    algo = ds.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert (algo.AlgorithmName, algo.AlgorithmVersion) == ("brain-mri-3d", sha)
    assert ds.private_block(REVIEWED_GROUP, MANUFACTURER)[0x03].value == sha
    mask = read_image(out / "CT_mask.nii.gz")  # (its provenance: the model as the mask file keeps it)
    layer = SimpleNamespace(metadata={"attnseg": mask.meta.get("model_info")})
    assert seg_algorithm(layer) == ("brain-mri-3d", sha)
