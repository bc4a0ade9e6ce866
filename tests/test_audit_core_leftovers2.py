"""Audit of the core and the CLI (leftovers, round 2): validation slices given by hand that nobody reviewed, a
time-lapse of volumes behind --channel, edit statistics of exported labels (their 'ignore' value) and the units
and channel of a reopened prediction record."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile

from napari_attnseg import correct
from napari_attnseg.cli import main as cli
from napari_attnseg.data.export import export_case
from napari_attnseg.errors import DatasetError, InputError

NUCLEI = Path("/work/shared/data/nuclei2d/image.tif")
TINY = {"features": [4, 8, 16]}


def _sparse() -> np.ndarray:
    """48 slices, reviewed 20 (background), 32 and 34 (tumour); the others 'ignore' (2), as export writes them."""
    lab = np.full((48, 16, 16), 2, np.uint8)
    lab[[20, 32, 34]] = 0
    lab[[32, 34], 4:10, 4:10] = 1
    return lab


# -- 1. validation slices that were not reviewed -----------------------------------------------------------
def test_unreviewed_validation_slices_are_named_and_a_validation_without_foreground_refused():
    """`finetune --val-slices 20,33` on a dataset exported with reviewed slices 20,32,34: slice 33 is all 'ignore',
    so the validation held one slice without tumour; the run trained and only its summary said '0 with
    foreground'. Now the unreviewed slice is named, with the reviewed ones to pick from, before training."""
    from napari_attnseg.training.split import make_split

    lab = _sparse()
    for slices in (True, False):  # a 2D model on the volume, a 3D model
        with pytest.raises(DatasetError) as err:
            make_split([lab], ["c"], ignore=2, slices=slices, val_slices=[20, 33])
        text = str(err.value)
        assert "slice 33 of case c is not reviewed" in text and "no labelled foreground" in text, text
        assert "reviewed slices are 20,32,34 (with foreground: 32,34)" in text and "--" not in text, text
    # a 2D model validates slice by slice: an unreviewed one among reviewed ones is refused too (the napari tab's rule)
    with pytest.raises(DatasetError, match="slice 33 of case c is not reviewed"):
        make_split([lab], ["c"], ignore=2, slices=True, val_slices=[20, 32, 33])
    # a 3D model keeps it as context of its validation slab: said, not refused
    s = make_split([lab], ["c"], ignore=2, slices=False, val_slices=[20, 32, 33])
    assert any("slice 33 of case c is not reviewed" in w and "measures the reviewed slices 20,32 only" in w
               for w in s.warnings), s.warnings
    # reviewed slices only: as before (a background-only validation is reported, the loss chooses)
    s = make_split([lab], ["c"], ignore=2, slices=True, val_slices=[20, 32])
    assert s.criterion == "val_dice" and not any("not reviewed" in w for w in s.warnings)
    s = make_split([lab], ["c"], ignore=2, slices=True, val_slices=[20])
    assert s.criterion == "train_loss"
    full = np.where(lab == 2, 0, lab)  # no 'ignore' at all: nothing to say
    assert not any("not reviewed" in w for w in make_split([full], ["c"], ignore=None, slices=True,
                                                            val_slices=[20, 33]).warnings)


def test_the_cli_refuses_unreviewed_validation_slices_before_training(tmp_path, capsys):
    lab = _sparse()
    img = (np.where(lab == 1, 200.0, 50.0) + np.random.default_rng(0).normal(0, 5, lab.shape)).astype(np.float32)
    export_case(img, np.where(lab == 2, 0, lab), tmp_path / "ds", "nnunet", reviewed_slices=[20, 32, 34],
                label_names=["background", "tumour"])
    code = cli(["train", str(tmp_path / "ds"), "--arch", "unet", "--dims", "2", "--config", json.dumps(TINY),
                "--out", str(tmp_path / "m"), "--epochs", "1", "--iters-per-epoch", "1", "--batch", "2",
                "--patch", "16,16", "--val-slices", "20,33"])
    err = capsys.readouterr().err
    assert code == 1 and "slice 33 of case case_0000 is not reviewed" in err, err
    assert not (tmp_path / "m" / "best.safetensors").exists()


