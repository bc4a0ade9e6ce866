"""DICOM SEG follow-ups (``attnseg predict --dicom-seg`` on a cohort, napari's Save mask as DICOM SEG).

1. A cohort rerun with ``--dicom-seg`` after one without computed every finished case again ("stale"); now a case
   finished with the same model, options and input, its mask untouched, gets only its SEG from the saved mask (as a
   lone run does), reported done with a note in the cohort's lines and summary; a corrected mask fails its case as
   before.
2. The SeriesDescription of a SEG saved from napari names the reviewed slices as a PACS user finds them: one
   multi-frame file (an enhanced CT stored from the last position to the first) by its frame numbers ('reviewed frames
   5-6'; was 'slices 1-2 of 6', the rows of the volume), and a series missing an image without the empty slice the
   reader inserts there (the real images' InstanceNumbers, or 'of 6' for a PACS holding 6; was 'slices 3-5 of 7').
   The private block keeps the marks by position, as before.
"""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from test_audit_dicom_labels import ct_series, lung  # noqa: F401  (lung: a fixture)

from napari_attnseg._napari.save_seg import seg_description
from napari_attnseg.cli import main
from napari_attnseg.data import read_image
from napari_attnseg.data.dicom_seg_write import REVIEWED_GROUP, source_slices, write_dicom_seg

BRAIN = ["--model", "brain-mri-3d", "--brain-extraction", "off", "--no-prob"]


def _cohort(cases: Path, out: Path, *extra: str) -> int:
    return main(["predict", str(cases / "*"), *BRAIN, "--out", str(out), *extra])


def test_a_cohort_rerun_with_dicom_seg_writes_only_the_segs_of_finished_cases(tmp_path, lung, capsys):  # noqa: F811
    """Two CT series predicted as a cohort without --dicom-seg, one mask corrected since; the same cohort with
    --dicom-seg computed both again (the untouched one 'stale'). Now the untouched case gets only its SEG, from the
    saved mask (the same frames as a fresh run's SEG), done with a note in its line and the summary; the corrected one
    fails as before, its mask kept; the next rerun skips the finished case."""
    cases, out, fresh = tmp_path / "cases", tmp_path / "out", tmp_path / "fresh"
    ct_series(lung, cases / "A")
    ct_series(lung, cases / "B")
    assert _cohort(cases, out) == 0
    a_mask = (out / "A_mask.nii.gz").stat().st_mtime_ns
    nii = nib.load(out / "B_mask.nii.gz")
    edited = np.asarray(nii.dataobj).copy()
    edited[10:20, 10:20, 3] = 1
    nib.save(nib.Nifti1Image(edited, nii.affine, nii.header), out / "B_mask.nii.gz")
    b_mask = (out / "B_mask.nii.gz").read_bytes()
    capsys.readouterr()

    assert _cohort(cases, out, "--dicom-seg") == 1  # (B: corrected since, fails as before)
    said = capsys.readouterr()
    assert "A: done (" in said.out, said
    assert "SEG written from the saved mask A_mask.nii.gz (A_seg.dcm)" in said.out + said.err, said  # (its note)
    assert "B: failed" in said.err and "--overwrite" in said.err
    assert (out / "A_mask.nii.gz").stat().st_mtime_ns == a_mask  # (not computed again)
    assert (out / "B_mask.nii.gz").read_bytes() == b_mask and not (out / "B_seg.dcm").exists()
    rows = {r["case"]: r for r in csv.DictReader(open(out / "cohort_summary.csv", encoding="utf-8-sig"))}
    assert rows["A"]["status"] == "done" and "SEG written from the saved mask A_mask.nii.gz (A_seg.dcm): finished " \
        "before with this model and these options, not computed again" in rows["A"]["warnings"]
    assert rows["B"]["status"] == "failed"

    (cases / "B").rename(tmp_path / "B")  # (the SEG equals a fresh run's)
    assert _cohort(cases, fresh, "--dicom-seg") == 0
    ours, theirs = pydicom.dcmread(out / "A_seg.dcm"), pydicom.dcmread(fresh / "A_seg.dcm")
    assert ours.PixelData == theirs.PixelData and ours.SegmentSequence == theirs.SegmentSequence
    assert [f.DerivationImageSequence for f in ours.PerFrameFunctionalGroupsSequence] == \
        [f.DerivationImageSequence for f in theirs.PerFrameFunctionalGroupsSequence]
    assert (ours.SoftwareVersions, ours.SeriesDescription, ours.ContentDescription) == \
        (theirs.SoftwareVersions, theirs.SeriesDescription, theirs.ContentDescription)
    capsys.readouterr()
    assert _cohort(cases, out, "--dicom-seg") == 0  # (finished now, with its SEG)
    assert "A: skipped (finished before)" in capsys.readouterr().out


