"""Audit of the Fine-tune tab, continued: a dataset chosen while a run goes changes nothing the run uses (the fields
it read are held until it ends, then the proposals follow the dataset shown); datasets made elsewhere (nnU-Net v2,
a Decathlon task, a MONAI datalist, images/ + masks/) are read as the trainer reads them (the *Validation slices*
field, typed slices, the start model proposed, the words of its messages); a fit warning of the engine is logged
once per run, not for every slice it segments; the CLI's end-of-run advice fits a dataset made elsewhere."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from test_finetune_budget import _dataset as _volume_dataset
from test_finetune_budget import _slow_steps

from napari_attnseg.data.export import export_case

SHARED = Path("/work/shared/data")


def _ct_crop() -> tuple[np.ndarray, np.ndarray]:
    """A (x, y, z) crop of the real lung CT around its tumour (slices 26-39; tumour on 32-34), else a synthetic one."""
    if (SHARED / "radiomics" / "lung1_image.nii.gz").exists():
        import nibabel as nib

        image = np.asarray(nib.load(SHARED / "radiomics" / "lung1_image.nii.gz").dataobj)[200:264, 345:409, 26:40]
        labels = np.asarray(nib.load(SHARED / "radiomics" / "lung1_labels.nii.gz").dataobj)[200:264, 345:409, 26:40]
        return image.astype(np.int16), (labels > 0).astype(np.uint8)
    labels = np.zeros((64, 64, 14), np.uint8)
    labels[20:30, 20:30, 6:9] = 1
    image = np.where(labels > 0, 40, -800).astype(np.int16)
    return image, labels


def _nuclei(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` 96 x 96 crops of the real nuclei image and its instance labels (else synthetic blobs)."""
    if (SHARED / "nuclei2d" / "image.tif").exists():
        import tifffile

        image, labels = (tifffile.imread(SHARED / "nuclei2d" / f"{f}.tif") for f in ("image", "labels"))
    else:
        rng = np.random.default_rng(0)
        labels = (rng.random((512, 512)) > 0.8).astype(np.uint16)
        image = (labels * 200 + 20).astype(np.uint16)
    return [(image[k * 96:(k + 1) * 96, :96], labels[k * 96:(k + 1) * 96, :96].astype(np.uint16)) for k in range(n)]


def _nnunet_v2(root: Path, cases: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    import nibabel as nib

    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for cid, (image, labels) in cases.items():
        nib.save(nib.Nifti1Image(image, np.eye(4)), root / "imagesTr" / f"{cid}_0000.nii.gz")
        nib.save(nib.Nifti1Image(labels, np.eye(4)), root / "labelsTr" / f"{cid}.nii.gz")
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": {"background": 0, "tumour": 1},
                                                   "numTraining": len(cases), "file_ending": ".nii.gz"}))
    return root


def _foreign(tmp_path: Path) -> dict[str, Path]:
    """Datasets made elsewhere: nnU-Net v2 of one CT volume and of four CT slices, a Decathlon task, a MONAI
    datalist and an images/ + masks/ TIFF folder of nuclei crops."""
    import nibabel as nib
    import tifffile

    image, labels = _ct_crop()
    out = {"nnunet volume": _nnunet_v2(tmp_path / "Dataset001_Lung", {"lung_000": (image, labels)}),
           "nnunet slices": _nnunet_v2(tmp_path / "Dataset002_Slices",
                                       {f"sl_{z:03d}": (image[:, :, z:z + 1], labels[:, :, z:z + 1]) for z in (5, 6, 7, 8)})}
    task = tmp_path / "Task06_Lung"
    (task / "imagesTr").mkdir(parents=True)
    (task / "labelsTr").mkdir()
    nib.save(nib.Nifti1Image(image, np.eye(4)), task / "imagesTr" / "lung_001.nii.gz")
    nib.save(nib.Nifti1Image(labels, np.eye(4)), task / "labelsTr" / "lung_001.nii.gz")
    (task / "dataset.json").write_text(json.dumps({
        "name": "Lung", "modality": {"0": "CT"}, "labels": {"0": "background", "1": "cancer"}, "numTraining": 1,
        "training": [{"image": "./imagesTr/lung_001.nii.gz", "label": "./labelsTr/lung_001.nii.gz"}], "test": []}))
    out["decathlon"] = task
    monai, tiff = tmp_path / "monai", tmp_path / "cells"
    for sub in (monai / "img", monai / "lab", tiff / "images", tiff / "masks"):
        sub.mkdir(parents=True)
    entries = []
    for k, (img, ins) in enumerate(_nuclei(3)):
        tifffile.imwrite(monai / "img" / f"n{k}.tif", img)
        tifffile.imwrite(monai / "lab" / f"n{k}.tif", (ins > 0).astype(np.uint8))
        entries.append({"image": f"img/n{k}.tif", "label": f"lab/n{k}.tif"})
        tifffile.imwrite(tiff / "images" / f"c{k}.tif", img)
        tifffile.imwrite(tiff / "masks" / f"c{k}_masks.tif", ins)  # Cellpose's instance masks
    (monai / "datalist.json").write_text(json.dumps({"training": entries[:2], "validation": entries[2:]}))
    out["monai"], out["tiff folder"] = monai, tiff
    return out


