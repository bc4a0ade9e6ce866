"""`attnseg predict` / `attnseg evaluate`: round trips on TIFF and NIfTI, per-input failures, Dice."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch

from napari_attnseg import create_model, save_model
from napari_attnseg.cli import main


def _save(tmp_path, dims, name):
    torch.manual_seed(0)
    model = create_model("attention_unet", spatial_dims=dims, features=(4, 8, 16, 32)).eval()
    with torch.no_grad():  # shift the head so that random weights give a mix of both classes
        x = torch.randn(1, 1, *([32] * dims))
        d = (lambda lg: lg[:, 1] - lg[:, 0])(model(x))
        model.head.bias[1] -= torch.quantile(d.flatten(), 0.7)
    path = tmp_path / f"{name}.safetensors"
    save_model(model, path, card={"name": name, "arch": model.arch, "config": model.config,
                                  "classes": ["background", "thing"], "normalization": {"scheme": "zscore"},
                                  "tile": [32] * dims, "overlap": 0.25})
    return path


@pytest.fixture
def model2d(tmp_path):
    return _save(tmp_path, 2, "tiny2d")


@pytest.fixture
def model3d(tmp_path):
    return _save(tmp_path, 3, "tiny3d")


def test_tiff_round_trip_with_attention_and_a_failing_input(tmp_path, model2d, capsys):
    img = np.random.default_rng(0).normal(100, 20, (70, 90)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "cells.tif", img)
    (tmp_path / "broken.tif").write_bytes(b"not a tiff")
    out = tmp_path / "out"
    code = main(["predict", str(tmp_path / "cells.tif"), str(tmp_path / "missing.tif"), str(tmp_path / "broken.tif"),
                 "--model", str(model2d), "--out", str(out), "--attention", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 1
    assert "missing.tif" in err and "does not exist" in err and "broken.tif" in err and "2 of 3 inputs failed" in err
    assert "cells.tif: 100%|" in err and "tile/s" in err  # the tqdm bar
    mask = tifffile.imread(out / "cells_mask.tif")
    prob = tifffile.imread(out / "cells_prob.tif")
    assert mask.shape == img.shape and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
    assert prob.shape == img.shape and prob.dtype == np.float32 and 0 <= prob.min() and prob.max() <= 1
    differ = (prob > 0.5) != (mask == 1)
    assert np.all(np.abs(prob[differ] - 0.5) < 1e-3)  # only float16 rounding at near-ties
    assert 0 < mask.mean() < 1
    # one file per attention level, at its native resolution (strides 2 and 4)
    a2 = tifffile.imread(out / "cells_attention_level2.tif")
    a3 = tifffile.imread(out / "cells_attention_level3.tif")
    assert a2.shape == (35, 45) and a3.shape == (18, 23)
    assert not any(p.name.startswith(("missing", "broken")) for p in out.iterdir())


def test_nifti_round_trip_keeps_the_affine(tmp_path, model3d, capsys):
    data = np.random.default_rng(1).normal(0, 1, (40, 36, 20)).astype(np.float32)  # NIfTI (i, j, k)
    affine = np.array([[-0.8, 0, 0, 30.0], [0, 0.8, 0, -20.0], [0, 0, 2.5, 5.0], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "scan.nii.gz")
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "scan.nii.gz"), "--model", str(model3d), "--out", str(out),
                 "--attention", "--device", "cpu", "--tile", "16,32,32"]) == 0
    mask = nib.load(out / "scan_mask.nii.gz")
    np.testing.assert_allclose(mask.affine, affine, atol=1e-5)
    assert mask.shape == data.shape
    prob = nib.load(out / "scan_prob.nii.gz")
    assert prob.shape == data.shape
    np.testing.assert_allclose(prob.affine, affine, atol=1e-5)
    # the stride-2 map: voxel 0 is centred between image voxels 0 and 1 on every axis
    att = nib.load(out / "scan_attention_level2.nii.gz")
    assert att.shape == (20, 18, 10)
    centre0 = att.affine @ [0, 0, 0, 1]
    np.testing.assert_allclose(centre0[:3], (affine @ [0.5, 0.5, 0.5, 1])[:3], atol=1e-5)
    np.testing.assert_allclose(np.diag(att.affine)[:3], np.diag(affine)[:3] * 2, atol=1e-5)
    assert "0 of" not in capsys.readouterr().err


def test_evaluate_prints_dice_per_class_and_json(tmp_path, model2d, capsys):
    from napari_attnseg import load_model, predict

    img = np.random.default_rng(2).normal(100, 20, (64, 64)).astype(np.float32)
    tifffile.imwrite(tmp_path / "img.tif", img)
    model = load_model(model2d, device="cpu")
    pred = predict(model, img, device="cpu", precision="fp32").labels
    # instance ids: every connected blob of the prediction gets its own id, so scoring binarises
    from scipy import ndimage

    inst, n = ndimage.label(pred)
    tifffile.imwrite(tmp_path / "ref.tif", inst.astype(np.uint16))
    assert main(["evaluate", "--model", str(model2d), "--image", str(tmp_path / "img.tif"), "--labels",
                 str(tmp_path / "ref.tif"), "--device", "cpu", "--precision", "fp32", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["dice"]["thing"] == pytest.approx(1.0)
    if n > 1:
        assert "labels > 0" in res["note"]
    assert main(["evaluate", "--model", str(model2d), "--image", str(tmp_path / "img.tif"), "--labels",
                 str(tmp_path / "ref.tif"), "--device", "cpu", "--precision", "fp32"]) == 0
    assert "thing: Dice 1.0000" in capsys.readouterr().out


def test_evaluate_refuses_mismatched_shapes(tmp_path, model2d, capsys):
    tifffile.imwrite(tmp_path / "img.tif", np.zeros((32, 32), np.float32))
    tifffile.imwrite(tmp_path / "ref.tif", np.zeros((30, 32), np.uint8))
    assert main(["evaluate", "--model", str(model2d), "--image", str(tmp_path / "img.tif"), "--labels",
                 str(tmp_path / "ref.tif"), "--device", "cpu"]) == 1
    assert "must match" in capsys.readouterr().err


def test_outputs_sit_beside_a_link_to_the_input_and_a_record_and_are_never_overwritten_silently(
        tmp_path, model2d, capsys):
    img = np.random.default_rng(3).normal(100, 20, (48, 40)).astype(np.uint16)
    src = tmp_path / "in" / "slide.tif"
    src.parent.mkdir()
    tifffile.imwrite(src, img)
    out = tmp_path / "out"
    args = ["predict", str(src), "--model", str(model2d), "--out", str(out), "--attention", "--device", "cpu"]
    assert main(args) == 0
    link = out / "slide_image.tif"
    assert link.is_symlink() and link.resolve() == src.resolve()  # a reference, not a copy
    np.testing.assert_array_equal(tifffile.imread(link), img)
    rec = json.loads((out / "slide_predict.json").read_text())
    assert rec["input"] == str(src.resolve()) and rec["input_reference"] == "slide_image.tif"
    assert rec["outputs"][:2] == ["slide_mask.tif", "slide_prob.tif"]
    assert all((out / name).is_file() for name in rec["outputs"])
    assert rec["model"] == "tiny2d" and len(rec["model_weights_sha256"]) == 64
    assert rec["device"] == "cpu" and rec["params"]["tiles"] >= 1
    capsys.readouterr()

    # the user corrects the mask in place; a second run into the same folder must not replace it
    corrected = np.ones(img.shape, np.uint8)
    tifffile.imwrite(out / "slide_mask.tif", corrected)
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "slide_mask.tif" in err and "--overwrite" in err and str(out) in err
    np.testing.assert_array_equal(tifffile.imread(out / "slide_mask.tif"), corrected)

    # --overwrite replaces everything of the earlier run, maps of levels the new model lacks included
    (out / "slide_attention_level9.tif").write_bytes(b"stale")
    assert main(args + ["--overwrite"]) == 0
    assert not (out / "slide_attention_level9.tif").exists()
    assert not np.array_equal(tifffile.imread(out / "slide_mask.tif"), corrected)
    assert link.is_symlink() and link.resolve() == src.resolve()


def test_outputs_written_next_to_the_input_need_no_link(tmp_path, model2d):
    tifffile.imwrite(tmp_path / "slide.tif", np.random.default_rng(4).normal(100, 20, (40, 40)).astype(np.uint16))
    assert main(["predict", str(tmp_path / "slide.tif"), "--model", str(model2d), "--out", str(tmp_path),
                 "--device", "cpu"]) == 0
    assert not (tmp_path / "slide_image.tif").exists()
    assert json.loads((tmp_path / "slide_predict.json").read_text())["input_reference"] == "slide.tif"


def test_a_predict_record_opens_as_the_segment_widgets_layers(tmp_path, model3d):
    """The record brings back image, mask (labels), probability and every map, placed like the widget's."""
    from napari_attnseg import load_model, predict
    from napari_attnseg.layers import Placement
    from napari_attnseg.results import record_layers

    data = np.random.default_rng(5).normal(0, 1, (40, 36, 20)).astype(np.float32)  # NIfTI (i, j, k)
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "scan.nii.gz")
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "scan.nii.gz"), "--model", str(model3d), "--out", str(out),
                 "--attention", "--device", "cpu", "--tile", "16,32,32"]) == 0
    layers = record_layers(out / "scan_predict.json")
    kinds = [kind for _, _, kind in layers]
    names = [kw["name"] for _, kw, _ in layers]
    assert kinds[:3] == ["image", "labels", "image"] and names[:3] == ["scan", "scan mask", "scan probability"]
    image, mask, prob = layers[0], layers[1], layers[2]
    assert image[0].shape == (20, 36, 40)
    np.testing.assert_allclose(image[1]["scale"], (2.5, 0.8, 0.8), rtol=1e-6)
    np.testing.assert_array_equal(mask[0], np.asarray(nib.load(out / "scan_mask.nii.gz").dataobj).transpose(2, 1, 0))
    assert mask[1]["scale"] == tuple(image[1]["scale"]) and mask[1]["features"]["class"] == ["background", "thing"]
    assert prob[1]["visible"] is False and prob[0].shape == mask[0].shape
    # every map where a fresh prediction on the same image would put it, finest level visible
    direct = predict(load_model(model3d, device="cpu"), image[0], device="cpu", attention=True, tile=(16, 32, 32))
    where = Placement(tuple(image[1]["scale"]), (0.0, 0.0, 0.0))
    maps = layers[3:]
    assert len(maps) == len(direct.attention) >= 2
    for (arr, kw, kind), amap in zip(maps, direct.attention):
        assert kind == "image" and kw["name"] == f"scan attention {amap.name}" and arr.shape == amap.data.shape
        expect = where.compose(amap.scale, amap.translate)
        np.testing.assert_allclose(kw["scale"], expect["scale"])
        np.testing.assert_allclose(kw["translate"], expect["translate"])
    assert [kw["visible"] for _, kw, _ in maps].count(True) == 1 and maps[0][1]["visible"]


