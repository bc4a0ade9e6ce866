"""Fine-tuning a start model whose card asks for brain extraction (``brain-mri-3d``: ``"brain_extraction":
"auto"``) on scans with skull and scalp: training sees the images as inference will prepare them (skull and
scalp stripped per case by the same core function, labels untouched), the notes say so, and the fine-tuned
card keeps ``brain_extraction`` so the next scan from the scanner is stripped too.

Real files: the bundled MNI152 T1 (skull-stripped) at 2 mm (the model's own spacing, so fine-tuning does not
resample it: tests/test_finetune_spacing.py covers that), wrapped in a synthetic skull and scalp."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_attnseg._paths import samples_dir
from napari_attnseg.checkpoint import load_model
from napari_attnseg.data import read_image
from napari_attnseg.data.export import export_case
from napari_attnseg.inference import predict
from napari_attnseg.inference.brain import apply_brain_mask, extract_brain_fast
from napari_attnseg.inference.normalize import apply_stats, compute_stats
from napari_attnseg.training import TrainConfig
from napari_attnseg.training.synthhead import wrap_in_head
from napari_attnseg.training.trainer import Trainer

SPACING = (2.0, 2.0, 2.0)
CLASSES = ["background", "grey matter", "white matter"]


@pytest.fixture(scope="module")
def brain():
    t1 = np.asarray(read_image(samples_dir() / "mni152_t1.nii.gz").data, np.float32)[::2, ::2, ::2]
    lab = np.asarray(read_image(samples_dir() / "mni152_labels.nii.gz").data, np.uint8)[::2, ::2, ::2]
    head, head_lab, pad = wrap_in_head(t1, SPACING, seed=5, labels=lab, pad_mm=18.0)
    return t1, lab, head, head_lab.astype(np.uint8), pad


def _config(ds, out, **kw):
    return TrainConfig(dataset=str(ds), out=str(out), start_model="brain-mri-3d", epochs=1, iters_per_epoch=2,
                       batch_size=1, patch=[16, 32, 32], train_region="10:40", val_region="44:60", refit=0.0, **kw)


def _as_inference_prepares(image, norm):
    """What inference hands the model: skull and scalp stripped (unless stripped already), then normalised."""
    found = extract_brain_fast(image, SPACING)
    source = apply_brain_mask(image, found.mask) if found.applied else image
    return found, apply_stats(source[None], compute_stats(source[None], norm, True))


def test_finetuning_on_heads_trains_on_stripped_brains_and_keeps_brain_extraction(tmp_path, brain):
    _t1, _lab, head, head_lab, _pad = brain
    export_case(head, head_lab, tmp_path / "ds", "nnunet", spacing=SPACING, label_names=CLASSES)
    trainer = Trainer(_config(tmp_path / "ds", tmp_path / "o"))
    raw, labels, _ = trainer.raw[0]
    found, expected = _as_inference_prepares(raw[0], trainer.norm_spec)
    assert found.applied and found.removed_share > 0.3, found.note  # the head has skull and scalp
    # the images the model trains (and validates) on are those inference will feed it: stripped, then normalised
    np.testing.assert_array_equal(trainer._images[0], expected)
    assert np.all(trainer._images[0][0][~found.mask] == trainer._images[0].min())  # no scalp left to learn from
    # the labels are the exported ones (the loss is on the same voxels); the file's image is not changed
    np.testing.assert_array_equal(trainer._labels[0], head_lab)
    np.testing.assert_array_equal(trainer.raw[0][0][0], head)
    res = trainer.fit()
    note = [n for n in res.notes if "skull and scalp stripped as the start model's card asks" in n]
    assert note and f"removed {found.removed_share:.0%} of the head" in note[0], res.notes
    card = json.loads((tmp_path / "o" / "best.json").read_text())
    # the card keeps what inference must do first (before: no brain_extraction, the next scan went in unstripped)
    assert card["brain_extraction"] == "auto"
    assert card["training"]["brain_extraction"] == {"case_0000": {"applied": True,
                                                                  "removed_share": round(found.removed_share, 4)}}
    assert card["orientation"] and card["spacing"] == list(SPACING) and card["normalization"] == trainer.norm_spec
    assert set(card["metrics"]["class_shares"]) == {"grey matter", "white matter"}
    assert any("skull and scalp stripped" in n for n in card["training"]["notes"])
    # and the fine-tuned model strips the next head as the start model would
    model = load_model(tmp_path / "o" / "best.safetensors", device="cpu")
    assert model.card.brain_extraction == "auto"
    pred = predict(model, head, spacing=SPACING, return_probabilities=False)
    assert pred.params["brain_extraction"]["applied"] is True
    assert not np.asarray(pred.labels)[~found.mask].any()


def test_a_case_stripped_already_is_left_as_inference_leaves_it(tmp_path, brain):
    t1, lab, _head, _head_lab, pad = brain
    stripped = np.pad(t1, pad)  # the same brain without skull and scalp, on the head's grid
    export_case(stripped, np.pad(lab, pad), tmp_path / "ds", "nnunet", spacing=SPACING, label_names=CLASSES)
    trainer = Trainer(_config(tmp_path / "ds", tmp_path / "o"))
    found, expected = _as_inference_prepares(trainer.raw[0][0][0], trainer.norm_spec)
    assert not found.applied, found.note
    np.testing.assert_array_equal(trainer._images[0], expected)
    assert trainer.brain_masks == [None]
    assert any("looks skull-stripped already, left as is" in n for n in trainer.notes), trainer.notes
    assert trainer._brain_record() == {"brain_extraction": {"case_0000": {"applied": False,
                                                                          "removed_share": round(found.removed_share, 4)}}}


def test_a_start_model_without_brain_extraction_trains_on_the_images_as_they_are(tmp_path, brain):
    from napari_attnseg import save_model

    _t1, _lab, head, head_lab, _pad = brain
    export_case(head, head_lab, tmp_path / "ds", "nnunet", spacing=SPACING, label_names=CLASSES)
    start = load_model("brain-mri-3d", device="cpu")
    start.card.brain_extraction = None
    save_model(start, tmp_path / "start.safetensors", start.card)
    cfg = _config(tmp_path / "ds", tmp_path / "o")
    cfg.start_model = str(tmp_path / "start.safetensors")
    trainer = Trainer(cfg)
    raw = trainer.raw[0][0]
    np.testing.assert_array_equal(trainer._images[0], apply_stats(raw, compute_stats(raw, trainer.norm_spec, True)))
    assert not any("skull" in n for n in trainer.notes) and trainer._brain_record() == {}
