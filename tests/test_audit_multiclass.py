"""A brain model's several classes through the CLI loop (predict -> edit -> export -> finetune -> evaluate):
class names that come in another order than the model's must not silently swap the classes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_attnseg import create_model, save_model
from napari_attnseg.checkpoint import ModelCard
from napari_attnseg.cli import main as cli
from napari_attnseg.data.export import export_case
from napari_attnseg.data.io import write_image
from napari_attnseg.evaluation import names_to_classes

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def _brain_like(tmp_path, shape=(16, 32, 32)):
    """A T1-like volume with 'grey matter' (1, a shell) around 'white matter' (2, a core) of another size, and a
    3-class 3D model whose card names them as brain-mri-3d does."""
    z, y, x = np.indices(shape)
    r = np.sqrt((z - shape[0] / 2) ** 2 + (y - shape[1] / 2) ** 2 + (x - shape[2] / 2) ** 2)
    lab = np.zeros(shape, np.uint8)
    lab[r < 12] = 1
    lab[r < 6] = 2
    image = (np.choose(lab, [0, 60, 110]) + np.random.default_rng(0).normal(0, 3, shape)).astype(np.float32)
    torch.manual_seed(0)
    net = create_model("attention_unet", spatial_dims=3, out_channels=3, features=[4, 8, 16])
    ckpt = tmp_path / "brain3.safetensors"
    save_model(net, ckpt, ModelCard(arch="", config={}, name="brain3", tile=[16, 32, 32],
                                    classes=["background", "grey matter", "white matter"]))
    return image, lab, ckpt


def _dice(capsys) -> dict[str, float]:
    out = json.loads(capsys.readouterr().out)
    return out["dice"], out["note"]


def test_evaluate_scores_a_reference_whose_names_are_in_another_order_by_name(tmp_path, capsys):
    """A reference saved with its class names (napari's Correct panel, another tool) numbering white matter 1 and
    grey matter 2 was scored value against value: the brain model scored 0.03 / 0.02 instead of 0.96 / 0.96 on the
    MNI T1, without a word. It is now scored by name, with a note."""
    image, lab, ckpt = _brain_like(tmp_path)
    img = write_image(tmp_path / "t1.nii.gz", image, spacing=(2.0, 2.0, 2.0), affine=AFFINE)
    ref = write_image(tmp_path / "ref.nii.gz", lab, spacing=(2.0, 2.0, 2.0), affine=AFFINE,
                      class_names=["background", "grey matter", "white matter"])
    swapped = np.choose(lab, [0, 2, 1]).astype(np.uint8)
    other = write_image(tmp_path / "ref_wm1.nii.gz", swapped, spacing=(2.0, 2.0, 2.0), affine=AFFINE,
                        class_names=["background", "White Matter", "grey matter"])
    base = ["evaluate", "--model", str(ckpt), "--image", str(img), "--json", "--device", "cpu"]
    assert cli([*base, "--labels", str(ref)]) == 0
    expected, note = _dice(capsys)
    assert note == ""
    assert cli([*base, "--labels", str(other)]) == 0
    dice, note = _dice(capsys)
    assert dice == expected
    assert "another order than the model" in note and "scored by name" in note


def test_evaluate_takes_the_names_of_an_exported_label_file_from_its_dataset(tmp_path, capsys):
    image, lab, ckpt = _brain_like(tmp_path)
    img = write_image(tmp_path / "t1.nii.gz", image, spacing=(2.0, 2.0, 2.0), affine=AFFINE)
    swapped = np.choose(lab, [0, 2, 1]).astype(np.uint8)
    export_case(image, swapped, tmp_path / "ds", "nnunet", spacing=(2.0, 2.0, 2.0), affine=AFFINE,
                label_names=["background", "white matter", "grey matter"], reviewed_slices=list(range(4, 12)))
    ref = write_image(tmp_path / "ref.nii.gz", lab, spacing=(2.0, 2.0, 2.0), affine=AFFINE)
    base = ["evaluate", "--model", str(ckpt), "--image", str(img), "--json", "--device", "cpu"]
    assert cli([*base, "--labels", str(ref), "--region", "4:12,0:32,0:32"]) == 0
    expected, _ = _dice(capsys)
    assert cli([*base, "--labels", str(tmp_path / "ds" / "labelsTr" / "case_0000.nii.gz")]) == 0
    dice, note = _dice(capsys)
    assert dice == expected  # (the unreviewed slices are 'ignore', left out as the region leaves them out)
    assert "scored by name" in note


def test_names_that_the_model_partly_lacks_are_scored_by_value_with_a_note():
    classes = ["background", "grey matter", "white matter"]
    assert names_to_classes(None, classes) == ({}, "")
    assert names_to_classes(["background", "grey matter", "white matter", "lesion"], classes) == ({}, "")
    assert names_to_classes(["bg", "grey", "white", "lesion"], classes) == ({}, "")  # nothing named alike
    mapping, note = names_to_classes(["background", "white matter", "lesion"], classes)
    assert mapping == {} and "scored by value" in note and "1 'white matter'" in note


def test_finetune_warns_before_training_when_the_dataset_names_the_models_classes_in_another_order(
        tmp_path, capsys, monkeypatch):
    """`attnseg export --label-names background,white matter,grey matter,lesion` on brain-mri-3d's mask (1 = its
    grey matter) then `attnseg finetune` trained silently: the new card called the model's grey matter 'white
    matter'. The finetune now says so before it trains, naming the manifest and the names in the model's order."""
    import napari_attnseg.cli.finetune as finetune_cli

    image, lab, ckpt = _brain_like(tmp_path)
    lab[7:9, 14:18, 14:18] = 3
    export_case(image, lab, tmp_path / "ds", "nnunet", spacing=(2.0, 2.0, 2.0), affine=AFFINE,
                label_names=["background", "white matter", "grey matter", "lesion"])
    monkeypatch.setattr(finetune_cli, "run_training", lambda cfg: 0)  # (the warning comes before the run)
    assert cli(["finetune", str(tmp_path / "ds"), "--model", str(ckpt), "--out", str(tmp_path / "ft")]) == 0
    err = capsys.readouterr().err
    assert "manifest.json names value 1 'white matter', value 2 'grey matter'" in err
    assert "--label-names 'background,grey matter,white matter,lesion'" in err
    export_case(image, lab, tmp_path / "ds2", "nnunet", spacing=(2.0, 2.0, 2.0), affine=AFFINE,
                label_names=["background", "grey matter", "white matter", "lesion"])
    assert cli(["finetune", str(tmp_path / "ds2"), "--model", str(ckpt), "--out", str(tmp_path / "ft2")]) == 0
    assert "warning" not in capsys.readouterr().err


def test_evaluate_json_is_json_when_a_class_is_absent_from_both(tmp_path, capsys, monkeypatch):
    """A class found neither in the reference nor in the prediction (the brain model's classes in a box below the
    brain, --region) printed `"grey matter": NaN`, which is not JSON (jq, JSON.parse and json.loads(strict) refuse
    it), and `Dice nan` in text; it is now null / 'n/a' with a note saying why."""
    import types

    import napari_attnseg.inference as inference

    image, lab, ckpt = _brain_like(tmp_path)
    lab[lab == 2] = 1  # no white matter in the reference
    img = write_image(tmp_path / "t1.nii.gz", image, spacing=(2.0, 2.0, 2.0), affine=AFFINE)
    ref = write_image(tmp_path / "ref.nii.gz", lab, spacing=(2.0, 2.0, 2.0), affine=AFFINE)
    found = types.SimpleNamespace(labels=(lab > 0).astype(np.uint8), warnings=[],
                                  classes=["background", "grey matter", "white matter"])
    monkeypatch.setattr(inference, "predict", lambda *a, **k: found)  # (a model that finds no white matter either)
    base = ["evaluate", "--model", str(ckpt), "--image", str(img), "--labels", str(ref), "--device", "cpu"]
    assert cli([*base, "--json"]) == 0
    out = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    assert out["dice"] == {"grey matter": 1.0, "white matter": None}
    assert "no voxel of white matter in the reference nor the prediction" in out["note"]
    assert cli(base) == 0
    assert "white matter: Dice n/a" in capsys.readouterr().out


def test_evaluate_leaves_out_a_references_255_unlabelled_voxels(tmp_path, capsys):
    """A reference whose unreviewed slices hold 255 (the 'unlabelled' value of many tools) scored the brain model
    0.12 / 0.19 on the MNI T1 instead of 0.96 / 0.95: every 255 voxel counted against the class the model found
    there. They are now left out, as an exported dataset's 'ignore' slices are, with a note naming the file."""
    image, lab, ckpt = _brain_like(tmp_path)
    img = write_image(tmp_path / "t1.nii.gz", image, spacing=(2.0, 2.0, 2.0), affine=AFFINE)
    marked = lab.copy()
    marked[:4] = 255
    marked[12:] = 255
    ref = write_image(tmp_path / "ref255.nii.gz", marked, spacing=(2.0, 2.0, 2.0), affine=AFFINE)
    plain = write_image(tmp_path / "ref.nii.gz", lab, spacing=(2.0, 2.0, 2.0), affine=AFFINE)
    base = ["evaluate", "--model", str(ckpt), "--image", str(img), "--json", "--device", "cpu"]
    assert cli([*base, "--labels", str(plain), "--region", "4:12,0:32,0:32"]) == 0
    expected, _ = _dice(capsys)
    assert cli([*base, "--labels", str(ref)]) == 0
    dice, note = _dice(capsys)
    assert dice == expected
    assert "ref255.nii.gz hold 255" in note and "left out of the Dice" in note


