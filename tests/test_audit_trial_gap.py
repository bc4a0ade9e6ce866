"""Two trial reviews (h_trial_cli, h_trial_napari) on files unlike ours, completed for every path (h_apply_gap).

- ``attnseg suggest`` mirrored the last stored axis to measure the model's disagreement: anterior-posterior on a
  sagittally stored brain (an impossible anatomy), so the map and the suggestions changed with the storage.
- A DICOM series with a missing image reads with an empty slice there (the series' lowest value). That slice was
  exported as reviewed ground truth (``attnseg export``; napari's Correct tab with the slice marked), and the model
  saw it as a black slab (predict/evaluate/suggest, the cohort, the Segment tab): the neighbouring slices changed.
- napari's refusal of a label value that is no class said "on its reviewed slices" for a 2D mask, and gave one way out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _brain_helpers import mni_2mm
from test_dicom import ct_series

SAMPLES = Path(__import__("napari_attnseg").__file__).resolve().parent / "resources" / "samples"
GAP = [0, 1, 2, 4, 5]  # the shared lung CT crop's slices written as a series: slice 3's image missing


def gap_mask_marked(dock, tmp_path: Path, move: bool = False):
    """The gap series opened by the reader (its folder moved away after, with ``move``), a tumour mask over slices 2-4
    brushed across the gap, every slice with an image marked reviewed in the Correct tab (Mark all), ready to export: the tab."""
    viewer, panel = dock
    corr = panel.correct
    layer = _open_gap(viewer, _gap_series(tmp_path / "ct"))
    if move:  # (archived, renamed, a USB stick unplugged)
        import shutil

        shutil.move(str(tmp_path / "ct"), str(tmp_path / "ct_moved"))
    mask = np.zeros(layer.data.shape, np.uint8)
    mask[2:5, 8:14, 6:12] = 1  # a tumour brushed or interpolated across the gap
    viewer.add_labels(mask, name="ct mask", scale=layer.scale, translate=layer.translate)
    corr.labels_combo.value, corr.image_combo.value = "ct mask", layer.name
    corr.class_names_edit.value = "background, tumour"
    corr.dataset_edit.value = str(tmp_path / "ds")
    corr.mark_all()
    return corr


def _gap_series(folder: Path) -> Path:
    """The shared lung CT crop (6 x 24 x 20) as an axial series without the image of slice 3 (skips without it)."""
    from test_audit_dicom_pacs import axial
    from test_dicom import lung_crop

    axial(lung_crop(), folder, slices=GAP)
    return folder


# 1. suggest's mirror -------------------------------------------------------------------------------------------------
def test_suggest_mirror_is_the_patients_left_right_whatever_the_storage(tiny_checkpoint):
    """The same voxels stored axially and sagittally give the same uncertainty map (was: up to 0.957 apart on this
    crop of the bundled MNI T1; on brain1 stored sagittally, suggestions 89, 76, 102, 63, 117 instead of 94, 81, 68,
    110, 130). A 2D model that does not turn the volume keeps an in-plane mirror."""
    from napari_attnseg import load_model
    from napari_attnseg.suggest import predict_uncertainty

    t1 = mni_2mm()[24:56, 30:78, 20:70]  # (z, y, x) = (S, A, R): an axial RAS volume
    model = load_model("brain-mri-3d", device="cpu")
    kw = dict(device="cpu", precision="fp32", brain_extraction="off", spacing=(2.0, 2.0, 2.0))
    _, axial = predict_uncertainty(model, t1, orientation=("S", "A", "R"), **kw)
    sag = np.ascontiguousarray(t1.transpose(2, 0, 1))  # the same voxels stored sagittally: (R, S, A)
    _, stored_sag = predict_uncertainty(model, sag, orientation=("R", "S", "A"), **kw)
    assert float(np.abs(stored_sag.transpose(1, 2, 0) - axial).max()) < 1e-3
    from napari_attnseg.suggest import mirror_axis

    assert mirror_axis(model, ("R", "S", "A")) == -3 and mirror_axis(model, None) == -1
    flat = load_model(tiny_checkpoint(2), device="cpu")  # (steps through the first axis: mirroring it reorders slices)
    assert mirror_axis(flat, ("R", "S", "A")) == -1 and mirror_axis(flat, ("S", "A", "L")) == -1


# 2. export: an inserted slice is never reviewed ------------------------------------------------------------------------
def test_export_leaves_a_slice_inserted_for_a_missing_image_ignore(tmp_path, capsys):
    """``attnseg export --reviewed-slices 0-6`` over a series missing slice 3's image exported that empty slice as
    reviewed, with whatever the mask held there (a tumour interpolated across the gap: fine-tuning learnt 'tumour'
    on a slice of air). Without --reviewed-slices too (every slice reviewed)."""
    from napari_attnseg.cli import main
    from napari_attnseg.data import read_image, write_image

    folder = tmp_path / "ct"
    ct_series(folder, n=7)
    (folder / "IM0004.dcm").unlink()  # slice 3 missing
    vol = read_image(folder)
    assert vol.data.shape[0] == 7 and vol.meta["inserted_slices"] == [3]
    mask = np.zeros(vol.data.shape, np.uint8)
    mask[2:5, 2:6, 2:5] = 1  # drawn over slices 2-4, across the gap
    write_image(tmp_path / "mask.nii.gz", mask, like=vol)
    for name, reviewed in (("ds", ["--reviewed-slices", "0-6"]), ("all", [])):
        assert main(["export", "--image", str(folder), "--labels", str(tmp_path / "mask.nii.gz"), "--dataset",
                     str(tmp_path / name), *reviewed, "--label-names", "background,tumour"]) == 0
        assert "slice(s) 3 hold no image (inserted where the series misses images)" in capsys.readouterr().err
        out = np.asarray(read_image(next((tmp_path / name / "labelsTr").glob("*.nii.gz"))).data)
        assert (out[3] == 2).all(), name  # 'ignore' (value 2 after background, tumour)
        np.testing.assert_array_equal(out[[0, 1, 2, 4, 5, 6]], mask[[0, 1, 2, 4, 5, 6]])


# 3. the model's input: the neighbours, not a black slab ---------------------------------------------------------------
def test_the_model_sees_no_black_slab_where_a_series_misses_an_image(tmp_path):
    """predict/evaluate/suggest gave the model the reader's empty slice (the series' lowest value): brain1 as an MR
    series without instance 13 lost 38% of slice 11's mask, 24,767 voxels changed off the missing slice, with a
    warning to strip the skull. The model's input now bridges the gap; the reader (napari's layer) keeps it empty."""
    from napari_attnseg import load_model
    from napari_attnseg.cohort.cases import read_for_model
    from napari_attnseg.data import read_image

    folder = tmp_path / "ct"
    ct_series(folder, n=7)  # slice k: 10*k HU
    (folder / "IM0004.dcm").unlink()
    shown = read_image(folder)
    assert float(shown.data[3].max()) == float(shown.data.min())  # the reader keeps the empty slice
    given = read_for_model(folder, None, load_model("brain-mri-3d", device="cpu"))
    assert float(np.asarray(given.data)[3].mean()) == pytest.approx(30.0)  # between slices 2 (20 HU) and 4 (40 HU)
    np.testing.assert_array_equal(np.asarray(given.data)[[0, 1, 2, 4, 5, 6]], shown.data[[0, 1, 2, 4, 5, 6]])


def test_a_cohort_run_gives_the_model_the_missing_images_neighbours(tmp_path):
    """``predict_cohort`` (attnseg predict on a folder of series) reads its cases itself: the black slab reached
    the model there (nuclei-2d's probabilities up to 0.99 apart on the missing slice, 0.03-0.84 on the others,
    through its volume normalisation). It now segments what a lone ``attnseg predict`` segments."""
    from napari_attnseg import load_model
    from napari_attnseg.cohort import predict_cohort
    from napari_attnseg.cohort.cases import read_for_model
    from napari_attnseg.data import read_image
    from napari_attnseg.data.orientation import volume_codes
    from napari_attnseg.inference import predict

    folder = _gap_series(tmp_path / "PACS" / "SE002")
    summary = predict_cohort("nuclei-2d", folder, tmp_path / "out", device="cpu", precision="fp32", threads=1)
    assert not summary.failed
    model = load_model("nuclei-2d", device="cpu")
    vol = read_for_model(folder, None, model)
    alone = predict(model, vol.data, spacing=vol.spacing, orientation=volume_codes(vol), device="cpu",
                    precision="fp32", return_probabilities=True)
    prob = np.asarray(read_image(tmp_path / "out" / "SE002_prob.nii.gz").data, np.float32)
    assert float(np.abs(prob - np.asarray(alone.probabilities)[-1]).max()) < 1e-4


# 4. napari: the Segment tab and the Correct tab's export ---------------------------------------------------------------
def _open_gap(viewer, folder: Path):
    """The series opened through the plugin's reader (what File > Open gives): its layer."""
    from napari_attnseg._napari.io_hooks import get_dicom_reader

    data, kwargs, kind = get_dicom_reader(str(folder))(str(folder))[0]
    assert kind == "image"
    return viewer.add_image(data, **kwargs)


