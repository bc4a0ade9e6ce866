"""Review of 2026-12-06's commits (h_review11): a time-lapse exported as frames and fine-tuned, taken out of its
dataset, and its sizes in the Correct tab; a settings file saved by Notepad; a failed run's output folder.

Real data: crops of the bundled nuclei sample (/work/shared/data's nuclei2d) and the bundled nuclei-2d."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_attnseg._paths import samples_dir
from napari_attnseg.cli import main
from napari_attnseg.data.export import export_case

REPO = Path(__file__).resolve().parents[1]


def _nuclei(n: int = 3, size: int = 64):
    image = tifffile.imread(samples_dir() / "nuclei2d_image.tif")
    labels = tifffile.imread(samples_dir() / "nuclei2d_labels.tif")
    ys = [100 * i for i in range(n)]
    return (np.stack([image[y:y + size, y:y + size] for y in ys]),
            np.stack([(labels[y:y + size, y:y + size] > 0) for y in ys]).astype(np.uint8))


def test_nuclei_2d_fine_tuned_on_a_time_lapse_exported_as_frames_stays_in_pixels(tmp_path):
    """Was: a 0.325 um time-lapse TIFF exported from the Correct tab (nnU-Net: one 2D case per frame, source names
    'movie.tif (frame 0)'...) and nuclei-2d fine-tuned on it: the card said spacing [0.325, 0.325], the unit-less
    number the same run on the movie's frames saved as TIFFs leaves out (a copy in nm is then enlarged 1000x)."""
    from napari_attnseg.training import TrainConfig, train

    movie, masks = _nuclei()
    ds = tmp_path / "ds"
    export_case(movie, masks, ds, "nnunet", spacing=[1.0, 0.325, 0.325], unit="µm", axes="TYX",
                source_name="movie.tif", label_names=["background", "nucleus"])
    out = tmp_path / "out"
    train(TrainConfig(dataset=str(ds), out=str(out), start_model="nuclei-2d", epochs=1, iters_per_epoch=1,
                      batch_size=2, patch=[64, 64]))
    assert json.loads((out / "best.json").read_text()).get("spacing") is None


def test_a_time_lapse_exported_as_frames_is_taken_out_by_its_movie_id(tmp_path, capsys):
    """Was: `attnseg dataset DS --remove case_0000`, the id the Correct tab gave the time-lapse, refused ('holds no
    case'): its frames case_0000_t000... could only be taken out one command (and one removed/ folder) each."""
    movie, masks = _nuclei()
    ds = tmp_path / "ds"
    rec = export_case(movie, masks, ds, "nnunet", axes="TYX", source_name="movie.tif",
                      label_names=["background", "nucleus"])
    export_case(movie[0], masks[0], ds, "nnunet", source_name="still.tif", label_names=["background", "nucleus"])
    assert rec.frames == ["case_0000_t000", "case_0000_t001", "case_0000_t002"]
    assert main(["dataset", str(ds), "--remove", "case_0000"]) == 0, capsys.readouterr().err
    manifest = json.loads((ds / "manifest.json").read_text())
    assert [c["case_id"] for c in manifest["cases"]] == ["case_0003"]
    assert json.loads((ds / "dataset.json").read_text())["numTraining"] == 1
    kept = next((ds / "removed").iterdir())
    assert sorted(p.name for p in (kept / "labelsTr").iterdir()) == [f"{f}.nii.gz" for f in rec.frames]
    assert [f["case_id"] for f in json.loads((kept / "case.json").read_text())["frames"]] == rec.frames


def test_a_settings_file_saved_with_a_bom_is_read_and_a_damaged_one_kept_twice(tmp_path, monkeypatch):
    """Was: settings.json edited in Windows Notepad (UTF-8 with a byte-order mark, valid JSON) read as no settings
    and was moved to settings.json.damaged at the next export; a second damaged file replaced the first one kept."""
    from napari_attnseg.settings import load_settings, update_settings

    monkeypatch.setenv("ATTNSEG_SETTINGS_DIR", str(tmp_path))
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"mine": "/data/cells"}), encoding="utf-8-sig")
    assert load_settings() == {"mine": "/data/cells"}
    assert update_settings(other=1) and load_settings() == {"mine": "/data/cells", "other": 1}
    assert not (tmp_path / "settings.json.damaged").exists()
    for text in ("{ first", "{ second"):
        path.write_text(text, encoding="utf-8")
        assert update_settings(other=2)
    kept = sorted(p.read_text() for p in tmp_path.glob("settings.json.damaged*"))
    assert kept == ["{ first", "{ second"], kept


def test_a_run_that_fails_before_training_leaves_no_empty_parent_folders(tmp_path, monkeypatch, capsys):
    """Was: `attnseg train DS --out runs/exp/model` with a wrong --config: the lock made runs/exp/model before the
    run, removed model and left runs/exp behind (no folder was made before the lock)."""
    movie, masks = _nuclei(2)
    ds = tmp_path / "ds"
    for image, mask in zip(movie, masks):
        export_case(image, mask, ds, "tiff", label_names=["background", "nucleus"])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "kept").mkdir()
    for out in ("runs/exp/model", "kept/exp/model"):
        assert main(["train", str(ds), "--out", out, "--arch", "unet", "--config", "features=[oops",
                     "--epochs", "1"]) == 1
        assert "--config" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() and [p.name for p in (tmp_path / "kept").iterdir()] == []