def test_finetune_warns_when_a_class_of_the_table_has_no_labelled_voxel(tmp_path, capsys, monkeypatch):
    """--label-names background,grey,white,lesion,extra on a mask of values 0-3 (or a mask of values 0, 1, 3 named
    background,grey,white,lesion) exported without a word, and the fine-tune trained a class with no voxel: its
    card listed 'extra' that the model learns never to predict. The finetune now says so before it trains."""
    import napari_attnseg.cli.finetune as finetune_cli

    image, lab, ckpt = _brain_like(tmp_path)
    lab[7:9, 14:18, 14:18] = 3
    export_case(image, lab, tmp_path / "ds", "nnunet", spacing=(2.0, 2.0, 2.0), affine=AFFINE,
                label_names=["background", "grey matter", "white matter", "lesion", "extra"],
                reviewed_slices=[6, 7, 8])
    monkeypatch.setattr(finetune_cli, "run_training", lambda cfg: 0)
    assert cli(["finetune", str(tmp_path / "ds"), "--model", str(ckpt), "--out", str(tmp_path / "ft")]) == 0
    err = capsys.readouterr().err
    assert "'extra' (value 4) of the label table of" in err and "has no labelled voxel in any case" in err
    gap = lab.copy()
    gap[gap == 2] = 1  # values 0, 1, 3
    export_case(image, gap, tmp_path / "ds2", "nnunet", spacing=(2.0, 2.0, 2.0), affine=AFFINE,
                label_names=["background", "grey matter", "white matter", "lesion"])
    assert cli(["finetune", str(tmp_path / "ds2"), "--model", str(ckpt), "--out", str(tmp_path / "ft2")]) == 0
    assert "'white matter' (value 2)" in capsys.readouterr().err