@pytest.mark.gui
def test_the_segment_tab_gives_the_model_the_missing_images_neighbours(dock, qtbot, tmp_path, tiny_checkpoint):
    """The Segment tab ran the model on the layer's data, the empty slice of the missing image included. The model
    now gets that slice's neighbours (the probabilities equal a run on the bridged volume); the layer is unchanged."""
    from napari_attnseg.cohort.cases import fill_slices

    viewer, panel = dock
    seg = panel.segment
    layer = _open_gap(viewer, _gap_series(tmp_path / "ct"))
    shown = np.array(layer.data)
    seg.add_model(tiny_checkpoint(2))
    tiny, runs = seg.model_combo.value, []
    for name in (layer.name, "bridged"):
        if name == "bridged":  # the same volume, its slice 3 bridged by hand (no missing image to find)
            viewer.add_image(fill_slices(shown, [3]), name=name, scale=layer.scale, translate=layer.translate,
                             metadata={k: v for k, v in layer.metadata.items() if k != "warning"})
        seg.image_combo.value = name
        seg.model_combo.value = tiny  # (a new image may propose another model)
        with qtbot.waitSignal(seg.run_done, timeout=60000) as done:
            assert seg.run() is not None
        assert done.args == [True]
        runs.append(np.asarray(seg.last_prediction.probabilities, np.float32))
    assert float(np.abs(runs[0] - runs[1]).max()) < 1e-5
    np.testing.assert_array_equal(layer.data, shown)  # the layer shows what the reader read
    assert float(shown[3].max()) == float(shown.min())


