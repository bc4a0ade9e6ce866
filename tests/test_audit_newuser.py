"""A new user following the README on the command line, with the usual mistakes: `attnseg --help` and every usage
error waited 3 s for torch; a mistyped sub-command got no suggestion, and values given without their option names
("attnseg export CT.nii.gz mask.nii.gz ds") only "the following arguments are required"; Ctrl+C while the options
were read printed a traceback, and during a run of several files said to "run the same command again", which then
refused the inputs already finished; `attnseg suggest` ran minutes without a progress bar; a mask given as the image
(an earlier run's output, or a label file) was segmented as an image, unsaid; `attnseg models` said "2D/3D" twice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile

from napari_attnseg._paths import samples_dir
from napari_attnseg.cli import main

LUNG = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "radiomics" / "lung1_image.nii.gz"


@pytest.fixture
def nuclei(tmp_path) -> tuple[Path, Path]:
    """A 128 x 128 crop of the nuclei sample and its instance labels, as TIFF files."""
    image = tifffile.imread(samples_dir() / "nuclei2d_image.tif")[:128, :128]
    labels = tifffile.imread(samples_dir() / "nuclei2d_labels.tif")[:128, :128]
    tifffile.imwrite(tmp_path / "cells.tif", image)
    tifffile.imwrite(tmp_path / "cells_labels.tif", labels)
    return tmp_path / "cells.tif", tmp_path / "cells_labels.tif"


# -- the parser: quick, and saying what was meant ----------------------------------------------------------------------
def test_help_and_usage_errors_do_not_wait_for_torch():
    code = ("import sys\nfrom napari_attnseg.cli import main\n"
            "for argv in (['--help'], ['predct', 'x.tif'], ['export', 'a.nii.gz', 'b.nii.gz', 'ds']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False", out


def test_a_mistyped_sub_command_is_named(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["predct", "image.tif", "--model", "nuclei-2d", "--out", "pred"])
    assert stop.value.code == 2
    assert "did you mean 'attnseg predict'?" in capsys.readouterr().err


@pytest.mark.parametrize("argv, meant", [
    (["export", "CT.nii.gz", "corrected.nii.gz", "ds"],
     "did you mean: attnseg export --image CT.nii.gz --labels corrected.nii.gz --dataset ds"),
    (["evaluate", "nuclei-2d", "cells.tif", "cells_labels.tif"],
     "did you mean: attnseg evaluate --model nuclei-2d --image cells.tif --labels cells_labels.tif"),
    (["finetune", "ds", "nuclei-2d", "clinic", "--minutes", "5"],
     "did you mean: attnseg finetune ds --minutes 5 --out clinic --model nuclei-2d"),
])
def test_values_without_their_option_names_get_the_command_meant(argv, meant, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    err = capsys.readouterr().err
    assert "the following arguments are required" in err and meant in err, err


def test_predict_with_the_model_and_folder_given_bare(nuclei, capsys):
    image, _ = nuclei
    with pytest.raises(SystemExit):
        main(["predict", str(image), "nuclei-2d", "pred"])
    assert f"did you mean: attnseg predict {image} --model nuclei-2d --out pred" in capsys.readouterr().err


def test_ctrl_c_while_the_options_are_read_is_one_line(monkeypatch, capsys):
    """(A Ctrl+C at that moment, while torch imports, cannot be timed in a test: the import raises it here.)"""
    from napari_attnseg.cli import finetune

    def interrupted(parser):
        raise KeyboardInterrupt

    monkeypatch.setattr(finetune, "add_arguments", interrupted)
    assert main(["finetune", "ds", "--model", "nuclei-2d", "--out", "m"]) == 130
    err = capsys.readouterr().err
    assert err.strip() == "attnseg finetune: interrupted; nothing was run", err


# -- a mask given as the image --------------------------------------------------------------------------------------
def test_an_earlier_runs_mask_given_as_the_image_is_refused_naming_the_image(nuclei, tmp_path, capsys):
    image, _ = nuclei
    out = tmp_path / "pred"
    assert main(["predict", str(image), "--model", "nuclei-2d", "--out", str(out), "--device", "cpu"]) == 0
    capsys.readouterr()
    mask = out / "cells_mask.tif"
    assert main(["predict", str(mask), "--model", "nuclei-2d", "--out", str(tmp_path / "again")]) == 1
    err = capsys.readouterr().err
    assert f"{mask} is the mask attnseg predict wrote (cells_predict.json), not an image to segment" in err, err
    assert f"the image it was made on, {image.resolve()}" in err
    assert not (tmp_path / "again" / "cells_mask_mask.tif").exists()
    moved = tmp_path / "moved.tif"  # away from its record: the mask still says which model made it
    moved.write_bytes(mask.read_bytes())
    assert main(["suggest", str(moved), "--model", "nuclei-2d"]) == 1
    assert "is a mask attnseg wrote" in capsys.readouterr().err
    assert main(["evaluate", "--model", "nuclei-2d", "--image", str(mask), "--labels", str(nuclei[1])]) == 1
    assert "is the mask attnseg predict wrote" in capsys.readouterr().err


def test_a_label_file_given_as_the_image_is_warned_about(nuclei, tmp_path, capsys):
    image, labels = nuclei
    out = tmp_path / "pred"
    assert main(["predict", str(labels), "--model", "nuclei-2d", "--out", str(out), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert f"{labels} looks like a label mask, not an image" in err, err
    record = json.loads((out / "cells_labels_predict.json").read_text())
    assert any("looks like a label mask" in w for w in record["warnings"])
    assert main(["predict", str(image), "--model", "nuclei-2d", "--out", str(out), "--device", "cpu"]) == 0
    assert "label mask" not in capsys.readouterr().err  # the image itself: no warning


# -- suggest shows its progress --------------------------------------------------------------------------------------
def test_suggest_shows_one_progress_bar_over_both_passes(tmp_path, capsys):
    if not LUNG.exists():
        pytest.skip(f"{LUNG} is not here")
    ct = nib.load(LUNG)
    crop = np.asarray(ct.dataobj[200:328, 200:328, 28:36])
    nib.save(nib.Nifti1Image(crop, ct.affine), tmp_path / "ct.nii.gz")
    assert main(["suggest", str(tmp_path / "ct.nii.gz"), "--model", "nuclei-2d", "--reviewed", "4", "-n", "2",
                 "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    last = captured.err.replace("\r", "\n").splitlines()
    bars = [line for line in last if "tile/s" in line and line.startswith("ct.nii.gz")]
    assert bars, captured.err
    done = bars[-1].split("|")[2].split()[0]  # e.g. 16/16
    assert done.split("/")[0] == done.split("/")[1], bars[-1]  # one bar, ending full over the two passes
    assert captured.out.splitlines()[0] == "slice\tscore"


# -- Ctrl+C in a run of several files ---------------------------------------------------------------------------------
def test_ctrl_c_during_the_second_input_names_the_command_that_goes_on(nuclei, tmp_path, monkeypatch, capsys):
    """(The Ctrl+C comes from the progress callback of the second input: a signal cannot be timed in a test.)"""
    from napari_attnseg.cli import predict as cli_predict

    image, _ = nuclei
    second = tmp_path / "second.tif"
    second.write_bytes(image.read_bytes())
    out = tmp_path / "pred"
    real = cli_predict.TileProgress.__call__

    def ctrl_c_in_second(self, done, total):
        if self.label == "second.tif":
            raise KeyboardInterrupt
        real(self, done, total)

    monkeypatch.setattr(cli_predict.TileProgress, "__call__", ctrl_c_in_second)
    argv = ["predict", str(image), str(second), "--model", "nuclei-2d", "--out", str(out), "--device", "cpu"]
    assert main(argv) == 130
    err = capsys.readouterr().err
    again = f"attnseg predict {second} --model nuclei-2d --out {out} --device cpu"
    assert "1 of 2 inputs finished" in err and f"Go on with: {again}" in err, err
    monkeypatch.undo()
    assert main(again.split()[1:]) == 0  # the command said goes on (the same command refused the finished input)
    assert (out / "second_mask.tif").exists() and (out / "cells_mask.tif").exists()


# -- attnseg models -------------------------------------------------------------------------------------------------
def test_models_lists_each_architectures_dimensions_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ATTNSEG_MODELS_DIR", str(tmp_path / "models"))
    assert main(["models"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  unet ")]
    assert rows and rows[0].count("2D/3D") == 1, rows


def test_ctrl_c_in_suggest_and_evaluate_says_nothing_was_written(nuclei, tmp_path, monkeypatch, capsys):
    """(The Ctrl+C comes from the model run: a signal cannot be timed in a test.)"""
    import napari_attnseg.inference as inference
    import napari_attnseg.suggest as suggest

    image, labels = nuclei
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.stack([tifffile.imread(image)] * 6), imagej=True, metadata={"axes": "ZYX"})

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(suggest, "predict_uncertainty", ctrl_c)
    monkeypatch.setattr(inference, "predict", ctrl_c)
    assert main(["suggest", str(stack), "--model", "nuclei-2d", "--uncertainty", str(tmp_path / "u.tif")]) == 130
    assert "attnseg suggest: interrupted; nothing was written; run the same command again" in capsys.readouterr().err
    assert not (tmp_path / "u.tif").exists()
    assert main(["evaluate", "--model", "nuclei-2d", "--image", str(image), "--labels", str(labels)]) == 130
    assert "attnseg evaluate: interrupted; nothing was written" in capsys.readouterr().err
