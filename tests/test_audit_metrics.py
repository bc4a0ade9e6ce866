"""`attnseg evaluate`'s figures against what a researcher computes with MONAI or numpy: the definitions (empty
reference, empty prediction, a class in neither, ignore voxels, instance ids), the inputs that must be refused
rather than scored (a probability map of whole numbers, a 2D reference against a stack) and the --json contract."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
import torch

from napari_attnseg import create_model, save_model
from napari_attnseg.checkpoint import ModelCard
from napari_attnseg.cli import main as cli
from napari_attnseg.data.io import write_image
from napari_attnseg.evaluation import false_positive_only, probability_map_note

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
KEYS = ["model", "image", "region", "device", "precision", "tta", "dice", "reviewed_slices", "note", "warnings"]


def _model(tmp_path, dims: int, classes: list[str]):
    torch.manual_seed(0)
    net = create_model("attention_unet", spatial_dims=dims, out_channels=len(classes), features=[4, 8, 16])
    path = tmp_path / f"m{dims}d{len(classes)}.safetensors"
    save_model(net, path, ModelCard(arch="", config={}, name="tiny", tile=[16, 32, 32][-dims:], classes=classes))
    return path


def _predicting(monkeypatch, labels: np.ndarray, classes: list[str]) -> None:
    """The model 'finds' ``labels`` (what is scored is the point here, not the network)."""
    import napari_attnseg.inference as inference

    found = types.SimpleNamespace(labels=labels, warnings=[], classes=classes, device="cpu", precision="fp32")
    monkeypatch.setattr(inference, "predict", lambda *a, **k: found)


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))


def _shell(shape=(16, 32, 32)) -> np.ndarray:
    z, y, x = np.indices(shape)
    r = np.sqrt((z - shape[0] / 2) ** 2 + (y - shape[1] / 2) ** 2 + (x - shape[2] / 2) ** 2)
    lab = np.zeros(shape, np.uint8)
    lab[r < 12] = 1
    lab[r < 6] = 2
    return lab


def test_evaluate_refuses_a_2d_reference_against_a_stack(tmp_path, capsys, monkeypatch):
    """A one-slice reference (512x512) given for a 5-slice stack of the nuclei image was broadcast over every slice
    and scored Dice 0.63 without a word (the shape check compared the reference with the image's last two axes, meant
    for a channel axis). It is refused, both shapes named, before the model runs."""
    import tifffile

    ckpt = _model(tmp_path, 2, ["background", "nucleus"])
    rng = np.random.default_rng(0)
    tifffile.imwrite(tmp_path / "stack.tif", rng.integers(0, 200, (5, 32, 32), dtype=np.uint8))
    tifffile.imwrite(tmp_path / "ref2d.tif", (rng.random((32, 32)) > 0.5).astype(np.uint8))
    _predicting(monkeypatch, np.zeros((5, 32, 32), np.uint8), ["background", "nucleus"])
    rc = cli(["evaluate", "--model", str(ckpt), "--image", str(tmp_path / "stack.tif"), "--labels",
              str(tmp_path / "ref2d.tif"), "--json", "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc != 0 and captured.out == ""
    assert "ref2d.tif has shape (32, 32)" in captured.err and "(5, 32, 32)" in captured.err


def _probability_map(shape=(16, 32, 32)) -> np.ndarray:
    """A grey-matter map as the MNI's gm.nii.gz holds it: whole numbers 0-255, smooth."""
    z, y, x = np.indices(shape)
    r = np.sqrt((z - shape[0] / 2) ** 2 + (y - shape[1] / 2) ** 2 + (x - shape[2] / 2) ** 2)
    return np.clip(255 * np.exp(-((r - 9) / 4) ** 2), 0, 255).astype(np.uint8)


