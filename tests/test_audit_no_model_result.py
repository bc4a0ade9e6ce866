"""A training or fine-tuning run that saved no model (Cancel before any epoch beat the start, or a new output layer
none bettered): its result's ``checkpoint`` is None, not '' (``Path('')`` is the current folder: ``load_model`` said
"No bundled model named ''" or read '.'); ``load_model``/``read_card`` refuse None or '' plainly; every user of the
result (the CLI's summary, the Fine-tune panel, benchmarks/bench_loop.py) copes with None; and the Fine-tune panel's
``worker`` is None once its run ended, as the Segment panel's is, so a script can wait on it."""

from __future__ import annotations

import dataclasses
import importlib.util
import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_attnseg import create_model, save_model
from napari_attnseg.checkpoint import ModelCard, load_model, read_card, resolve_model_path
from napari_attnseg.data.export import export_case
from napari_attnseg.errors import CheckpointError
from napari_attnseg.inference import CancelToken
from napari_attnseg.training import TrainConfig, train
from napari_attnseg.training.config import TrainResult

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _dataset(tmp_path: Path) -> tuple[Path, Path]:
    """A one-case 3D dataset (reviewed slices only) and a small untrained 2D start model."""
    lab = np.zeros((10, 32, 32), np.int64)
    lab[3:8, 10:18, 10:18] = 1
    img = (lab * 200.0 + 100 + np.random.default_rng(0).normal(0, 20, lab.shape)).astype(np.float32)
    export_case(img, lab, tmp_path / "ds", "nnunet", reviewed_slices=[1, 4, 6, 8], label_names=["background", "x"])
    torch.manual_seed(0)
    start = tmp_path / "start.safetensors"
    save_model(create_model("unet", spatial_dims=2, features=[4, 8, 16]), start,
               ModelCard(arch="", config={}, name="start", classes=["background", "x"], tile=[32, 32]))
    return tmp_path / "ds", start


def _no_model(**fields) -> TrainResult:
    """What a run cancelled before any epoch beat the start returns (``fields`` change it)."""
    return dataclasses.replace(
        TrainResult(checkpoint=None, val_dice_before=0.41, val_dice_after=0.41, test_dice=None, epochs=0, seconds=3.0,
                    split="held-out slices", cancelled=True, kept_start=True,
                    notes=["cancelled before any epoch beat the start model's validation Dice (0.4100): nothing was "
                           "learned and no checkpoint was written"]), **fields)


def test_a_run_cancelled_before_anything_was_learned_returns_checkpoint_none(tmp_path):
    ds, start = _dataset(tmp_path)
    token = CancelToken()
    res = train(TrainConfig(dataset=str(ds), out=str(tmp_path / "c"), start_model=str(start), minutes=1,
                            batch_size=2, patch=[32, 32]), on_step=lambda info: token.cancel(), cancel=token)
    assert res.cancelled and res.epochs == 0 and not (tmp_path / "c" / "best.safetensors").exists()
    assert res.checkpoint is None  # was '': Path('') is the current folder
    with pytest.raises(CheckpointError, match="No model given"):  # what a script loading it is told
        load_model(res.checkpoint)


@pytest.mark.parametrize("given", [None, "", "  "])
def test_load_model_and_read_card_refuse_no_model_plainly(given):
    """load_model(None) said "No bundled model named 'None'", load_model('') "`.` is a folder without
    best.safetensors", read_card(None) raised a TypeError, read_card('') "`.` is not a readable safetensors file"."""
    for call in (load_model, read_card, resolve_model_path):
        with pytest.raises(CheckpointError) as info:
            call(given)
        text = str(info.value)
        assert text.startswith("No model given") and "saved no model" in text and "checkpoint is None" in text, text
        assert "bundled model name" in text and ".safetensors" in text, text
        assert "No bundled model named" not in text and "'.'" not in text, text


def test_the_cli_summary_of_a_run_that_saved_no_model(tmp_path):
    from napari_attnseg.cli._train_common import print_summary, scratch_hint

    res = _no_model()
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        print_summary(res, str(tmp_path / "ds"))
    assert "checkpoint: (none written)" in out.getvalue(), out.getvalue()
    assert "models --add" not in out.getvalue()  # nothing to add
    scratch = TrainConfig(dataset=str(tmp_path / "ds"), out=str(tmp_path / "o"))  # from scratch, Dice 0, no model
    assert scratch_hint(scratch, dataclasses.replace(res, cancelled=False, val_dice_after=0.0)) is None


def test_bench_loop_keeps_its_model_when_a_round_saved_none(tmp_path, monkeypatch):
    """benchmarks/bench_loop.py loaded the round's ``res.checkpoint`` as the next model: '' or None failed the loop."""
    import napari_attnseg.training as training

    spec = importlib.util.spec_from_file_location("bench_loop", BENCH / "bench_loop.py")
    loop = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loop)
    _, start = _dataset(tmp_path)
    monkeypatch.setattr(training, "train", lambda cfg, **_: _no_model(cancelled=False))
    ref = np.zeros((6, 32, 32), np.uint8)
    ref[2:4, 8:16, 8:16] = 1
    image = ref * 200.0 + 100.0
    rows = loop.run_loop(image.astype(np.float32), ref, None, str(start), [2], 1, 1, 0.1, "order", tmp_path / "w")
    assert [r["round"] for r in rows] == [0, 1] and rows[1]["kept_start"]


@pytest.mark.gui
@pytest.mark.parametrize("outcome", ["done", "no model", "error", "cancel"])
def test_the_finetune_panel_worker_is_none_once_its_run_ended(make_napari_viewer, qtbot, monkeypatch, tmp_path,
                                                               outcome):
    """A script waiting for ``panel.worker is None`` (the Segment panel's convention) waited forever: the Fine-tune
    panel kept its last worker after the run ended, whether it saved a model, none, failed or was cancelled."""
    import napari_attnseg.training as training
    from napari_attnseg._napari.finetune_widget import FinetuneWidget
    from napari_attnseg.errors import Cancelled, DatasetError

    ds, start = _dataset(tmp_path)

    def fake_train(cfg, **_):
        if outcome == "error":
            raise DatasetError("the dataset has no labelled slice")
        if outcome == "cancel":
            raise Cancelled("Training cancelled before the first validation; no checkpoint was written.")
        if outcome == "no model":
            return _no_model()
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        saved = Path(cfg.out) / "best.safetensors"
        save_model(create_model("unet", spatial_dims=2, features=[4, 8, 16]), saved,
                   ModelCard(arch="", config={}, name="tuned", classes=["background", "x"], tile=[32, 32]))
        return dataclasses.replace(_no_model(), checkpoint=str(saved), cancelled=False, epochs=2, best_epoch=2,
                                   kept_start=False, val_dice_after=0.6, notes=[])

    monkeypatch.setattr(training, "train", fake_train)
    w = FinetuneWidget(make_napari_viewer())
    w.add_model("start", str(start))
    w.dataset_edit.value = str(ds)
    w.model_combo.value = "start"
    w.minutes_spin.value = 1
    worker = w.run()
    assert worker is not None and w.worker is worker
    qtbot.waitUntil(lambda: w.worker is None, timeout=60000)  # was: never (the ended run's worker stayed)
    assert w.run_button.enabled  # the panel is free for the next run when the script goes on
    if outcome in ("done", "no model"):  # the result is there by then
        assert w.result is not None and (w.result.checkpoint is None) == (outcome == "no model"), w.status.value
    else:
        assert w.result is None and ("failed" if outcome == "error" else "Cancelled") in w.status.value, w.status.value
