"""Review fixes (h_review2 items 4 and 5, h_flow's left-alone items): (1) ``attnseg export --labels RS.dcm --prediction
P`` puts the model's prediction in the dataset's numbering by its own class names, not the RTSTRUCT's ROI order (was:
an unedited prediction recorded as Dice 0.0 with 2068 voxels changed); (2) a one-plane TIFF exported from napari
(image and mask (1, Y, X), napari's own reader) is the 2D case the CLI makes of it (was: refused by the CLI's dataset,
'holds 2D cases; this one is 3D', or a one-slice 3D case); (3) ``attnseg evaluate`` with labels that mark their
reviewed slices scores only those (was: every slice, the model's unchecked guess too); (4) ``attnseg export`` of an
AUTOMATIC DICOM SEG attnseg wrote (the model's own segmentation) warns as for predict's unchanged mask (was: a note)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import test_audit_dicom_labels as base
import tifffile
from test_audit_dicom_labels import SHAPE, _contours, ct_series, rtstruct, tumour_rois

from napari_attnseg.cli import main
from napari_attnseg.data.export import export_case
from napari_attnseg.data.nifti import write_nifti
from napari_attnseg.data.tiff import write_tiff
from napari_attnseg.errors import InputError

NUCLEI = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nuclei2d"


@pytest.fixture(scope="module")
def lung():
    """test_audit_dicom_labels' crop: (CT crop, labels crop, RAS affine, LPS affine, spacing)."""
    return base.lung.__wrapped__()


def _manifest_case(ds: Path, case_id: str) -> dict:
    return next(c for c in json.loads((ds / "manifest.json").read_text())["cases"] if c["case_id"] == case_id)


def _label_file(ds: Path, case_id: str) -> np.ndarray:
    return np.asarray(nib.load(ds / _manifest_case(ds, case_id)["files"]["label"]).dataobj).transpose(2, 1, 0)


