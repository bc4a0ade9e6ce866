"""Mask correction helpers on known shapes."""

from __future__ import annotations

import numpy as np
import pytest

from napari_attnseg import correct
from napari_attnseg.errors import InputError


def test_fill_holes_per_class():
    m = np.zeros((20, 20), np.uint8)
    m[2:10, 2:10] = 1
    m[5, 5] = 0
    m[12:18, 12:18] = 2
    m[14:16, 14:16] = 0
    out = correct.fill_holes(m, classes=[1])
    assert out[5, 5] == 1 and out[14, 14] == 0
    assert correct.fill_holes(m)[14, 14] == 2


def test_remove_small_and_keep_largest():
    m = np.zeros((30, 30), np.uint8)
    m[1:11, 1:11] = 1  # 100 px
    m[20:23, 20:23] = 1  # 9 px
    m[25, 25] = 1
    assert correct.remove_small_objects(m, 10).sum() == 100
    kept = correct.keep_largest_component(m)
    assert kept.sum() == 100 and kept[21, 21] == 0


def test_keep_the_object_under_a_point():
    m = np.zeros((6, 30, 30), np.uint8)
    m[:, 1:20, 1:20] = 1  # a large false positive
    m[2:4, 24:27, 24:27] = 1  # the small object that matters
    m[0, 25, 2] = 2  # another class: untouched
    kept = correct.keep_component_at(m, (2.4, 25.2, 24.6))  # rounded to the voxel (2, 25, 25)
    assert kept[m == 2].tolist() == [2]
    assert (kept == 1).sum() == 18 and kept[2:4, 24:27, 24:27].all()
    assert (m == 1).sum() == 6 * 19 * 19 + 18  # the input is not modified
    with pytest.raises(InputError, match="no object"):
        correct.keep_component_at(m, (0, 28, 28))
    with pytest.raises(InputError, match="outside"):
        correct.keep_component_at(m, (7, 0, 0))
    with pytest.raises(InputError, match="outside"):
        correct.keep_component_at(m, (0, 0))


def test_open_and_close():
    m = np.zeros((30, 30), np.uint8)
    m[5:20, 5:20] = 1
    m[12, 20:28] = 1  # thin spur
    opened = correct.binary_open(m, 1)
    assert opened[12, 25] == 0 and opened[10, 10] == 1
    gap = m.copy()
    gap[10, 10] = 0
    assert correct.binary_close(gap, 1)[10, 10] == 1


def test_interpolation_recovers_a_sphere_from_every_fourth_slice():
    z, y, x = np.mgrid[:41, :41, :41]
    sphere = ((z - 20) ** 2 + (y - 20) ** 2 + (x - 20) ** 2 <= 15**2).astype(np.uint8)
    sparse = np.zeros_like(sphere)
    sparse[::4] = sphere[::4]
    out = correct.interpolate_slices(sparse)
    dice = 2 * np.sum((out == 1) & (sphere == 1)) / (np.sum(out == 1) + np.sum(sphere == 1))
    assert dice >= 0.95, dice


def test_slice_ranges_round_trip_and_errors():
    assert correct.parse_slice_ranges("3,5,10-12") == [3, 5, 10, 11, 12]
    assert correct.format_slice_ranges([12, 3, 10, 11, 5]) == "3,5,10-12"
    with pytest.raises(InputError):
        correct.parse_slice_ranges("4-2")
    with pytest.raises(InputError):
        correct.parse_slice_ranges("a")


def test_ignore_unreviewed_and_edit_stats():
    lab = np.ones((4, 3, 3), np.uint8)
    out = correct.ignore_unreviewed(lab, [1, 2], ignore_value=2)
    assert (out[0] == 2).all() and (out[1] == 1).all() and (out[3] == 2).all()
    pred = np.zeros((4, 4), np.uint8)
    pred[:2] = 1
    corr = np.zeros((4, 4), np.uint8)
    corr[1:3] = 1
    s = correct.edit_stats(pred, corr)
    assert s["per_class"]["1"] == {"added": 4, "removed": 4, "dice": 0.5}


