"""Messages of the h_msgaudit review (P2-P9): each names the file, layer or option it is about and says what to do
with the control the user has (a CLI flag, a panel field); option values out of range are refused before any data is
read (--epochs 0 had trained the default 30 epochs, --lr 0 the default rate, --lr -1 / --seed -1 ended as tracebacks
after the data and model were loaded), and predict's --tile / --diameter are checked once, not once per input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_attnseg.cli import main
from napari_attnseg.errors import InputError

DATA = Path("/work/shared/data")


def _nuclei(n: int = 96) -> tuple[np.ndarray, np.ndarray]:
    image = tifffile.imread(DATA / "nuclei2d/image.tif")[:n, :n]
    labels = tifffile.imread(DATA / "nuclei2d/labels.tif")[:n, :n]
    return image, (labels > 0).astype(np.uint8)


def _mask255(n: int = 96) -> np.ndarray:
    _, mask = _nuclei(n)
    mask[:10, :10] = 255  # another tool's 'unlabelled'
    mask[50:60, 50:60] = 2
    return mask


# ------------------------------------------------------------------ P2: a mask holding 255 (export)
def test_255_mask_refusal_names_the_file_and_gives_no_useless_flag_in_2d(tmp_path, capsys):
    image, _ = _nuclei()
    tifffile.imwrite(tmp_path / "img.tif", image)
    tifffile.imwrite(tmp_path / "mask255.tif", _mask255())
    rc = main(["export", "--image", str(tmp_path / "img.tif"), "--labels", str(tmp_path / "mask255.tif"),
               "--dataset", str(tmp_path / "ds")])
    err = capsys.readouterr().err
    assert rc == 1 and "mask255.tif" in err, err
    assert "--reviewed-slices" not in err and "set 255 to 0 first" in err  # (marks change nothing in 2D)
    assert not (tmp_path / "ds").exists()


def test_255_on_a_reviewed_slice_is_named_with_the_slice(tmp_path):
    from napari_attnseg.data.export import export_case

    vol = np.zeros((4, 32, 32), np.float32)
    lab = np.zeros((4, 32, 32), np.uint8)
    lab[:, 5:10, 5:10], lab[1, 20:25, 20:25], lab[3, :3, :3] = 1, 255, 255
    with pytest.raises(InputError) as err:
        export_case(vol, lab, tmp_path / "ds", "tiff", reviewed_slices=[0, 1], labels_name="vol mask")
    said = str(err.value)
    assert said.startswith("The labels (vol mask) hold") and "It is on slices marked reviewed (1)" in said, said
    with pytest.raises(InputError, match="Mark only the slices you checked"):  # no marks: the marks are the way out
        export_case(vol, lab, tmp_path / "ds", "tiff")


def test_label_name_refusals_name_the_class_names_field_too(tmp_path):
    from napari_attnseg.data.export import export_case

    image, mask = _nuclei(64)
    assert mask.any()
    with pytest.raises(InputError, match=r"--label-names background,tumour \(napari: Class names background, tumour\)"):
        export_case(image, mask, tmp_path / "ds", "tiff", label_names=["tumour"])
    with pytest.raises(InputError, match=r"background,tumour,lung \(napari: Class names background, tumour, lung\)"):
        export_case(image, mask * 2, tmp_path / "ds", "tiff", label_names=["tumour", "lung"])
    with pytest.raises(InputError, match=r"background,nucleus \(napari: Class names background, nucleus\)"):
        export_case(image, mask, tmp_path / "ds", "tiff", label_names=["nucleus", "background"])


# ------------------------------------------------------------------ P5: train / finetune options
@pytest.mark.parametrize("args, flag", [
    (["--epochs", "0"], "--epochs"), (["--batch", "0"], "--batch"), (["--lr", "-1"], "--lr"), (["--lr", "0"], "--lr"),
    (["--seed", "-1"], "--seed"), (["--val-fraction", "1.5"], "--val-fraction"), (["--intensity-aug", "2"],
                                                                                 "--intensity-aug"),
    (["--warmup-epochs", "-1"], "--warmup-epochs"), (["--minutes", "0"], "--minutes"), (["--ema", "1"], "--ema"),
])
def test_finetune_option_out_of_range_is_refused_before_anything_is_read(tmp_path, capsys, args, flag):
    out = tmp_path / "ft"
    with pytest.raises(SystemExit) as exit_:
        main(["finetune", str(tmp_path / "no-such-dataset"), "--model", "nuclei-2d", "--out", str(out), *args])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"argument {flag}: takes " in err and repr(args[1]) in err, err
    assert not out.exists()


def test_epochs_default_stays_30():
    from napari_attnseg.cli import build_parser
    from napari_attnseg.cli._train_common import config_kwargs

    args = build_parser(["finetune"]).parse_args(["finetune", "ds", "--model", "nuclei-2d", "--out", "o"])
    assert config_kwargs(args)["epochs"] == 30
    args = build_parser(["finetune"]).parse_args(["finetune", "ds", "--model", "nuclei-2d", "--out", "o", "--epochs", "2"])
    assert config_kwargs(args)["epochs"] == 2


@pytest.mark.parametrize("fields, said", [
    ({"val_fraction": 1.5}, "val_fraction (--val-fraction) must be"),
    ({"batch_size": 0}, "batch_size (--batch) must be >= 1; got 0"),
    ({"intensity_aug": 2.0}, "intensity_aug (--intensity-aug) is a probability"),
    ({"hard_negatives": 0.5, "far_negatives": 0.4}, "hard_negatives (--hard-negatives) + far_negatives (--far-negatives)"),
    ({"val_slices": [3], "val_region": "0:10"}, "val_region (--val-region)"),
    ({"lr": 0.0}, "lr (--lr) is a learning rate > 0"),  # (0 trained at the default rate)
    ({"lr": -1.0}, "lr (--lr) is a learning rate > 0"),  # (a torch traceback once data and model were loaded)
    ({"seed": -1}, "seed (--seed) must be"),
])
def test_config_messages_name_the_option(fields, said):
    from napari_attnseg.training.config import TrainConfig, check_config

    cfg = TrainConfig(dataset="ds", out="o", start_model="nuclei-2d", **fields)
    with pytest.raises(InputError) as err:
        check_config(cfg)
    assert said in str(err.value) and "fg_fraction +" not in str(err.value), str(err.value)


# ------------------------------------------------------------------ P7 / P8: predict's options checked once
def _two_images(tmp_path: Path) -> Path:
    folder = tmp_path / "fold"
    folder.mkdir()
    image, _ = _nuclei(64)
    tifffile.imwrite(folder / "a.tif", image)
    tifffile.imwrite(folder / "b.tif", image[::-1])
    return folder


def test_a_tile_of_the_wrong_length_is_refused_once_before_a_cohort(tmp_path, capsys):
    folder, out = _two_images(tmp_path), tmp_path / "p"
    assert main(["predict", str(folder), "--model", "nuclei-2d", "--out", str(out), "--tile", "64,64,64"]) == 1
    err = capsys.readouterr().err
    assert err.count("--tile") == 1 and "nuclei-2d is a 2D model" in err, err
    assert not (out / "cohort_summary.csv").exists()


def test_overlap_out_of_range_is_refused_by_its_flag(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["predict", str(tmp_path / "x.tif"), "--model", "nuclei-2d", "--out", str(tmp_path / "p"), "--overlap", "1"])
    assert exit_.value.code == 2 and "argument --overlap: takes a share of a tile" in capsys.readouterr().err


def test_overlap_and_tile_in_core_messages_name_the_flag():
    from napari_attnseg import load_model, predict

    model, image = load_model("nuclei-2d", device="cpu"), _nuclei(32)[0]
    with pytest.raises(InputError, match=r"overlap \(--overlap\) must be in \[0, 1\)"):
        predict(model, image, device="cpu", overlap=1.0)
    with pytest.raises(InputError, match=r"tile \(--tile\) must have 2 sizes"):
        predict(model, image, device="cpu", tile=[32, 32, 32])


def test_diameter_with_a_model_without_one_is_refused_once_naming_the_flag(tmp_path, capsys):
    folder, out = _two_images(tmp_path), tmp_path / "p"
    assert main(["predict", str(folder / "a.tif"), str(folder / "b.tif"), "--model", "brain-mri-3d", "--out", str(out),
                 "--diameter", "30"]) == 1
    err = capsys.readouterr().err
    assert err.count("leave --diameter out") == 1 and "leave diameter empty" not in err, err


# ------------------------------------------------------------------ P1 (wording): a channel-last image
def test_channel_last_advice_gives_mode_as_a_predict_option_only():
    from napari_attnseg import load_model
    from napari_attnseg.inference.engine import check_input

    image = np.stack([_nuclei(64)[0]] * 2, -1)
    with pytest.raises(InputError) as err:
        check_input(load_model("nuclei-2d", device="cpu"), image, None)
    said = str(err.value)
    assert "--channel K (K from 0 to 1" in said and "(--mode slices)" not in said, said  # evaluate / suggest lack it
    assert "attnseg predict --mode slices" in said


# ------------------------------------------------------------------ P9: flags a command or panel lacks
def test_models_add_of_an_image_says_what_to_do(tmp_path, capsys):
    image, _ = _nuclei(32)
    tifffile.imwrite(tmp_path / "img2d.tif", image)
    assert main(["models", "--add", str(tmp_path / "img2d.tif")]) == 1
    err = capsys.readouterr().err
    assert "img2d.tif" in err and "it is an image, not a model" in err and "as --model" not in err, err
    assert "attnseg predict IMAGE --model NAME" in err


def test_brain_extraction_skipped_on_a_ct_names_predict():
    import nibabel as nib

    from napari_attnseg import load_model, predict

    ct = np.asarray(nib.load(DATA / "radiomics/lung1_image.nii.gz").dataobj)
    ct = np.moveaxis(ct, -1, 0)[24:40, ::4, ::4].astype(np.float32)  # 16 slices of HU, 1 pixel in 4
    pred = predict(load_model("brain-mri-3d", device="cpu"), ct, device="cpu", return_probabilities=False)
    said = [w for w in pred.warnings if "Brain extraction was skipped" in w]
    assert said and "(attnseg predict --brain-extraction on" in said[0], pred.warnings


def test_class_warnings_name_the_class_names_field(tmp_path):
    from napari_attnseg.data.export import export_case
    from napari_attnseg.training.class_checks import class_warnings

    image, mask = _nuclei(64)
    export_case(image, mask * 2, tmp_path / "ds", "tiff", label_names=["background", "other", "nucleus"])
    said = class_warnings("nuclei-2d", str(tmp_path / "ds"))
    moved = [w for w in said if "predicts them under other values" in w]
    empty = [w for w in said if "no labelled voxel" in w]
    assert moved and "napari: Class names in Correct and export" in moved[0], said
    assert empty and "extra --label-names or napari Class names" in empty[0], said


def test_instance_id_masks_in_a_dataset_name_the_panel_box(tmp_path, capsys):
    image, mask = _nuclei(128)
    export_case_dir = tmp_path / "ds"
    from napari_attnseg.data.export import export_case

    export_case(image, mask, export_case_dir, "tiff")
    ids = tifffile.imread(DATA / "nuclei2d/labels.tif")[:128, :128]  # instance ids, as another tool wrote them
    assert len(np.unique(ids)) > 9
    tifffile.imwrite(export_case_dir / "labels" / "case_0000.tif", ids.astype(np.uint16))
    rc = main(["finetune", str(export_case_dir), "--model", "nuclei-2d", "--out", str(tmp_path / "ft"), "--epochs", "1",
               "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 1 and "export with --foreground (napari: 'One class (labels > 0)')" in err, err


def test_overlapping_rois_with_one_left_empty_name_the_commands_of_roi(tmp_path):
    import test_audit_dicom_labels as base
    from test_audit_dicom_labels import ct_series, rtstruct, tumour_rois

    from napari_attnseg.data import read_image
    from napari_attnseg.data.labels_in import read_labels

    lung = base.lung.__wrapped__()
    cts = ct_series(lung, tmp_path / "CT")
    rois = tumour_rois(lung[1])
    rs = rtstruct(lung, cts, tmp_path / "RS.dcm", {"GTV-1": rois, "GTV-copy": rois})
    ref = read_labels(rs, read_image(tmp_path / "CT"))
    assert "with attnseg export/evaluate --roi)" in ref.meta["warning"], ref.meta["warning"]


# ------------------------------------------------------------------ napari: Correct and export panel (P2, P3, P4, P6)
def _panel(make_napari_viewer, monkeypatch, image, mask):
    from napari_attnseg._napari import correct_helpers, correct_widget
    from napari_attnseg._napari.correct_widget import CorrectWidget

    said: list[str] = []
    monkeypatch.setattr(correct_helpers, "notify_error", said.append)
    monkeypatch.setattr(correct_widget, "notify_error", said.append)
    viewer = make_napari_viewer()
    viewer.add_image(image, name="cells")
    viewer.add_labels(mask, name="cells mask")
    return viewer, CorrectWidget(viewer), said


@pytest.mark.gui
def test_panel_255_refusal_names_the_layer_and_the_panel_box(make_napari_viewer, monkeypatch, qtbot, tmp_path):
    image, _ = _nuclei()
    viewer, corr, said = _panel(make_napari_viewer, monkeypatch, image, _mask255())
    corr.dataset_edit.value = str(tmp_path / "DS")
    corr.export()
    qtbot.waitUntil(lambda: corr.export_button.enabled, timeout=60000)
    assert said and said[-1].startswith("Export of cells mask failed: The labels (cells mask) hold 4"), said
    assert "'One class (labels > 0)'" in said[-1] and "--reviewed-slices" not in said[-1]


@pytest.mark.gui
def test_panel_class_names_in_the_wrong_order_name_the_field(make_napari_viewer, monkeypatch, qtbot, tmp_path):
    image, mask = _nuclei()
    viewer, corr, said = _panel(make_napari_viewer, monkeypatch, image, mask)
    corr.class_names_edit.value = "nucleus, background"
    corr.dataset_edit.value = str(tmp_path / "DS")
    corr.export()
    qtbot.waitUntil(lambda: corr.export_button.enabled, timeout=60000)
    assert said and "(napari: Class names background, nucleus)" in said[-1], said


@pytest.mark.gui
def test_helpers_name_the_current_slice_only_box(make_napari_viewer, monkeypatch):
    vol = np.zeros((4, 32, 32), np.float32)
    mask = np.zeros((4, 32, 32), np.uint8)
    mask[1, 5:15, 5:15] = 1
    viewer, corr, said = _panel(make_napari_viewer, monkeypatch, vol, mask)
    corr.slice_only.value = True
    viewer.dims.ndisplay = 3
    corr.fill_holes()
    assert said and said[-1].startswith("'Current slice only' works on the axial slice shown"), said
