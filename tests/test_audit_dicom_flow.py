"""The DICOM round trip as a radiologist runs it with the defaults (h_flow): ``attnseg predict CT --model nuclei-2d
--dicom-seg`` (napari's CT default), the SEG opened on the CT in napari, corrected and its slices marked reviewed in
the Correct tab, saved as a DICOM SEG, reopened, exported for fine-tuning (napari and ``attnseg export``). The CT is
test_audit_dicom_labels' 7-slice crop of the radiomics lung CT written as a series (head first; feet first with
shuffled file names). Was: the reviewed slices lived only in the SEG's SeriesDescription, so a corrected SEG reopened
in napari had no marks (the Correct tab refused to export it) and ``attnseg export`` exported all 7 slices as
reviewed (the model's unchecked guess on 4 of them as ground truth); now they travel in the SEG as marks. The model
that made the segments was lost on the way too (the napari export's manifest recorded ``"model": {}``); now the SEG's
algorithm is the reopened mask's provenance, with its weights digest where napari's Save mask knew it."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import test_audit_dicom_labels as base
from test_audit_dicom_labels import SHAPE, ct_series

from napari_attnseg.data import read_image

REVIEWED = [2, 3, 4]


@pytest.fixture(scope="module")
def lung():
    """test_audit_dicom_labels' crop: (CT crop, labels crop, RAS affine, LPS affine, spacing)."""
    return base.lung.__wrapped__()


def _case(dataset: Path) -> tuple[dict, np.ndarray]:
    """The one case of an exported nnU-Net dataset: its manifest entry and its labels as (k, j, i)."""
    case = json.loads((dataset / "manifest.json").read_text())["cases"][0]
    return case, np.asarray(nib.load(dataset / case["files"]["label"]).dataobj).transpose(2, 1, 0)


@pytest.mark.parametrize("feet_first", [False, True])
def test_a_segs_reviewed_slices_come_back_on_the_series_and_in_attnseg_export(lung, tmp_path, feet_first, capsys):
    """A SEG written with reviewed slices 2-4 reads back with those slices marked, whatever order the series' files
    and rows are stored in (feet first: the reader's slice 2 is the third from the feet), onto a NIfTI converted
    from the series too; ``attnseg export --labels seg.dcm`` exports only those slices as labels (was: all 7, with a
    note that none were saved with the mask)."""
    from napari_attnseg.cli import main
    from napari_attnseg.data.dicom_seg_write import write_dicom_seg
    from napari_attnseg.data.labels_in import read_labels

    folder = tmp_path / "CT"
    ct_series(lung, folder, feet_first=feet_first, shuffled=feet_first)
    image = read_image(folder)
    mask, names, marked = lung[1].copy(), ["background", "tumour"], [1, 2, 4]
    seg = tmp_path / "corrected_seg.dcm"
    done, _ = write_dicom_seg(seg, folder, mask, names, "nuclei-2d", "1", image.affine, algorithm_type="SEMIAUTOMATIC",
                              reviewed=marked)
    assert done
    back = read_labels(seg, image)
    np.testing.assert_array_equal(back.data, mask)
    assert back.meta["reviewed_slices"] == marked and back.meta["class_names"] == names
    # the series as a NIfTI stored in the other slice order: the marks land on the same CT slices (there 2, 4, 5)
    n = SHAPE[0]
    flip = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, -1, n - 1], [0, 0, 0, 1]], float)
    nifti = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(image.data)[::-1].transpose(2, 1, 0), np.asarray(image.affine) @ flip), nifti)
    other = read_image(nifti)
    same = sorted(k for r in marked for k in range(n) if np.array_equal(other.data[k], image.data[r]))
    assert same != marked and read_labels(seg, other).meta["reviewed_slices"] == same
    mask = np.zeros(SHAPE, np.uint8)  # (the export's mask: foreground on the reviewed slices 2-4 too)
    mask[:, 40:60, 40:60] = 1
    sha = "ab" * 32
    write_dicom_seg(seg, folder, mask, names, "nuclei-2d", "1", image.affine, "", "SEMIAUTOMATIC", reviewed=REVIEWED,
                    weights_sha256=sha)
    assert read_labels(seg, image).meta["model_info"] == {"model": "nuclei-2d", "weights_sha256": sha,
                                                          "checkpoint": None}
    # attnseg export: only the reviewed slices are labels, the others 'ignore'
    assert main(["export", "--image", str(folder), "--labels", str(seg), "--dataset", str(tmp_path / "ds")]) == 0
    err = capsys.readouterr().err
    assert "using the reviewed slices saved with the mask: 2-4" in err
    assert "recording the model saved with the mask: nuclei-2d" in err  # (was: no model recorded)
    case, labels = _case(tmp_path / "ds")
    assert case["reviewed_slices"] == REVIEWED and case["label_names"] == names
    assert case["model"] == {"model": "nuclei-2d", "weights_sha256": sha}
    ignore = case["ignore_label"]
    assert all((labels[k] == ignore).all() for k in range(SHAPE[0]) if k not in REVIEWED)
    np.testing.assert_array_equal(labels[REVIEWED], mask[REVIEWED])
    # a SEG with no marks (predict's): none read, as before; one drawn by hand names no model
    done, _ = write_dicom_seg(tmp_path / "auto.dcm", folder, mask, names, "nuclei-2d", "1", image.affine)
    assert "reviewed_slices" not in read_labels(tmp_path / "auto.dcm", image).meta
    write_dicom_seg(tmp_path / "manual.dcm", folder, mask, names, "", "", image.affine, "", "MANUAL", reviewed=[3],
                    weights_sha256=sha)
    manual = read_labels(tmp_path / "manual.dcm", image).meta
    assert "model_info" not in manual and manual["reviewed_slices"] == [3]


