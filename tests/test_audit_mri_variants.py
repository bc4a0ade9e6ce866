"""Brain MRIs from other scanners and sequences given to ``brain-mri-3d`` (audit): a non-T1 contrast is flagged by
the anatomy of the result, the real T1 variants stay quiet, and a field of view that cuts through a skull-stripped
brain is not 'skull-stripped' again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import napari_attnseg as ag
from napari_attnseg.inference.brain import extract_brain, reversed_anatomy

SAMPLES = Path(__file__).resolve().parents[1] / "napari_attnseg" / "resources" / "samples"
SURFACE = "nearer the brain's surface than the grey matter"


def _mni(step: int = 2) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """The bundled MNI152 T1 sample and its labels as (z, y, x) arrays; ``step`` 2: block means at 2 mm (the model's
    own grid; the labels sampled at the blocks' corners)."""
    nib = pytest.importorskip("nibabel")
    t1 = np.asarray(nib.load(SAMPLES / "mni152_t1.nii.gz").dataobj, np.float32).transpose(2, 1, 0)
    lab = np.asarray(nib.load(SAMPLES / "mni152_labels.nii.gz").dataobj, np.uint8).transpose(2, 1, 0)
    if step == 1:
        return np.ascontiguousarray(t1), np.ascontiguousarray(lab), (1.0, 1.0, 1.0)
    c = [n // step * step for n in t1.shape]
    t1 = t1[: c[0], : c[1], : c[2]].reshape(c[0] // step, step, c[1] // step, step, c[2] // step, step).mean((1, 3, 5))
    return np.ascontiguousarray(t1), lab[: c[0]: step, : c[1]: step, : c[2]: step], (float(step),) * 3


def _flair(t1: np.ndarray) -> np.ndarray:
    """A FLAIR-like remap of a stripped T1: CSF dark, grey matter brighter than white matter, 0 outside."""
    return np.where(t1 > 0, np.interp(t1, [0, 100, 140, 166, 214, 255], [0, 25, 120, 180, 140, 130]), 0).astype(np.float32)


@pytest.fixture(scope="module")
def brain_model():
    return ag.load_model("brain-mri-3d", device="cpu")


def test_a_flair_given_to_the_t1_brain_model_warns(brain_model):
    t1, _, spacing = _mni()
    pred = ag.predict(brain_model, _flair(t1), spacing=spacing, precision="fp32")
    assert any(SURFACE in w for w in pred.warnings), pred.warnings  # (silent before: GM Dice 0.21, WM 0.13)


def test_the_t1_and_its_scanner_variants_stay_quiet(brain_model):
    t1, lab, spacing = _mni()
    rng = np.random.default_rng(0)
    sigma = 0.04 * 214  # (8 % at 2 mm: extraction is applied to the noise, see the audit report)
    rician = np.sqrt((t1 + rng.normal(0, sigma, t1.shape)) ** 2 + rng.normal(0, sigma, t1.shape) ** 2)
    for name, image in (("T1", t1), ("Rician noise 4 %", rician.astype(np.float32)),
                        ("16-bit", (t1 * 40).astype(np.uint16)), ("top of the head cut off", t1[:-14])):
        pred = ag.predict(brain_model, image, spacing=spacing, precision="fp32")
        assert not any(SURFACE in w for w in pred.warnings), (name, pred.warnings)
        assert pred.warnings == [], (name, pred.warnings)
    found = extract_brain(t1, spacing)
    assert reversed_anatomy(lab, found.mask, brain_model.card.classes, spacing) is None  # the reference itself
    swapped = np.choose(lab, [0, 2, 1]).astype(np.uint8)  # the same labels, classes swapped: reversed
    assert SURFACE in (reversed_anatomy(swapped, found.mask, brain_model.card.classes, spacing) or "")
    assert reversed_anatomy(swapped, found.mask, ["background", "tumour", "oedema"], spacing) is None


def test_a_stripped_slab_is_not_stripped_again():
    t1, lab, spacing = _mni(step=1)
    slab, slab_lab = t1[56:88], lab[56:88]  # 32 axial slices of the stripped T1 (the test slab)
    found = extract_brain(slab, spacing)
    assert not found.applied, found.note  # was: "removed 18% of the head", its first and last 2 slices whole
    tissue = slab_lab > 0
    for k in (0, 1, -2, -1):
        assert found.mask[k][tissue[k]].mean() > 0.85, k  # (was 0: the closing ate the faces)
