"""A DICOM series missing an image reads with an empty slice inserted there (h_inserted): the Correct tab's Mark all
marked it and its Export then refused ("unmark with Shift+R"); R marked it; a mask saved with that mark and reopened
was refused where ``attnseg export`` leaves it 'ignore' with a note; ``attnseg suggest`` and Next suggested slice
proposed it (no image there: nothing to review). Each test failed before its fix."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_audit_trial_gap import GAP, _gap_series, _open_gap, gap_mask_marked

NOTE = "slice(s) 3 hold no image (inserted where the series misses images): exported as 'ignore', not as reviewed."


def _said(notifications) -> str:
    return " ".join(str(n.message) for n in notifications)


def _exported(corr, qtbot, folder):
    """The case the export wrote into ``folder``: (its manifest entry, its labels)."""
    from napari_attnseg.data import read_image

    qtbot.waitUntil(lambda: corr.export_button.enabled and (folder / "manifest.json").is_file(), timeout=60000)
    case = json.loads((folder / "manifest.json").read_text())["cases"][0]
    return case, np.asarray(read_image(next((folder / "labelsTr").glob("*.nii.gz"))).data)


# 1. Mark all / R ------------------------------------------------------------------------------------------------------
@pytest.mark.gui
def test_mark_all_leaves_the_slice_with_no_image_unmarked_and_the_export_goes_through(dock, qtbot, tmp_path,
                                                                                      notifications):
    """Mark all marked slice 3 (no image) too, and Export then refused, asking to unmark it with Shift+R. Mark all now
    marks the five slices with an image, says so, and Export writes slice 3 as 'ignore'."""
    corr = gap_mask_marked(dock, tmp_path)  # (its last step: Mark all)
    assert corr._reviewed(corr.viewer.layers["ct mask"]) == GAP
    assert ("ct mask: 5 slices marked reviewed; slice 3 has no image (missing from the DICOM series) and was left "
            "unmarked.") in _said(notifications), _said(notifications)
    assert corr.export() is not None
    case, out = _exported(corr, qtbot, tmp_path / "ds")
    assert case["reviewed_slices"] == GAP and (out[3] == case["ignore_label"]).all()
    np.testing.assert_array_equal(out[GAP], np.asarray(corr.viewer.layers["ct mask"].data)[GAP])
    assert "Shift+R" not in _said(notifications)


@pytest.mark.gui
def test_r_on_the_slice_with_no_image_is_refused_saying_why(dock, tmp_path, notifications):
    """R (and the Mark slice button) on slice 3, where the series misses its image, marked it reviewed. It is now
    refused, naming the slice and why; a typed range across the gap marks the others and says slice 3 was left."""
    viewer, panel = dock
    corr = panel.correct
    layer = _open_gap(viewer, _gap_series(tmp_path / "ct"))
    viewer.add_labels(np.zeros(layer.data.shape, np.uint8), name="ct mask", scale=layer.scale,
                      translate=layer.translate)
    corr.labels_combo.value, corr.image_combo.value = "ct mask", layer.name
    viewer.dims.set_current_step(0, 3)
    assert corr._current_slice(viewer.layers["ct mask"]) == 3
    corr.mark_current()
    assert corr._reviewed(viewer.layers["ct mask"]) == []
    said = _said(notifications)
    assert "ct mask: slice 3 has no image (missing from the DICOM series)" in said and "not marked reviewed" in said, said
    corr.range_edit.value = "2-4"
    corr.mark_range()
    assert corr._reviewed(viewer.layers["ct mask"]) == [2, 4]
    assert "2 slices marked reviewed; slice 3 has no image" in _said(notifications)
    viewer.dims.set_current_step(0, 2)
    corr.mark_current(reviewed=False)  # (unmarking is never refused)
    assert corr._reviewed(viewer.layers["ct mask"]) == [4]


# 2. Export of a mask saved with the mark: 'ignore' with the CLI's note --------------------------------------------
@pytest.mark.gui
def test_a_reopened_mask_marked_on_the_slice_with_no_image_exports_it_as_ignore_with_the_cli_note(
        dock, qtbot, tmp_path, notifications, capsys):
    """A mask saved with every slice marked (slice 3 too, before Mark all left it out) and reopened: the Correct tab
    refused its export, where ``attnseg export`` of the same files leaves slice 3 'ignore' with a note. The tab now
    exports as the CLI does, with the CLI's note; both datasets hold the same labels."""
    from napari_attnseg._napari.io_hooks import get_nifti_reader
    from napari_attnseg.cli import main
    from napari_attnseg.data import read_image, write_image

    viewer, panel = dock
    corr = panel.correct
    series = _gap_series(tmp_path / "ct")
    layer = _open_gap(viewer, series)
    mask = np.zeros(layer.data.shape, np.uint8)
    mask[2:5, 8:14, 6:12] = 1  # brushed across the gap
    saved = tmp_path / "ct_mask.nii.gz"
    write_image(saved, mask, like=read_image(series), reviewed_slices=list(range(6)), class_names=["background", "tumour"])
    for data, kwargs, kind in get_nifti_reader(str(saved))(str(saved)):  # File > Open of the saved mask
        assert kind == "labels"
        viewer.add_labels(data, **kwargs)
    name = viewer.layers[-1].name
    assert corr._reviewed(viewer.layers[name]) == list(range(6))
    corr.labels_combo.value, corr.image_combo.value = name, layer.name
    corr.class_names_edit.value = "background, tumour"
    corr.dataset_edit.value = str(tmp_path / "ds")
    assert corr.export() is not None
    case, out = _exported(corr, qtbot, tmp_path / "ds")
    qtbot.waitUntil(lambda: NOTE in _said(notifications), timeout=10000)
    assert f"{layer.name}: note: {NOTE}" in _said(notifications)
    assert case["reviewed_slices"] == GAP and (out[3] == case["ignore_label"]).all()
    assert main(["export", "--image", str(series), "--labels", str(saved), "--dataset", str(tmp_path / "cli"),
                 "--label-names", "background,tumour"]) == 0
    assert f"{series}: note: {NOTE}" in capsys.readouterr().err
    cli = np.asarray(read_image(next((tmp_path / "cli" / "labelsTr").glob("*.nii.gz"))).data)
    np.testing.assert_array_equal(out, cli)


