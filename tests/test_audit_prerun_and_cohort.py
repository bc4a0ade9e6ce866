"""Audit: the split's warnings of `attnseg train` / `attnseg finetune` said before the first epoch (not only in the
summary once the budget is spent), and a cohort case that is a time-lapse treated as one file is (named as a
time-lapse of volumes, or warned about when a 3D model takes its frames for slices)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_attnseg.cli import main as cli
from napari_attnseg.data.export import export_case

NUCLEI = Path("/work/shared/data/nuclei2d/image.tif")
TINY = {"features": [4, 8, 16]}


def _sparse_dataset(root: Path) -> Path:
    """48 slices, reviewed 20 (background), 32 and 34 (tumour); the others exported as 'ignore'."""
    lab = np.zeros((48, 16, 16), np.uint8)
    lab[[32, 34], 4:10, 4:10] = 1
    img = (np.where(lab == 1, 200.0, 50.0) + np.random.default_rng(0).normal(0, 5, lab.shape)).astype(np.float32)
    export_case(img, lab, root / "ds", "nnunet", reviewed_slices=[20, 32, 34], label_names=["background", "tumour"])
    return root / "ds"


# -- 1. the split's warnings before the run ------------------------------------------------------------------
@pytest.mark.parametrize("val, said", [
    ("20,32", "warning: the validation holds foreground on one slice only: its Dice is a weak guide"),
    ("20", "warning: the validation holds no labelled foreground, so its Dice cannot measure"),
], ids=["one-slice-with-foreground", "no-foreground"])
def test_the_split_warnings_are_printed_before_the_first_epoch(tmp_path, capsys, val, said):
    """`finetune --val-slices 20,34` on lung1 exported with reviewed slices 20,32,34: 'the validation holds
    foreground on one slice only' came only in the summary, after the whole --minutes budget. Now the split and
    its warnings are on stderr before the first epoch (the summary still repeats them as notes)."""
    ds = _sparse_dataset(tmp_path)
    code = cli(["train", str(ds), "--arch", "unet", "--dims", "2", "--config", json.dumps(TINY),
                "--out", str(tmp_path / "m"), "--epochs", "1", "--iters-per-epoch", "1", "--batch", "2",
                "--patch", "16,16", "--val-slices", val])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert said in err, err
    assert err.count(said) == 1, err  # once, not per epoch
    assert err.index(said) < err.index("epoch 1/1 done"), err
    assert err.index("split: held-out slices along axis 0: validation case_0000 slices") < err.index(said), err
    assert "split: held-out slices" in out  # the summary as before


def test_train_hands_the_split_over_once_before_any_epoch(tmp_path):
    from napari_attnseg.training import TrainConfig
    from napari_attnseg.training.trainer import train

    ds = _sparse_dataset(tmp_path)
    events: list = []
    cfg = TrainConfig(dataset=str(ds), out=str(tmp_path / "m"), arch="unet", model_config=TINY, spatial_dims=2,
                      epochs=2, iters_per_epoch=1, batch_size=2, patch=[16, 16], val_slices=[20, 32])
    train(cfg, progress=lambda info: events.append(("epoch", info["epoch"])),
          on_split=lambda split: events.append(("split", split.warnings)))
    assert events[0][0] == "split" and [e[0] for e in events].count("split") == 1, events
    assert any("one slice only" in w for w in events[0][1]), events


# -- 2. a cohort case that is a time-lapse ------------------------------------------------------------------------
def _crops() -> list[np.ndarray]:
    im = tifffile.imread(NUCLEI) if NUCLEI.exists() else \
        np.random.default_rng(0).integers(0, 4000, (512, 512)).astype(np.uint16)
    return [im[64 * k: 64 * k + 96, 64 * k: 64 * k + 96] for k in range(4)]


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "cohort_summary.csv", newline="", encoding="utf-8") as f:
        return {r["case"]: r for r in csv.DictReader(f)}


def test_a_time_lapse_of_volumes_in_a_cohort_is_named_as_one(tmp_path, capsys):
    """A TZCYX (with --channel 0) or TZYX hyperstack in a cohort folder failed with the generic 'Is it a time-lapse
    of volumes (t, z, y, x), or an image with several channels?' while `predict FILE` names its axes."""
    crops = _crops()
    folder = tmp_path / "cohort"
    folder.mkdir()
    tzcyx = np.stack([np.stack([np.stack([np.roll(crops[z], 7 * t, 0), crops[z][::-1]]) for z in range(4)])
                      for t in range(3)])
    tifffile.imwrite(folder / "tzcyx.tif", tzcyx, imagej=True, metadata={"axes": "TZCYX"})
    tifffile.imwrite(folder / "tzyx.tif", tzcyx[:, :, 0], imagej=True, metadata={"axes": "TZYX"})
    tifffile.imwrite(folder / "plain.tif", crops[0])
    assert cli(["predict", str(folder), "--model", "nuclei-2d", "--channel", "0", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    rows = _rows(tmp_path / "o")
    assert rows["plain"]["status"] == "done", rows
    for case, axes in (("tzcyx", "in 2 channels (axes TZCYX"), ("tzyx", "(axes TZYX")):
        row = rows[case]
        assert row["status"] == "failed", row
        assert f"is a time-lapse of volumes {axes}: 3 time points of 4 x 96 x 96)" in row["error"], row
        assert "choose the time point t (0 to 2)" in row["error"] and "or an image with several channels" not in row["error"]
    assert "is a time-lapse of volumes (axes TZYX" in err, err


def test_a_time_lapse_of_2d_images_in_a_cohort_warns_with_a_3d_model(tmp_path, capsys):
    """A TYX time-lapse in a cohort ran through brain-mri-3d as a volume of its frames, silently; `predict FILE`
    warns. Now the case's row (and its record) carry the same warning; a 2D model gets none."""
    folder = tmp_path / "cohort"
    folder.mkdir()
    tifffile.imwrite(folder / "tyx.tif", np.stack(_crops() * 2), imagej=True, metadata={"axes": "TYX"})
    assert cli(["predict", str(folder), "--model", "brain-mri-3d", "--out", str(tmp_path / "o3")]) == 0
    said = "is a time-lapse (axes TYX: 8 time points of 96 x 96): the 3D model took its frames as the slices"
    row = _rows(tmp_path / "o3")["tyx"]
    assert row["status"] == "done" and said in row["warnings"], row
    assert any(said in w for w in json.loads((tmp_path / "o3" / "tyx_predict.json").read_text())["warnings"])
    capsys.readouterr()
    assert cli(["predict", str(folder), "--model", "nuclei-2d", "--out", str(tmp_path / "o2")]) == 0
    assert "time-lapse" not in _rows(tmp_path / "o2")["tyx"]["warnings"]