@pytest.mark.gui
def test_predicts_seg_corrected_in_napari_reopens_with_its_reviewed_slices_and_exports_them(
        make_napari_viewer, monkeypatch, lung, tmp_path, qtbot, notifications):
    """predict --dicom-seg with nuclei-2d on a feet-first CT, the SEG opened in napari, painted, slices 2-4 marked,
    saved as a DICOM SEG and reopened: its layer has slices 2-4 marked (the notice says so) and the Correct tab
    exports it with them (was: 'No slice of CT corrected_seg is marked reviewed', nothing exported), the class names
    of the model through the SEG and back, the mask on the CT's voxels."""
    import pydicom
    from test_napari_seg_save import _click_save, _open_series

    from napari_attnseg.cli import main

    folder = tmp_path / "CT"
    ct_series(lung, folder, feet_first=True, shuffled=True)
    assert main(["predict", str(folder), "--model", "nuclei-2d", "--out", str(tmp_path / "out"), "--dicom-seg"]) == 0
    viewer, panel, image = _open_series(make_napari_viewer, monkeypatch, folder)
    viewer._open_or_raise_error([str(tmp_path / "out" / "CT_seg.dcm")])
    mask = viewer.layers["CT CT_seg"]
    assert mask.metadata["attnseg"]["model"] == "nuclei-2d"  # (its provenance: was none)
    predicted = np.asarray(nib.load(tmp_path / "out" / "CT_mask.nii.gz").dataobj).transpose(2, 1, 0)
    np.testing.assert_array_equal(np.asarray(mask.data), predicted)  # (the SEG on the CT's voxels)
    panel.labels_combo.value, panel.image_combo.value = mask.name, image.name
    mask.data_setitem(tuple(np.mgrid[3:4, 20:40, 30:50].reshape(3, -1)), 1)
    panel.mark_slices(REVIEWED)
    out = tmp_path / "corrected_seg.dcm"
    _click_save(panel, monkeypatch, out)
    assert "reviewed slices 2-4" in panel.save_label.value, panel.save_label.value
    ds = pydicom.dcmread(out, stop_before_pixels=True)
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["nucleus"]
    assert ds.SegmentSequence[0].SegmentAlgorithmName == "nuclei-2d"

    viewer._open_or_raise_error([str(out)])
    again = viewer.layers["CT corrected_seg"]
    np.testing.assert_array_equal(np.asarray(again.data), np.asarray(mask.data))
    assert again.metadata["reviewed_slices"] == REVIEWED
    assert any(str(n.message) == "CT corrected_seg: classes 1 nucleus from corrected_seg.dcm, drawn on CT; slices 2-4 "
               "marked reviewed, as saved in the file" for n in notifications)
    panel.labels_combo.value = again.name
    panel.format_combo.value, panel.dataset_edit.value = "nnunet", str(tmp_path / "ds")
    panel.export()
    qtbot.waitUntil(lambda: (tmp_path / "ds" / "manifest.json").is_file(), timeout=30000)
    case, labels = _case(tmp_path / "ds")
    assert case["reviewed_slices"] == REVIEWED and case["label_names"] == ["background", "nucleus"]
    assert case["model"]["model"] == "nuclei-2d"  # (was: {}, the model lost on the way through the SEG)
    np.testing.assert_array_equal(labels[REVIEWED], np.asarray(mask.data)[REVIEWED])