def test_the_correct_tab_gives_a_time_lapses_sizes_per_frame(make_napari_viewer):
    """Was: on a time-lapse (t, y, x: 1 s frames of 0.325 um pixels), whose helpers now work frame by frame, 'Remove <
    20 voxels' and the tooltip 'one voxel is 1 x 0.325 x 0.325 um, 0.106 um³', the frame interval in a volume;
    the radius 'reaching 0 slices up and down (1 um slices)'. A frame's pixels now; a volume keeps its voxels."""
    from napari_attnseg._napari.correct_widget import CorrectWidget

    movie, masks = _nuclei()
    viewer = make_napari_viewer()
    kw = dict(axis_labels=("t", "y", "x"), scale=(1.0, 0.325, 0.325), units=("second", "um", "um"))
    viewer.add_image(movie, name="movie", **kw)
    mask = viewer.add_labels(masks.copy(), name="movie mask", **kw)
    mask.metadata["attnseg_prediction"] = masks.copy()
    corr = CorrectWidget(viewer)
    corr.labels_combo.value = mask.name
    corr._update_info()
    tip = corr.size_spin.tooltip
    assert corr.size_unit.value == "pixels" and "pixels" in corr.stats_label.value, corr.stats_label.value
    assert "one pixel is 0.325 x 0.325 um, 0.106 um²: 20 pixels = 2.11 um²" in tip and "um³" not in tip, tip
    assert "slices up and down" not in corr.radius_spin.tooltip, corr.radius_spin.tooltip
    volume = viewer.add_labels(masks[:2].copy(), name="stack mask", scale=(1.0, 0.325, 0.325), units="um")
    corr.labels_combo.value = volume.name
    corr._update_info()
    assert corr.size_unit.value == "voxels" and "one voxel is" in corr.size_spin.tooltip


def test_the_prompt_attention_layer_lies_below_the_mask_the_clicks_write(make_napari_viewer):
    """Was: in click mode the '<image> prompt attention' heatmap (opacity 0.8, peaking at the click: on the object)
    was added above the mask the clicks write, tinting it, while a Segment run's heatmaps now lie below its mask."""
    from napari_attnseg._napari.prompt_write import show_prompt_attention
    from napari_attnseg.inference.prediction import AttentionMap

    movie, masks = _nuclei(1)
    viewer = make_napari_viewer()
    image = viewer.add_image(movie[0], name="cells")
    mask = viewer.add_labels(masks[0].copy(), name="cells mask")
    points = viewer.add_points(np.array([[30.0, 30.0]]), name="cells prompts")

    class Result:  # a click run's result: its finest attention level
        attention = [AttentionMap("level1", 1, np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32),
                                  (2.0, 2.0), (0.5, 0.5))]

    show_prompt_attention(viewer, Result(), image, None, keep_selected=points, below=mask)
    order = [layer.name for layer in viewer.layers]
    assert order.index("cells prompt attention") < order.index("cells mask") < order.index("cells prompts"), order


def test_a_read_only_dataset_is_listed_and_its_removal_refused_in_words(tmp_path):
    """Was: `attnseg dataset DS` on a dataset the user may read but not write (a colleague's, a read-only share),
    which training reads: 'error: PermissionError: [Errno 13] Permission denied: DS/.attnseg.lock' (its lock file);
    --remove the same. Now it is listed, and a removal is refused naming the folder (nothing moved)."""
    movie, masks = _nuclei(2)
    ds = tmp_path / "ds"
    for image, mask in zip(movie, masks):
        export_case(image, mask, ds, "tiff", source_name="cells.tif", label_names=["background", "nucleus"])
    (ds / ".attnseg.lock").unlink()  # (as copied from its owner's folder, or never exported from here)
    prefix = []
    if os.geteuid() == 0:  # root writes anywhere: as a process without that power, on another user's files
        if shutil.which("setpriv") is None:
            pytest.skip("needs setpriv to drop root's override of file permissions")
        prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner"]
        for p in [ds, *ds.rglob("*")]:
            os.chown(p, 65534, 65534)
    for p in [ds, *ds.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    try:
        listed, removed = (subprocess.run([*prefix, sys.executable, "-m", "napari_attnseg.cli", "dataset", str(ds),
                                           *more], capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
                           for more in ([], ["--remove", "case_0000"]))
    finally:
        for p in [ds, *ds.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
    assert listed.returncode == 0 and "2 cases" in listed.stdout and "case_0001" in listed.stdout, listed.stderr
    assert removed.returncode == 1 and f"{ds} cannot be written" in removed.stderr, removed.stderr
    assert "PermissionError" not in removed.stderr and (ds / "labels" / "case_0000.tif").is_file()
