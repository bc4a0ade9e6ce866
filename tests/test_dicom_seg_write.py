"""`attnseg predict CT_SERIES --dicom-seg`: the mask also as a DICOM SEG on the series (for a PACS viewer, OHIF, 3D
Slicer). A 7-slice, 128 x 128 crop of the radiomics lung CT is written as a CT series (the builders of
test_audit_dicom_labels), segmented by the bundled 3-class brain-mri-3d model (resampled to 2 mm and turned to its
orientation inside predict: the mask is back on the series' grid), and the SEG is read back with highdicom and with
our own SEG reader: voxel for voxel the NIfTI mask."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from test_audit_dicom_labels import SHAPE, ct_series, lung  # noqa: F401  (lung: a fixture)

from napari_attnseg.cli import main
from napari_attnseg.data import read_image

SEG_SOP = "1.2.840.10008.5.1.4.1.1.66.4"
MODEL = ["--model", "brain-mri-3d", "--brain-extraction", "off", "--no-prob"]


def _mask(out: Path, stem: str) -> np.ndarray:
    """The NIfTI mask as the (k, j, i) array of the series."""
    return np.asarray(nib.load(out / f"{stem}_mask.nii.gz").dataobj).transpose(2, 1, 0)


def _predict(folder: Path, out: Path, *extra: str) -> int:
    return main(["predict", str(folder), *MODEL, "--out", str(out), *extra])


@pytest.mark.parametrize("feet_first", [False, True])
def test_the_seg_holds_the_nifti_mask_on_the_series_voxel_for_voxel(tmp_path, lung, feet_first, capsys):  # noqa: F811
    """Head- and feet-first series (shuffled file names, rows stored left-right flipped): the SEG read back (our
    reader, highdicom) is the NIfTI mask; every frame points at the instance of its slice and lies at its position."""
    import pydicom

    hd = pytest.importorskip("highdicom")
    from napari_attnseg.data.labels_in import read_labels

    cts = ct_series(lung, tmp_path / "CT", feet_first=feet_first, shuffled=feet_first)
    out = tmp_path / "out"
    assert _predict(tmp_path / "CT", out, "--dicom-seg") == 0
    assert "CT_seg.dcm" not in capsys.readouterr().err  # (a small output is written without a line about it)
    mask = _mask(out, "CT")
    image = read_image(tmp_path / "CT")
    assert mask.shape == image.data.shape == SHAPE and set(np.unique(mask)) >= {1, 2}  # (both classes present)
    record = json.loads((out / "CT_predict.json").read_text())
    assert record["dicom_seg"] == "CT_seg.dcm" and "CT_seg.dcm" in record["outputs"]

    ours = read_labels(out / "CT_seg.dcm", image)
    np.testing.assert_array_equal(ours.data, mask)
    assert ours.meta["class_names"] == ["background", "grey matter", "white matter"]

    ds = pydicom.dcmread(out / "CT_seg.dcm")
    # the required attributes (Segmentation IOD, PS3.3 A.51) are there, with the values of the source
    src = {str(c.SOPInstanceUID): c for c in cts}
    assert ds.SOPClassUID == ds.file_meta.MediaStorageSOPClassUID == SEG_SOP and ds.Modality == "SEG"
    assert ds.SegmentationType == "BINARY" and ds.BitsAllocated == 1 and ds.SamplesPerPixel == 1
    assert ds.StudyInstanceUID == cts[0].StudyInstanceUID and ds.FrameOfReferenceUID == cts[0].FrameOfReferenceUID
    assert (ds.PatientName, ds.PatientID, ds.PatientSex) == ("Doe^Jane", "LUNG1", "F")
    assert ds.SeriesInstanceUID != cts[0].SeriesInstanceUID and ds.SOPInstanceUID not in src
    refs = ds.ReferencedSeriesSequence[0]
    assert refs.SeriesInstanceUID == cts[0].SeriesInstanceUID
    assert {str(r.ReferencedSOPInstanceUID) for r in refs.ReferencedInstanceSequence} == set(src)
    for keyword in ("ContentDate", "ContentTime", "InstanceNumber", "SeriesNumber", "Manufacturer",
                    "ManufacturerModelName", "DeviceSerialNumber", "SoftwareVersions", "DimensionIndexSequence",
                    "SharedFunctionalGroupsSequence", "ContentLabel", "LossyImageCompression", "ImageType"):
        assert keyword in ds, keyword
    segments = ds.SegmentSequence
    assert [s.SegmentLabel for s in segments] == ["grey matter", "white matter"]
    assert all(s.SegmentAlgorithmType == "AUTOMATIC" and s.SegmentAlgorithmName == "brain-mri-3d" for s in segments)
    algo = segments[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algo.AlgorithmName == "brain-mri-3d" and "096d0ed4ad15" in algo.AlgorithmVersion
    shared = ds.SharedFunctionalGroupsSequence[0]
    assert list(shared.PlaneOrientationSequence[0].ImageOrientationPatient) == list(cts[0].ImageOrientationPatient)
    # only frames with foreground, each on the position of the instance it derives from
    expected = sum(int((mask[k] == v).any()) for v in (1, 2) for k in range(SHAPE[0]))
    assert ds.NumberOfFrames == expected == len(ds.PerFrameFunctionalGroupsSequence)
    for item in ds.PerFrameFunctionalGroupsSequence:
        source = item.DerivationImageSequence[0].SourceImageSequence[0]
        ct = src[str(source.ReferencedSOPInstanceUID)]
        assert np.allclose(item.PlanePositionSequence[0].ImagePositionPatient, ct.ImagePositionPatient)

    seg = hd.seg.segread(out / "CT_seg.dcm")  # (highdicom parses and checks it)
    k_of = {str(c.SOPInstanceUID): k for k, c in enumerate(cts)}  # the crop's k of each instance
    stored = np.zeros(SHAPE, np.uint8)  # highdicom's frames, put back where the source instances lie
    for v in (1, 2):
        for n, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
            if item.SegmentIdentificationSequence[0].ReferencedSegmentNumber != v:
                continue
            uid = str(item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
            stored[k_of[uid]][seg.pixel_array[n] > 0] = v
    got = stored[::-1] if feet_first else stored  # (the series reads from the feet; frames are stored pixels, as is)
    np.testing.assert_array_equal(got, mask)
    by_source = seg.get_pixels_by_source_instance(source_sop_instance_uids=[c.SOPInstanceUID for c in cts],
                                                  combine_segments=True, skip_overlap_checks=True)
    got = np.asarray(by_source)[::-1] if feet_first else np.asarray(by_source)
    np.testing.assert_array_equal(got, mask)


def test_non_dicom_inputs_are_refused_before_anything_runs(tmp_path, lung, capsys):  # noqa: F811
    """A NIfTI with --dicom-seg: refused naming it, nothing written (a lone file and a cohort folder)."""
    crop, _, affine, _, _ = lung
    nib.save(nib.Nifti1Image(np.ascontiguousarray(crop.transpose(2, 1, 0)), affine), tmp_path / "ct.nii.gz")
    out = tmp_path / "out"
    assert _predict(tmp_path / "ct.nii.gz", out, "--dicom-seg") != 0
    err = capsys.readouterr().err
    assert f"{tmp_path / 'ct.nii.gz'} is not DICOM" in err and "leave out --dicom-seg" in err
    assert not out.exists() or not any(out.iterdir())
    folder = tmp_path / "cohort"
    folder.mkdir()
    (folder / "ct.nii.gz").symlink_to(tmp_path / "ct.nii.gz")
    assert _predict(folder, out, "--dicom-seg") != 0
    assert f"{folder / 'ct.nii.gz'} is not DICOM" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


def test_resume_a_rerun_with_dicom_seg_writes_it_one_without_keeps_it(tmp_path, lung, capsys):  # noqa: F811
    """A cohort of one series (--summary): finished without the SEG, a rerun with --dicom-seg writes only its SEG
    from the saved mask (done, not 'finished before'); a rerun without keeps the case and its SEG (skipped); --overwrite without it removes the SEG
    and says so. A user's own <case>_seg.dcm is never replaced; a lone run is refused before computing."""
    folder = tmp_path / "CT"
    ct_series(lung, folder)
    out = tmp_path / "out"
    cohort = ["--summary", "summary.csv"]
    assert _predict(folder, out, *cohort) == 0
    assert not (out / "CT_seg.dcm").exists()
    capsys.readouterr()
    assert _predict(folder, out, *cohort, "--dicom-seg") == 0
    assert "CT: done" in capsys.readouterr().out
    assert (out / "CT_seg.dcm").is_file()
    seg_stat = (out / "CT_seg.dcm").stat().st_mtime_ns
    assert _predict(folder, out, *cohort) == 0
    assert "CT: skipped (finished before)" in capsys.readouterr().out
    assert (out / "CT_seg.dcm").stat().st_mtime_ns == seg_stat
    assert _predict(folder, out, *cohort, "--dicom-seg") == 0  # (the same again: done before)
    assert "CT: skipped (finished before)" in capsys.readouterr().out
    assert _predict(folder, out, "--dicom-seg") != 0  # (a lone run refuses outputs there: says what --overwrite does)
    assert "--overwrite computes the case again, with its DICOM SEG" not in capsys.readouterr().err  # (it is there)
    assert _predict(folder, out, *cohort, "--overwrite") == 0
    warnings = json.loads((out / "CT_predict.json").read_text())["warnings"]
    assert any("removed CT_seg.dcm, the DICOM SEG of the earlier run" in w for w in warnings)
    said = capsys.readouterr()  # (the cohort's lines and its summary carry it too, not only the record)
    assert "removed CT_seg.dcm" in said.out + said.err, said
    summary = next(p for p in (out / "summary.csv", tmp_path / "summary.csv", Path("summary.csv")) if p.is_file())
    assert "removed CT_seg.dcm" in summary.read_text()
    assert not (out / "CT_seg.dcm").exists()
    assert _predict(folder, out, "--dicom-seg", "--overwrite") == 0 and (out / "CT_seg.dcm").is_file()  # (a lone run)
    capsys.readouterr()
    assert _predict(folder, out, "--overwrite") == 0
    assert "CT: warning: removed CT_seg.dcm, the DICOM SEG of the earlier run" in capsys.readouterr().err
    assert not (out / "CT_seg.dcm").exists()
    assert _predict(folder, out, "--dicom-seg") == 0  # (finished before: only its SEG is written, from the saved mask)
    assert "wrote only its DICOM SEG (CT_seg.dcm) from the saved mask" in capsys.readouterr().out
    assert _predict(folder, out, "--overwrite") == 0 and not (out / "CT_seg.dcm").exists()  # (without: it goes again)
    capsys.readouterr()
    # a SEG of the user's at that name: a cohort case fails naming it, a lone run is refused; the file stays
    (out / "CT_seg.dcm").write_bytes(b"mine")
    assert _predict(folder, out, *cohort, "--dicom-seg") != 0
    assert "CT_seg.dcm" in capsys.readouterr().err
    assert _predict(folder, out, "--dicom-seg", "--overwrite") != 0
    err = capsys.readouterr().err
    assert "CT_seg.dcm" in err and "never replaced" in err and " tiles on " not in err
    assert (out / "CT_seg.dcm").read_bytes() == b"mine"
    # without --dicom-seg it is no output of ours: the case runs beside it and leaves it alone
    assert _predict(folder, out, "--overwrite") == 0
    assert (out / "CT_seg.dcm").read_bytes() == b"mine"


