"""The synthetic lesions that train the 3D click model (scripts/build_lesion_dataset.py, issue 18)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import build_lesion_dataset as lesions  # noqa: E402


def test_partial_volume_shows_a_faint_unlabelled_lesion_in_the_neighbouring_thick_slices():
    spacing = (5.0, 0.6, 0.6)
    sharp, _, half = lesions.lesion_shape(spacing, np.random.default_rng(2), 12.0)
    pv, _, half_pv = lesions.lesion_shape(spacing, np.random.default_rng(2), 12.0, partial_volume=True)
    assert np.array_equal(half, half_pv) and sharp.shape == pv.shape
    per_slice = lambda a: a.reshape(a.shape[0], -1).max(1)  # noqa: E731
    labelled = np.flatnonzero(per_slice(pv) > 0.5)
    assert len(labelled) >= 1
    around = [labelled[0] - 1, labelled[-1] + 1]
    # the slices next to the labelled ones: brighter than without partial volume, yet below the label's 0.5
    assert all(0.2 < per_slice(pv)[z] < 0.5 for z in around), per_slice(pv)
    assert all(per_slice(pv)[z] > per_slice(sharp)[z] + 0.1 for z in around)
    # thin slices are left as they were
    thin, _, _ = lesions.lesion_shape((1.0, 1.0, 1.0), np.random.default_rng(2), 12.0)
    thin_pv, _, _ = lesions.lesion_shape((1.0, 1.0, 1.0), np.random.default_rng(2), 12.0, partial_volume=True)
    assert np.array_equal(thin, thin_pv)
