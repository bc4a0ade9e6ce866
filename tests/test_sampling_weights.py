"""Which reviewed slices a fine-tune draws its patches from. Parts were drawn by their size, 'ignore' included: a
reviewed slice inside a large unreviewed slab was drawn 10x as often as one on its own, and an all-'ignore' slab got
patches that carry no loss (in the lung1 loop 28 % of them; the refit drew its held-out tumour slice for 2 % of the
patches, and the model trained on it still gave that tumour a probability of 4e-6)."""

from __future__ import annotations

import numpy as np

from napari_attnseg.training.sampling import PatchSampler

IGNORE = 2


def _parts():
    slab = np.full((10, 32, 32), IGNORE, np.int64)
    slab[4] = 0
    slab[4, 10:14, 10:14] = 1  # one reviewed slice with the object, in a 10-slice slab
    alone = np.zeros((1, 32, 32), np.int64)  # one reviewed slice on its own (a refit's validation slice)
    alone[0, 20:24, 20:24] = 1
    unreviewed = np.full((6, 32, 32), IGNORE, np.int64)  # nothing labelled
    labels = [slab, alone, unreviewed]
    images = [np.zeros((1, *lab.shape), np.float32) for lab in labels]
    return images, labels


def test_parts_are_drawn_by_their_labelled_voxels_not_their_size():
    images, labels = _parts()
    sampler = PatchSampler(images, labels, (1, 16, 16), np.random.default_rng(0), ignore_index=IGNORE)
    np.testing.assert_allclose(sampler.weights, [0.5, 0.5, 0.0])
    _, ys = sampler.sample(400)
    carry = [(y != IGNORE).any() for y in ys]
    assert all(carry)  # no patch without a labelled voxel (before: a third of them, from the unreviewed slab)


def test_far_negatives_bring_an_unreviewed_slab_back_into_the_draw():
    images, labels = _parts()
    sampler = PatchSampler(images, labels, (1, 16, 16), np.random.default_rng(0), ignore_index=IGNORE)
    weak = [np.zeros(lab.shape, bool) for lab in labels]
    weak[2][3, 5:9, 5:9] = True  # the model's own foreground there, trained towards background
    sampler.set_weak(weak, 0.15)
    assert sampler.weights[2] > 0


def test_fully_labelled_arrays_are_drawn_by_size_as_before():
    labels = [np.zeros((4, 16, 16), np.int64), np.zeros((12, 16, 16), np.int64)]
    images = [np.zeros((1, *lab.shape), np.float32) for lab in labels]
    sampler = PatchSampler(images, labels, (1, 8, 8), np.random.default_rng(0), ignore_index=IGNORE)
    np.testing.assert_allclose(sampler.weights, [0.25, 0.75])


def test_the_foreground_share_comes_from_the_parts_that_hold_foreground():
    """One case cut into training parts at the validation slices (lung1: 0-20 with reviewed slice 19, 22-33 with the
    tumour on 32): half the draws meant for foreground fell on a part without any, and 16 % of the patches held the
    tumour instead of the sampler's third. Now a foreground draw goes to a part with foreground."""
    tumour = np.full((12, 32, 32), IGNORE, np.int64)
    tumour[10] = 0
    tumour[10, 4:8, 4:8] = 1
    empty = np.full((20, 32, 32), IGNORE, np.int64)
    empty[19] = 0  # a reviewed tumour-free slice
    labels = [empty, tumour]
    images = [np.zeros((1, *lab.shape), np.float32) for lab in labels]
    sampler = PatchSampler(images, labels, (1, 16, 16), np.random.default_rng(0), fg_fraction=0.33, ignore_index=IGNORE)
    _, y = sampler.sample(3000)
    share = float(((y == 1).reshape(len(y), -1).any(1)).mean())
    assert 0.30 < share < 0.50, share  # (before: 0.26, half the centred third plus patches that held it by chance)
    full = [np.zeros((4, 32, 32), np.int64), np.zeros((4, 32, 32), np.int64)]  # fully labelled: as before
    full[1][2, 4:8, 4:8] = 1
    before = PatchSampler([np.zeros((1, 4, 32, 32), np.float32)] * 2, full, (1, 16, 16), np.random.default_rng(0))
    assert before._fg_weights is None