def test_a_mask_without_foreground_writes_no_seg_and_says_so(tmp_path, lung):  # noqa: F811
    """highdicom refuses a SEG without frames and a PACS shows nothing of one: none is written, the record says why."""
    from napari_attnseg.checkpoint import load_model
    from napari_attnseg.data.dicom_seg_write import write_dicom_seg

    ct_series(lung, tmp_path / "CT")
    image = read_image(tmp_path / "CT")
    done, note = write_dicom_seg(tmp_path / "x_seg.dcm", tmp_path / "CT", np.zeros(SHAPE, np.uint8),
                                 ["background", "tumour"], "m", "1", image.affine)
    assert not done and "no foreground" in note and not (tmp_path / "x_seg.dcm").exists()
    assert load_model("brain-mri-3d").card.name == "brain-mri-3d"


def test_only_outputs_that_take_a_while_are_announced(tmp_path):
    """'writing X (what, N MB before compression)' was printed for every output, also a small 2D mask's (noise); now
    only for outputs of 16 MB or more before compression: here the 16.8 MB probability map, not the 4.2 MB mask."""
    from test_big_inputs import _nifti, _pred

    from napari_attnseg.results import write_prediction

    shape = (64, 256, 256)
    vol = read_image(_nifti(tmp_path / "big.nii.gz", shape=shape))
    said: list[str] = []
    write_prediction(tmp_path / "out", tmp_path / "big.nii.gz", vol, None, _pred(shape, k_out=2, maps=False),
                     say=said.append)
    assert said == ["writing big_prob.nii.gz (probability, 16.8 MB before compression)"]


