"""Defects a review found after the opaque-alpha and DICOM-labels changes, each fixed:

1. a 4-channel model (trained on opaque RGBA pictures, before the readers dropped a constant alpha) was refused on
   those very pictures: predict said "has 3 channels ... choose one with --channel K", fine-tuning "The dataset's
   images have 3 channel(s) but the model ... takes 4". The reader records the alpha it dropped; predict, a cohort
   and fine-tuning put it back for such a model (1- and 3-channel models read the picture as before);
2. an RTSTRUCT given as the image segmented the CT series beside it, under the RTSTRUCT's name (exit 0);
3. a cohort warned every grey picture saved as RGB "looks like a label mask" (checked before the channel pick);
4. ``attnseg evaluate`` refused a palette-PNG mask that export and training read as class ids;
5. a cohort lock stayed live forever when its holder's start time could not be read now (psutil access denied);
6. the Fine-tune tab suggested an output folder inside a datalist file.
Real data: crops of the nuclei image and of the radiomics lung CT (the DICOM helpers of test_audit_dicom_labels)."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from test_audit_dicom_labels import ct_series, lung, rtstruct, tumour_rois  # noqa: F401 (lung: a fixture)
from test_audit_inputs_more import _colours, _model, _nuclei, _palette_mask

from napari_attnseg import predict
from napari_attnseg.cli import main
from napari_attnseg.data import read_image
from napari_attnseg.data.dataset import read_dataset
from napari_attnseg.errors import InputError

# 1. a model of 4 channels (RGBA) on opaque RGBA pictures ----------------------------------------------------------


def _opaque_rgba(path: Path, shift: int = 0) -> np.ndarray:
    grey, _ = _nuclei()
    rgba = np.dstack([_colours(np.roll(grey, shift, axis=0)), np.full_like(grey, 255)])
    if path.suffix == ".png":
        Image.fromarray(rgba, "RGBA").save(path)
    else:
        tifffile.imwrite(path, rgba, photometric="rgb", extrasamples=["unassalpha"])
    return rgba


@pytest.mark.parametrize("name", ["shot.png", "shot.tif"])
def test_a_four_channel_model_reads_an_opaque_rgba_picture_as_before(tmp_path, capsys, name):
    """Refused with "has 3 channels (axes YXS) and the model reads 4: choose one with --channel K" before the fix;
    now the model gets the colours and the alpha, as it did before the readers dropped the alpha: the same mask as
    the core predict of the picture's 4 samples."""
    model = _model(tmp_path, 4)
    rgba = _opaque_rgba(tmp_path / name)
    vol = read_image(tmp_path / name)
    assert vol.data.shape == (48, 48, 3) and "alpha dropped" in vol.meta["note"]  # (read as RGB, as for RGB models)
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / name), "--model", str(model), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "the model reads 4 channels (RGBA, as it was trained), so it is given the colours and that alpha" in err, err
    expected = predict(str(model), np.moveaxis(rgba, -1, 0)).labels
    np.testing.assert_array_equal(tifffile.imread(out / "shot_mask.tif"), expected)
    cohort = tmp_path / "folder"  # a cohort (a folder of them) too
    cohort.mkdir()
    _opaque_rgba(cohort / name, shift=5)
    assert main(["predict", str(cohort), "--model", str(model), "--out", str(tmp_path / "out2")]) == 0
    assert (tmp_path / "out2" / "shot_mask.tif").exists()