@pytest.mark.gui
def test_a_segment_run_saved_as_seg_untouched_is_not_said_corrected_nor_reviewed(make_napari_viewer, monkeypatch,
                                                                                lung, tmp_path, qtbot):
    """The Segment tab on a DICOM CT (nuclei-2d, napari's default), its mask saved as a SEG at once: was SEMIAUTOMATIC
    'attnseg nuclei-2d corrected, reviewed' (what a PACS shows) for the model's untouched guess, no slice marked;
    now AUTOMATIC 'attnseg nuclei-2d', as predict's SEG. Painted but no slice marked: 'corrected', no 'reviewed';
    slices marked: they are named and kept as marks. The mask lies on the CT voxel for voxel each time."""
    import pydicom
    from test_napari_seg_save import _click_save, _open_series

    from napari_attnseg._napari.segment_widget import SegmentWidget
    from napari_attnseg.data.labels_in import read_labels

    folder = tmp_path / "CT"
    ct_series(lung, folder, feet_first=True, shuffled=True)
    viewer, panel, image = _open_series(make_napari_viewer, monkeypatch, folder)
    segment = SegmentWidget(viewer)
    assert segment.model_combo.value == "nuclei-2d" and segment.image_combo.value == image.name
    with qtbot.waitSignal(segment.run_done, timeout=60000):
        assert segment.run() is not None
    mask = viewer.layers["CT mask"]
    panel.labels_combo.value, panel.image_combo.value = mask.name, image.name
    out = tmp_path / "direct.dcm"

    def saved() -> tuple:
        _click_save(panel, monkeypatch, out)
        ds = pydicom.dcmread(out, stop_before_pixels=True)
        back = read_labels(out, read_image(folder))
        np.testing.assert_array_equal(back.data, np.asarray(mask.data))
        item = ds.SegmentSequence[0]
        assert item.SegmentLabel == "nucleus" and item.SegmentAlgorithmName == "nuclei-2d"
        assert back.meta["model_info"] == {"model": "nuclei-2d", "checkpoint": None,
                                           "weights_sha256": mask.metadata["attnseg"]["checkpoint_sha256"]}
        return item.SegmentAlgorithmType, ds.SeriesDescription, back.meta.get("reviewed_slices"), panel.save_label.value

    kind, text, marks, said = saved()
    assert (kind, text, marks) == ("AUTOMATIC", "attnseg nuclei-2d", None)
    assert "AUTOMATIC: nuclei-2d's mask, not changed nor reviewed" in said
    mask.data_setitem(tuple(np.mgrid[3:4, 20:40, 30:50].reshape(3, -1)), 0)
    assert saved()[:3] == ("SEMIAUTOMATIC", "attnseg nuclei-2d corrected", None)
    panel.mark_slices(REVIEWED)
    assert saved()[:3] == ("SEMIAUTOMATIC", "attnseg nuclei-2d corrected, reviewed images 3-5", REVIEWED)