# -- 1: a dataset chosen during a run ----------------------------------------------------------------
@pytest.mark.gui
def test_a_dataset_chosen_while_a_run_goes_changes_nothing_the_run_uses(make_napari_viewer, qtbot, tmp_path,
                                                                        monkeypatch):
    """The dataset changed during a run re-proposed the start model (brain-mri-3d for a dataset of its three
    classes), the new model's name and folder in the form while the run went on from nuclei-2d into the folder shown
    before. Now the fields a run read are held while it goes; the proposals follow the dataset shown once it ended."""
    from napari_attnseg._napari.finetune_widget import FinetuneWidget

    ds, _ = _volume_dataset(tmp_path)  # background, x: nuclei-2d is proposed
    lab = np.zeros((14, 32, 32), np.uint8)
    lab[3:11, 8:16, 8:16], lab[3:11, 16:24, 16:24] = 1, 2
    export_case(lab * 50.0 + 20, lab, tmp_path / "brain", "nnunet",
                label_names=["background", "grey matter", "white matter"])
    _slow_steps(monkeypatch, 0.25)
    w = FinetuneWidget(make_napari_viewer())
    w.dataset_edit.value = str(ds)
    w.minutes_spin.value = 0.5
    assert w.run() is not None
    form = (w.model_combo.value, w.name_edit.value, str(w.out_edit.value), w.description_edit.value)
    assert form[:2] == ("nuclei-2d", "nuclei-2d-finetuned")
    qtbot.waitUntil(lambda: w.status.value.startswith("epoch 1"), timeout=60000)
    held = [w.dataset_edit, w.model_combo, w.out_edit, w.name_edit, w.description_edit, w.val_edit, w.minutes_spin]
    assert not any(f.enabled for f in held)  # (a user cannot change them; Cancel can be pressed)
    assert w.cancel_button.enabled
    w.dataset_edit.value = str(tmp_path / "brain")  # (what a script did, or a user before the fields were held)
    assert (w.model_combo.value, w.name_edit.value, str(w.out_edit.value), w.description_edit.value) == form
    w.cancel_button.native.click()
    qtbot.waitUntil(lambda: w.run_button.enabled, timeout=120000)
    assert all(f.enabled for f in held)
    # the next proposal follows the dataset now shown
    assert (w.model_combo.value, w.name_edit.value) == ("brain-mri-3d", "brain-mri-3d-finetuned")
    assert w.description_edit.value == "brain-mri-3d fine-tuned on brain"
    assert Path(str(w.out_edit.value)).name == "brain-mri-3d-finetuned"


# -- 2: datasets made elsewhere ----------------------------------------------------------------------
@pytest.mark.gui
def test_datasets_made_elsewhere_are_read_as_the_trainer_reads_them(make_napari_viewer, tmp_path):
    """A dataset without manifest.json: *Validation slices* stayed on for several 2D images (off for exported ones),
    typed slices were never checked (1000, or every slice, failed the run after its setup), brain-mri-3d (the first
    listed) was proposed for 2D nuclei, and the tooltip spoke of reviewed slices nobody reviewed."""
    from napari_attnseg._napari.finetune_widget import FinetuneWidget

    found = _foreign(tmp_path)
    w = FinetuneWidget(make_napari_viewer())
    assert "made elsewhere" in w.dataset_edit.tooltip
    for name in ("nnunet slices", "monai", "tiff folder"):  # several images: whole images validate
        w.dataset_edit.value = str(found[name])
        assert not w.val_edit.enabled and "whole images" in w.val_edit.tooltip, name
        assert w.model_combo.value == "nuclei-2d", (name, w.model_combo.value)
    w.model_combo.value = "brain-mri-3d"  # a 3D model cannot train on 2D images: said, and replaced
    w.dataset_edit.value = str(found["monai"])
    assert w.model_combo.value == "nuclei-2d" and "monai holds 2D images" in w.model_note.value
    for name in ("nnunet volume", "decathlon"):  # one volume, labelled on every slice
        w.dataset_edit.value = str(found[name])
        assert w.val_edit.enabled and w.val_edit.label == "Validation slices", name
        assert "labelled slices" in w.val_edit.tooltip and "reviewed" not in w.val_edit.tooltip
        for typed, said in (("1000", "has 14 slices (0-13)"), ("0-13", "are all the slices: none is left")):
            w.val_edit.value = typed
            assert w.run() is None and said in w.status.value, (name, typed, w.status.value)
            assert "reviewed" not in w.status.value and "export" not in w.status.value
        w.val_edit.value = "6,10"
        assert w.config().val_slices == [6, 10]
        w.val_edit.value = ""
    # what a run that learnt nothing asks for
    from napari_attnseg._napari.finetune_form import more_labels_text

    assert more_labels_text(w._summary()) == "add labelled cases that hold the object to the dataset"
    ds, _ = _volume_dataset(tmp_path / "exported")
    w.dataset_edit.value = str(ds)
    assert more_labels_text(w._summary()) == "review more slices that hold the object"
    assert "reviewed slices" in w.val_edit.tooltip


