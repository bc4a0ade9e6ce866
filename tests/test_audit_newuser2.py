"""A new user on the command line, second round: `attnseg export` without --reviewed-slices exported every slice as
checked ground truth, unsaid, even a raw `attnseg predict` mask; a missing relative path said only "CT.nii.gz does
not exist."; the cohort line said "compute waited 0.3 s for input (1.2% of 1 slot x wall)"; `--model NAME` took a
folder NAME here before the user's saved model of that name, silently; the fine-tuning bar began "0step [00:00,
?step/s]" and then read "epoch 1 (0.3/1.0 min): : 1step", and a run too short for the refit did not say it was
skipped; `attnseg suggest --channel K` on a 3-plane TIFF was refused as "a 2D image" without what to do."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch

from napari_attnseg import create_model, save_model
from napari_attnseg.checkpoint import ModelCard
from napari_attnseg.cli import main

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
LUNG, LUNG_LABELS = DATA / "radiomics" / "lung1_image.nii.gz", DATA / "radiomics" / "lung1_labels.nii.gz"


@pytest.fixture
def ct(tmp_path) -> tuple[Path, Path]:
    """A 64 x 64 x 6 crop of the lung1 CT around its tumour (slices 30-35; tumour on 32-34) and its labels."""
    if not LUNG.exists():
        pytest.skip(f"{LUNG} is not here")
    image, labels = nib.load(LUNG), nib.load(LUNG_LABELS)
    box = (slice(186, 250), slice(328, 392), slice(30, 36))
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj[box]), image.affine), tmp_path / "ct.nii.gz")
    nib.save(nib.Nifti1Image(np.asarray(labels.dataobj[box]).astype(np.uint8), labels.affine), tmp_path / "ref.nii.gz")
    return tmp_path / "ct.nii.gz", tmp_path / "ref.nii.gz"


# -- 1. export without --reviewed-slices -----------------------------------------------------------------------------
def test_export_without_reviewed_slices_says_so_and_warns_about_a_raw_prediction(ct, tmp_path, capsys):
    image, reference = ct
    out = tmp_path / "pred"
    assert main(["predict", str(image), "--model", "nuclei-2d", "--out", str(out), "--device", "cpu"]) == 0
    mask = out / "ct_mask.nii.gz"
    capsys.readouterr()
    assert main(["export", "--image", str(image), "--labels", str(mask), "--dataset", str(tmp_path / "ds")]) == 0
    err = capsys.readouterr().err
    assert "all 6 slices are exported as reviewed (fine-tuning trusts every one)" in err, err
    assert "--reviewed-slices a,b,c-d" in err
    assert f"{mask}: warning: this is the mask attnseg predict wrote (ct_predict.json), unchanged since: the model's " \
           "own prediction, not corrections" in err, err
    # corrected and saved over (after the record): the note stays, the warning goes
    later = (out / "ct_predict.json").stat().st_mtime + 10
    os.utime(mask, (later, later))
    assert main(["export", "--image", str(image), "--labels", str(mask), "--dataset", str(tmp_path / "ds")]) == 0
    err = capsys.readouterr().err
    assert "exported as reviewed" in err and "attnseg predict wrote" not in err, err
    # the record rewritten after that (a cohort rerun re-points it to a moved scan): the corrected mask is still not
    # called the model's own prediction (comparing modification times did)
    record = out / "ct_predict.json"
    record.write_text(record.read_text())
    os.utime(record, (later + 10, later + 10))
    assert main(["export", "--image", str(image), "--labels", str(mask), "--dataset", str(tmp_path / "ds")]) == 0
    err = capsys.readouterr().err
    assert "attnseg predict wrote" not in err, err
    # the user's own labels with the slices named: neither
    assert main(["export", "--image", str(image), "--labels", str(reference), "--dataset", str(tmp_path / "ds"),
                 "--reviewed-slices", "1,2-4"]) == 0
    err = capsys.readouterr().err
    assert "exported as reviewed" not in err and "attnseg predict wrote" not in err, err


# -- 2. a relative path that does not exist -------------------------------------------------------------------------
def test_a_missing_relative_path_says_where_it_was_looked_for(tmp_path, monkeypatch, capsys):
    from napari_attnseg.data import read_image
    from napari_attnseg.errors import InputError

    monkeypatch.chdir(tmp_path)
    assert main(["export", "--image", "CT.nii.gz", "--labels", "corrected.nii.gz", "--dataset", "ds"]) == 1
    err = capsys.readouterr().err
    assert f"corrected.nii.gz does not exist (looked in {tmp_path}, the current folder" in err, err
    with pytest.raises(InputError) as absolute:  # an absolute path: where it is, nothing to add
        read_image(tmp_path / "gone.nii.gz")
    assert str(absolute.value) == f"{tmp_path / 'gone.nii.gz'} does not exist."


# -- 3. the cohort summary line ------------------------------------------------------------------------------------
def test_the_cohort_line_says_what_the_model_waited_for_in_words():
    from napari_attnseg.cohort.cases import CaseResult, CohortSummary
    from napari_attnseg.cohort.summary import describe_summary

    cases = [CaseResult(case="a", input="a.tif", status="done", wait_s=0.3)]
    one = describe_summary(CohortSummary(cases=cases, wall_s=25.0, slots=1))
    assert "the model waited 0.3 s for reading (1.2% of the run)" in one and "slot" not in one, one
    two = describe_summary(CohortSummary(cases=cases, wall_s=25.0, slots=2))
    assert "the 2 workers' models waited 0.3 s in all for reading (0.6% of 2 workers x 25.0 s)" in two, two


# -- 4. a saved model's name against a folder of that name here -----------------------------------------------------
def _tiny(path: Path, name: str) -> Path:
    torch.manual_seed(0)
    save_model(create_model("unet", spatial_dims=2, features=[4, 8, 16]), path,
               ModelCard(arch="", config={}, name=name, description=f"{name} test model", tile=[32, 32]))
    return path


def test_a_saved_models_name_wins_over_a_folder_here_with_a_warning(tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.setenv("ATTNSEG_MODELS_DIR", str(tmp_path / "models"))
    saved = _tiny(tmp_path / "models" / "ct-model.safetensors", "saved-one")
    _tiny(tmp_path / "work" / "ct-model" / "best.safetensors", "local-run")
    monkeypatch.chdir(tmp_path / "work")
    with caplog.at_level(logging.WARNING, logger="napari_attnseg.checkpoint"):
        assert main(["models", "--show", "ct-model"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("saved-one:") and f"file           {saved}" in out, out
    assert "not the folder ct-model here (pass ./ct-model for that one)" in caplog.text, caplog.text
    caplog.clear()
    assert main(["models", "--show", "./ct-model"]) == 0  # a path: the folder, unsaid
    assert capsys.readouterr().out.startswith("local-run:") and "pass ./" not in caplog.text


# -- 5. the fine-tuning bar and a skipped refit ----------------------------------------------------------------------
def test_the_fine_tuning_bar_starts_with_its_epoch_and_has_one_colon():
    from napari_attnseg.cli._train_run import ProgressBar

    stream = io.StringIO()
    bar = ProgressBar(stream)
    bar.step({"epoch": 1, "epochs": None, "step": 1, "steps": 25, "loss": 0.5, "elapsed": 18.0, "budget": 60.0})
    bar.close()
    lines = [x.strip() for x in stream.getvalue().replace("\r", "\n").splitlines() if x.strip()]
    assert lines and all(x.startswith("epoch 1 (0.3/1.0 min): ") for x in lines), lines
    assert not any(": :" in x or x.startswith("0step") for x in lines), lines


def test_a_run_too_short_for_the_refit_says_it_was_skipped(ct, tmp_path, capsys):
    image, reference = ct
    ds = tmp_path / "ds"
    assert main(["export", "--image", str(image), "--labels", str(reference), "--dataset", str(ds),
                 "--reviewed-slices", "0,2-4"]) == 0
    capsys.readouterr()
    assert main(["finetune", str(ds), "--model", "nuclei-2d", "--out", str(tmp_path / "ft"), "--epochs", "1",
                 "--iters-per-epoch", "1", "--batch", "1", "--patch", "64,64", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    if "start weights are kept" in out:  # (no epoch beat the start: nothing refitted, the trainer says so)
        pytest.skip("the one epoch did not beat the start model")
    assert "note: the refit (the run's last part, training on every reviewed slice, the validation ones included) " \
           "was skipped: the run had 1 epoch and it needs 2" in out, out
    assert "give --epochs 2 or more" in out


def test_the_refit_note_for_a_minutes_budget_gives_the_minutes_that_fit_it():
    from napari_attnseg.training.config import TrainResult
    from napari_attnseg.training.short_run import refit_skipped_text

    result = TrainResult("ft/best.safetensors", 0.0062, 0.3632, None, 1, 54.0,
                         "held-out slices along axis 0: validation case_0000 slices 34; train case_0000 the other "
                         "slices", epochs_planned=1, setup_seconds=18.0)
    text = refit_skipped_text(result, 0.25, True, 1.0)
    assert "skipped: the 1 min budget fitted 1 epoch (about 0.6 min each, after a 0.3 min setup)" in text, text
    assert "give --minutes 2 or more" in text
    assert refit_skipped_text(result, 0.0, True, 1.0) == ""  # --refit 0: nothing to say
    result.refit_epochs = 1
    assert refit_skipped_text(result, 0.25, True, 1.0) == ""


# -- 6. suggest on a 3-plane TIFF -----------------------------------------------------------------------------------
def test_suggest_ranks_the_planes_of_a_three_plane_tiff_and_explains_channel(tmp_path, capsys):
    from napari_attnseg._paths import samples_dir

    image = tifffile.imread(samples_dir() / "nuclei2d_image.tif")
    planes = tmp_path / "planes.tif"
    tifffile.imwrite(planes, np.stack([image[:96, :96], image[96:192, :96], image[:96, 96:192]]),
                     photometric="minisblack")  # axes QYX: channels or a short z-stack, nobody can tell
    assert main(["suggest", str(planes), "--model", "nuclei-2d", "--device", "cpu", "--no-flips"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0] == "slice\tscore" and len(captured.out.splitlines()) == 4, captured.out
    assert "segmented as a z-stack slice by slice" in captured.err  # said, as predict says it
    assert main(["suggest", str(planes), "--model", "nuclei-2d", "--channel", "1"]) == 1
    err = capsys.readouterr().err
    assert "--channel 1 took one plane of its planes along an unnamed first axis, a 2D image" in err, err
    assert "leave --channel out to rank its planes as slices" in err


def test_the_finetune_tab_lists_the_refit_note_in_its_own_words():
    """The Fine-tune tab's status listed the run's notes but not why the refit did not run (attnseg finetune printed
    it): the same sentence, worded for the tab's Minutes field."""
    from types import SimpleNamespace

    from napari_attnseg._napari.finetune_run import Run
    from napari_attnseg.training.config import TrainResult

    result = TrainResult("ft/best.safetensors", 0.0062, 0.3632, None, 1, 54.0,
                         "held-out slices along axis 0: validation case_0000 slices 34; train case_0000 the other "
                         "slices", epochs_planned=1, setup_seconds=18.0)
    result.notes.append("far negatives off")
    cfg = SimpleNamespace(refit=None, start_model="nuclei-2d", minutes=1.0)
    text = Run.notes_text(None, result, cfg)
    assert text.startswith("\n- far negatives off\n- the refit (the run's last part"), text
    assert "give it 2 minutes or more" in text and "--minutes" not in text