# -- 2. a time-lapse of volumes -----------------------------------------------------------------------------
@pytest.fixture
def hyperstack(tmp_path) -> Path:
    """An ImageJ TZCYX hyperstack (3 time points, 4 slices, 2 channels) of nuclei crops."""
    im = tifffile.imread(NUCLEI) if NUCLEI.exists() else \
        np.random.default_rng(0).integers(0, 4000, (512, 512)).astype(np.uint16)
    crops = [im[64 * k: 64 * k + 96, 64 * k: 64 * k + 96] for k in range(4)]
    data = np.stack([np.stack([np.stack([np.roll(crops[z], 7 * t, 0), crops[z][::-1]]) for z in range(4)])
                     for t in range(3)])
    path = tmp_path / "tzcyx.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TZCYX"})
    return path


def test_a_time_lapse_of_volumes_is_named_as_one_after_channel(hyperstack, tmp_path, capsys):
    """`predict --channel 0` on a TZCYX hyperstack asked 'Is it an RGB or multi-channel image? ... --channel K'
    although --channel was given; it is a time-lapse of volumes: said, with what to do. Suggest and evaluate read
    it the same way."""
    labels = tmp_path / "labels.tif"
    tifffile.imwrite(labels, np.zeros((3, 4, 96, 96), np.uint8), imagej=True, metadata={"axes": "TZYX"})
    runs = {"predict": [str(hyperstack), "--model", "nuclei-2d", "--channel", "0", "--out", str(tmp_path / "o")],
            "suggest": [str(hyperstack), "--model", "nuclei-2d", "--channel", "0"],
            "evaluate": ["--image", str(hyperstack), "--labels", str(labels), "--model", "nuclei-2d", "--channel", "0"]}
    for command, args in runs.items():
        assert cli([command, *args]) == 1
        err = capsys.readouterr().err
        assert "is a time-lapse of volumes in 2 channels (axes TZCYX: 3 time points of 4 x 96 x 96)" in err, (command, err)
        assert "choose the time point t (0 to 2) of channel 0" in err and "RGB or multi-channel" not in err, (command, err)


def test_a_time_lapse_of_2d_images_given_to_a_3d_model_is_said(hyperstack, tmp_path, capsys):
    """A TYX time-lapse ran through brain-mri-3d as a volume of its time points, silently (the napari Segment tab
    warns); now the warning goes with the result. A 2D model segments it frame by frame, without one."""
    frames = tmp_path / "tyx.tif"
    tifffile.imwrite(frames, np.repeat(tifffile.imread(hyperstack)[:, 0, 0], 6, axis=0), imagej=True,
                     metadata={"axes": "TYX"})
    assert cli(["predict", str(frames), "--model", "brain-mri-3d", "--out", str(tmp_path / "o3")]) == 0
    err = capsys.readouterr().err
    said = "is a time-lapse (axes TYX: 18 time points of 96 x 96): the 3D model took its frames as the slices"
    assert said in err, err
    assert any(said in w for w in json.loads((tmp_path / "o3" / "tyx_predict.json").read_text())["warnings"])
    assert cli(["predict", str(frames), "--model", "nuclei-2d", "--out", str(tmp_path / "o2")]) == 0
    assert "time-lapse" not in capsys.readouterr().err


def test_a_four_axis_array_asks_about_time_points_too():
    """Without axes (an array, a cohort case), the model's check names a time-lapse beside channels."""
    from napari_attnseg import load_model
    from napari_attnseg.inference import check_input

    with pytest.raises(InputError) as err:
        check_input(load_model("nuclei-2d"), np.zeros((3, 4, 32, 32), np.float32), None)
    assert "time-lapse of volumes (t, z, y, x)" in str(err.value) and "--channel K" in str(err.value)