def test_a_record_whose_files_moved_says_what_is_missing(tmp_path, model2d):
    from napari_attnseg.errors import InputError
    from napari_attnseg.results import record_layers

    src = tmp_path / "in" / "slide.tif"
    src.parent.mkdir()
    tifffile.imwrite(src, np.random.default_rng(6).normal(100, 20, (40, 40)).astype(np.uint16))
    out = tmp_path / "out"
    assert main(["predict", str(src), "--model", str(model2d), "--out", str(out), "--device", "cpu"]) == 0
    src.unlink()  # the input is gone: the outputs still open, with a warning that names it
    with pytest.warns(UserWarning, match="slide.tif is gone"):
        layers = record_layers(out / "slide_predict.json")
    assert [kind for _, _, kind in layers] == ["labels", "image"]
    (out / "slide_prob.tif").unlink()
    with pytest.raises(InputError, match="slide_prob.tif"):
        record_layers(out / "slide_predict.json")
    (out / "other_predict.json").write_text("{}")
    with pytest.raises(InputError, match="not a record written by `attnseg predict`"):
        record_layers(out / "other_predict.json")


def test_a_multi_class_predict_record_reopens(tmp_path):
    """A 3-class model writes one probability per class as a 4D NIfTI; its record opened again (napari's
    reader for <stem>_predict.json) failed on that file ("expected a 2D or 3D NIfTI image")."""
    from napari_attnseg.results import record_layers

    torch.manual_seed(0)
    model = create_model("attention_unet", spatial_dims=3, out_channels=3, features=[4, 8, 16])
    path = tmp_path / "three.safetensors"
    save_model(model, path, card={"name": "three", "classes": ["background", "a", "b"],
                                  "normalization": {"scheme": "zscore"}, "tile": [16, 32, 32], "overlap": 0.25})
    data = np.random.default_rng(5).normal(0, 1, (40, 36, 20)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.8, 2.5, 1.0])), tmp_path / "scan.nii.gz")
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "scan.nii.gz"), "--model", str(path), "--out", str(out), "--device", "cpu"]) == 0
    assert nib.load(out / "scan_prob.nii.gz").ndim == 4
    layers = record_layers(out / "scan_predict.json")
    names = [kw["name"] for _, kw, _ in layers]
    assert names[:3] == ["scan", "scan mask", "scan probability"]
    assert layers[2][0].shape[-3:] == layers[1][0].shape == (20, 36, 40)


