"""An image analyst's study scripted with the ``attnseg`` command line only (CLI audit): a messy cohort of
NIfTI volumes in several orientations and dtypes, a DICOM series, a TIFF, a damaged file; predict, export,
finetune, evaluate, suggest, models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_attnseg.cli import main


def _nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    import nibabel as nib

    affine = np.diag([-0.8, 0.8, 5.0, 1.0]) if affine is None else affine
    affine = affine.copy()
    affine[:3, 3] = (12.5, -40.0, -77.5)
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, 1)
    img.set_sform(affine, 1)
    nib.save(img, str(path))
    return path


def _volume(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(i, j, k) = (24, 20, 6) int16 image and uint8 labels, stored as NIfTI stores them."""
    image = rng.normal(0, 30, (24, 20, 6)).astype(np.int16)
    labels = np.zeros(image.shape, np.uint8)
    labels[8:14, 6:12, 2:5] = 1
    image[labels > 0] += 200
    return image, labels


def test_labels_on_the_images_own_grid_get_no_cropped_block_note(tmp_path, capsys):
    """A corrected mask on the image's grid (same shape and affine: what ``predict`` wrote) was announced as
    'covers part of the image (saved cropped, as 3D Slicer's ... does): placed at voxel (0, 0, 0)', which is
    false and alarming; it is simply on the image's grid."""
    image, labels = _volume(np.random.default_rng(0))
    img = _nifti(tmp_path / "ct.nii.gz", image)
    lab = _nifti(tmp_path / "ct_mask.nii.gz", labels)
    assert main(["export", "--image", str(img), "--labels", str(lab), "--dataset", str(tmp_path / "ds"),
                 "--reviewed-slices", "2-4", "--label-names", "background,tumour"]) == 0
    err = capsys.readouterr().err
    assert "covers part of the image" not in err, err


def test_a_3d_case_into_a_2d_dataset_names_the_dataset_and_what_to_do(tmp_path, capsys):
    """'The dataset holds 2D cases; this one is 3D.' named neither the folder nor a way out."""
    import tifffile

    rng = np.random.default_rng(1)
    tifffile.imwrite(tmp_path / "cells.tif", rng.integers(0, 255, (32, 40), dtype=np.uint8))
    tifffile.imwrite(tmp_path / "cells_mask.tif", (rng.random((32, 40)) > 0.7).astype(np.uint8))
    ds = tmp_path / "ds"
    assert main(["export", "--image", str(tmp_path / "cells.tif"), "--labels", str(tmp_path / "cells_mask.tif"),
                 "--dataset", str(ds), "--format", "tiff"]) == 0
    image, labels = _volume(rng)
    img, lab = _nifti(tmp_path / "ct.nii.gz", image), _nifti(tmp_path / "ct_mask.nii.gz", labels)
    capsys.readouterr()
    assert main(["export", "--image", str(img), "--labels", str(lab), "--dataset", str(ds), "--format", "tiff"]) == 1
    err = capsys.readouterr().err
    assert str(ds) in err and "another folder" in err, err
    assert len(list((ds / "images").iterdir())) == 1


def test_finetune_on_ct_never_returns_the_start_model_worse_than_it_was(tmp_path, monkeypatch, capsys):
    """On CT the start model is validated with the CT window and with its own normalisation; the CT window is
    chosen unless its own is higher by CARD_MARGIN (0.02). When its own was higher by less (0.6215 vs 0.6133 on the
    radiomics CT with nuclei-2d) and no epoch beat the start, the 'start weights' were saved with the CT window:
    a model scoring below the start model on the validation, against 'never returns a model worse than the start'."""
    import json

    import torch

    from napari_attnseg import create_model, save_model
    from napari_attnseg.checkpoint import ModelCard
    from napari_attnseg.data.export import export_case
    from napari_attnseg.training.trainer import Trainer

    rng = np.random.default_rng(0)
    lab = np.zeros((8, 32, 32), np.int64)
    lab[:, 10:18, 10:18] = 1
    hu = np.where(rng.random(lab.shape) < 0.5, -1000, 40).astype(np.int16)
    hu[lab > 0] = 60
    hu[:, 0, :] = 1200  # bone along one edge
    export_case(hu, lab, tmp_path / "ct", "nnunet", label_names=["background", "tumour"])
    torch.manual_seed(0)
    start = tmp_path / "start.safetensors"
    save_model(create_model("unet", spatial_dims=2, features=[4, 8, 16]), start,
               ModelCard(arch="", config={}, name="start", classes=["background", "tumour"], tile=[32, 32]))
    calls = []

    def scores(self, parts, precision):  # the start: 0.50 with the CT window, 0.51 with its own; no epoch does better
        calls.append(1)
        return [0.51] if len(calls) == 2 else [0.50]

    monkeypatch.setattr(Trainer, "_evaluate", scores)
    out = tmp_path / "o"
    assert main(["finetune", str(tmp_path / "ct"), "--model", str(start), "--out", str(out), "--epochs", "2",
                 "--iters-per-epoch", "2", "--batch", "2", "--device", "cpu"]) == 0
    card = json.loads((out / "best.json").read_text())
    assert card["normalization"]["scheme"] != "ct", card["normalization"]
    assert card["metrics"]["val_dice"] == 0.51
    assert "start 0.5100 -> result 0.5100" in capsys.readouterr().out


