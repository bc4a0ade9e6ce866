"""Clinicians' paths (audit): '~' inside quotes, symlinked folders, '.' for the folder one is in, long non-Latin
names, a link to one DICOM file; the commands and the Correct panel must find and name the files as meant."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from napari_attnseg.cli import main as cli
from napari_attnseg.data import read_image, stem
from napari_attnseg.data.io import write_image


def _cells(path: Path, shape=(48, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, (np.random.default_rng(0).random(shape) * 200).astype(np.uint8))
    return path


@pytest.fixture()
def home(tmp_path, monkeypatch) -> Path:
    """A home folder in tmp_path, and a working folder beside it (where a literal '~' folder would appear)."""
    folder, work = tmp_path / "home", tmp_path / "work"
    folder.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(folder))
    monkeypatch.chdir(work)
    return folder


def test_quoted_tilde_paths_are_the_home_folder(home, tiny_checkpoint, capsys):
    """`--out "~/Ergebnisse Lunge"` (quoted for the space, so the shell leaves '~' alone): predict wrote into a folder
    named '~' in the current folder and said '-> ~/Ergebnisse Lunge'; '~/scans/...' inputs 'did not exist'; export,
    train and finetune likewise. --model and models --add already expanded it."""
    model = str(tiny_checkpoint(2))
    _cells(home / "Patient Müller" / "cells 1.v2.tif")
    labels = home / "Patient Müller" / "labels 1.tif"
    write_image(labels, (read_image(home / "Patient Müller" / "cells 1.v2.tif").data > 100).astype(np.uint8))
    assert cli(["predict", "~/Patient Müller/cells 1.v2.tif", "--model", model, "--out", "~/Ergebnisse ü"]) == 0
    assert (home / "Ergebnisse ü" / "cells 1.v2_mask.tif").is_file()
    assert str(home / "Ergebnisse ü") in capsys.readouterr().out
    assert cli(["export", "--image", "~/Patient Müller/cells 1.v2.tif", "--labels", "~/Patient Müller/labels 1.tif",
                "--dataset", "~/Datensätze/Kerne", "--format", "tiff"]) == 0
    assert (home / "Datensätze" / "Kerne" / "manifest.json").is_file()
    assert cli(["evaluate", "--model", model, "--image", "~/Patient Müller/cells 1.v2.tif",
                "--labels", "~/Patient Müller/labels 1.tif"]) == 0
    assert cli(["train", "~/Datensätze/Kerne", "--arch", "unet", "--dims", "2", "--config",
                '{"features": [4, 8, 16]}', "--out", "~/Modelle/kerne ü", "--epochs", "1", "--iters-per-epoch", "1",
                "--batch", "2", "--patch", "32,32", "--device", "cpu"]) == 0
    assert (home / "Modelle" / "kerne ü" / "best.safetensors").is_file()
    assert cli(["finetune", "~/Datensätze/Kerne", "--model", model, "--out", "~/Modelle/kerne ft", "--epochs", "1",
                "--iters-per-epoch", "1", "--batch", "2", "--patch", "32,32", "--device", "cpu"]) == 0
    assert (home / "Modelle" / "kerne ft" / "best.safetensors").is_file()
    assert not any(Path.cwd().iterdir())  # no folder named '~' here


def test_suggest_takes_tilde_paths(home, tiny_checkpoint):
    vol = home / "CT 1.nii.gz"
    write_image(vol, np.random.default_rng(1).normal(0, 1, (4, 32, 32)).astype(np.float32), spacing=(5.0, 1.0, 1.0))
    assert cli(["suggest", "~/CT 1.nii.gz", "--model", str(tiny_checkpoint(2)), "-n", "1",
                "--uncertainty", "~/CT 1 unsicher.nii.gz", "--device", "cpu"]) == 0
    assert (home / "CT 1 unsicher.nii.gz").is_file() and not any(Path.cwd().iterdir())


def test_one_file_named_through_a_symlinked_folder_is_run_once(tmp_path, tiny_checkpoint, capsys):
    """'Patient/cells.tif' and 'Link to patient/cells.tif' (one file) were refused as two inputs 'of the same name':
    'Rename one', which would not help; the file is run once."""
    src = _cells(tmp_path / "Patient Müller" / "cells.tif")
    (tmp_path / "Link to Müller").symlink_to(src.parent, target_is_directory=True)
    out = tmp_path / "out"
    assert cli(["predict", str(src), str(tmp_path / "Link to Müller" / "cells.tif"), "--model",
                str(tiny_checkpoint(2)), "--out", str(out)]) == 0, capsys.readouterr().err
    assert (out / "cells_mask.tif").is_file()
    assert "same name" not in capsys.readouterr().err
    other = _cells(tmp_path / "Patient 2" / "cells.tif")  # two different files of one name: still refused
    assert cli(["predict", str(src), str(other), "--model", str(tiny_checkpoint(2)), "--out", str(tmp_path / "o2")]) == 1
    assert "same name" in capsys.readouterr().err


def test_a_long_non_latin_name_that_fits_is_written(tmp_path):
    """A 250-byte name (83 Japanese characters) fits the 255-byte limit, but the temporary name the writers used
    ('.<name>.XXXXXXXX.tmp.nii.gz') did not: 'OSError: File name too long' after the whole computation."""
    path = tmp_path / ("患者" * 40 + "CT.nii.gz")
    assert len(path.name.encode()) <= 255
    write_image(path, np.zeros((3, 4, 5), np.uint8))
    assert read_image(path).data.shape == (3, 4, 5)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # (no temporary left)


def test_suggest_refuses_an_uncertainty_name_too_long_before_running(tmp_path, tiny_checkpoint, capsys):
    vol = tmp_path / "ct.nii.gz"
    write_image(vol, np.zeros((4, 32, 32), np.float32), spacing=(5.0, 1.0, 1.0))
    name = "患者" * 43 + ".nii.gz"  # 265 bytes in UTF-8, 93 characters
    assert cli(["suggest", str(vol), "--model", str(tiny_checkpoint(2)), "--uncertainty", str(tmp_path / name)]) == 1
    err = capsys.readouterr().err
    assert "265 bytes" in err and "shorter name" in err and "OSError" not in err


def test_predict_dot_inside_a_dicom_series_names_outputs_after_the_folder(tmp_path, tiny_checkpoint, monkeypatch):
    """`attnseg predict . --out ...` in the series' folder wrote '_mask.nii.gz', '_predict.json' (named after '.');
    `attnseg export --image .` recorded no source name."""
    from test_dicom import ct_series

    folder = tmp_path / "Série 2 (Thorax)"
    ct_series(folder, n=4, rows=32, cols=32)
    monkeypatch.chdir(folder)
    assert stem(".") == "Série 2 (Thorax)" and stem(f"..{os.sep}Série 2 (Thorax)") == "Série 2 (Thorax)"
    out = tmp_path / "out"
    assert cli(["predict", ".", "--model", str(tiny_checkpoint(2)), "--out", str(out)]) == 0
    assert (out / "Série 2 (Thorax)_mask.nii.gz").is_file() and not (out / "_mask.nii.gz").exists()
    assert cli(["export", "--image", ".", "--labels", str(out / "Série 2 (Thorax)_mask.nii.gz"),
                "--dataset", str(tmp_path / "ds")]) == 0
    import json

    case = json.loads((tmp_path / "ds" / "manifest.json").read_text())["cases"][0]
    assert case["source_name"] == "Série 2 (Thorax)"


def test_a_link_to_one_dicom_file_reads_its_series(tmp_path, tiny_checkpoint):
    """predict of one file of a series links it beside the outputs ('IM_0002_image.DCM'); that link read as a lone
    slice (no other file of the series beside it), so `attnseg export --image <link> --labels <its mask>` was refused
    as 'not on the grid'."""
    from test_dicom import ct_series

    files = ct_series(tmp_path / "DICOM Série", n=4, rows=32, cols=32)
    one = files[2].rename(files[2].with_name("IM_0002.DCM"))
    out = tmp_path / "Ergebnisse"
    assert cli(["predict", str(one), "--model", str(tiny_checkpoint(2)), "--out", str(out)]) == 0
    link = out / "IM_0002_image.DCM"
    assert link.is_symlink()
    assert read_image(link).data.shape == (4, 32, 32)
    assert cli(["export", "--image", str(link), "--labels", str(out / "IM_0002_mask.nii.gz"),
                "--dataset", str(tmp_path / "ds")]) == 0


@pytest.mark.gui
def test_a_dataset_folder_typed_with_tilde_is_in_the_home_folder(volume_run, qtbot, home, notifications):
    """The Correct tab's Dataset folder typed '~/Datensätze/Lunge': the export went into a folder named '~' in
    napari's working folder, said 'Exported ... to ~/Datensätze/Lunge', and the Fine-tune tab took the home
    folder's (empty) path for the dataset."""
    viewer, dock = volume_run
    corr = dock.correct
    corr.mark_slices([2, 3])
    corr.dataset_edit.line_edit.value = "~/Datensätze/Lunge ü"
    assert corr.export() is not None
    qtbot.waitUntil(lambda: corr.export_button.enabled, timeout=30000)
    qtbot.wait(100)
    ds = home / "Datensätze" / "Lunge ü"
    assert (ds / "manifest.json").is_file()
    assert not any(Path.cwd().iterdir())
    assert any(f"Exported case_0000 to {ds}" in str(n.message) for n in notifications)
    assert Path(dock.finetune.dataset_edit.line_edit.value) == ds
