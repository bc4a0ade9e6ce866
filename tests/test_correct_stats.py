"""EditCounts: the edit statistics updated edit by edit equal edit_stats recounted over the whole array."""

from __future__ import annotations

import numpy as np
import pytest

from napari_attnseg import correct
from napari_attnseg.errors import InputError


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.uint16, np.bool_])
def test_edit_counts_follow_edits_exactly(dtype):
    rng = np.random.default_rng(1)
    top = 2 if dtype == np.bool_ else 5
    pred = rng.integers(0, top, (5, 16, 17)).astype(dtype)
    labels = rng.integers(0, top, pred.shape).astype(dtype)
    counts = correct.EditCounts(pred, labels)
    assert counts.stats() == correct.edit_stats(pred, labels)
    for step in range(40):
        if step % 2:  # fancy indices with repeats (numpy writes the last value): as Labels.data_setitem
            k = int(rng.integers(1, 30))
            idx = tuple(rng.integers(0, s, k) for s in pred.shape)
            new = rng.integers(0, top + 1 if dtype != np.bool_ else 2, k).astype(dtype)
            old = labels[idx].copy()
        else:  # a brush dab: one value under a mask of a box
            box = (slice(1, 3), slice(2, 9), slice(4, 8))
            m = rng.random((2, 7, 4)) < 0.5
            idx = tuple(i + s.start for i, s in zip(np.nonzero(m), box))
            new, old = dtype(rng.integers(0, 2)), labels[idx].copy()
        counts.update(idx, old, new)
        labels[idx] = new
        assert counts.stats() == correct.edit_stats(pred, labels)
    box = (slice(0, 2), slice(0, 5), slice(0, 5))  # a whole box (slices), as napari's bounding-box atoms
    old = labels[box].copy()
    counts.update(box, old, dtype(1))
    labels[box] = 1
    assert counts.stats() == correct.edit_stats(pred, labels)


def test_edit_counts_of_many_labels_and_of_a_mismatch():
    rng = np.random.default_rng(2)
    pred = rng.integers(0, 70000, (20, 30)).astype(np.int64)  # instance labels: far more than a few classes
    labels = pred.copy()
    labels[:3] = 0
    counts = correct.EditCounts(pred, labels)
    assert counts.stats() == correct.edit_stats(pred, labels)
    idx = (np.array([5, 6]), np.array([1, 1]))
    counts.update(idx, labels[idx].copy(), 123456)
    labels[idx] = 123456
    assert counts.stats() == correct.edit_stats(pred, labels)
    with pytest.raises(InputError, match="differ in shape"):
        correct.EditCounts(pred, labels[1:])