def test_a_four_channel_model_on_an_rgb_picture_says_what_it_needs(tmp_path, capsys):
    """An RGB picture that never had an alpha: no '--channel K' advice (one channel is no fix for 4)."""
    grey, _ = _nuclei()
    Image.fromarray(_colours(grey)).save(tmp_path / "rgb.png")
    assert main(["predict", str(tmp_path / "rgb.png"), "--model", str(_model(tmp_path, 4)),
                 "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "is an RGB picture without alpha (axes YXS) and the model reads 4 channels" in err, err
    assert "--channel" not in err


def test_fine_tuning_a_four_channel_model_on_opaque_rgba_pictures(tmp_path, capsys):
    """Refused with "The dataset's images have 3 channel(s) but the model ... takes 4" before the fix."""
    from napari_attnseg.training.colour import ColourCases

    _, mask = _nuclei()
    ds = tmp_path / "ds"
    (ds / "images").mkdir(parents=True)
    (ds / "labels").mkdir()
    for k in range(3):
        _opaque_rgba(ds / "images" / f"c{k}.tif", shift=5 * k)
        tifffile.imwrite(ds / "labels" / f"c{k}.tif", np.roll(mask, 5 * k, axis=0))
    model = _model(tmp_path, 4)
    colours = ColourCases(str(model))
    image, _, _ = colours.load(read_dataset(ds).cases[0])
    assert image.shape == (4, 48, 48) and (image[3] == 255).all()
    assert "RGBA pictures whose alpha is one value (255) throughout" in colours.notes[0]
    three = ColourCases(str(_model(tmp_path, 3)))  # a model reading colours: the 3 colours, as before
    assert three.load(read_dataset(ds).cases[0])[0].shape == (3, 48, 48)
    assert main(["finetune", str(ds), "--model", str(model), "--out", str(tmp_path / "m"), "--epochs", "1",
                 "--iters-per-epoch", "1", "--batch", "1", "--device", "cpu"]) == 0, capsys.readouterr().err
    assert (tmp_path / "m" / "best.safetensors").exists()


# 2. an RTSTRUCT given as the image ----------------------------------------------------------------------------------


def test_an_rtstruct_given_as_the_image_is_refused(tmp_path, lung, capsys):  # noqa: F811
    """`attnseg predict CT/RS.dcm` segmented the CT beside it and wrote RS_mask (exit 0) before the fix."""
    folder = tmp_path / "CT"
    cts = ct_series(lung, folder)
    rs = rtstruct(lung, cts, folder / "RS.dcm", {"GTV-1": tumour_rois(lung[1])})
    with pytest.raises(InputError, match="a DICOM RTSTRUCT, not an image: open the image series beside it, and give "
                                         r"this file as the labels \(attnseg evaluate/export --labels\)"):
        read_image(rs)
    import pydicom

    plan = pydicom.dcmread(rs)
    plan.Modality = "RTPLAN"  # (a plan beside the CT: refused too, not read as the series)
    plan.save_as(str(folder / "RP.dcm"))
    with pytest.raises(InputError, match=r"a DICOM RTPLAN, not an image: .* \(a treatment plan holds no image"):
        read_image(folder / "RP.dcm")
    assert read_image(folder).data.shape == (7, 128, 128)  # (the folder still reads as the CT series)
    assert main(["predict", str(rs), "--model", "nuclei-2d", "--out", str(tmp_path / "out")]) == 1
    assert "a DICOM RTSTRUCT, not an image" in capsys.readouterr().err
    assert not (tmp_path / "out" / "RS_mask.nii.gz").exists()


# 3. a cohort's label-mask warning after the channel pick ----------------------------------------------------------


def test_a_cohort_does_not_call_a_grey_picture_saved_as_rgb_a_label_mask(tmp_path, capsys):
    grey, mask = _nuclei(96)
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(np.dstack([grey] * 3)).save(inputs / "grey_rgb.png")
    tifffile.imwrite(tmp_path / "lab.tif", mask)  # a label TIFF listed by mistake: still warned
    listing = tmp_path / "list.csv"
    listing.write_text(f"path\n{inputs / 'grey_rgb.png'}\n{tmp_path / 'lab.tif'}\n")
    out = tmp_path / "out"
    assert main(["predict", str(listing), "--model", "nuclei-2d", "--out", str(out), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert f"{tmp_path / 'lab.tif'} looks like a label mask" in err, err
    assert "grey_rgb.png looks like a label mask" not in err, err
    with open(out / "cohort_summary.csv", newline="") as f:
        rows = {Path(r["input"]).name: r for r in csv.DictReader(f)}
    assert "label mask" not in json.dumps(rows["grey_rgb.png"]) and "label mask" in json.dumps(rows["lab.tif"])


# 4. evaluate against a palette PNG mask -----------------------------------------------------------------------------


def test_evaluate_reads_a_palette_png_mask_as_its_class_ids(tmp_path, capsys):
    """Refused before the fix: "mask.png has shape (48, 48, 3), img.png has (48, 48); they must match"."""
    grey, mask = _nuclei()
    Image.fromarray(grey).save(tmp_path / "img.png")
    _palette_mask(tmp_path / "mask.png", mask)
    assert main(["evaluate", "--model", "nuclei-2d", "--image", str(tmp_path / "img.png"),
                 "--labels", str(tmp_path / "mask.png")]) == 0
    out = capsys.readouterr().out
    assert "Dice" in out, out


# 5. a cohort lock whose holder's start time cannot be read now ------------------------------------------------------


def test_a_lock_whose_process_start_cannot_be_read_is_judged_by_its_age(tmp_path, monkeypatch):
    """Before the fix: stale False however old, once psutil could not read the start time (access denied, macOS): a
    pid reused after a crash kept the lock live forever. (psutil's AccessDenied cannot be caused here: its answer
    is replaced, over a real running process.)"""
    from napari_attnseg.cohort import lock

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        path = tmp_path / ".case_predict.lock"
        path.write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname(), "run": "r", "since": "",
                                    "token": "t", "started": 1000.0}))
        holder = lock._read(path)
        old = time.time() - 10 * 86400
        os.utime(path, (old, old))
        real = lock._process_start(sleeper.pid)
        assert real > 0 and lock.is_stale(path, holder)  # its start time read: not 1000.0, another process
        matched = lock.Holder(**{**holder.__dict__, "started": real})
        assert not lock.is_stale(path, matched)  # the very process: live however old
        monkeypatch.setattr(lock, "_process_start", lambda pid: 0.0)  # (what it says when psutil cannot tell)
        assert lock.is_stale(path, holder) and lock.is_stale(path, matched)  # 10 days untouched: stale
        os.utime(path, None)
        assert not lock.is_stale(path, holder)  # touched now: live
    finally:
        sleeper.kill()
        sleeper.wait()


# 6. the Fine-tune tab's output folder with a datalist file as the dataset -----------------------------------------


def test_the_fine_tune_tab_suggests_a_folder_in_the_dataset_not_in_its_datalist(tmp_path):
    from napari_attnseg._napari.finetune_run import output_problem

    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "datalist.json").write_text("{}")
    problem = output_problem(str(ds), str(ds / "datalist.json"))
    assert problem and f"e.g. {ds.resolve() / 'model'})" in problem, problem
    assert "datalist.json/model" not in problem
