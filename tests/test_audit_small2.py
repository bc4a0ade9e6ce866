"""A DICOM SEG saved from napari names the reviewed slices as a PACS user finds them. Its SeriesDescription said
napari's 0-based slice numbers ('reviewed slices 2-4'), which a radiologist in a PACS cannot find: the PACS shows the
images' InstanceNumbers (103-105 in a series numbered from 101; 105-106 for slices 1-2 of a feet-first series
numbered from the head down). Now it names the InstanceNumbers ('reviewed images 103-105'), else 1-based slice numbers ('reviewed slices 3-5
of 7': images without InstanceNumbers, or sharing one); the private block still keeps the marks by slice position.
A 7-slice, 128 x 128 crop of the radiomics lung CT (test_audit_dicom_labels), opened through the plugin's reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import test_audit_dicom_labels as base
from test_audit_dicom_labels import SHAPE, ct_series

from napari_attnseg.data.dicom_seg_write import REVIEWED_GROUP, image_numbers, source_slices


@pytest.fixture(scope="module")
def lung():
    return base.lung.__wrapped__()


def _renumber(folder: Path, number) -> None:
    """Each CT file's InstanceNumber set to ``number(old)`` (None: removed)."""
    for f in sorted(folder.iterdir()):
        ds = pydicom.dcmread(f)
        old = ds.get("InstanceNumber")
        new = number(None if old is None else int(old))
        if new is None:
            del ds.InstanceNumber
        else:
            ds.InstanceNumber = new
        ds.save_as(f, enforce_file_format=True)


@pytest.mark.gui
@pytest.mark.parametrize("feet_first, marks, said", [(False, [2, 3, 4], "images 103-105"),
                                                     (True, [1, 2], "images 105-106")])
def test_the_seg_names_the_reviewed_slices_by_their_instance_numbers(make_napari_viewer, monkeypatch, lung, tmp_path,
                                                                      feet_first, marks, said):
    """Was 'attnseg manual, reviewed slices 2-4' (napari's numbers) for images 103-105; and 'slices 1-2' for a
    feet-first series numbered from the head down, whose slices 1-2 (read from the feet) are its images 106 and 105."""
    from test_napari_seg_save import SEG_FILTER, _click_save, _open_series

    folder = tmp_path / "CT"
    ct_series(lung, folder, feet_first=feet_first)
    _renumber(folder, (lambda n: 108 - n) if feet_first else (lambda n: n + 100))  # (feet first: 107 at the feet)
    viewer, panel, image = _open_series(make_napari_viewer, monkeypatch, folder)
    drawn = np.zeros(SHAPE, np.uint8)
    drawn[2:5, 40:70, 50:90] = 1
    mask = viewer.add_labels(drawn, name="drawn", scale=image.scale, translate=image.translate)
    panel.labels_combo.value, panel.image_combo.value = mask.name, image.name
    panel.class_names_edit.value = "background, tumour"
    panel.mark_slices(marks)
    out = tmp_path / "drawn.dcm"
    _click_save(panel, monkeypatch, out, SEG_FILTER)
    assert out.is_file(), panel.save_label.value
    ds = pydicom.dcmread(out)
    assert ds.SeriesDescription == f"attnseg manual, reviewed {said}"
    cts = [pydicom.dcmread(f) for f in sorted(folder.iterdir())]
    shown = [int(c.InstanceNumber) for c in cts if any(np.array_equal(c.pixel_array, image.data[k]) for k in marks)]
    assert f"images {min(shown)}-{max(shown)}" == said  # (the images the marked slices show, told by their pixels)
    block = ds.private_block(REVIEWED_GROUP, "napari-attnseg")
    assert [int(v) for v in block[0x02].value] == marks  # (the marks by slice position, as before)
    assert f"'attnseg manual, reviewed {said}'" in panel.save_label.value


def test_without_instance_numbers_of_their_own_the_slices_are_numbered_from_1(lung, tmp_path):
    """Images without InstanceNumbers, or two sharing one: 1-based positions in the volume's order (was 0-based)."""
    from napari_attnseg._napari.save_seg import seg_description

    folder = tmp_path / "CT"
    ct_series(lung, folder)
    slices, _ = source_slices(folder)
    assert image_numbers(slices, [4, 2, 3]) == ([3, 4, 5], True)
    _renumber(folder, lambda n: None if n == 4 else n)  # (slice 3's image has none)
    slices, _ = source_slices(folder)
    assert image_numbers(slices, [2, 3, 4]) == ([3, 4, 5], False)
    assert seg_description(None, [2, 3, 4], 3, slices=slices) == "attnseg manual, reviewed slices 3-5 of 7"
    _renumber(folder, lambda n: 1)  # (all numbered 1: no image told apart by it)
    slices, _ = source_slices(folder)
    assert seg_description("brain-mri-3d", [0], 3, slices=slices) == "attnseg brain-mri-3d corrected, reviewed slices 1 of 7"


def test_the_slices_evaluate_scores_are_listed(tmp_path):
    """``attnseg evaluate --json`` said which slices it scored only in its note ('scored on the 2 reviewed slices
    (1-2)'): :func:`scored_slices` gives them for its ``reviewed_slices`` (None: every slice scored)."""
    from test_audit_review_fixes4 import _nuclei

    from napari_attnseg.data import read_image
    from napari_attnseg.data.tiff import write_tiff
    from napari_attnseg.evaluation import scored_slices, unreviewed_slices

    _, fg = _nuclei(4)
    write_tiff(tmp_path / "marked.tif", fg, (1.0, 1.0, 1.0), reviewed_slices=[2, 1])
    write_tiff(tmp_path / "plain.tif", fg, (1.0, 1.0, 1.0))
    for name, scored in [("marked.tif", [1, 2]), ("plain.tif", None)]:
        ref = read_image(tmp_path / name)
        unchecked, _ = unreviewed_slices(ref.meta, fg.shape, name)
        assert scored_slices(unchecked) == scored, name


def test_evaluate_json_lists_the_slices_scored(tmp_path, capsys):
    """`attnseg evaluate --json` says which slices it scored (those the labels mark reviewed), null for every slice."""
    import json

    import tifffile
    from test_audit_review_fixes4 import _nuclei

    from napari_attnseg.cli import main
    from napari_attnseg.data.tiff import write_tiff

    image, fg = _nuclei(4)
    tifffile.imwrite(tmp_path / "img.tif", image)
    write_tiff(tmp_path / "marked.tif", fg, (1.0, 1.0, 1.0), reviewed_slices=[1, 2])
    write_tiff(tmp_path / "plain.tif", fg, (1.0, 1.0, 1.0))
    for name, want in [("marked.tif", [1, 2]), ("plain.tif", None)]:
        capsys.readouterr()
        assert main(["evaluate", "--model", "nuclei-2d", "--image", str(tmp_path / "img.tif"), "--labels",
                     str(tmp_path / name), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["reviewed_slices"] == want
