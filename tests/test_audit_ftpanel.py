"""Audit of the Fine-tune panel with a hurried user: what is typed in *Validation slices*, the dataset folder and
the new model's name is checked before the run (its setup takes minutes on a large CT), with a message that names
the field and what to do; a second Run while one goes starts nothing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from test_finetune_budget import _dataset as _volume_dataset

from napari_attnseg.data.export import export_case


def _panel(viewer, ds, start):
    from napari_attnseg._napari.finetune_widget import FinetuneWidget

    w = FinetuneWidget(viewer)
    w.add_model("start", str(start))
    w.dataset_edit.value = str(ds)
    w.model_combo.value = "start"
    return w


@pytest.mark.gui
def test_validation_slices_outside_the_image_or_every_reviewed_one_are_refused_before_the_run(make_napari_viewer,
                                                                                            tmp_path):
    ds, start = _volume_dataset(tmp_path)  # 14 slices, reviewed 1,4,6,8,12
    w = _panel(make_napari_viewer(), ds, start)
    out = Path(str(w.out_edit.value))
    w.val_edit.value = "1000"  # was: "not reviewed", as if it were a slice of the volume
    assert w.run() is None
    assert "Validation slices 1000" in w.status.value and "has 14 slices (0-13)" in w.status.value
    w.val_edit.value = "1,4,6,8,12"  # was: a run, failing after its setup ("The training part has no labelled voxels")
    assert w.run() is None and "none is left to train on" in w.status.value, w.status.value
    w.val_edit.value = "4,12"
    assert w.config().val_slices == [4, 12]  # (a right choice goes through)
    # a volume exported with every slice reviewed (no marks): the same, checked against its 14 slices
    lab = np.zeros((14, 32, 32), np.uint8)
    lab[3:11, 10:18, 10:18] = 1
    export_case(lab.astype(np.float32), lab, tmp_path / "all", "tiff")
    w.dataset_edit.value = str(tmp_path / "all")
    for text, said in (("20", "has 14 slices (0-13)"), ("0-13", "none is left to train on")):
        w.val_edit.value = text
        assert w.run() is None and said in w.status.value, (text, w.status.value)
    # one 2D image: its rows
    img = np.random.default_rng(0).random((40, 40)).astype(np.float32)
    export_case(img, (img > 0.6).astype(np.uint8), tmp_path / "one2d", "tiff")
    w.dataset_edit.value = str(tmp_path / "one2d")
    w.val_edit.value = "100-150"
    assert w.run() is None and "Validation rows 100-150" in w.status.value and "40 rows (0-39)" in w.status.value
    assert w.run_button.enabled and not out.exists()


@pytest.mark.gui
def test_a_dataset_being_exported_is_refused_before_the_run(make_napari_viewer, tmp_path):
    from napari_attnseg.data.manifest import dataset_lock

    ds, start = _volume_dataset(tmp_path)
    w = _panel(make_napari_viewer(), ds, start)
    out = Path(str(w.out_edit.value))
    held, release = threading.Event(), threading.Event()

    def export_running():  # what an export (this napari's Correct tab, or attnseg export) holds while it writes
        with dataset_lock(ds):
            held.set()
            release.wait(30)

    writer = threading.Thread(target=export_running)
    writer.start()
    try:
        held.wait(10)
        assert w.run() is None, w.status.value  # was: a run on what the export had not finished writing
        assert "An export is writing to the dataset" in w.status.value and "wait until" in w.status.value
    finally:
        release.set()
        writer.join()
    assert w.config().dataset == str(ds)  # free again
    assert w.run_button.enabled and not out.exists()


@pytest.mark.gui
def test_a_name_of_only_spaces_gets_the_proposed_name_and_folder(make_napari_viewer, tmp_path):
    from napari_attnseg.models.registry import user_models_dir

    ds, start = _volume_dataset(tmp_path)
    w = _panel(make_napari_viewer(), ds, start)
    w.out_edit.line_edit.value = ""  # the user cleared both fields, then typed spaces as the name
    w.name_edit.value = "   "
    cfg = w.config()  # was: "Choose an output folder ... (a new folder in your models folder is proposed)", none was
    assert cfg.name == "start-finetuned" and Path(cfg.out) == user_models_dir() / "start-finetuned"
    assert w.name_edit.value == "start-finetuned"


@pytest.mark.gui
def test_run_while_a_run_goes_starts_no_second_one(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    from napari_attnseg.training import trainer as trainer_module

    load = trainer_module.Trainer._load_data

    def slow_setup(self):  # a large volume: loading takes a while
        time.sleep(1.5)
        return load(self)

    monkeypatch.setattr(trainer_module.Trainer, "_load_data", slow_setup)
    ds, start = _volume_dataset(tmp_path)
    w = _panel(make_napari_viewer(), ds, start)
    first = w.run()
    assert first is not None
    assert w.run() is None and w.worker is first  # was: a second worker writing the same output folder
    w.cancel_button.native.click()  # Cancel during the setup
    qtbot.waitUntil(lambda: w.run_button.enabled, timeout=60000)
    assert "Cancelled before training started" in w.status.value and "Fine-tuning failed" not in w.status.value


@pytest.mark.gui
def test_typed_home_folders_are_the_users_home_not_a_folder_named_tilde(make_napari_viewer, tmp_path, monkeypatch):
    import shutil

    ds, start = _volume_dataset(tmp_path)
    home, here = tmp_path / "home", tmp_path / "napari-started-here"
    home.mkdir()
    here.mkdir()
    shutil.copytree(ds, home / "ds")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(here)
    w = _panel(make_napari_viewer(), ds, start)
    w.dataset_edit.line_edit.value = "~/ds "  # typed, with a trailing space
    w.out_edit.line_edit.value = "~/ftmodel"
    cfg = w.config()  # was: out '~/ftmodel', written to <cwd>/~/ftmodel and reported as "Saved ~/ftmodel/..."
    assert cfg.out == str(home / "ftmodel") and cfg.dataset == str(home / "ds")


@pytest.mark.gui
def test_a_start_model_removed_after_it_was_listed_is_said_before_the_run(make_napari_viewer, tmp_path):
    import shutil

    from napari_attnseg.models.registry import user_models_dir

    ds, start = _volume_dataset(tmp_path)
    w = _panel(make_napari_viewer(), ds, start)
    (user_models_dir() / "mine").mkdir(parents=True)
    shutil.copy(start, user_models_dir() / "mine" / "best.safetensors")
    w.refresh_models()
    w.model_combo.value = "mine"
    shutil.rmtree(user_models_dir() / "mine")  # deleted in a file manager meanwhile
    assert w.run() is None, w.status.value  # was: a run that failed with "... Or pass a path to a .safetensors file"
    assert "Start model 'mine' is no longer in your models folder" in w.status.value
    w.model_combo.value = "start"
    start.unlink()
    assert w.run() is None and f"Start model 'start' is no longer in {tmp_path}" in w.status.value
    assert w.run_button.enabled


@pytest.mark.gui
def test_the_panel_shows_the_class_table_warnings_before_training(make_napari_viewer, tmp_path, qtbot, monkeypatch):
    """`attnseg finetune` warned, before training, of a class of the table without a labelled voxel (and of classes
    named under other values); the Fine-tune tab said nothing. Its worker now checks the same (core) and says so."""
    import napari_attnseg._napari.finetune_widget as fw
    from napari_attnseg import create_model, save_model
    from napari_attnseg.checkpoint import ModelCard

    lab = np.zeros((14, 32, 32), np.int64)
    lab[3:11, 10:18, 10:18] = 1
    img = (lab * 200.0 + 100 + np.random.default_rng(0).normal(0, 20, lab.shape)).astype(np.float32)
    export_case(img, lab, tmp_path / "ds", "nnunet", reviewed_slices=[1, 4, 6, 8, 12],
                label_names=["background", "x", "y"])  # 'y': no voxel
    start = tmp_path / "start.safetensors"
    save_model(create_model("unet", spatial_dims=2, features=[4, 8, 16]), start,
               ModelCard(arch="", config={}, name="start", classes=["background", "x"], tile=[32, 32]))
    said = []
    monkeypatch.setattr(fw, "notify_warning", said.append)
    w = _panel(make_napari_viewer(), tmp_path / "ds", start)
    w.minutes_spin.value = 0.5
    assert w.run() is not None
    qtbot.waitUntil(lambda: bool(said), timeout=60000)
    w.cancel_button.native.click()
    qtbot.waitUntil(lambda: w.run_button.enabled, timeout=120000)
    assert any("'y' (value 2)" in s and "no labelled voxel" in s for s in said), said
    assert not any(s.startswith("warning:") for s in said)


@pytest.mark.gui
def test_the_panel_says_a_weak_validation_before_training(make_napari_viewer, tmp_path, qtbot, monkeypatch):
    """*Validation slices* 4,12 (one of them with foreground): the split's "foreground on one slice only: its Dice
    is a weak guide" came only in the status after the whole budget; it is said as the run starts, like the CLI."""
    import napari_attnseg._napari.finetune_widget as fw

    ds, start = _volume_dataset(tmp_path)  # 14 slices, reviewed 1,4,6,8,12, foreground on 3-10
    said = []
    monkeypatch.setattr(fw, "notify_warning", said.append)
    w = _panel(make_napari_viewer(), ds, start)
    w.val_edit.value = "4,12"
    w.minutes_spin.value = 0.5
    assert w.run() is not None
    qtbot.waitUntil(lambda: any("weak guide" in s for s in said), timeout=60000)
    assert not w.history, "said before the first epoch"
    w.cancel_button.native.click()
    qtbot.waitUntil(lambda: w.run_button.enabled, timeout=120000)
