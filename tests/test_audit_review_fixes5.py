"""Review fixes of 2026-12-06 (yesterday's last commits, read again): each test failed before its fix."""

from __future__ import annotations

import json

import numpy as np
import tifffile
from test_audit_dicom_labels import ct_series, lung  # noqa: F401  (lung: a fixture)
from test_audit_review_fixes4 import _nuclei

from napari_attnseg.cli import main
from napari_attnseg.data.tiff import write_tiff

# 1. evaluate --region with reviewed marks: the slices it scores are the region's --------------------------------------


def _marked(tmp_path):
    image, fg = _nuclei(4)
    tifffile.imwrite(tmp_path / "img.tif", image)
    write_tiff(tmp_path / "marked.tif", fg, (1.0, 1.0, 1.0), reviewed_slices=[1, 2])
    return ["evaluate", "--model", "nuclei-2d", "--image", str(tmp_path / "img.tif"),
            "--labels", str(tmp_path / "marked.tif"), "--json"]


def test_evaluate_region_lists_only_the_reviewed_slices_it_scores(tmp_path, capsys):
    """Slices 1-2 reviewed, --region 2:4: slice 2 is scored and the JSON says [2] (it said [1, 2])."""
    args = _marked(tmp_path)
    assert main(args + ["--region", "2:4,0:64,0:64"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["reviewed_slices"] == [2]
    assert "--region keeps 1 of them (2)" in result["note"]
    assert result["dice"]["nucleus"] is not None and result["dice"]["nucleus"] > 0.5


def test_evaluate_refuses_a_region_holding_no_reviewed_slice(tmp_path, capsys):
    """--region 3:4 holds only an unreviewed slice, which has nuclei: it was scored "no voxel of nucleus in the
    reference" (Dice null) with reviewed_slices [1, 2]; now refused, naming the reviewed slices, before predicting."""
    args = _marked(tmp_path)
    assert main(args + ["--region", "3:4,0:64,0:64"]) == 1
    err = capsys.readouterr().err
    assert "--region 3:4,0:64,0:64 holds none of the slices" in err and "marked.tif" in err and "(1-2)" in err


def test_evaluate_region_over_all_reviewed_slices_says_nothing_more(tmp_path, capsys):
    args = _marked(tmp_path)
    assert main(args + ["--region", "0:4,0:64,0:64"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["reviewed_slices"] == [1, 2] and "--region keeps" not in result["note"]
    assert np.isfinite(result["dice"]["nucleus"])


# 2. the Segment tab with a colour model next to a 1-channel one (napari) -----------------------------------------------


def _messages(monkeypatch) -> list[str]:
    from napari_attnseg._napari import _common, job_segment, segment_widget

    said: list[str] = []
    for module in (job_segment, segment_widget):
        monkeypatch.setattr(module, "notify_error", lambda m: said.append(m))
    monkeypatch.setattr(_common, "show_error", lambda m: said.append(m))
    return said


def test_a_colour_model_after_a_one_channel_run_segments_the_picture(dock, qtbot, tmp_path, monkeypatch):
    """nuclei-2d on an RGB picture adds and selects its grey layer 'slide (red)'; a 3-channel model chosen next used
    to run on that grey layer and fail ("Model ... takes 3 channels ... got an array of shape (64, 64)"): it now
    segments the picture itself, as attnseg predict gives it the colours."""
    from test_audit_inputs_more import _model, _nuclei

    viewer, d = dock
    seg, said = d.segment, _messages(monkeypatch)
    grey, _ = _nuclei(64)
    viewer.add_image(np.dstack([grey, grey, grey]), name="slide", rgb=True)
    seg.image_combo.value, seg.model_combo.value = "slide", "nuclei-2d"
    with qtbot.waitSignal(seg.run_done, timeout=120000) as done:
        seg.run()
    assert done.args[0] and seg.image_combo.value != "slide"  # (the grey layer it added is selected)
    seg.model_combo.value = seg.add_model(_model(tmp_path, 3))
    with qtbot.waitSignal(seg.run_done, timeout=120000) as done:
        seg.run()
    assert done.args[0], said
    assert viewer.layers["slide mask"].data.shape == (64, 64) and not said


def test_a_one_channel_model_on_a_colourful_picture_is_named_in_the_refusal(dock, qtbot, monkeypatch):
    """A picture whose colours hold different images: refused for nuclei-2d naming it ("the model 'nuclei-2d' reads
    one grey channel: choose a model that reads colours"), not "the models take grayscale images" (colour models run)."""
    from test_audit_inputs_more import _colours, _nuclei

    viewer, d = dock
    seg, said = d.segment, _messages(monkeypatch)
    grey, _ = _nuclei(64)
    viewer.add_image(_colours(grey), name="slide", rgb=True)
    seg.image_combo.value, seg.model_combo.value = "slide", "nuclei-2d"
    with qtbot.waitSignal(seg.run_done, timeout=30000) as done:
        seg.run()
    assert not done.args[0]
    assert any("'nuclei-2d' reads one grey channel: choose a model that reads colours" in m for m in said), said


# 3. one-plane exports: a one-slice volume into a dataset of volumes; predict's mask of a one-slice NIfTI -------------


def _t1(n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    path = "/work/shared/data/mni152/t1.nii.gz"
    t1 = np.asarray(nib.load(path).dataobj).T[80:80 + n, 60:124, 60:124].astype(np.float32)
    return t1, (t1 > np.percentile(t1, 70)).astype(np.uint8)


def test_a_one_slice_volume_joins_a_dataset_of_volumes(tmp_path):
    """A (1, Y, X) volume with its (1, Y, X) mask into a dataset of 3D cases: a one-slice 3D case (was refused "holds
    3D cases; this one is 2D": both stacks were squeezed to a plane); into a new dataset it is still one 2D plane."""
    from napari_attnseg.data.export import export_case

    t1, lab = _t1()
    export_case(t1, lab, tmp_path / "ds", "nnunet", spacing=(1, 1, 1))
    rec = export_case(t1[2:3], lab[2:3], tmp_path / "ds", "nnunet", spacing=(1, 1, 1), reviewed_slices=[0])
    assert rec.shape == [1, 64, 64]
    assert export_case(t1[2:3], lab[2:3], tmp_path / "new", "nnunet", spacing=(1, 1, 1)).shape == [64, 64]


def test_predicts_mask_of_a_one_slice_nifti_is_the_prediction_of_its_2d_mask(tmp_path, capsys):
    """An (X, Y, 1) NIfTI slice with a 2D TIFF mask exports as one plane; predict's own mask of that slice ((X, Y, 1))
    as --prediction was refused "The prediction's shape (1, 64, 64) differs from the labels' (64, 64)"."""
    import nibabel as nib

    t1, lab = _t1(1)
    nib.save(nib.Nifti1Image(t1.T, np.diag([1.0, 1.0, 1.0, 1.0])), tmp_path / "slice.nii.gz")
    tifffile.imwrite(tmp_path / "mask.tif", lab[0])
    pred = lab.copy()
    pred[0, :8] = 1 - pred[0, :8]  # (the model's mask, corrected on its first 8 rows)
    nib.save(nib.Nifti1Image(pred.T, np.diag([1.0, 1.0, 1.0, 1.0])), tmp_path / "pred.nii.gz")
    assert main(["export", "--image", str(tmp_path / "slice.nii.gz"), "--labels", str(tmp_path / "mask.tif"),
                 "--prediction", str(tmp_path / "pred.nii.gz"), "--dataset", str(tmp_path / "ds")]) == 0, \
        capsys.readouterr().err
    case = json.loads((tmp_path / "ds" / "manifest.json").read_text())["cases"][0]
    assert case["shape"] == [64, 64] and case["edit_stats"]["changed_voxels"] == int((pred[0] != lab[0]).sum())


# 4. the command line as the API: a one-slice volume into a dataset of volumes; a hand-drawn mask into a colour one -----


def test_attnseg_export_adds_a_one_slice_volume_to_a_dataset_of_volumes(tmp_path, capsys):
    """e534b16 fixed export_case; `attnseg export` still squeezed the one-slice NIfTI and its one-slice mask first:
    "The dataset in ds holds 3D cases; this one is 2D". Now a one-slice 3D case; a new dataset still takes a plane."""
    import nibabel as nib

    t1, lab = _t1()
    for name, (img, mask) in {"vol": (t1, lab), "one": (t1[2:3], lab[2:3])}.items():
        nib.save(nib.Nifti1Image(img.T, np.eye(4)), tmp_path / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(mask.T, np.eye(4)), tmp_path / f"{name}_mask.nii.gz")

    def export(name: str, ds: str) -> int:
        return main(["export", "--image", str(tmp_path / f"{name}.nii.gz"), "--labels",
                     str(tmp_path / f"{name}_mask.nii.gz"), "--dataset", str(tmp_path / ds)])

    assert export("vol", "ds") == 0 and export("one", "ds") == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "ds" / "manifest.json").read_text())["cases"][1]["shape"] == [1, 64, 64]
    assert export("one", "new") == 0
    assert json.loads((tmp_path / "new" / "manifest.json").read_text())["cases"][0]["shape"] == [64, 64]


def test_a_hand_drawn_mask_of_a_picture_joins_a_dataset_of_colour_pictures(tmp_path, capsys):
    """A colour dataset (round 1: a colour model's mask) and a mask drawn by hand on another picture (no model saved
    with it): `attnseg export` refused it ("holds RGB pictures' colours; this export writes one grey image"); the
    picture's colours now join the dataset of colours."""
    from test_colour_loop import _corrected, _export, _picture

    _, _, _, mask = _corrected(tmp_path, capsys, 3)
    assert _export(tmp_path, mask, tmp_path / "ds") == 0
    rgb, labels = _picture(tmp_path)  # (pic.tif again, a mask of its own: no model)
    tifffile.imwrite(tmp_path / "drawn.tif", labels)
    assert main(["export", "--image", str(tmp_path / "pic.tif"), "--labels", str(tmp_path / "drawn.tif"),
                 "--dataset", str(tmp_path / "ds")]) == 0, capsys.readouterr().err
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert len(manifest["cases"]) == 2 and manifest["colour"] is True


# 5. a lone --dicom-seg rerun of a case whose mask has no foreground --------------------------------------------------


def test_dicom_seg_again_on_a_case_without_foreground_says_why_there_is_none(tmp_path, lung, capsys):  # noqa: F811
    """predict --dicom-seg where the model finds nothing writes no SEG (a warning); the same command again was refused
    saying "--overwrite computes the case again, with its DICOM SEG", which writes none either: it now says why."""
    import torch

    from napari_attnseg import create_model, save_model
    from napari_attnseg.checkpoint import ModelCard

    model = create_model("unet", spatial_dims=2, in_channels=1, features=[4, 8])
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()  # (every logit 0: background everywhere)
    save_model(model, tmp_path / "empty.safetensors", ModelCard(arch="", config={}, name="empty",
                                                                classes=["background", "tumour"], tile=[64, 64]))
    ct_series(lung, tmp_path / "CT")
    args = ["predict", str(tmp_path / "CT"), "--model", str(tmp_path / "empty.safetensors"), "--out",
            str(tmp_path / "out"), "--no-prob", "--dicom-seg"]
    assert main(args) == 0 and not (tmp_path / "out" / "CT_seg.dcm").exists()
    capsys.readouterr()
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "its mask has no foreground, so there is no DICOM SEG to write" in err
    assert "--overwrite computes the case again, with its DICOM SEG" not in err


# 6. colour exports: the Correct tab as attnseg export; --keep-colour for an RGBA model ---------------------------------


def _colour_mask_layer(viewer, mask_path, name="pic mask"):
    """The mask file as napari's TIFF reader gives it: its model (provenance) and its source path."""
    from napari_attnseg.data import read_image

    vol = read_image(mask_path)
    made = vol.meta["model_info"]
    return viewer.add_labels(np.asarray(vol.data), name=name, metadata={
        "source_path": str(mask_path), "attnseg": {"model": made.get("model"), "checkpoint": made.get("checkpoint"),
                                                   "checkpoint_sha256": made.get("weights_sha256")}})


def _export_in_panel(panel, qtbot, image: str, mask: str, ds) -> None:
    panel.refresh()
    panel.image_combo.value, panel.labels_combo.value = image, mask
    panel.dataset_edit.value = str(ds)
    assert panel.export() is not None
    qtbot.waitUntil(lambda: (ds / "manifest.json").exists() and panel.export_button.enabled, timeout=30000)


def test_the_correct_tab_finds_the_colour_model_beside_the_mask_and_grows_a_colour_dataset(
        make_napari_viewer, qtbot, tmp_path, monkeypatch, capsys):
    """predict --model m3.safetensors (a relative path, as typed) from the picture's folder; napari started elsewhere.
    The Correct tab exported grey where `attnseg export` kept the colours (the model was not looked for beside the
    mask); and a hand-drawn mask of a picture into that colour dataset was refused ("this export writes one grey
    image ... attnseg export --keep-colour"). Now both go in with their colours."""
    from test_colour_loop import _model, _picture

    from napari_attnseg._napari.correct_widget import CorrectWidget

    rgb, labels = _picture(tmp_path)
    _model(tmp_path, 3)
    monkeypatch.chdir(tmp_path)
    assert main(["predict", "pic.tif", "--model", "m3.safetensors", "--out", "pred"]) == 0, capsys.readouterr().err
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    viewer = make_napari_viewer()
    viewer.add_image(rgb, name="pic", rgb=True)
    _colour_mask_layer(viewer, tmp_path / "pred" / "pic_mask.tif")
    panel, ds = CorrectWidget(viewer), tmp_path / "ds"
    _export_in_panel(panel, qtbot, "pic", "pic mask", ds)
    manifest = json.loads((ds / "manifest.json").read_text())
    assert manifest.get("colour") is True and manifest["channel_names"] == ["R", "G", "B"]
    viewer.add_image(rgb[::-1].copy(), name="pic2", rgb=True)
    viewer.add_labels(labels[::-1].copy(), name="drawn")  # (by hand: no model)
    _export_in_panel(panel, qtbot, "pic2", "drawn", ds)
    qtbot.waitUntil(lambda: len(json.loads((ds / "manifest.json").read_text())["cases"]) == 2, timeout=30000)


def test_keep_colour_keeps_the_alpha_a_four_channel_model_reads(tmp_path, capsys):
    """An opaque RGBA picture segmented by a 4-channel model: `attnseg export --keep-colour` wrote R, G, B (the alpha
    its reader drops not put back) and `finetune --model m4` was refused "3 channel(s) ... takes 4"."""
    from test_colour_loop import _model, _picture

    rgb, _ = _picture(tmp_path)
    tifffile.imwrite(tmp_path / "pica.tif", np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]), photometric="rgb",
                     extrasamples=[2])
    model = _model(tmp_path, 4)
    assert main(["predict", str(tmp_path / "pica.tif"), "--model", str(model), "--out", str(tmp_path / "pred")]) == 0
    assert main(["export", "--image", str(tmp_path / "pica.tif"), "--labels", str(tmp_path / "pred" / "pica_mask.tif"),
                 "--dataset", str(tmp_path / "ds"), "--keep-colour"]) == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "ds" / "manifest.json").read_text())["channel_names"] == ["R", "G", "B", "A"]


