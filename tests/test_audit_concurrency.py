"""Things happening at the same time in one folder (trial 2026-12-06): two training runs into one output folder, two
`attnseg models --add` of one name, a run stopped between a checkpoint and its card.

On the real nuclei image (crops of the bundled sample, /work/shared/data's nuclei2d) and the bundled nuclei-2d."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_attnseg.cli import main
from napari_attnseg.data.export import export_case
from napari_attnseg.training import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def nuclei_ds(tmp_path):
    """A two-case TIFF dataset: two 96 x 96 crops of the nuclei image and their masks (labels > 0)."""
    from napari_attnseg._paths import samples_dir

    image = tifffile.imread(samples_dir() / "nuclei2d_image.tif")
    labels = tifffile.imread(samples_dir() / "nuclei2d_labels.tif")
    ds = tmp_path / "ds"
    for y in (0, 200):
        export_case(image[y:y + 96, y:y + 96], (labels[y:y + 96, y:y + 96] > 0).astype(np.uint8), ds, "tiff",
                    label_names=["background", "nucleus"])
    return ds


def _held_run(ds: Path, out: Path):
    """A fine-tuning run into ``out`` in a thread, held at its first optimizer step until ``go`` is set."""
    started, go, result = threading.Event(), threading.Event(), {}

    def on_step(info):
        started.set()
        go.wait(60)

    def target():
        try:
            result["value"] = train(TrainConfig(dataset=str(ds), out=str(out), start_model="nuclei-2d", epochs=1,
                                                iters_per_epoch=2, batch_size=2, patch=[64, 64], name="first"),
                                    on_step=on_step)
        except BaseException as exc:  # noqa: BLE001 - (the test reads it)
            result["error"] = exc
            started.set()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    assert started.wait(120) and "error" not in result, result
    return thread, go, result


def test_a_second_run_into_an_output_folder_in_use_is_refused(tmp_path, nuclei_ds, capsys):
    """Was: `attnseg finetune DS --out X` started twice (two terminals, a script and a colleague): the second, during
    the first's setup (seconds; minutes for a 3D model), or any time with --overwrite or --resume, trained too; both
    ended 'checkpoint: X/best.safetensors' and X held one model ('second'), --overwrite having moved the running
    run's log and state to X/replaced-1 as 'the earlier model'. Napari's Fine-tune tab took a folder holding a
    running run's log (two panels propose the same new name). Now the second run is refused at once, in this
    process and in another one, the panel's output check says so, and a refused panel's clean-up leaves the
    running run's files alone."""
    from napari_attnseg._napari.finetune_run import Run, output_problem

    out = tmp_path / "run"
    late = Run(out)  # a second panel whose Run was pressed before the first run created the folder
    thread, go, result = _held_run(nuclei_ds, out)
    log = (out / "training_log.csv").read_bytes()
    rc = main(["finetune", str(nuclei_ds), "--model", "nuclei-2d", "--out", str(out), "--epochs", "1",
               "--iters-per-epoch", "2", "--patch", "64,64", "--name", "second", "--overwrite"])
    err = capsys.readouterr().err
    assert rc != 0 and f"Another training run is writing to {out}" in err, err
    proc = subprocess.run([sys.executable, "-m", "napari_attnseg.cli", "finetune", str(nuclei_ds), "--model",
                           "nuclei-2d", "--out", str(out), "--epochs", "1", "--resume"], capture_output=True,
                          text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert proc.returncode == 1 and "Another training run is writing to" in proc.stderr, proc.stderr
    assert "A fine-tuning run is writing to" in (output_problem(str(out), str(nuclei_ds)) or "")
    late.cleanup()  # (the refused panel's clean-up: the running run's files are not its own)
    assert (out / "training_log.csv").read_bytes() == log
    go.set()
    thread.join(120)
    assert "error" not in result and (out / "best.safetensors").is_file(), result
    from napari_attnseg.checkpoint import read_card

    assert read_card(out / "best.safetensors").name == "first"
    assert main(["finetune", str(nuclei_ds), "--model", "nuclei-2d", "--out", str(tmp_path / "free"), "--epochs", "1",
                 "--iters-per-epoch", "1", "--patch", "64,64"]) == 0  # (once ended, a run is free to start again)


def test_models_add_under_the_name_of_a_run_in_setup_is_refused(tmp_path, nuclei_ds, capsys):
    """Was: `attnseg finetune DS --out <models folder>/ft` (or napari's Fine-tune tab, which proposes that folder) and,
    during its setup (loading, the start model's validation), `attnseg models --add OTHER --name ft`: the add was
    taken (the folder did not exist yet); the run ended 'checkpoint: .../ft/best.safetensors' and its model was not
    listed ('ft.safetensors has the name ft too'), --model ft loading the other one. Now the run's folder exists
    from its start and the add is refused, naming it."""
    from napari_attnseg import save_model
    from napari_attnseg.checkpoint import load_model
    from napari_attnseg.models.registry import user_models, user_models_dir

    other = tmp_path / "other.safetensors"
    save_model(load_model("nuclei-2d"), other, {"name": "other"})
    out, in_setup, go, result = user_models_dir() / "ft", threading.Event(), threading.Event(), {}

    def target():
        def on_split(split):  # (after the setup's loading and before the first epoch: the folder's name is taken)
            in_setup.set()
            go.wait(60)

        try:
            result["value"] = train(TrainConfig(dataset=str(nuclei_ds), out=str(out), start_model="nuclei-2d", epochs=1,
                                                iters_per_epoch=1, batch_size=2, patch=[64, 64]), on_split=on_split)
        except BaseException as exc:  # noqa: BLE001 - (the test reads it)
            result["error"] = exc
            in_setup.set()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    assert in_setup.wait(120) and "error" not in result, result
    rc = main(["models", "--add", str(other), "--name", "ft"])
    go.set()
    thread.join(120)
    err = capsys.readouterr().err
    assert rc != 0 and f"already has a folder {out}" in err, err
    assert "error" not in result and user_models()[0].get("ft") == out / "best.safetensors", result


KILLED_SAVE = """
import os, signal, sys
import torch
import napari_attnseg.checkpoint as ck
from napari_attnseg import create_model, save_model
real = ck.atomic_write
def write(path, writer):  # the process is killed right after the weights file is in place
    real(path, writer)
    if str(path).endswith('.safetensors') and os.environ.get('KILL') == '1':
        os.kill(os.getpid(), signal.SIGKILL)
ck.atomic_write = write
torch.manual_seed(int(sys.argv[2]))
save_model(create_model('unet', spatial_dims=2, features=[4, 8]), sys.argv[1], {'name': 'run', 'classes': ['background', 'x']})
"""


def test_a_save_killed_between_the_weights_and_their_card_leaves_a_usable_model(tmp_path):
    """Was: a run killed (napari closed hard, the machine off, kill -9) just after an epoch's better weights replaced
    best.safetensors and before best.json did: the folder's model was refused everywhere ('The card best.json
    disagrees with the one inside best.safetensors on weights_sha256; the card was edited or belongs to another
    model. Restore it or delete it.'): not listed in the models folder, predict failed, while the run's message says
    its best model so far is usable. Now the old card is gone before the weights change: the new weights load with
    their own card."""
    from napari_attnseg.checkpoint import load_model
    from napari_attnseg.models.registry import user_models, user_models_dir

    best = user_models_dir() / "run" / "best.safetensors"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for seed, kill in ((0, "0"), (1, "1")):  # epoch 1's best saved; epoch 2's better weights, killed mid-save
        proc = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(best), str(seed)], env={**env, "KILL": kill},
                              capture_output=True, text=True, cwd=REPO, timeout=300)
        assert proc.returncode == (-9 if kill == "1" else 0), proc.stderr
    model = load_model(str(best.parent))
    assert model.card.name == "run" and user_models()[0].get("run") == best, user_models()[1]