def test_a_case_missing_one_of_its_outputs_is_computed_again_with_its_seg(tmp_path, lung, capsys):  # noqa: F811
    """A case whose probability map was deleted since is no finished case: the rerun with --dicom-seg computes it again
    (the map back, the SEG with it), not only the SEG beside the missing map (a guard of the SEG-only path)."""
    cases, out = tmp_path / "cases", tmp_path / "out"
    ct_series(lung, cases / "A")
    with_prob = ["predict", str(cases / "*"), *[a for a in BRAIN if a != "--no-prob"], "--out", str(out)]
    assert main(with_prob) == 0
    prob = next(out.glob("A_prob*"))
    prob.unlink()
    capsys.readouterr()
    assert main([*with_prob, "--dicom-seg"]) == 0
    said = capsys.readouterr()
    assert "A: done (" in said.out and "SEG written from the saved mask" not in said.err, said
    assert prob.is_file() and (out / "A_seg.dcm").is_file()


def _saved(src: Path, path: Path, reviewed: list[int]) -> pydicom.Dataset:
    """The SEG napari's Save mask writes of a drawn mask on ``src`` with the slices ``reviewed`` marked."""
    slices, affine = source_slices(src)
    labels = np.zeros((len(slices), *np.shape(read_image(src).data)[1:]), np.uint8)
    labels[reviewed, 2:6, 3:7] = 1
    done, note = write_dicom_seg(path, src, labels, ["background", "tumour"], "", "", affine, algorithm_type="MANUAL",
                                 description=lambda found: seg_description(None, reviewed, 3, slices=found),
                                 reviewed=reviewed)
    assert done, note
    ds = pydicom.dcmread(path)
    assert [int(v) for v in ds.private_block(REVIEWED_GROUP, "napari-attnseg")[0x02].value] == reviewed  # (as before)
    return ds


def test_an_enhanced_ct_stored_last_slice_first_names_the_reviewed_frames_of_its_file(tmp_path):
    """One Enhanced CT file whose frame 1 is the highest position: rows 0-1 of the volume are its frames 6 and 5. The
    SEG said 'reviewed slices 1-2 of 6' (the rows); a PACS user finds them as frames 5-6 of the file."""
    from pydicom.sequence import Sequence
    from pydicom.uid import generate_uid
    from test_dicom import SHAPE, enhanced, lung_crop, save

    ds = enhanced(lung_crop(), 0, SHAPE[0], generate_uid())
    ds.PerFrameFunctionalGroupsSequence = Sequence(list(ds.PerFrameFunctionalGroupsSequence)[::-1])
    ds.PixelData = np.ascontiguousarray(np.frombuffer(ds.PixelData, np.uint16).reshape(SHAPE)[::-1]).tobytes()
    src = save(ds, tmp_path / "enhanced_ct.dcm")
    frames = pydicom.dcmread(src).pixel_array
    volume = np.asarray(read_image(src).data)
    shown = [1 + int(np.argmax([np.corrcoef(frames[f].ravel(), volume[k].ravel())[0, 1] for f in range(SHAPE[0])]))
             for k in (0, 1)]  # (the frames of the file rows 0-1 show, told by their pixels; stored values rescaled)
    assert shown == [6, 5]
    assert _saved(src, tmp_path / "seg.dcm", [0, 1]).SeriesDescription == "attnseg manual, reviewed frames 5-6"


def test_a_series_missing_an_image_names_only_its_real_images(tmp_path, lung):  # noqa: F811
    """A series of 7 CT images without image 4 (CT003.dcm): the reader fills an empty slice there. Marks on slices 3-5
    (the empty one among them) said 'reviewed slices 3-5 of 7' of a PACS series of 6 images; now the InstanceNumbers of
    the real images ('images 3,5'), and, without numbers of their own, their positions among the 6 ('slices 3-4 of
    6')."""
    folder = tmp_path / "CT"
    ct_series(lung, folder)
    (folder / "CT003.dcm").unlink()
    slices, _ = source_slices(folder)
    assert len(slices) == 7 and slices[3] is None
    assert _saved(folder, tmp_path / "seg.dcm", [2, 3, 4]).SeriesDescription == "attnseg manual, reviewed images 3,5"
    for path in folder.glob("*.dcm"):  # (all numbered 1: the images are told apart by their order only)
        ds = pydicom.dcmread(path)
        ds.InstanceNumber = 1
        ds.save_as(path)
    described = _saved(folder, tmp_path / "seg2.dcm", [2, 3, 4]).SeriesDescription
    assert described == "attnseg manual, reviewed slices 3-4 of 6"
    assert seg_description(None, [5, 6], 3, slices=source_slices(folder)[0]) == "attnseg manual, reviewed slices 5-6 of 6"
