"""Brain extraction on brains that are skull-stripped already (audit): a brain stripped by the product's own mask, a
stripped T2 and a stripped brain with Rician noise are left alone (each lost 22-55 % of itself to a second
extraction), while a head with skull and scalp is still stripped when its air is exactly zero."""

from __future__ import annotations

import numpy as np
import pytest
from _brain_helpers import SPACING, brain1_stripped, mni_2mm, rician

import napari_attnseg as ag
from napari_attnseg.inference.brain import apply_brain_mask, extract_brain_fast
from napari_attnseg.inference.brain_checks import looks_stripped


@pytest.fixture(scope="module")
def mni2() -> np.ndarray:
    return mni_2mm()


def _t2(t1: np.ndarray) -> np.ndarray:
    """A T2-like remap of a stripped T1: CSF bright, grey matter above white matter, 0 outside."""
    return np.where(t1 > 0, np.interp(t1, [0, 60, 120, 166, 214, 255], [0, 250, 200, 150, 100, 90]), 0).astype(np.float32)


def test_brain1_stripped_with_the_products_own_mask_is_not_stripped_again():
    vol, image, first = brain1_stripped()
    again = extract_brain_fast(apply_brain_mask(image, first.mask), vol.spacing)
    # (was: "brain extraction removed 50% of the head", half of the brain the first pass kept)
    assert not again.applied, again.note
    assert "looks skull-stripped" in again.note
    assert (again.mask & first.mask).sum() > 0.99 * first.mask.sum()


def test_a_skull_stripped_t2_is_left_whole(mni2):
    t2 = _t2(mni2)
    found = extract_brain_fast(t2, SPACING)
    assert not found.applied, found.note  # (was: applied, 55 % of the brain removed)
    assert found.mask[t2 > 0].all()


def test_rician_noise_on_a_stripped_brain_does_not_trigger_extraction(mni2):
    noisy = rician(mni2, 0.08 * 214)  # 8 % of the white matter's level, in the air too
    found = extract_brain_fast(noisy, SPACING)
    assert not found.applied, found.note  # (was: "removed 22% of the head": specks of noise counted as head)
    assert found.removed_share < 0.15


def test_a_stripped_t2_through_predict_keeps_its_brain(mni2):
    model = ag.load_model("brain-mri-3d", device="cpu")
    pred = ag.predict(model, _t2(mni2), spacing=SPACING, precision="fp32", return_probabilities=False)
    assert pred.params["brain_extraction"]["applied"] is False
    assert not any("Brain extraction removed" in w for w in pred.warnings), pred.warnings


def test_a_head_with_skull_and_zero_air_is_still_stripped(mni2):
    """The new check must not take a head for a stripped brain because its air is exactly the minimum: the skull
    5-20 mm below the surface says it is a head."""
    from scipy import ndimage as ndi

    from napari_attnseg.training.synthhead import wrap_in_head

    head, _, pad = wrap_in_head(mni2, SPACING, seed=20261202)
    outline = ndi.binary_fill_holes(head > 0.03 * float(np.percentile(mni2[mni2 > 0], 95)))
    head[~outline] = 0.0  # a pipeline that zeroes the air around the head
    assert looks_stripped(head, SPACING) is None
    found = extract_brain_fast(head, SPACING)
    assert found.applied and found.removed_share > 0.3, found.note
    brain = np.pad(mni2 > 80, pad)  # grey and white matter (CSF and the blurred edge are darker)
    assert (found.mask & brain).sum() > 0.97 * brain.sum()


def test_a_stripped_brain_with_a_rim_of_csf_looks_stripped(mni2, monkeypatch):
    """A brain mask that keeps the CSF around the brain (as BET often does): dark, but only at the surface."""
    import napari_attnseg.training.synthhead as synthhead

    monkeypatch.setattr(synthhead, "SHELLS", (("csf", (1.5, 4.0), (0.08, 0.2)),))
    head, _, _ = synthhead.wrap_in_head(mni2, SPACING, seed=1)
    from scipy import ndimage as ndi

    outline = ndi.binary_fill_holes(head > 0.03 * float(np.percentile(mni2[mni2 > 0], 95)))
    head[~outline] = 0.0  # no noise in the air: a stripped image's constant background
    found = looks_stripped(head, SPACING)
    assert found is not None
    assert found[0][mni2.shape[0] // 2 + 12].any()
