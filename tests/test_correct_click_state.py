"""Click-to-fix state on a volume: a 2D model's run keeps its slice, not a copy of the volume, and the object
under a first click is found by labelling around it (both the same as the whole-volume versions)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_attnseg.errors import InputError


def test_a_2d_session_on_a_volume_keeps_one_slice_per_click():
    from napari_attnseg.prompts import PromptSession

    shape = (12, 40, 50)
    rng = np.random.default_rng(0)
    for initial in (None, rng.random(shape) < 0.1):
        session = PromptSession(initial=initial)
        want = np.zeros(shape, bool) if initial is None else initial.copy()
        labels = np.zeros(shape, np.uint8)
        for z in (3, 5, 3, 7, 5):
            session.add((float(z), 10.0, 10.0))
            plane = rng.random(shape[1:]) < 0.3
            session.record(plane, edit=((np.array([z]), np.array([1]), np.array([1])), np.array([1], np.uint8)),
                           labels=labels, z=z)
            want[z] = plane
            assert all(s.mask.shape == shape[1:] for s in session.states), "a whole-volume copy per click"
            assert np.array_equal(session.current, want)
            for k in range(shape[0]):
                assert np.array_equal(session.current_plane(k), want[k])
        session.undo()  # the run on slice 5 is undone: slice 5 is the earlier run's again
        want[5] = session.states[1].mask
        assert np.array_equal(session.current, want) and np.array_equal(session.current_plane(5), want[5])
        assert sum(s.mask.nbytes for s in session.states) == 4 * 40 * 50
    with pytest.raises(ValueError, match="slice"):
        PromptSession().record(np.zeros(shape, bool), labels=np.zeros(shape), z=2)
    assert PromptSession().current_plane(3) is None


def test_component_at_equals_the_whole_volume_component():
    """The object under a point, labelled in a growing box, is the connected component a labelling of the
    whole array gives (``object_at`` uses it)."""
    from scipy import ndimage as ndi

    from napari_attnseg.prompts import object_at
    from napari_attnseg.prompts.session import component_at

    def whole(labels, point):
        idx = tuple(int(p) for p in point)
        if not labels[idx]:
            return None
        cc, _ = ndi.label(labels == labels[idx])
        return cc == cc[idx]

    rng = np.random.default_rng(3)
    for shape in [(9, 60, 70), (50, 61)]:
        labels = (rng.random(shape) < 0.55).astype(np.uint8) * rng.integers(1, 3, shape).astype(np.uint8)
        labels[tuple(slice(0, n) for n in shape[:-1]) + (slice(5, 8),)] = 1  # an object across the whole array
        for _ in range(25):
            point = tuple(float(rng.integers(0, n)) for n in shape)
            for reach in (1, 3, 32):
                got, want = component_at(labels, point, reach), whole(labels, point)
                assert (got is None) == (want is None)
                assert want is None or np.array_equal(got, want)
                assert want is None or np.array_equal(object_at(labels, point), want)
    with pytest.raises(InputError, match="outside"):
        component_at(labels, (70.0, 3.0))
