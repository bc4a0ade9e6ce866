"""`attnseg predict`, `suggest` and `evaluate` never lose what a user made and refuse bad input up front
with a message naming the file: the defects of the CLI safety audit, on small synthetic files and the
bundled models."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import tifffile

import napari_attnseg.checkpoint as checkpoint
import napari_attnseg.inference as inference
from napari_attnseg.cli import main

BRAIN_SPACING = np.diag([2.0, 2.0, 2.0, 1.0])  # the brain model's own spacing: no resampling


def _volume(path, slices=12, affine=BRAIN_SPACING, seed=0):
    """A small NIfTI volume, (i, j, k) = (40, 40, slices) on disk: (slices, 40, 40) in napari's order."""
    data = np.random.default_rng(seed).normal(100, 20, (40, 40, slices)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def _tiff(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, np.random.default_rng(seed).normal(100, 20, (64, 64)).astype(np.uint16))
    return path


def _no_inference(monkeypatch):
    monkeypatch.setattr(inference, "predict", lambda *a, **k: pytest.fail("ran the model before checking"))


def _with_warning(monkeypatch, text="the input looks unlike the training data"):
    """The real ``predict``, its Prediction carrying one more warning (as an unusual input would)."""
    real = inference.predict

    def predict(*args, **kwargs):
        pred = real(*args, **kwargs)
        pred.warnings.append(text)
        return pred

    monkeypatch.setattr(inference, "predict", predict)
    return text


def _error_line(err: str, command: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"attnseg {command}: error: ") and "Traceback" not in err, err
    return lines[0]


# ----------------------------------------------------------------------------------------------
# suggest
# ----------------------------------------------------------------------------------------------
def test_suggest_never_writes_the_uncertainty_map_over_the_input(tmp_path, capsys, monkeypatch):
    src = _volume(tmp_path / "mybrain.nii.gz")
    before = src.read_bytes()
    _no_inference(monkeypatch)
    for spelled in (src, tmp_path / "." / "mybrain.nii.gz"):
        for extra in ([], ["--overwrite"]):
            rc = main(["suggest", str(src), "--model", "brain-mri-3d", "--no-flips", "--device", "cpu",
                       "--uncertainty", str(spelled), *extra])
            line = _error_line(capsys.readouterr().err, "suggest")
            assert rc == 1 and "would replace the input image" in line and "mybrain.nii.gz" in line
    assert src.read_bytes() == before
    # inside a series folder given as the input: refused, saying why (nothing would be replaced)
    (tmp_path / "series").mkdir()
    rc = main(["suggest", str(tmp_path / "series"), "--model", "brain-mri-3d", "--no-flips", "--device", "cpu",
               "--uncertainty", str(tmp_path / "series" / "unc.nii.gz")])
    line = _error_line(capsys.readouterr().err, "suggest")
    assert rc == 1 and "inside the input's folder" in line and "write it outside" in line


def test_suggest_refuses_an_existing_uncertainty_file_unless_overwrite(tmp_path, capsys, monkeypatch):
    src = _volume(tmp_path / "scan.nii.gz")
    mine = tmp_path / "unc.nii.gz"
    mine.write_bytes(b"a file the user keeps")
    real = inference.predict
    _no_inference(monkeypatch)
    argv = ["suggest", str(src), "--model", "brain-mri-3d", "--no-flips", "--device", "cpu", "--uncertainty", str(mine)]
    assert main(argv) == 1
    line = _error_line(capsys.readouterr().err, "suggest")
    assert f"{mine} already exists" in line and "--overwrite" in line
    assert mine.read_bytes() == b"a file the user keeps"

    monkeypatch.setattr(inference, "predict", real)
    assert main(argv + ["--overwrite"]) == 0
    unc = np.asarray(nib.load(mine).dataobj)
    assert unc.shape == (40, 40, 12) and 0 <= unc.min() and unc.max() <= 1
    assert capsys.readouterr().out.startswith("slice\tscore")


@pytest.mark.parametrize("name, says", [("unc.png", "give a .nii.gz"), ("missing/unc.nii.gz", "does not exist")])
def test_suggest_checks_the_uncertainty_name_before_running(tmp_path, capsys, monkeypatch, name, says):
    src = _volume(tmp_path / "scan.nii.gz")
    _no_inference(monkeypatch)
    rc = main(["suggest", str(src), "--model", "brain-mri-3d", "--uncertainty", str(tmp_path / name)])
    assert rc == 1 and says in _error_line(capsys.readouterr().err, "suggest")


def test_suggest_refuses_reviewed_slices_outside_the_volume(tmp_path, capsys, monkeypatch):
    src = _volume(tmp_path / "scan.nii.gz", slices=25)
    _no_inference(monkeypatch)
    rc = main(["suggest", str(src), "--model", "brain-mri-3d", "--reviewed", "3,30-40"])
    line = _error_line(capsys.readouterr().err, "suggest")
    assert rc == 1 and "30-40" in line and "outside the volume" in line and "0..24" in line and "scan.nii.gz" in line


def test_suggest_says_when_every_slice_is_reviewed(tmp_path, capsys, monkeypatch):
    src = _volume(tmp_path / "scan.nii.gz", slices=25)
    _no_inference(monkeypatch)
    assert main(["suggest", str(src), "--model", "brain-mri-3d", "--reviewed", "0-24"]) == 0
    out = capsys.readouterr().out
    assert "Every slice" in out and "nothing to suggest" in out and "slice\tscore" not in out


def test_suggest_shows_the_models_warnings(tmp_path, capsys, monkeypatch):
    src = _volume(tmp_path / "scan.nii.gz")
    text = _with_warning(monkeypatch)
    assert main(["suggest", str(src), "--model", "brain-mri-3d", "--no-flips", "--device", "cpu", "-n", "2"]) == 0
    captured = capsys.readouterr()
    assert f"scan.nii.gz: warning: {text}" in captured.err
    assert len(captured.out.splitlines()) == 3  # header + 2 slices


# ----------------------------------------------------------------------------------------------
# predict
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("extra", [[], ["--overwrite"]])
def test_predict_refuses_two_inputs_of_the_same_name_before_running(tmp_path, capsys, monkeypatch, extra):
    a, b = _tiff(tmp_path / "a" / "image.tif"), _tiff(tmp_path / "b" / "image.tif", seed=1)
    monkeypatch.setattr(checkpoint, "load_model", lambda *a, **k: pytest.fail("loaded the model before checking"))
    rc = main(["predict", str(a), str(b), "--model", "nuclei-2d", "--out", str(tmp_path / "p"), *extra])
    line = _error_line(capsys.readouterr().err, "predict")
    assert rc == 1 and f"{b} has the same name as {a}" in line and "collide" in line
    assert not (tmp_path / "p").exists()


def test_predict_runs_one_input_named_twice_once(tmp_path, capsys):
    a = _tiff(tmp_path / "a" / "image.tif")
    assert main(["predict", str(a), str(tmp_path / "a" / "." / "image.tif"), "--model", "nuclei-2d",
                 "--out", str(tmp_path / "p"), "--device", "cpu"]) == 0
    assert (tmp_path / "p" / "image_mask.tif").is_file() and "error" not in capsys.readouterr().err


def test_a_cohort_duplicate_names_the_input_that_failed(tmp_path, capsys):
    a, b = _tiff(tmp_path / "pA" / "CT.tif"), _tiff(tmp_path / "pB" / "CT.tif", seed=1)
    (tmp_path / "cases.csv").write_text(f"path\n{a}\n{b}\n")
    rc = main(["predict", str(tmp_path / "cases.csv"), "--model", "nuclei-2d", "--out", str(tmp_path / "p"),
               "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 1 and f"CT: failed ({b} has the same name as {a};" in err
    rec = json.loads((tmp_path / "p" / "CT_predict.json").read_text())
    assert rec["input"] == str(a.resolve())  # the first one ran


def test_predict_refuses_an_out_that_is_a_file_before_running(tmp_path, capsys, monkeypatch):
    src = _tiff(tmp_path / "image.tif")
    existing = tmp_path / "existing_file.tif"
    existing.write_bytes(b"mine")
    monkeypatch.setattr(checkpoint, "load_model", lambda *a, **k: pytest.fail("loaded the model before checking"))
    for inputs in ([str(src)], [str(tmp_path / "*.tif")]):  # a single input and a cohort
        rc = main(["predict", *inputs, "--model", "nuclei-2d", "--out", str(existing)])
        line = _error_line(capsys.readouterr().err, "predict")
        assert rc == 1 and f"--out {existing} is a file; choose a folder" in line
    assert existing.read_bytes() == b"mine"


def test_a_volume_too_thin_for_a_3d_model_fails_alone(tmp_path, capsys):
    thin = _volume(tmp_path / "thin.nii.gz", slices=1, affine=np.eye(4))  # 1 mm: 0 slices at the model's 2 mm
    thin2 = _volume(tmp_path / "thin2mm.nii.gz", slices=1)
    fine = _volume(tmp_path / "fine.nii.gz")
    rc = main(["predict", str(thin), str(thin2), str(fine), "--model", "brain-mri-3d", "--out", str(tmp_path / "p"),
               "--device", "cpu", "--brain-extraction", "off"])
    err = capsys.readouterr().err
    assert rc == 1 and "2 of 3 inputs failed" in err
    for name in ("thin.nii.gz", "thin2mm.nii.gz"):
        assert f"{name}: error: The volume is too thin for a 3D model's tile: 1 slice along axis 0" in err
    assert "Use a 2D model" in err and "zero-size" not in err
    assert (tmp_path / "p" / "fine_mask.nii.gz").is_file() and not (tmp_path / "p" / "thin_mask.nii.gz").exists()


def test_a_volume_resampled_to_no_slice_is_refused_and_tiles_need_a_voxel():
    from napari_attnseg import load_model, predict
    from napari_attnseg.errors import InputError
    from napari_attnseg.inference.tiling import TileGrid

    model = load_model("brain-mri-3d", device="cpu")
    with pytest.raises(InputError, match="too thin .* once resampled to the model's voxel spacing"):
        predict(model, np.ones((2, 40, 40), np.float32), spacing=(0.4, 2.0, 2.0), device="cpu", brain_extraction=False)
    with pytest.raises(ValueError, match="every axis needs a voxel"):
        TileGrid((0, 32, 32), (16, 32, 32), (0.25,) * 3, (1, 1, 1))


def test_an_unexpected_failure_of_one_input_leaves_the_others_running(tmp_path, capsys, monkeypatch):
    first, second = _tiff(tmp_path / "first.tif"), _tiff(tmp_path / "second.tif", seed=1)
    real = inference.predict
    calls = []

    def predict(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("zero-size array")
        return real(*args, **kwargs)

    monkeypatch.setattr(inference, "predict", predict)
    monkeypatch.delenv("ATTNSEG_DEBUG", raising=False)
    rc = main(["predict", str(first), str(second), "--model", "nuclei-2d", "--out", str(tmp_path / "p"),
               "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 1 and "first.tif: error: unexpected ValueError: zero-size array" in err and "1 of 2 inputs failed" in err
    assert (tmp_path / "p" / "second_mask.tif").is_file()


def test_a_damaged_tiff_is_called_one_without_library_log_lines(tmp_path, capsys, caplog):
    noise = tmp_path / "bad.tif"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 1000, np.uint8).tobytes())
    good = _tiff(tmp_path / "good.tif")
    cut = tmp_path / "cut.tif"
    cut.write_bytes(good.read_bytes()[:8])  # the header only: tifffile logs, then "list index out of range"
    rc = main(["predict", str(noise), str(cut), str(good), "--model", "nuclei-2d", "--out", str(tmp_path / "p"),
               "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 1 and "2 of 3 inputs failed" in err
    for f in (noise, cut):
        assert f"{f}: error: {f} is not a readable TIFF: the file is damaged or cut short, or it is not a TIFF" in err
    assert "list index out of range" not in err and "<tifffile" not in err
    assert not [r for r in caplog.records if r.name.startswith("tifffile")]
    assert (tmp_path / "p" / "good_mask.tif").is_file()


@pytest.mark.parametrize("tile", ["abc", "0", "96,x"])
def test_a_bad_tile_is_a_usage_error(tmp_path, capsys, tile):
    with pytest.raises(SystemExit) as exc:
        main(["predict", str(tmp_path / "a.tif"), "--model", "nuclei-2d", "--out", str(tmp_path / "o"), "--tile", tile])
    assert exc.value.code == 2
    assert f"argument --tile: takes positive sizes like 256 or 96,96,96; got '{tile}'" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# evaluate
# ----------------------------------------------------------------------------------------------
def test_label_mismatch_notes():
    from napari_attnseg.evaluation import label_mismatch

    brain = ["background", "grey matter", "white matter"]
    assert label_mismatch([0, 1, 2], brain) == "" and label_mismatch([0, 1, 3], ["background", "a", "b", "c"]) == ""
    assert label_mismatch([0, 1], ["background", "nucleus"]) == ""
    one = label_mismatch([0, 1], brain)
    assert "one foreground value (1)" in one and "'grey matter'" in one
    extra = label_mismatch([0, 1, 2, 5], brain)
    assert "label values [5]" in extra and "does not predict" in extra


def test_evaluate_says_when_the_reference_does_not_label_the_models_classes(tmp_path, capsys, monkeypatch):
    img = _volume(tmp_path / "brain.nii.gz")
    tumour = np.zeros((40, 40, 12), np.uint8)
    tumour[10:20, 10:20, 4:8] = 1
    nib.save(nib.Nifti1Image(tumour, BRAIN_SPACING), tmp_path / "labels.nii.gz")
    text = _with_warning(monkeypatch)
    argv = ["evaluate", "--model", "brain-mri-3d", "--image", str(img), "--labels", str(tmp_path / "labels.nii.gz"),
            "--device", "cpu"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "note: the reference has one foreground value (1)" in captured.out and "grey matter" in captured.out
    assert f"brain.nii.gz: warning: {text}" in captured.err
    assert main(argv + ["--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert "one foreground value" in res["note"] and res["warnings"][-1] == text


@pytest.mark.parametrize("region, says", [
    ("0:600,0:100", "0:600 on axis 0"),
    ("0:64,70:80", "70:80 on axis 1"),
    ("10:10", "10:10 on axis 0"),
    ("-5:10", "-5:10 on axis 0"),
])
def test_evaluate_refuses_a_region_outside_the_image(tmp_path, capsys, monkeypatch, region, says):
    img, ref = _tiff(tmp_path / "img.tif"), tmp_path / "ref.tif"
    tifffile.imwrite(ref, np.zeros((64, 64), np.uint8))
    _no_inference(monkeypatch)
    rc = main(["evaluate", "--model", "nuclei-2d", "--image", str(img), "--labels", str(ref), f"--region={region}"])
    line = _error_line(capsys.readouterr().err, "evaluate")
    assert rc == 1 and says in line and "shape (64, 64)" in line and "img.tif" in line


def test_a_prediction_warning_is_printed_once_with_the_input_name(tmp_path, capsys):
    """The engine also logs its warnings (for library users); the CLI prints them itself, prefixed with the
    input, so the log copy (without a name, or from a Dask worker) is not printed as well."""
    rng = np.random.default_rng(0)
    ct = np.full((64, 64), -1000.0, np.float32)
    ct[12:52, 12:52] = rng.normal(40, 20, (40, 40))
    ct[30:34, 30:34] = 900.0
    tifffile.imwrite(tmp_path / "ct.tif", ct)
    assert main(["predict", str(tmp_path / "ct.tif"), "--model", "nuclei-2d", "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert err.count("looks like a CT in Hounsfield units") == 1, err


def test_a_users_own_file_at_an_output_name_is_never_replaced(tmp_path, capsys):
    """`cells_mask.tif` beside `cells.tif` is the user's (no record of ours): predicting into that folder
    is refused even with --overwrite, naming the file, and the file is unchanged; a cohort over the folder
    does not take it for an image to segment. (Before: "may have been corrected by hand", and --overwrite
    replaced the user's reference mask.)"""
    own = tmp_path / "own"
    _tiff(own / "cells.tif")
    reference = np.zeros((64, 64), np.uint8)
    reference[10:20, 10:20] = 1
    tifffile.imwrite(own / "cells_mask.tif", reference)
    before = (own / "cells_mask.tif").read_bytes()
    for extra in ([], ["--overwrite"]):
        assert main(["predict", str(own / "cells.tif"), "--model", "nuclei-2d", "--out", str(own), *extra]) != 0
        err = capsys.readouterr().err
        assert "cells_mask.tif" in err and "no run of attnseg wrote" in err and "never replaced" in err
    assert (own / "cells_mask.tif").read_bytes() == before
    from napari_attnseg.cohort.inputs import _folder_cases

    assert [p.name for p in _folder_cases(own)] == ["cells.tif"]
    out = tmp_path / "out"
    assert main(["predict", str(own), "--model", "nuclei-2d", "--out", str(out)]) == 0
    assert (out / "cells_mask.tif").exists() and not (out / "cells_mask_mask.tif").exists()
    assert (own / "cells_mask.tif").read_bytes() == before


def test_an_out_folder_that_cannot_be_written_is_refused_before_the_prediction(tmp_path, capsys, monkeypatch):
    """--out under a file (or unwritable) is an error naming it before the image is read or the model runs
    (before: "unexpected NotADirectoryError" after the whole prediction)."""
    called = []
    monkeypatch.setattr(inference, "predict", lambda *a, **k: called.append(1))
    (tmp_path / "afile").write_text("x")
    src = _tiff(tmp_path / "cells.tif")
    assert main(["predict", str(src), "--model", "nuclei-2d", "--out", str(tmp_path / "afile" / "sub")]) != 0
    err = capsys.readouterr().err
    assert "afile" in err and "can write in" in err and "unexpected" not in err and not called


def test_multi_channel_tiffs_ask_for_a_channel_and_segment_it(tmp_path, capsys):
    """A 2-channel ImageJ TIFF (axes CYX) ran as a 2-slice volume and an RGB one was refused with Python
    advice: now both name the file and --channel; with it, the channel is segmented as a 2D image (the same
    mask as that channel saved alone), in a single run and in a cohort; a ZCYX hyperstack gives a volume."""
    from napari_attnseg._paths import samples_dir
    from napari_attnseg.data import read_image

    plane = read_image(samples_dir() / "nuclei2d_image.tif").data[:96, :128].astype(np.uint16)
    tifffile.imwrite(tmp_path / "two.tif", np.stack([plane[::-1], plane]), imagej=True, metadata={"axes": "CYX"})
    p8 = plane.astype(np.uint8)  # real colour (a grey image saved as RGB is read as grey: test_plain_images.py)
    tifffile.imwrite(tmp_path / "rgb.tif", np.stack([p8, p8[::-1], p8[:, ::-1]], -1), photometric="rgb")
    tifffile.imwrite(tmp_path / "alone.tif", plane)
    tifffile.imwrite(tmp_path / "stack.tif", np.stack([np.stack([plane, plane[::-1]])] * 3), imagej=True,
                     metadata={"axes": "ZCYX"})
    for name in ("two.tif", "rgb.tif"):
        assert main(["predict", str(tmp_path / name), "--model", "nuclei-2d", "--out", str(tmp_path / "o")]) != 0
        err = capsys.readouterr().err
        assert name in err and "--channel" in err and "channels" in err
    assert main(["predict", str(tmp_path / "two.tif"), str(tmp_path / "alone.tif"), "--model", "nuclei-2d",
                 "--out", str(tmp_path / "o"), "--channel", "1"]) != 0  # alone.tif has no channel axis
    assert "alone.tif has no channel axis" in capsys.readouterr().err
    mask = tifffile.imread(tmp_path / "o" / "two_mask.tif")
    assert main(["predict", str(tmp_path / "alone.tif"), "--model", "nuclei-2d", "--out", str(tmp_path / "a")]) == 0
    assert mask.shape == plane.shape and np.array_equal(mask, tifffile.imread(tmp_path / "a" / "alone_mask.tif"))
    assert main(["predict", str(tmp_path / "rgb.tif"), "--model", "nuclei-2d", "--out", str(tmp_path / "r"),
                 "--channel", "0"]) == 0
    assert tifffile.imread(tmp_path / "r" / "rgb_mask.tif").shape == plane.shape
    from napari_attnseg.cohort import predict_cohort

    summary = predict_cohort("nuclei-2d", [tmp_path / "stack.tif"], tmp_path / "c", channel=0, prefetch=0)
    assert not summary.failed and tifffile.imread(tmp_path / "c" / "stack_mask.tif").shape == (3, *plane.shape)


def test_predict_replaces_the_leftovers_of_a_run_stopped_half_way(tmp_path, capsys):
    """Ctrl+C or a kill while writing leaves the hidden marker and some outputs, no record; a rerun was refused
    ("already holds outputs ... --overwrite") although nothing there is a user's. It now replaces them and says
    so, as a cohort does; finished outputs (a record) are still refused without --overwrite."""
    from napari_attnseg.results import partial_marker, record_path

    src, out = _tiff(tmp_path / "image.tif"), tmp_path / "p"
    args = ["predict", str(src), "--model", "nuclei-2d", "--out", str(out), "--device", "cpu"]
    assert main(args) == 0
    record_path(out, src).unlink()  # what a stop half-way leaves: outputs and the marker, no record
    partial_marker(out, src).write_text("{}")
    corrected = tifffile.imread(out / "image_mask.tif")
    corrected[:8, :8] = 1  # its mask (written first) opened and corrected since: nothing tells it was not
    tifffile.imwrite(out / "image_mask.tif", corrected)
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "replacing the outputs of a run stopped half-way" in err and "edited_masks" in err
    assert np.array_equal(tifffile.imread(out / "edited_masks" / "image_mask.tif"), corrected)  # kept, not lost
    assert record_path(out, src).is_file() and not partial_marker(out, src).exists()
    assert main(args) == 1 and "--overwrite" in capsys.readouterr().err