def test_what_the_reader_noticed_reaches_the_cli_and_the_record(tmp_path, model2d, capsys):
    """A DICOM series with a slice missing (uneven spacing): the reader's warning is printed by `attnseg
    predict` and kept in the record (before: only napari showed it)."""
    import pydicom
    from test_io import write_dicom_series

    folder = write_dicom_series(tmp_path / "ct", np.full((6, 32, 32), 40.0, np.float32), shuffle=False)
    gone = next(p for p in sorted(folder.iterdir()) if int(pydicom.dcmread(p).InstanceNumber) == 3)
    gone.unlink()
    assert main(["predict", str(folder), "--model", str(model2d), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "uneven" in err
    record = json.loads(next((tmp_path / "out").glob("*_predict.json")).read_text())
    assert any("uneven" in w for w in record["warnings"])


def test_attention_with_a_model_without_gates_says_so(tmp_path, tiny_checkpoint, capsys):
    """--attention with a U-Net wrote no map files and said nothing."""
    import tifffile

    from napari_attnseg.cli import main

    tifffile.imwrite(tmp_path / "img.tif", np.random.default_rng(0).integers(0, 255, (64, 64)).astype(np.uint8))
    model = tiny_checkpoint(arch="unet", name="plain")
    assert main(["predict", str(tmp_path / "img.tif"), "--model", str(model), "--out", str(tmp_path / "o"),
                 "--attention", "--device", "cpu"]) == 0
    assert "note: plain-2d (unet) has no attention gates; --attention writes no maps" in capsys.readouterr().err
    assert not list((tmp_path / "o").glob("*attention*"))


def test_multi_class_outputs_name_their_classes_and_channels(tmp_path):
    """A 3-class 2D model on a calibrated TIFF: the probability TIFF holds one plane per foreground class
    with axes C, Y, X and keeps the pixel size (it said Z, Y, X, so Fiji showed classes as slices, and its
    pixel size was lost); on a NIfTI the mask carries the class names, so `attnseg export` names the
    dataset's classes without --model (the audit's dataset said background, foreground)."""
    from napari_attnseg.data import read_image
    from napari_attnseg.results import record_layers

    torch.manual_seed(0)
    model = create_model("attention_unet", spatial_dims=2, out_channels=3, features=[4, 8, 16])
    path = tmp_path / "three.safetensors"
    save_model(model, path, card={"name": "three", "classes": ["background", "nucleus", "boundary"],
                                  "normalization": {"scheme": "zscore"}, "tile": [32, 32], "overlap": 0.25})
    image = np.random.default_rng(1).normal(100, 10, (48, 40)).astype(np.float32)
    tifffile.imwrite(tmp_path / "cells.tif", image, imagej=True, resolution=(2.0, 2.0), metadata={"unit": "um"})
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "cells.tif"), "--model", str(path), "--out", str(out)]) == 0
    with tifffile.TiffFile(out / "cells_prob.tif") as tif:
        assert tif.series[0].axes.startswith("C") and tif.series[0].shape == (2, 48, 40)
    prob = read_image(out / "cells_prob.tif")
    assert prob.spacing[-2:] == pytest.approx((0.5, 0.5))
    assert [kw["name"] for _, kw, _ in record_layers(out / "cells_predict.json")][:3] == \
        ["cells", "cells mask", "cells probability"]

    volume = np.random.default_rng(2).normal(0, 1, (40, 36, 6)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, np.diag([0.8, 0.8, 2.5, 1.0])), tmp_path / "scan.nii.gz")
    model3 = create_model("attention_unet", spatial_dims=2, out_channels=3, features=[4, 8, 16])
    save_model(model3, path, card={"name": "three", "classes": ["background", "core", "rim"],
                                   "normalization": {"scheme": "zscore"}, "tile": [32, 32], "overlap": 0.25})
    assert main(["predict", str(tmp_path / "scan.nii.gz"), "--model", str(path), "--out", str(out),
                 "--mode", "slices"]) == 0
    assert read_image(out / "scan_mask.nii.gz").meta.get("class_names") == ["background", "core", "rim"]
    path.unlink()  # the model is gone: the names come with the mask itself
    (out / "scan_predict.json").unlink()
    assert main(["export", "--image", str(tmp_path / "scan.nii.gz"), "--labels", str(out / "scan_mask.nii.gz"),
                 "--dataset", str(tmp_path / "ds"), "--format", "nnunet"]) == 0
    labels = json.loads((tmp_path / "ds" / "dataset.json").read_text())["labels"]
    assert list(labels)[:3] == ["background", "core", "rim"]