# 7. later review (b5271b1..): movie identity, the SEG refusal note, demo --model, cohort SEG-only progress ---------------


def _model_of(tmp_path, fill: float = 0.0, name: str = "empty"):
    """A 2D model that finds nothing (every weight 0), or everything (``fill``: the foreground logit's bias)."""
    import torch

    from napari_attnseg import create_model, save_model
    from napari_attnseg.checkpoint import ModelCard

    model = create_model("unet", spatial_dims=2, in_channels=1, features=[4, 8])
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        if fill:
            [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1].bias[1] = fill
    path = tmp_path / f"{name}.safetensors"
    save_model(model, path, ModelCard(arch="", config={}, name=name, classes=["background", "tumour"], tile=[64, 64]))
    return path


def test_a_big_endian_movie_hashes_as_its_native_copy():
    """A big-endian 16-bit TIFF (Fiji's default) read by the CLI as '>u2' and by napari as '<u2' had two
    movie_sha256 values: one movie counted as two, its frames split across training and validation."""
    from napari_attnseg.data.export import array_sha256

    movie = np.arange(2 * 8 * 8, dtype="<u2").reshape(2, 8, 8)
    assert array_sha256(movie.astype(">u2")) == array_sha256(movie)


def test_the_seg_refusal_note_says_no_foreground_only_for_the_same_untouched_case(tmp_path, lung, capsys):  # noqa: F811
    """The 'no foreground, no SEG to write' note was given after the user painted the tumour in, and for another
    model (which, with --overwrite, does write a SEG)."""
    import nibabel as nib

    ct_series(lung, tmp_path / "CT")
    args = ["predict", str(tmp_path / "CT"), "--out", str(tmp_path / "out"), "--no-prob", "--dicom-seg"]
    assert main(args + ["--model", str(_model_of(tmp_path))]) == 0
    capsys.readouterr()
    assert main(args + ["--model", str(_model_of(tmp_path, 5.0, "full"))]) == 1
    err = capsys.readouterr().err
    assert "no foreground" not in err and "--overwrite computes the case again, with its DICOM SEG" in err
    mask = tmp_path / "out" / "CT_mask.nii.gz"
    nii = nib.load(mask)
    painted = np.asarray(nii.dataobj).copy()
    painted[10:20, 10:20, 3] = 1  # (the user paints the tumour in)
    nib.save(nib.Nifti1Image(painted, nii.affine, nii.header), mask)
    assert main(args + ["--model", str(_model_of(tmp_path))]) == 1
    err = capsys.readouterr().err
    assert "no foreground" not in err and "save it as DICOM SEG" in err