def test_predict_of_a_file_another_run_is_computing_into_the_same_out_is_refused(tmp_path, capsys):
    """Was: `attnseg predict scan --out P` run twice at once (two terminals, a script; or beside a cohort run into P
    computing that scan): the single-file path took no lock; both checked P (empty), both computed, both said
    '-> P' with exit 0, and P kept the last one's mask, record and map (another model's: the first run's result
    replaced without --overwrite; once its mask was kept in edited_masks/ as 'changed since attnseg wrote it
    (corrected by hand?)'). Now it takes the cohort's lock of the case: while another run holds it the file is
    refused, naming that run, and nothing is written; once it ended, the run works."""
    from napari_attnseg._paths import samples_dir
    from napari_attnseg.cohort.lock import CaseLock, lock_path

    src, out = tmp_path / "cells.tif", tmp_path / "P"
    tifffile.imwrite(src, tifffile.imread(samples_dir() / "nuclei2d_image.tif")[:96, :96])
    out.mkdir()
    other = CaseLock(lock_path(out, src))  # what the other run holds while it computes the scan
    assert other.try_acquire() is None
    try:
        rc = main(["predict", str(src), "--model", "nuclei-2d", "--out", str(out)])
    finally:
        other.release()
    err = capsys.readouterr().err
    assert rc == 1 and f"is computing it into {out}" in err and "process" in err, err
    assert not list(out.glob("cells_*")), sorted(p.name for p in out.iterdir())
    assert main(["predict", str(src), "--model", "nuclei-2d", "--out", str(out)]) == 0
    assert (out / "cells_mask.tif").is_file() and not list(out.glob(".*lock*"))


def test_cli_finetune_on_a_dataset_an_export_is_writing_to_is_refused(tmp_path, nuclei_ds, capsys):
    """The napari tab refused to fine-tune on a dataset an export held; `attnseg finetune` read it and trained without
    the case being exported. Now the run's setup refuses, naming the dataset, and leaves no output folder."""
    from napari_attnseg.data.manifest import dataset_lock

    out = tmp_path / "ft"
    with dataset_lock(nuclei_ds):  # (an export in napari or another terminal holds this while it writes)
        code = main(["finetune", str(nuclei_ds), "--model", "nuclei-2d", "--out", str(out), "--epochs", "1"])
    err = capsys.readouterr().err
    assert code != 0 and "An export is writing to the dataset" in err and str(nuclei_ds) in err, err
    assert not out.exists()
    assert main(["finetune", str(nuclei_ds), "--model", "nuclei-2d", "--out", str(out), "--epochs", "1",
                 "--patch", "64,64", "--batch", "2", "--iters-per-epoch", "1"]) == 0  # once it has finished