def _sphere(shape=(41, 41, 41), centre=(20, 20, 20), r=15):
    z, y, x = np.mgrid[tuple(slice(0, s) for s in shape)]
    return (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= r * r


def _dice(a, b):
    return 2 * np.sum(a & b) / (np.sum(a) + np.sum(b))


def test_interpolation_per_class_and_along_another_axis():
    lab = np.zeros((41, 41, 70), np.uint8)
    one, two = _sphere((41, 41, 70), (20, 20, 17), 15), _sphere((41, 41, 70), (20, 20, 52), 15)
    lab[one], lab[two] = 1, 2
    sparse = np.zeros_like(lab)
    sparse[::4] = lab[::4]
    out = correct.interpolate_slices(sparse)
    assert _dice(out == 1, one) >= 0.95 and _dice(out == 2, two) >= 0.95
    only2 = correct.interpolate_slices(sparse, classes=[2])
    assert np.array_equal(only2 == 1, sparse == 1) and _dice(only2 == 2, two) >= 0.95
    # the same along the last axis (sagittal slices)
    sparse_x = np.zeros_like(lab)
    sparse_x[:, :, ::4] = lab[:, :, ::4]
    out_x = correct.interpolate_slices(sparse_x, axis=2)
    assert _dice(out_x == 1, one) >= 0.95 and out_x.flags.c_contiguous


def test_interpolation_keeps_annotated_slices_and_tapers_to_an_empty_one():
    sphere = _sphere()
    lab = np.zeros(sphere.shape, np.uint8)
    lab[20] = sphere[20]  # one annotated disc, slice 30 annotated as empty
    out = correct.interpolate_slices(lab, slices=[20, 30])
    assert out[30].sum() == 0 and np.array_equal(out[20], lab[20])
    areas = [int(out[z].sum()) for z in range(20, 31)]
    assert areas == sorted(areas, reverse=True) and areas[2] > 0 and areas[-2] == 0
    with pytest.raises(InputError, match="outside"):
        correct.interpolate_slices(lab, slices=[20, 41])
    with pytest.raises(InputError, match="3D"):
        correct.interpolate_slices(lab[0])


def test_interpolation_never_writes_reviewed_slices_and_counts_them_as_annotations():
    """A model's blobs on unreviewed slices 10 and 20, slices 12-18 reviewed and emptied by the clinician:
    interpolation writes none of them (before: it filled every one between the two blobs)."""
    sphere = _sphere()
    lab = np.zeros(sphere.shape, np.uint8)
    lab[10], lab[20] = sphere[20], sphere[20]
    out = correct.interpolate_slices(lab, reviewed=list(range(12, 19)))
    assert not out[11:20].any()  # 11 and 19 lie halfway to a reviewed empty slice: the taper ends there
    assert np.array_equal(out[10], lab[10]) and np.array_equal(out[20], lab[20])
    assert correct.interpolate_slices(lab)[15].sum() > 0  # without reviewed marks: filled, as before
    with pytest.raises(InputError, match="outside"):
        correct.interpolate_slices(lab, reviewed=[99])


def test_helpers_on_3d_and_do_not_modify_input():
    m = np.zeros((10, 20, 20), np.uint8)
    m[2:8, 4:16, 4:16] = 1
    m[4, 9:11, 9:11] = 0  # a hole in one slice
    m[0, 0, 0] = 1  # a speck
    copy = m.copy()
    filled = correct.fill_holes(m)
    assert filled[4, 10, 10] == 1 and filled.dtype == m.dtype
    cleaned = correct.remove_small_objects(m, 2)
    assert cleaned[0, 0, 0] == 0 and cleaned[5, 10, 10] == 1
    assert correct.keep_largest_component(m)[0, 0, 0] == 0
    assert np.array_equal(m, copy)
    with pytest.raises(InputError, match="radius"):
        correct.binary_open(m, 0)
    s = correct.edit_stats(m, filled)
    assert s["per_class"]["1"]["added"] == 4 and s["per_class"]["1"]["removed"] == 0
    assert s["changed_voxels"] == 4 and 0.99 < s["per_class"]["1"]["dice"] < 1