def _nuclei(n: int, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """``n`` crops of the nuclei image (a stack) and their foreground."""
    if not NUCLEI.exists():
        pytest.skip(f"{NUCLEI} is not here")
    im, lab = tifffile.imread(NUCLEI / "image.tif"), tifffile.imread(NUCLEI / "labels.tif")
    return (np.stack([im[40 * t:40 * t + size, :size] for t in range(n)]),
            np.stack([(lab[40 * t:40 * t + size, :size] > 0).astype(np.uint8) for t in range(n)]))


# 1. the prediction in the dataset's numbering by its own names --------------------------------------------------------


def test_the_prediction_of_an_rtstruct_export_is_numbered_by_its_own_class_names(tmp_path, lung, capsys):
    """p2's RTSTRUCT lists Box, GTV-1 (the dataset: GTV-1 1, Box 2); the model's prediction is exactly p2's classes in
    the model's (the dataset's) numbering: 0 voxels changed, Dice 1 (was: renumbered with the RTSTRUCT's order,
    2068 changed, Dice 0.0), whether its names are in the file (attnseg predict's mask), come from nowhere (taken in
    the dataset's numbering, said) or list the classes in another order (matched by name)."""
    _, labels, affine, _, spacing = lung
    box = np.zeros_like(labels)
    box[3, 40:90, 40:70] = 1
    rois = {"GTV-1": tumour_rois(labels), "Box": {3: _contours(box[3] > 0)}}
    ds = tmp_path / "ds"
    p1 = ct_series(lung, tmp_path / "p1" / "CT")
    rs1 = rtstruct(lung, p1, tmp_path / "p1" / "CT" / "RS.dcm", rois)
    assert main(["export", "--image", str(rs1.parent), "--labels", str(rs1), "--dataset", str(ds), "--case-id", "p1"]) == 0
    truth = _label_file(ds, "p1")  # GTV-1 1, Box 2
    assert sorted(np.unique(truth).tolist()) == [0, 1, 2]
    p2 = ct_series(lung, tmp_path / "p2" / "CT")
    rs2 = rtstruct(lung, p2, tmp_path / "p2" / "CT" / "RS.dcm", {k: rois[k] for k in ["Box", "GTV-1"]})
    swapped = np.where(truth == 1, 2, np.where(truth == 2, 1, 0)).astype(np.uint8)
    predictions = {
        "named": (truth, ["background", "GTV-1", "Box"]),  # attnseg predict's mask: the model's classes in the file
        "unnamed": (truth, None),  # a mask of another tool: the dataset's numbering, said
        "other_order": (swapped, ["background", "Box", "GTV-1"]),  # a model numbering them otherwise: by name
    }
    for i, (kind, (data, names)) in enumerate(predictions.items()):
        pred = tmp_path / f"pred_{kind}.nii.gz"
        if names is None:
            nib.save(nib.Nifti1Image(np.ascontiguousarray(data.transpose(2, 1, 0)), affine), pred)
        else:
            write_nifti(pred, data, tuple(spacing), affine, None, class_names=names)
        capsys.readouterr()
        assert main(["export", "--image", str(rs2.parent), "--labels", str(rs2), "--dataset", str(ds),
                     "--case-id", f"p2{i}", "--prediction", str(pred)]) == 0
        err = capsys.readouterr().err
        np.testing.assert_array_equal(_label_file(ds, f"p2{i}"), truth)
        stats = _manifest_case(ds, f"p2{i}")["edit_stats"]
        assert stats["changed_voxels"] == 0, (kind, stats)  # was 2068
        assert [stats["per_class"][c]["dice"] for c in "12"] == [1.0, 1.0], (kind, stats)  # was 0.0, 0.0
        if names is None:
            assert "its classes are not named" in err and "in the dataset's numbering (1 GTV-1, 2 Box)" in err, err
        if kind == "other_order":
            assert "the prediction's classes renumbered by name to the dataset's table for the edit statistics: " \
                   "Box 1->2, GTV-1 2->1" in err, err


def test_the_correct_tabs_prediction_shares_the_masks_numbering(tmp_path):
    """napari's Correct tab gives the mask and the model's prediction of one layer (one numbering, no names for the
    prediction): renumbered by name onto the dataset's table, both are, as before."""
    image, fg = _nuclei(3)
    mask = np.where(fg > 0, 1 + (np.arange(64)[None, None, :] >= 32), 0).astype(np.uint8)  # two classes
    ds = tmp_path / "ds"
    export_case(image, mask, ds, "nnunet", label_names=["background", "a", "b"], case_id="one")
    swapped = np.where(mask == 1, 2, np.where(mask == 2, 1, 0)).astype(np.uint8)
    record = export_case(image, swapped, ds, "nnunet", label_names=["background", "b", "a"], prediction=swapped,
                         case_id="two")
    assert record.edit_stats["changed_voxels"] == 0


# 2. a one-plane TIFF: the same 2D case from the CLI and from napari ---------------------------------------------------


def test_a_one_plane_tiff_from_napari_is_the_cli_s_2d_case(tmp_path, capsys):
    """The CLI reads one.tif ((1, 64, 64)) as a 2D plane and writes a 2D case; napari's own reader opens it as
    (1, 64, 64), and the Correct tab exports that image and its mask (the plane marked reviewed) into the same
    dataset: the same 2D case (was refused: 'holds 2D cases; this one is 3D'), reviewed as a whole; into a new folder
    a 2D dataset (was a one-slice 3D case). The plane not marked: refused, saying so (was 'Reviewed slices apply to
    3D volumes')."""
    image, fg = _nuclei(1)
    tifffile.imwrite(tmp_path / "one.tif", image)
    tifffile.imwrite(tmp_path / "one_mask.tif", fg)
    ds = tmp_path / "ds"
    assert main(["export", "--image", str(tmp_path / "one.tif"), "--labels", str(tmp_path / "one_mask.tif"),
                 "--dataset", str(ds), "--case-id", "cli"]) == 0
    assert json.loads((ds / "manifest.json").read_text())["spatial_dims"] == 2
    record = export_case(image, fg, ds, "nnunet", reviewed_slices=[0], source_name="one.tif", case_id="napari",
                         prediction=fg, spacing=(1.0, 0.5, 0.5), axes="ZYX")
    assert record.shape == [64, 64] and record.reviewed_slices is None and record.ignore_label is None
    assert record.spacing == [0.5, 0.5] and record.edit_stats["changed_voxels"] == 0
    napari_case, cli_case = (np.squeeze(np.asarray(nib.load(ds / _manifest_case(ds, c)["files"]["label"]).dataobj))
                             for c in ("napari", "cli"))
    np.testing.assert_array_equal(napari_case, cli_case)
    new = tmp_path / "new"
    export_case(image, fg, new, "tiff", reviewed_slices=[0])
    manifest = json.loads((new / "manifest.json").read_text())
    assert manifest["spatial_dims"] == 2 and manifest["cases"][0]["shape"] == [64, 64]
    for marks in ([], [1]):
        with pytest.raises(InputError, match=r"one 2D plane .* not marked reviewed .* press R on it"):
            export_case(image, fg, tmp_path / "no", "nnunet", reviewed_slices=marks, labels_name="one mask")
        assert not (tmp_path / "no").exists()


# 3. evaluate: only the reviewed slices --------------------------------------------------------------------------------


def test_evaluate_scores_only_the_reviewed_slices_the_labels_mark(tmp_path, capsys):
    """A mask saved with slices 1-2 of 4 marked reviewed (napari's Save mask), the others left as zeros (unchecked):
    evaluate scores slices 1-2 only, said, the Dice that of those slices (was: every slice, the unchecked ones too)."""
    image, fg = _nuclei(4)
    tifffile.imwrite(tmp_path / "img.tif", image)
    partial = fg.copy()
    partial[[0, 3]] = 0  # nobody checked these: empty
    write_tiff(tmp_path / "marked.tif", partial, (1.0, 1.0, 1.0), reviewed_slices=[1, 2])
    write_tiff(tmp_path / "plain.tif", partial, (1.0, 1.0, 1.0))

    def dice(labels: str, *extra: str) -> tuple[float, dict]:
        capsys.readouterr()
        assert main(["evaluate", "--model", "nuclei-2d", "--image", str(tmp_path / "img.tif"), "--labels",
                     str(tmp_path / labels), "--json", *extra]) == 0
        out = json.loads(capsys.readouterr().out)
        return next(iter(out["dice"].values())), out

    marked, out = dice("marked.tif")
    assert "scored on the 2 reviewed slices (1-2)" in out["note"] and "the other 2 are unchecked" in out["note"], out
    only, _ = dice("plain.tif", "--region", "1:3,0:64,0:64")
    everything, plain = dice("plain.tif")
    assert "reviewed" not in plain["note"]
    print(f"Dice: marked {marked:.4f}, plain on slices 1-2 {only:.4f}, plain on every slice {everything:.4f}")
    assert marked == pytest.approx(only) and marked > everything + 0.05, (marked, only, everything)
    write_tiff(tmp_path / "none.tif", partial, (1.0, 1.0, 1.0), reviewed_slices=[9])
    capsys.readouterr()
    assert main(["evaluate", "--model", "nuclei-2d", "--image", str(tmp_path / "img.tif"), "--labels",
                 str(tmp_path / "none.tif")]) != 0
    assert "none.tif marks none of its 4 slices reviewed ([9]): there is no checked slice" in capsys.readouterr().err


# 4. an AUTOMATIC SEG attnseg wrote: warned ----------------------------------------------------------------------------


def test_exporting_an_automatic_seg_warns_that_it_is_the_models_own(tmp_path, lung, capsys):
    """``attnseg export --labels seg.dcm`` of an AUTOMATIC SEG attnseg wrote (napari's Save of a model's mask
    unchanged; predict --dicom-seg's, named with its record) warns that it is the model's own prediction, naming the
    file and what to do (was: only the note that every slice goes out as reviewed); a corrected (SEMIAUTOMATIC) one,
    or one with --reviewed-slices, is not warned."""
    from napari_attnseg.data import read_image
    from napari_attnseg.data.dicom_seg_write import write_dicom_seg

    folder = tmp_path / "CT"
    ct_series(lung, folder)
    image = read_image(folder)
    mask = np.zeros(SHAPE, np.uint8)
    mask[:, 40:60, 40:60] = 1
    names = ["background", "nucleus"]
    auto, fixed = tmp_path / "CT_seg.dcm", tmp_path / "fixed_seg.dcm"
    assert write_dicom_seg(auto, folder, mask, names, "nuclei-2d", "1", image.affine)[0]
    assert write_dicom_seg(fixed, folder, mask, names, "nuclei-2d", "1", image.affine, "", "SEMIAUTOMATIC")[0]

    def export(labels: Path, ds: str, *extra: str) -> str:
        capsys.readouterr()
        assert main(["export", "--image", str(folder), "--labels", str(labels), "--dataset", str(tmp_path / ds),
                     *extra]) == 0
        return capsys.readouterr().err

    err = export(auto, "a")
    assert (f"{auto}: warning: this DICOM SEG is nuclei-2d's segmentation (saved by attnseg as AUTOMATIC: unchanged "
            "and unreviewed), AUTOMATIC: the model's own prediction, not corrections") in err, err
    assert "correct it first" in err and "--reviewed-slices" in err
    (tmp_path / "CT_predict.json").write_text(json.dumps({"dicom_seg": auto.name}))  # (predict's record names it)
    assert "nuclei-2d's segmentation (attnseg predict wrote it: CT_predict.json)" in export(auto, "b")
    assert "AUTOMATIC" not in export(fixed, "c")
    assert "AUTOMATIC" not in export(auto, "d", "--reviewed-slices", "2-4")