def test_a_class_added_to_a_models_classes_keeps_the_known_classes_output_rows():
    """Audit: a 'lesion' class added to brain-mri-3d's (background, grey matter, white matter) re-initialised the
    whole output head: after 45 steps grey 0.00 / white 0.44 Dice against 0.96 / 0.95 at the start, and the start to
    beat was scored with a random head. The known classes' rows are kept (matched by name), the new one is new."""
    from napari_attnseg.training.steps import _with_new_head, kept_classes

    assert kept_classes(["background", "grey matter", "white matter"], ["bg", "White_Matter", "lesion"]) == {0: 0, 1: 2}
    assert kept_classes(["background", "nucleus"], ["background", "tumour", "oedema"]) == {}  # nothing to keep
    torch.manual_seed(0)
    start = create_model("attention_unet", spatial_dims=3, in_channels=1, out_channels=3, features=[4, 8, 16])
    start.card = ModelCard(arch="attention_unet", config={}, name="start",
                           classes=["background", "grey matter", "white matter"])
    start.eval()
    grown = _with_new_head(start, 4, ["background", "grey_matter", "White Matter", "lesion"]).eval()
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        before, after = start(x), grown(x)
    assert after.shape[1] == 4
    torch.testing.assert_close(after[:, :3], before, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(after[:, 3], before[:, 0])  # the lesion row is its own
    swapped = _with_new_head(start, 4, ["background", "white matter", "grey matter", "lesion"]).eval()
    with torch.no_grad():
        torch.testing.assert_close(swapped(x)[:, 1], before[:, 2], atol=1e-5, rtol=1e-5)  # by name, not by place


def test_a_mask_with_255_for_unlabelled_is_not_sent_to_foreground():
    """Audit: a mask with classes 1, 2 and 255 on unreviewed slices, exported without --reviewed-slices, was refused
    as 'instance ids' with the --foreground hint, which would make every unlabelled voxel foreground."""
    from napari_attnseg.errors import InputError

    lab = np.full((6, 16, 16), 255, np.uint8)
    lab[2:4] = 0
    lab[2:4, 4:8, 4:8], lab[2:4, 8:12, 8:12] = 1, 2
    image = np.random.default_rng(0).normal(100, 10, lab.shape).astype(np.float32)
    with pytest.raises(InputError, match=r"255, the value other tools write for 'unlabelled'.*--reviewed-slices"):
        export_case(image, lab, "/nonexistent-not-written", "nnunet")


def test_export_warns_when_label_names_swap_the_names_saved_with_the_mask(tmp_path, capsys):
    """Audit: a predict mask saved with (background, grey matter, white matter) exported with --label-names in another
    order was accepted silently: value 1 (the model's grey matter) went into the dataset as 'white matter'."""
    from napari_attnseg.data.nifti import write_nifti

    image, lab, _ = _brain_like(tmp_path)
    write_image(tmp_path / "img.nii.gz", image, spacing=(2.0, 2.0, 2.0), affine=AFFINE)
    write_nifti(tmp_path / "mask.nii.gz", lab, (2.0, 2.0, 2.0), AFFINE, None, None,
                ["background", "grey matter", "white matter"])
    base = ["export", "--image", str(tmp_path / "img.nii.gz"), "--labels", str(tmp_path / "mask.nii.gz")]
    assert cli([*base, "--dataset", str(tmp_path / "ds"), "--label-names", "background,white matter,grey matter"]) == 0
    err = capsys.readouterr().err
    assert "--label-names name value(s) 1 'white matter', 2 'grey matter'" in err and "swap names" in err
    assert cli([*base, "--dataset", str(tmp_path / "ds2"), "--label-names", "background,Grey Matter,white matter"]) == 0
    assert "swap" not in capsys.readouterr().err
