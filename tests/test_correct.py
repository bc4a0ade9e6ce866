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