def test_evaluate_takes_the_reference_on_the_images_grid(tmp_path, tiny_checkpoint, capsys):
    """evaluate compared arrays as stored: reference labels saved in another orientation (RAS, the image LPS: the
    same voxels) were scored flipped, and labels shifted off the image's grid were scored without a word. Now the
    reference is turned onto the image's grid (with a note) as export does, and one off the grid is refused."""
    import nibabel as nib

    image, labels = _volume(np.random.default_rng(2))
    img = _nifti(tmp_path / "ct.nii.gz", image)
    lab = _nifti(tmp_path / "ct_mask.nii.gz", labels)
    ras = nib.as_closest_canonical(nib.load(str(lab)))
    assert nib.aff2axcodes(ras.affine) != nib.aff2axcodes(nib.load(str(lab)).affine)
    nib.save(ras, str(tmp_path / "ras_mask.nii.gz"))
    model = str(tiny_checkpoint())

    def dice(labels_path: Path) -> str:
        assert main(["evaluate", "--model", model, "--image", str(img), "--labels", str(labels_path), "--device", "cpu",
                     "--json"]) == 0
        out = capsys.readouterr()
        return out.out[out.out.index("{"):]

    assert dice(tmp_path / "ras_mask.nii.gz") == dice(lab)
    shifted = nib.load(str(lab))
    affine = shifted.affine.copy()
    affine[0, 3] += 0.4
    nib.save(nib.Nifti1Image(np.asarray(shifted.dataobj), affine), str(tmp_path / "shifted.nii.gz"))
    assert main(["evaluate", "--model", model, "--image", str(img), "--labels", str(tmp_path / "shifted.nii.gz"),
                 "--device", "cpu"]) == 1
    assert "not on the grid" in capsys.readouterr().err


def test_ctrl_c_says_how_to_go_on(tmp_path, monkeypatch, capsys):
    """Ctrl+C printed only 'attnseg predict: interrupted' (exit 130): nothing said that the finished cases are kept
    and a rerun resumes, or that finetune goes on with --resume."""
    import napari_attnseg.cli.finetune as finetune_cli
    import napari_attnseg.cli.predict as predict_cli

    def stop(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(predict_cli, "run", stop)
    monkeypatch.setattr(finetune_cli, "run", stop)
    assert main(["predict", str(tmp_path), "--model", "nuclei-2d", "--out", str(tmp_path / "o")]) == 130
    assert "Run the same command again" in capsys.readouterr().err
    # before the run starts (a run interrupted inside says what OUT holds: tests/test_audit_cli_loop.py)
    assert main(["finetune", str(tmp_path), "--model", "nuclei-2d", "--out", str(tmp_path / "o")]) == 130
    assert "nothing was trained or written" in capsys.readouterr().err


def test_a_truncated_nifti_says_it_is_damaged_and_what_to_do(tmp_path, capsys):
    """A .nii.gz cut short (an interrupted copy) failed with 'Could not read X: Compressed file ended before the
    end-of-stream marker was reached': gzip's words, nothing about the file being damaged or what to do."""
    image, _ = _volume(np.random.default_rng(3))
    raw = _nifti(tmp_path / "full.nii.gz", image).read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(raw[: len(raw) // 3])
    assert main(["predict", str(tmp_path / "cut.nii.gz"), "--model", "nuclei-2d", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "cut.nii.gz" in err and "cut short" in err and "Copy it again" in err, err


def test_the_tile_bar_in_a_log_file_is_not_redrawn_at_every_tile(monkeypatch):
    """A cluster job's log (stderr not a terminal) got one redraw of the tile bar per tile (0.1 s apart)."""
    import io
    import sys
    import time

    from napari_attnseg.cli.predict import TileProgress

    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    with TileProgress("ct.nii.gz") as progress:
        for i in range(1, 13):
            time.sleep(0.12)
            progress(i, 12)
    assert log.getvalue().count("\r") <= 4, log.getvalue()
    assert "12/12" in log.getvalue()


def test_an_interrupted_cohort_still_writes_its_summary(tmp_path, tiny_checkpoint):
    """Ctrl+C in a cohort left no cohort_summary.csv until the next run: which cases finished was not written."""
    import csv

    import tifffile

    from napari_attnseg.cohort import SUMMARY_NAME, predict_cohort

    folder = tmp_path / "in"
    folder.mkdir()
    for k in range(3):
        tifffile.imwrite(folder / f"case{k}.tif", np.random.default_rng(k).random((64, 64)).astype(np.float32))

    def stop_after_first(done, total, res):
        if done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_cohort(tiny_checkpoint(), folder, tmp_path / "o", device="cpu", progress=stop_after_first)
    with open(tmp_path / "o" / SUMMARY_NAME, encoding="utf-8") as f:
        rows = {r["case"]: r["status"] for r in csv.DictReader(f)}
    assert sorted(rows) == ["case0", "case1", "case2"] and sorted(rows.values()) == ["done", "interrupted",
                                                                                    "interrupted"], rows
    again = predict_cohort(tiny_checkpoint(), folder, tmp_path / "o", device="cpu")
    statuses = {c.case: c.status for c in again.cases}
    # (a case read ahead may have finished while the run stopped: its outputs are whole, so it is skipped too)
    assert all(statuses[k] == "skipped" if v == "done" else statuses[k] in ("done", "skipped") for k, v in rows.items())
    assert sorted(statuses) == sorted(rows) and "failed" not in statuses.values()


def test_models_add_refusing_a_name_proposes_one(tmp_path, tiny_checkpoint, capsys):
    """`attnseg models --add ft --name "my ct"` was refused without a name to use instead."""
    assert main(["models", "--add", str(tiny_checkpoint()), "--name", "mon modèle ct"]) == 1
    err = capsys.readouterr().err
    assert "cannot be a model name" in err and "--name mon-modele-ct" in err, err
    assert main(["models", "--add", str(tiny_checkpoint()), "--name", "mon-modele-ct"]) == 0