@pytest.mark.gui
def test_a_slice_with_no_image_still_marked_goes_out_as_ignore_after_the_series_folder_moved(dock, qtbot, tmp_path,
                                                                                            notifications):
    """The series folder moved after opening (the layer keeps the reader's inserted slices): a mark still on slice 3
    (a mask saved with it) was refused; it now goes out as 'ignore' with the note, as before the move."""
    corr = gap_mask_marked(dock, tmp_path, move=True)
    corr.viewer.layers["ct mask"].metadata["reviewed_slices"] = list(range(6))  # (saved with slice 3's mark)
    assert corr.export() is not None
    case, out = _exported(corr, qtbot, tmp_path / "ds")
    assert case["reviewed_slices"] == GAP and (out[3] == case["ignore_label"]).all()
    qtbot.waitUntil(lambda: NOTE in _said(notifications), timeout=10000)


@pytest.mark.gui
def test_a_mask_marked_only_on_the_slice_with_no_image_is_refused(dock, tmp_path, notifications):
    """Only slice 3 (no image) marked: leaving it out leaves nothing reviewed, which the export must not take as
    'every slice reviewed' (its no-marks value); refused as a mask with no review, naming the slice."""
    viewer, panel = dock
    corr = panel.correct
    layer = _open_gap(viewer, _gap_series(tmp_path / "ct"))
    viewer.add_labels(np.ones(layer.data.shape, np.uint8), name="ct mask", scale=layer.scale,
                      translate=layer.translate, metadata={"reviewed_slices": [3]})
    corr.labels_combo.value, corr.image_combo.value = "ct mask", layer.name
    corr.class_names_edit.value = "background, tumour"
    corr.dataset_edit.value = str(tmp_path / "ds")
    assert corr.export() is None
    said = _said(notifications)
    assert "No slice of ct mask is marked reviewed but slices with no image (3)" in said, said
    assert not (tmp_path / "ds").exists()


# 3. suggest: never a slice with no image -----------------------------------------------------------------------------
def test_rank_slices_never_proposes_a_slice_with_no_image():
    """The core ranking (attnseg suggest and napari's N) proposed slice 3, the most uncertain: the empty slice the
    reader inserted (the model sees its neighbours' mean there, nothing to review)."""
    from napari_attnseg.suggest import left_to_review, rank_slices, suggest_slices

    scores, meta = [0.1, 0.2, 0.3, 0.9, 0.3, 0.1], {"inserted_slices": [3]}
    assert 3 not in [z for z, _ in rank_slices(scores, [], n=6, meta=meta)]
    assert rank_slices(scores, GAP, n=2, meta=meta) == []
    assert left_to_review(6, [0, 1], meta) == [2, 4, 5]
    unc = np.asarray(scores, np.float32)[:, None, None] * np.ones((6, 4, 4), np.float32)
    assert sorted(z for z, _ in suggest_slices(None, None, [], 6, uncertainty=unc, meta=meta)) == GAP


def test_attnseg_suggest_never_lists_the_slice_with_no_image(tmp_path, capsys):
    """``attnseg suggest`` on the series missing slice 3's image listed slice 3; with the five others reviewed it
    suggested it instead of saying there is nothing left."""
    from napari_attnseg.cli import main

    series = _gap_series(tmp_path / "ct")
    assert main(["suggest", str(series), "--model", "nuclei-2d", "-n", "6", "--no-flips", "--device", "cpu"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()[1:]]
    assert sorted(int(r[0]) for r in rows) == GAP
    assert main(["suggest", str(series), "--model", "nuclei-2d", "--reviewed", "0-2,4-5", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "is reviewed, and slice 3 has no image (missing from the DICOM series): nothing to suggest." in out, out


@pytest.mark.gui
def test_next_suggested_slice_never_goes_to_the_slice_with_no_image(dock, qtbot, tmp_path, tiny_checkpoint):
    """After a run, with the five slices that have an image reviewed, N went to slice 3 (no image). It now says there
    is nothing left, naming slice 3; with none reviewed it never lands on slice 3."""
    viewer, panel = dock
    seg, corr = panel.segment, panel.correct
    layer = _open_gap(viewer, _gap_series(tmp_path / "ct"))
    seg.add_model(tiny_checkpoint(2))
    seg.image_combo.value = layer.name
    with qtbot.waitSignal(seg.run_done, timeout=60000) as done:
        assert seg.run() is not None
    assert done.args == [True]
    mask = next(ly.name for ly in viewer.layers if ly.name.startswith(f"{layer.name} mask"))
    corr.labels_combo.value, corr.image_combo.value = mask, layer.name
    seen = set()
    for _ in range(5):  # N, R on the slice it shows: every slice with an image in turn
        z = corr.next_suggested()
        assert z is not None and z != 3
        seen.add(z)
        corr.mark_slices([z])
    assert seen == set(GAP)
    assert corr.next_suggested() is None
    assert "reviewed, and slice 3 has no image (missing from the DICOM series): nothing left to suggest" in \
        corr.suggest_label.value, corr.suggest_label.value