@pytest.mark.gui
def test_the_correct_tab_exports_a_slice_with_no_image_as_ignore(dock, qtbot, tmp_path, notifications):
    """Mark all, then Export, on a mask over a series missing slice 3's image: that empty slice was exported as
    reviewed with the mask drawn across the gap. Mark all now leaves it unmarked, and a mark still on it (a mask saved
    with it) goes out as 'ignore' with attnseg export's note, never as reviewed."""
    import json

    from napari_attnseg.data import read_image

    corr = gap_mask_marked(dock, tmp_path)
    assert corr._reviewed(corr.viewer.layers["ct mask"]) == GAP
    corr.viewer.layers["ct mask"].metadata["reviewed_slices"] = list(range(6))  # (saved with slice 3's mark)
    assert corr.export() is not None
    qtbot.waitUntil(lambda: corr.export_button.enabled and (tmp_path / "ds" / "manifest.json").is_file(),
                    timeout=60000)
    case = json.loads((tmp_path / "ds" / "manifest.json").read_text())["cases"][0]
    assert case["reviewed_slices"] == GAP
    out = np.asarray(read_image(next((tmp_path / "ds" / "labelsTr").glob("*.nii.gz"))).data)
    assert (out[3] == case["ignore_label"]).all()
    np.testing.assert_array_equal(out[GAP], np.asarray(corr.viewer.layers["ct mask"].data)[GAP])
    qtbot.waitUntil(lambda: "slice(s) 3 hold no image" in " ".join(str(n.message) for n in notifications))


@pytest.mark.gui
def test_a_2d_mask_painted_with_a_value_that_is_no_class_is_refused_without_slices(make_napari_viewer, notifications,
                                                                                   tmp_path):
    """A 2D nuclei mask painted with label 5 (names 'background, nucleus'): Export said '... holds label value 5 on its
    reviewed slices' (a 2D image has none) and only 'add a name for every value from 0 to 5'; it now says how many
    pixels hold it and the other way out (paint them with a class's value). Nothing is written."""
    import tifffile

    from napari_attnseg._napari.correct_widget import CorrectWidget

    image = tifffile.imread(SAMPLES / "nuclei2d_image.tif")[:64, :64]
    data = (tifffile.imread(SAMPLES / "nuclei2d_labels.tif")[:64, :64] > 0).astype(np.uint8)
    data[20:22, 20:23] = 5
    viewer = make_napari_viewer()
    viewer.add_image(image, name="cells")
    viewer.add_labels(data, name="cells mask")
    corr = CorrectWidget(viewer)
    corr.labels_combo.value, corr.image_combo.value = "cells mask", "cells"
    corr.class_names_edit.value = "background, nucleus"
    corr.dataset_edit.value = str(tmp_path / "ds")
    assert corr.export() is None
    said = " ".join(str(n.message) for n in notifications)
    assert "label value 5 (6 pixels)" in said and "reviewed slices" not in said, said
    assert "paint those pixels with a class's value" in said, said
    assert not (tmp_path / "ds").exists()


def test_evaluate_leaves_the_slice_inserted_for_a_missing_image_out(tmp_path, capsys):
    """evaluate scored the slice inserted where the series misses an image, where the model now predicts from the
    neighbours: a reference drawn on the series holds nothing there (Dice 0.9075 on this crop, review)."""
    import json

    from napari_attnseg import load_model, predict
    from napari_attnseg.cli import main
    from napari_attnseg.cohort.cases import read_for_model
    from napari_attnseg.data import write_image

    se = _gap_series(tmp_path / "SE")
    model = load_model("nuclei-2d", device="cpu")
    vol = read_for_model(str(se), None, model)
    ref = np.asarray(predict(model, vol.data, return_probabilities=False).labels).astype(np.uint8)
    assert ref[3].any()  # (the model's guess from the neighbours)
    ref[3] = 0  # (a reference drawn on this series: nothing where there is no image)
    write_image(tmp_path / "ref.nii.gz", ref, like=vol)
    assert main(["evaluate", "--model", "nuclei-2d", "--image", str(se), "--labels", str(tmp_path / "ref.nii.gz"),
                 "--device", "cpu", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dice"]["nucleus"] == pytest.approx(1.0), out