def test_demo_refuses_a_model_the_sample_cannot_take(tmp_path, capsys):
    """demo --model <a 3D model> on the nuclei sample (or a colour model) left no screenshot and exited 0."""
    assert main(["demo", "--model", "brain-mri-3d", "--screenshot", str(tmp_path / "x.png"), "--quit"]) == 1
    err = capsys.readouterr().err
    assert "is a 3D model reading 1 channel(s)" in err and "pass --sample brain-mri-3d" in err
    assert not (tmp_path / "x.png").exists()


def test_a_cohort_says_each_seg_only_case_as_it_is_written(tmp_path, lung, monkeypatch):  # noqa: F811
    """SEG-only cases were written one after another before any progress line (and before any case was computed);
    Ctrl+C in that phase left no summary rows for the SEGs already written."""
    import pytest

    from napari_attnseg import results_seg
    from napari_attnseg.cohort import predict_cohort

    cases, out = tmp_path / "cases", tmp_path / "out"
    for n in "AB":
        ct_series(lung, cases / n)
    model = str(_model_of(tmp_path, 5.0, "full"))
    predict_cohort(model, str(cases / "*"), out)
    events, real, stop = [], results_seg.write_seg_only, []

    def write(*a, **k):
        events.append(f"seg {a[1].name}")
        if stop and a[1].name == "B":  # (Ctrl+C while B's SEG is written)
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(results_seg, "write_seg_only", write)
    predict_cohort(model, str(cases / "*"), out, dicom_seg=True, progress=lambda d, t, r: events.append(f"said {r.case}"))
    assert events == ["seg A", "said A", "seg B", "said B"]
    for n in "AB":
        (out / f"{n}_seg.dcm").unlink()
        record = json.loads((out / f"{n}_predict.json").read_text())
        record["request"].pop("dicom_seg", None)
        record["dicom_seg"] = None
        record["outputs"] = [o for o in record["outputs"] if not o.endswith("_seg.dcm")]
        (out / f"{n}_predict.json").write_text(json.dumps(record))
    events.clear()
    stop.append(True)
    with pytest.raises(KeyboardInterrupt):
        predict_cohort(model, str(cases / "*"), out, dicom_seg=True)
    rows = (out / "cohort_summary.csv").read_text()
    assert "SEG written from the saved mask" in rows and "interrupted" in rows