def test_evaluate_refuses_a_probability_map_of_whole_numbers(tmp_path, capsys, monkeypatch):
    """`attnseg evaluate --model brain-mri-3d --image mni152/t1.nii.gz --labels mni152/gm.nii.gz` (a 0-255 uint8
    probability map, no fraction to refuse) printed grey matter 0.0, white matter 0.07 and exit 0, with a note about
    42 '255 unlabelled' voxels and 252 label values. It is refused, saying what it looks like and how to threshold."""
    lab = _shell()
    ckpt = _model(tmp_path, 3, ["background", "grey matter", "white matter"])
    img = write_image(tmp_path / "t1.nii.gz", lab.astype(np.float32) * 50, spacing=(2.0, 2.0, 2.0), affine=AFFINE)
    gm = write_image(tmp_path / "gm.nii.gz", _probability_map(), spacing=(2.0, 2.0, 2.0), affine=AFFINE)
    _predicting(monkeypatch, lab, ["background", "grey matter", "white matter"])
    rc = cli(["evaluate", "--model", str(ckpt), "--image", str(img), "--labels", str(gm), "--json", "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc != 0 and captured.out == ""
    assert "gm.nii.gz (the reference labels) looks like a probability map" in captured.err
    assert "Threshold it" in captured.err


def test_class_and_instance_labels_are_not_taken_for_probability_maps():
    from napari_attnseg._paths import samples_dir
    from napari_attnseg.data import read_image

    nuclei = read_image(samples_dir() / "nuclei2d_labels.tif").data  # 125 instance ids
    assert probability_map_note(nuclei, "nuclei") == ""
    assert probability_map_note(_shell(), "shell") == ""
    many = np.kron(np.arange(64, dtype=np.uint16).reshape(8, 8), np.ones((6, 6), np.uint16))  # 63 touching objects
    assert probability_map_note(many, "tiles") == ""
    assert "looks like a probability map" in probability_map_note(_probability_map(), "gm")


def test_evaluate_scores_instance_id_255_as_an_object(tmp_path, capsys, monkeypatch):
    """Instance ids running past 255 (a uint16 file of 300 nuclei): the object numbered 255 was left out as 'the
    value many tools give unlabelled voxels', so a nucleus the model missed did not count. 255 is an id there."""
    import tifffile

    ckpt = _model(tmp_path, 2, ["background", "nucleus"])
    ids = np.zeros((60, 100), np.uint16)
    for i in range(300):  # 2x5-pixel objects with a gap, ids 1..300
        r, c = divmod(i, 20)
        ids[r * 4:r * 4 + 2, c * 5:c * 5 + 4] = i + 1
    tifffile.imwrite(tmp_path / "img.tif", (ids > 0).astype(np.uint8) * 200)
    tifffile.imwrite(tmp_path / "ids.tif", ids)
    found = (ids > 0).astype(np.uint8)
    found[ids == 255] = 0  # the model misses object 255
    _predicting(monkeypatch, found, ["background", "nucleus"])
    assert cli(["evaluate", "--model", str(ckpt), "--image", str(tmp_path / "img.tif"), "--labels",
                str(tmp_path / "ids.tif"), "--json", "--device", "cpu"]) == 0
    out = _json(capsys)
    ref = ids > 0
    assert out["dice"]["nucleus"] == pytest.approx(2 * (found & ref).sum() / (found.sum() + ref.sum()))
    assert out["dice"]["nucleus"] < 1.0
    assert "hold 255" not in out["note"] and "scored as labels > 0" in out["note"]


def test_evaluate_says_when_a_dice_of_0_is_false_positives_on_an_empty_reference(tmp_path, capsys, monkeypatch):
    """brain1 (a tumour reference, no white matter) against brain-mri-3d printed 'white matter: Dice 0.0000' with no
    word that the reference has none: 0 is the model's voxels counted as false positives (MONAI's compute_dice gives
    NaN there by default). The note says so, and the figures are MONAI's with ignore_empty=False."""
    lab = _shell()
    ref = np.where(lab == 2, 1, lab).astype(np.uint8)  # no white matter in the reference
    ckpt = _model(tmp_path, 3, ["background", "grey matter", "white matter"])
    img = write_image(tmp_path / "t1.nii.gz", lab.astype(np.float32) * 50, spacing=(2.0, 2.0, 2.0), affine=AFFINE)
    path = write_image(tmp_path / "ref.nii.gz", ref, spacing=(2.0, 2.0, 2.0), affine=AFFINE,
                       class_names=["background", "grey matter", "white matter"])
    _predicting(monkeypatch, lab, ["background", "grey matter", "white matter"])
    base = ["evaluate", "--model", str(ckpt), "--image", str(img), "--labels", str(path), "--device", "cpu"]
    assert cli([*base, "--json"]) == 0
    out = _json(capsys)
    assert list(out) == KEYS
    assert out["dice"]["white matter"] == 0.0
    n = int((lab == 2).sum())
    assert f"no voxel of white matter in the reference but the model finds {n} voxels of white matter: Dice 0" in out["note"]
    assert cli(base) == 0
    assert "false positives only" in capsys.readouterr().out


def test_false_positive_only_counts_labelled_voxels():
    pred = np.array([0, 1, 2, 2, 2])
    target = np.array([0, 1, -1, -1, 0])
    assert false_positive_only(pred, target, ["bg", "a", "b"], ignore_index=-1) == {"b": 1}
    assert false_positive_only(pred, target, ["bg", "a", "b"]) == {"b": 3}


@pytest.mark.parametrize("case", ["real", "empty_ref_fp", "empty_pred", "both_empty", "ignore"])
def test_evaluate_agrees_with_monai_compute_dice(tmp_path, capsys, monkeypatch, case):
    """Per class: evaluate = MONAI's compute_dice(include_background=False, ignore_empty=False) wherever the reference
    or the prediction has the class; a class in neither is null (MONAI: 1.0 with ignore_empty=False, NaN with True)."""
    metrics = pytest.importorskip("monai.metrics")
    from monai.networks.utils import one_hot

    lab = _shell()
    rng = np.random.default_rng(1)
    pred = np.where(rng.random(lab.shape) < 0.1, rng.integers(0, 3, lab.shape), lab).astype(np.uint8)
    ref = lab.copy()
    if case == "empty_ref_fp":
        ref[ref == 2] = 1
    elif case == "empty_pred":
        pred[pred == 2] = 0
    elif case == "both_empty":
        ref[ref == 2], pred[pred == 2] = 1, 1
    elif case == "ignore":
        ref[:3] = 255
    ckpt = _model(tmp_path, 3, ["background", "grey matter", "white matter"])
    img = write_image(tmp_path / "t1.nii.gz", lab.astype(np.float32) * 50, spacing=(2.0, 2.0, 2.0), affine=AFFINE)
    path = write_image(tmp_path / "ref.nii.gz", ref, spacing=(2.0, 2.0, 2.0), affine=AFFINE)
    _predicting(monkeypatch, pred, ["background", "grey matter", "white matter"])
    assert cli(["evaluate", "--model", str(ckpt), "--image", str(img), "--labels", str(path), "--json",
                "--device", "cpu"]) == 0
    out = _json(capsys)
    keep = ref != 255  # (MONAI has no ignore index: the left-out voxels are dropped before it scores)
    p, r = np.where(keep, pred, 0), np.where(keep, ref, 0)
    hot = [one_hot(torch.as_tensor(a[None, None].astype(np.int64)), 3, dim=1) for a in (p, r)]
    monai = metrics.compute_dice(*hot, include_background=False, ignore_empty=False)[0].tolist()
    for ours, theirs, c in zip(out["dice"].values(), monai, (1, 2)):
        if not ((p == c) | (r == c)).any():
            assert ours is None and theirs == 1.0
        else:
            assert ours == pytest.approx(theirs, abs=1e-6)