# -- 3: a fit warning once per run ---------------------------------------------------------------------
def test_a_run_logs_each_engine_warning_once(tmp_path, caplog):
    """nuclei-2d fine-tuned on CT slices logged "Most of this image is bright..." for every slice the run segments
    (its start validation, the false positives, each epoch's validation): 12 times in a 1-epoch run of the tab."""
    import torch

    from napari_attnseg import create_model, save_model
    from napari_attnseg.checkpoint import ModelCard
    from napari_attnseg.training import TrainConfig, train

    lab = np.zeros((14, 32, 32), np.int64)
    lab[3:11, 10:18, 10:18] = 1
    img = (300.0 - lab * 200 + np.random.default_rng(0).normal(0, 20, lab.shape)).astype(np.float32)  # dark objects
    export_case(img, lab, tmp_path / "ds", "nnunet", reviewed_slices=[1, 4, 6, 8, 12], label_names=["background", "x"])
    torch.manual_seed(0)
    start = tmp_path / "start.safetensors"  # trained on bright objects on a dark background, as nuclei-2d
    save_model(create_model("unet", spatial_dims=2, features=[4, 8, 16]), start,
               ModelCard(arch="", config={}, name="start", classes=["background", "x"], tile=[32, 32],
                         metrics={"median_position": 0.15}))
    engine = logging.getLogger("napari_attnseg.inference.engine")
    with caplog.at_level(logging.WARNING, logger="napari_attnseg.inference.engine"):
        train(TrainConfig(dataset=str(tmp_path / "ds"), out=str(tmp_path / "o"), start_model=str(start), epochs=2,
                          iters_per_epoch=2, batch_size=2, patch=[32, 32], command="test"))
    bright = [r for r in caplog.records if r.getMessage().startswith("Most of this image is bright")]
    assert len(bright) == 1, len(bright)
    assert not engine.filters  # (removed after the run: a later run, or a prediction, warns again)


# -- 4: the CLI's advice ------------------------------------------------------------------------------
def test_the_cli_advice_fits_a_dataset_made_elsewhere(tmp_path, capsys):
    """`attnseg train` / `finetune` on a dataset made elsewhere advised "On a volume, export a few corrected slices
    (--reviewed-slices ...)" (for 2D cells too) and "review more slices": nobody exported or reviewed anything there."""
    from napari_attnseg import create_model, save_model
    from napari_attnseg.checkpoint import ModelCard
    from napari_attnseg.cli._train_common import print_summary, scratch_hint
    from napari_attnseg.training.config import TrainResult

    found = _foreign(tmp_path)
    ckpt = tmp_path / "o" / "best.safetensors"
    ckpt.parent.mkdir()
    save_model(create_model("unet", spatial_dims=2, features=[4, 8, 16]), ckpt, ModelCard(arch="", config={}))
    result = SimpleNamespace(cancelled=False, criterion="val_dice", val_dice_after=0.0, checkpoint=str(ckpt))
    lab = np.zeros((14, 32, 32), np.uint8)
    lab[3:11, 10:18, 10:18] = 1
    export_case(lab.astype(np.float32), lab, tmp_path / "every", "nnunet")  # an exported volume, every slice labelled
    reviewed, _ = _volume_dataset(tmp_path / "reviewed")  # an exported volume of 5 reviewed slices
    for dataset, advised in ((found["tiff folder"], False), (found["nnunet volume"], False),
                             (found["decathlon"], False), (reviewed, False), (tmp_path / "every", True)):
        hint = scratch_hint(SimpleNamespace(start_model=None, dataset=str(dataset)), result)
        assert f"attnseg finetune {dataset} --model nuclei-2d" in hint
        assert ("--reviewed-slices" in hint) == advised, (dataset, hint)
    for dataset, words in ((found["monai"], "add labelled cases that hold the object"),
                           (reviewed, "review more slices that hold the object")):
        print_summary(TrainResult("", 0.0, 0.0, None, 1, 60.0, "by case"), str(dataset))
        err = capsys.readouterr().err
        assert "finds nothing on the validation set" in err and words in err, err