def test_evaluate_on_an_exported_label_file_leaves_its_ignore_voxels_out(tmp_path, model3d, capsys):
    """`attnseg evaluate --labels <dataset>/labelsTr/case.nii.gz`: the slices nobody reviewed hold the dataset's
    'ignore' value and were scored as misses of a class the model never predicts; now they are left out, so the
    Dice equals the one on the reviewed slices of the original labels."""
    lab = np.zeros((32, 32, 8), np.uint8)
    lab[8:20, 10:24, 1:7] = 1
    img = (lab * 3.0 + np.random.default_rng(3).normal(0, 1, lab.shape)).astype(np.float32)
    nib.save(nib.Nifti1Image(img, np.diag([1.0, 1.0, 2.0, 1.0])), tmp_path / "ct.nii.gz")
    nib.save(nib.Nifti1Image(lab, np.diag([1.0, 1.0, 2.0, 1.0])), tmp_path / "ct_labels.nii.gz")
    assert main(["export", "--image", str(tmp_path / "ct.nii.gz"), "--labels", str(tmp_path / "ct_labels.nii.gz"),
                 "--dataset", str(tmp_path / "ds"), "--format", "nnunet", "--reviewed-slices", "2,3",
                 "--label-names", "background,thing"]) == 0
    capsys.readouterr()
    ds = tmp_path / "ds"
    exported = str(next((ds / "labelsTr").iterdir()))
    assert main(["evaluate", "--model", str(model3d), "--image", str(next((ds / "imagesTr").iterdir())),
                 "--labels", exported, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "'ignore' value 2" in out["note"] and "does not predict" not in out["note"]
    assert main(["evaluate", "--model", str(model3d), "--image", str(tmp_path / "ct.nii.gz"),
                 "--labels", str(tmp_path / "ct_labels.nii.gz"), "--region", "2:4,0:32,0:32", "--json"]) == 0
    whole = json.loads(capsys.readouterr().out)
    assert out["dice"]["thing"] == pytest.approx(whole["dice"]["thing"], abs=1e-6)