# -- 3. edit statistics of exported labels --------------------------------------------------------------------
def test_edit_stats_leave_the_ignore_value_out():
    """Labels `attnseg export` wrote hold the ignore value (3, the label table's length) on unreviewed slices: the
    statistics counted it as class 3 ('added' every unreviewed voxel) and the prediction's voxels there as removed."""
    pred = np.zeros((4, 8, 8), np.uint8)
    pred[:, 2:6, 2:6] = 1
    pred[1, 0, 0] = 2
    corrected = pred.copy()
    corrected[0, 2:4, 2:6] = 0  # a correction on reviewed slice 0
    corrected[2:] = 3  # slices 2 and 3: nobody reviewed them
    before = correct.edit_stats(pred, corrected)
    assert "3" in before["per_class"]  # (the default is unchanged: no ignore given)
    stats = correct.edit_stats(pred, corrected, ignore=3)
    assert set(stats["per_class"]) == {"1", "2"}
    assert stats["per_class"]["1"] == {"added": 0, "removed": 8, "dice": pytest.approx(2 * 24 / 56)}
    assert stats["per_class"]["2"] == {"added": 0, "removed": 0, "dice": 1.0}
    assert stats["changed_voxels"] == 8
    counts = correct.EditCounts(pred, corrected, ignore=3)
    assert counts.stats() == stats and correct.EditCounts(pred, corrected).stats() == before
    # edits, brush-like and helper-like, on reviewed and unreviewed voxels: the running counts follow
    data = corrected.copy()
    for index, value in (((slice(0, 1), slice(0, 3), slice(0, 3)), 1), ((slice(2, 3), slice(0, 8), slice(0, 8)), 0),
                         ((np.array([1, 1, 3]), np.array([0, 5, 7]), np.array([0, 5, 7])), 3),
                         ((slice(2, 3), slice(2, 6), slice(2, 6)), 1)):
        old = data[index].copy()
        data[index] = value
        counts.update(index, old, value)
        assert counts.stats() == correct.edit_stats(pred, data, ignore=3), index
    with pytest.raises(InputError, match="ignore must be a whole number"):
        correct.edit_stats(pred, corrected, ignore=-1)


# -- 4. a reopened record's units and channel -----------------------------------------------------------------
def test_a_reopened_record_has_the_units_and_the_channel_of_the_run(tmp_path):
    """`predict --channel 1` on a 2-channel OME-TIFF with a pixel size: the record reopened with units 'pixel' and
    an image named without its channel, while the live run showed µm and 'cells [GFP]'."""
    from napari_attnseg.results import read_record, record_layers

    rng = np.random.default_rng(0)
    data = rng.integers(0, 4000, (2, 64, 64)).astype(np.uint16)
    src = tmp_path / "cells.ome.tif"
    tifffile.imwrite(src, data, ome=True, metadata={"axes": "CYX", "PhysicalSizeX": 0.325, "PhysicalSizeY": 0.325,
                                                    "PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm",
                                                    "Channel": {"Name": ["DAPI", "GFP"]}})
    out = tmp_path / "o"
    assert cli(["predict", str(src), "--model", "nuclei-2d", "--channel", "1", "--out", str(out)]) == 0
    record = out / "cells_predict.json"
    assert read_record(record)["unit"] == "um"
    layers = record_layers(record)
    assert [kw["name"] for _, kw, _ in layers] == ["cells [GFP]", "cells [GFP] mask", "cells [GFP] probability"]
    for _, kw, _ in layers:
        assert kw["units"] == ("um", "um") and kw["axis_labels"] == ("y", "x"), kw["name"]
        assert tuple(kw["scale"]) == pytest.approx((0.325, 0.325))
    assert layers[1][1]["metadata"]["attnseg"]["source_layer"] == "cells [GFP]"
    np.testing.assert_array_equal(layers[0][0], data[1])
    # the input gone: the outputs open on the record's spacing and unit
    src.unlink()
    (out / "cells_image.ome.tif").unlink(missing_ok=True)
    with pytest.warns(UserWarning, match="is gone"):
        layers = record_layers(record)
    assert [kw["units"] for _, kw, _ in layers] == [("um", "um")] * 2


def test_a_reopened_scan_record_is_in_millimetres(tmp_path):
    from napari_attnseg.results import record_layers

    nib.save(nib.Nifti1Image(np.random.default_rng(1).normal(0, 1, (32, 32, 3)).astype(np.float32),
                             np.diag([0.8, 0.8, 2.5, 1.0])), tmp_path / "scan.nii.gz")
    assert cli(["predict", str(tmp_path / "scan.nii.gz"), "--model", "nuclei-2d", "--out", str(tmp_path / "o")]) == 0
    layers = record_layers(tmp_path / "o" / "scan_predict.json")
    assert [kw["name"] for _, kw, _ in layers][:2] == ["scan", "scan mask"]
    assert all(kw["units"] == ("mm",) * 3 for _, kw, _ in layers)