def test_a_series_missing_a_slice_leaves_the_inserted_slice_out(tmp_path, lung, capsys):  # noqa: F811
    """A series with one image missing reads with an empty slice in its place: the SEG has no frame there (no source
    image to derive it from), the other slices land where they were; the record says what was left out."""
    hd = pytest.importorskip("highdicom")
    from napari_attnseg.data.labels_in import read_labels

    folder = tmp_path / "CT"
    cts = ct_series(lung, folder)
    (folder / "CT003.dcm").unlink()
    assert _predict(folder, tmp_path / "out", "--dicom-seg") == 0
    mask = _mask(tmp_path / "out", "CT")
    image = read_image(folder)
    assert mask.shape == SHAPE and "look missing" in image.meta["warning"]
    got = read_labels(tmp_path / "out" / "CT_seg.dcm", image).data
    np.testing.assert_array_equal(got[[0, 1, 2, 4, 5, 6]], mask[[0, 1, 2, 4, 5, 6]])
    assert not got[3].any()
    warnings = json.loads((tmp_path / "out" / "CT_predict.json").read_text())["warnings"]
    lost = int(np.count_nonzero(mask[3]))
    assert lost and any(f"{lost} mask voxel(s) on the slice(s) inserted" in w for w in warnings)
    assert f"CT: warning: {lost} mask voxel(s)" in capsys.readouterr().err
    seg = hd.seg.segread(tmp_path / "out" / "CT_seg.dcm")
    refs = {str(i.ReferencedSOPInstanceUID) for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert refs == {str(c.SOPInstanceUID) for k, c in enumerate(cts) if k != 3}


def test_an_enhanced_multi_frame_ct_is_referenced_frame_by_frame(tmp_path, lung):  # noqa: F811
    """One Enhanced CT file (the series converted by highdicom): one referenced instance, each SEG frame naming the
    frame of it that it derives from; read back, the NIfTI mask."""
    import pydicom

    hd = pytest.importorskip("highdicom")
    from pydicom.uid import generate_uid

    from napari_attnseg.data.labels_in import read_labels

    cts = ct_series(lung, tmp_path / "CT")
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(cts, series_instance_uid=generate_uid(), series_number=3,
                                                        sop_instance_uid=generate_uid(), instance_number=1)
    (tmp_path / "E").mkdir()
    enhanced.save_as(str(tmp_path / "E" / "ct.dcm"))
    assert _predict(tmp_path / "E", tmp_path / "out", "--dicom-seg") == 0
    mask = _mask(tmp_path / "out", "E")
    np.testing.assert_array_equal(read_labels(tmp_path / "out" / "E_seg.dcm", read_image(tmp_path / "E")).data, mask)
    ds = pydicom.dcmread(tmp_path / "out" / "E_seg.dcm")
    assert [str(i.ReferencedSOPInstanceUID) for i in ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence] == [
        str(enhanced.SOPInstanceUID)]
    positions = [tuple(f.PlanePositionSequence[0].ImagePositionPatient) for f in enhanced.PerFrameFunctionalGroupsSequence]
    for item in ds.PerFrameFunctionalGroupsSequence:
        source = item.DerivationImageSequence[0].SourceImageSequence[0]
        assert tuple(item.PlanePositionSequence[0].ImagePositionPatient) == positions[source.ReferencedFrameNumber - 1]


@pytest.mark.parametrize("again", [["--dicom-seg"], []])
def test_a_seg_corrected_since_is_kept_when_a_rerun_replaces_it(tmp_path, lung, again, capsys):  # noqa: F811
    """The SEG a run wrote, re-saved since with the corrected mask (napari's Save mask as DICOM SEG onto that file),
    is the clinician's work: --overwrite (with --dicom-seg: a new SEG; without: none) moves it to edited_masks/ as it
    does an edited NIfTI mask, and says so. Was: replaced, or removed as 'the DICOM SEG of the earlier run'."""
    from napari_attnseg.data.dicom_seg_write import write_dicom_seg

    folder, out = tmp_path / "CT", tmp_path / "out"
    ct_series(lung, folder)
    assert _predict(folder, out, "--dicom-seg") == 0
    corrected = _mask(out, "CT").copy()
    corrected[3, 40:60, 40:60] = 1  # (a correction)
    done, _ = write_dicom_seg(out / "CT_seg.dcm", folder, corrected, ["background", "grey matter", "white matter"],
                              "brain-mri-3d", "1", read_image(folder).affine)
    assert done
    mine = (out / "CT_seg.dcm").read_bytes()
    capsys.readouterr()
    assert _predict(folder, out, "--overwrite", *again) == 0
    kept = out / "edited_masks" / "CT_seg.dcm"
    assert kept.is_file() and kept.read_bytes() == mine
    assert "its DICOM SEG had been changed since attnseg wrote it" in capsys.readouterr().err
    assert (out / "CT_seg.dcm").is_file() == bool(again)


def test_a_cohort_rerun_with_other_options_leaves_a_corrected_seg_alone(tmp_path, lung, capsys):  # noqa: F811
    """A cohort rerun with another option (--tta) and no --overwrite recomputed a case whose SEG had been corrected
    since (moved to edited_masks/, the model's SEG back at the name sent to the PACS), while a corrected NIfTI mask
    fails its case; now the corrected SEG fails it the same way and stays as it is."""
    from napari_attnseg.data.dicom_seg_write import write_dicom_seg

    folder, out = tmp_path / "CT", tmp_path / "out"
    ct_series(lung, folder)
    cohort = ["--summary", "summary.csv", "--dicom-seg"]
    assert _predict(folder, out, *cohort) == 0
    corrected = _mask(out, "CT").copy()
    corrected[3, 40:60, 40:60] = 1
    assert write_dicom_seg(out / "CT_seg.dcm", folder, corrected, ["background", "grey matter", "white matter"],
                           "brain-mri-3d", "1", read_image(folder).affine)[0]
    mine = (out / "CT_seg.dcm").read_bytes()
    capsys.readouterr()
    _predict(folder, out, *cohort, "--tta")
    said = capsys.readouterr()
    assert "1 failed" in said.out and "--overwrite" in said.out + said.err, said
    assert (out / "CT_seg.dcm").read_bytes() == mine and not (out / "edited_masks").exists()


def test_class_names_outside_latin_1_survive(tmp_path, lung):  # noqa: F811
    """A class named 'Ödem' / '肿瘤' on a series without SpecificCharacterSet was written as '??' (a Python warning
    only); the SEG now says UTF-8 (ISO_IR 192) when its text needs it, the source's set otherwise."""
    import warnings

    import pydicom

    from napari_attnseg.data.dicom_seg_write import write_dicom_seg
    from napari_attnseg.data.labels_in import read_labels

    folder = tmp_path / "CT"
    cts = ct_series(lung, folder)
    image = read_image(folder)
    labels = np.zeros(SHAPE, np.uint8)
    labels[3, 40:60, 40:60], labels[4, 60:80, 60:80] = 1, 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (pydicom's "Failed to encode value ... using replacement characters")
        assert write_dicom_seg(tmp_path / "seg.dcm", folder, labels, ["background", "Ödem", "肿瘤"], "m", "1",
                               image.affine)[0]
    assert read_labels(tmp_path / "seg.dcm", image).meta["class_names"] == ["background", "Ödem", "肿瘤"]
    ds = pydicom.dcmread(tmp_path / "seg.dcm")
    assert ds.SpecificCharacterSet == "ISO_IR 192" and str(ds.PatientName) == str(cts[0].PatientName)
    assert write_dicom_seg(tmp_path / "ascii.dcm", folder, labels, ["background", "a", "b"], "m", "1", image.affine)[0]
    assert "SpecificCharacterSet" not in pydicom.dcmread(tmp_path / "ascii.dcm")  # (as the source: none)
