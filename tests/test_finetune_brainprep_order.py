"""Fine-tuning a start model whose card asks for brain extraction (``brain-mri-3d``) on a scan of another spacing
prepares the case in inference's order: skull and scalp stripped at the scan's own spacing, then resampled to the
model's 2 mm (inference: ``with_brain_extraction`` around the engine, which resamples inside). Before, fine-tuning
resampled first and stripped the 2 mm case: another brain mask (brain1, 6.5 x 0.78 x 0.78 mm: 28 % of the head
removed instead of 54 %, the scalp over the vertex kept, brain-mask Dice 0.76 against inference's), so the model
trained on input it is never fed.

Real files: the bundled MNI152 T1 at 6 x 2 x 2 mm (thick slices, as brain1), wrapped in the synthetic skull."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

import napari_attnseg.inference.brain as brain
import napari_attnseg.inference.engine as engine
from napari_attnseg._paths import samples_dir
from napari_attnseg.checkpoint import load_model
from napari_attnseg.data import read_image
from napari_attnseg.data.export import export_case
from napari_attnseg.data.orientation import volume_codes
from napari_attnseg.inference import predict
from napari_attnseg.training import TrainConfig
from napari_attnseg.training.resampling import resample_labels
from napari_attnseg.training.synthhead import wrap_in_head
from napari_attnseg.training.trainer import Trainer

SPACING = (6.0, 2.0, 2.0)  # thick slices: resampled to the model's (2, 2, 2) mm
CLASSES = ["background", "grey matter", "white matter"]


class _Fed(Exception):
    """Stops the prediction once the engine has the model's input."""


@pytest.fixture(scope="module")
def thick_head(tmp_path_factory):
    t1 = np.asarray(read_image(samples_dir() / "mni152_t1.nii.gz").data, np.float32)
    lab = np.asarray(read_image(samples_dir() / "mni152_labels.nii.gz").data, np.uint8)
    zoom = [1 / s for s in SPACING]
    head, head_lab, _ = wrap_in_head(ndi.zoom(t1, zoom, order=1), SPACING, seed=5,
                                     labels=ndi.zoom(lab, zoom, order=0), pad_mm=18.0)
    ds = tmp_path_factory.mktemp("thick") / "ds"
    export_case(head, head_lab.astype(np.uint8), ds, "nnunet", spacing=SPACING, label_names=CLASSES, case_id="head")
    return ds


def _inference_input(ds, monkeypatch):
    """What ``attnseg predict`` on the exported scan hands the model (normalised, on its 2 mm grid), and the brain
    mask inference found at the scan's own spacing."""
    vol = read_image(next(ds.rglob("imagesTr/*.nii.gz")))
    seen = {}
    zoom, extract = engine.zoom_image, brain.extract_brain_fast

    def fed(image, stats, factors, has_channels):
        seen["input"] = zoom(image, stats, factors, has_channels)
        raise _Fed

    def found(image, spacing):
        seen["brain"] = extract(image, spacing)
        return seen["brain"]

    monkeypatch.setattr(engine, "zoom_image", fed)
    monkeypatch.setattr(brain, "extract_brain_fast", found)
    with pytest.raises(_Fed):
        predict(load_model("brain-mri-3d", device="cpu"), vol.data, spacing=vol.spacing,
                orientation=volume_codes(vol), return_probabilities=False)
    monkeypatch.undo()
    return seen["input"], seen["brain"]


def test_finetuning_strips_the_scan_at_its_own_spacing_then_resamples_as_inference(tmp_path, thick_head, monkeypatch):
    fed, found = _inference_input(thick_head, monkeypatch)
    assert found.applied and found.mask.shape[0] < fed.shape[1]  # stripped on the 6 mm slices, before resampling
    trainer = Trainer(TrainConfig(dataset=str(thick_head), out=str(tmp_path / "o"), start_model="brain-mri-3d",
                                  epochs=1, iters_per_epoch=1, batch_size=1, patch=[16, 32, 32], refit=0.0,
                                  val_region="2:4"))
    got = trainer._images[0]
    assert got.shape == fed.shape and trainer.raw[0][2] == (2.0, 2.0, 2.0)
    # the same brain, voxel for voxel: what the model trains on is zero (the stripped minimum) exactly where what
    # inference feeds it is (before: 12,460 of its 1.8 M voxels differed)
    assert fed.min() == got.min() == 0.0
    np.testing.assert_array_equal(got > 0, fed > 0)
    # and the same values: the normalisation's statistics (the card's 99th percentile) taken on the stored scan, as
    # inference takes them, not on the 2 mm copy (brain1: 898 against 1028, intensities 1.145x in training)
    np.testing.assert_allclose(got, fed, rtol=1e-4, atol=1e-5)
    # what the run records is what inference does: the same share of the head removed; the validation sets
    # predictions outside the stored mask (resampled as the labels are) to background, as inference does
    assert trainer._brain_record() == {"brain_extraction": {"head": {"applied": True,
                                                                     "removed_share": round(found.removed_share, 4)}}}
    plan = trainer._resamplings[0]
    np.testing.assert_array_equal(trainer.brain_masks[0], resample_labels(found.mask.astype(np.uint8), plan, None) > 0)
    assert any("at the scan's own spacing, before any resampling" in n for n in trainer.notes), trainer.notes
