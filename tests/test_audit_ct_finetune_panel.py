"""A clinician's CT round in the Fine-tune panel (a chest CT padded with -3024 HU outside its field of view, as GE and
Siemens scanners store it; nuclei-2d segmented it, slices 32 and 34 corrected, two suggested slices erased, exported,
fine-tuned for 2 minutes): what the panel keeps of a run that saved no model, and what its status says of the
validation. The trainer is replaced by one that returns at once what a real run returned (the panel's handling is
what is tested here; tests/test_napari_finetune.py runs real ones)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_attnseg.data.export import export_case
from napari_attnseg.training.config import TrainResult

pytestmark = pytest.mark.gui

SPLIT = ("held-out slices along axis 0: validation case_0000 slices 3,5; train case_0000 the other slices "
         "(validation: 2 labelled slices, 1 with foreground (329 foreground voxels))")


def _dataset(tmp_path: Path) -> Path:
    image = np.random.default_rng(0).normal(-500, 200, (8, 24, 24)).astype(np.int16)
    labels = np.zeros(image.shape, np.uint8)
    labels[3:6, 8:14, 8:14] = 1
    export_case(image, labels, tmp_path / "ds", "nnunet", spacing=(5.0, 0.57, 0.57), reviewed_slices=[1, 3, 4, 5],
                label_names=["background", "tumour"])
    return tmp_path / "ds"


def _run(viewer, qtbot, monkeypatch, tmp_path, start, checkpoint: str, **fields):
    """The panel's run with a trainer that returns a TrainResult at once (``checkpoint``: what it saved)."""
    import napari_attnseg.training as training
    from napari_attnseg._napari.finetune_widget import FinetuneWidget

    def train(cfg, **_):
        return TrainResult(checkpoint=checkpoint, val_dice_before=0.41, val_dice_after=fields.pop("after", 0.41),
                           test_dice=None, epochs=3, seconds=120.0, split=SPLIT,
                           validation="2 labelled slices, 1 with foreground (329 foreground voxels)", **fields)

    monkeypatch.setattr(training, "train", train)
    w = FinetuneWidget(viewer)
    w.add_model("start", str(start))
    w.dataset_edit.value = str(_dataset(tmp_path))
    w.model_combo.value = "start"
    w.minutes_spin.value = 2
    assert w.run() is not None
    qtbot.waitUntil(lambda: w.run_button.enabled, timeout=60000)
    return w


def test_a_run_that_saved_no_model_has_no_checkpoint(make_napari_viewer, qtbot, monkeypatch, tmp_path,
                                                    tiny_checkpoint):
    """No epoch beat the start (a new output layer, none bettered): the status said no model was saved, but
    ``panel.result.checkpoint`` was '' (Path('') is the current folder): a script checking ``result is not None`` and
    reading it failed with "`.` is not a readable safetensors file". It is None now, and nothing is offered."""
    start = tiny_checkpoint(2)
    viewer = make_napari_viewer()
    w = _run(viewer, qtbot, monkeypatch, tmp_path, start, "", kept_start=True)  # (as a run cancelled in epoch 1)
    assert "no model was saved" in w.status.value, w.status.value
    assert "Validation: slices 3,5: 2 labelled slices" in w.status.value  # (what it was judged on)
    assert w.result is not None and w.result.epochs == 3 and w.result.checkpoint is None
    assert not w.result.kept_start  # (no file holds the start's weights either)
    assert list(w._paths.values()).count(str(start)) == 1 and "Saved" not in w.status.value
    assert w.model_combo.value == "start"  # the next round starts where this one did: nothing new is listed
    assert not any(str(p).endswith("best.safetensors") for p in w._paths.values())


def test_the_status_names_the_validation_slices(make_napari_viewer, qtbot, monkeypatch, tmp_path, tiny_checkpoint):
    """README: the validation is on held-out reviewed slices "(the status says which ...)": the status said
    "Validation: 2 labelled slices, 1 with foreground (...)" without naming them (attnseg finetune prints them)."""
    model = tiny_checkpoint(2, name="tuned")
    w = _run(make_napari_viewer(), qtbot, monkeypatch, tmp_path, tiny_checkpoint(2), str(model), after=0.62,
             best_epoch=2)
    assert w.result.checkpoint == str(model)
    assert ("Validation: slices 3,5: 2 labelled slices, 1 with foreground (329 foreground voxels)."
            in w.status.value), w.status.value
