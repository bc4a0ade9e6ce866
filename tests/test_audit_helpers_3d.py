"""The Correct tab's helpers used by a clinician on thick-slice volumes (crops of the radiomics lung1 CT, 5 x 0.57 x
0.57 mm, and brain1 MRI, 6.5 x 0.78 x 0.78 mm): the defects that audit found, each test failing without its fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

DATA = Path("/work/shared/data/radiomics")


def _read(name: str):
    from napari_attnseg.data import read_image

    if not (DATA / name).exists():
        pytest.skip(f"{DATA / name} is not here")
    return read_image(DATA / name)


@pytest.fixture()
def brain():
    """brain1 cropped around its tumour (slices 11-17): image, tumour mask, spacing."""
    im, lb = _read("brain1_image.nii.gz"), _read("brain1_labels.nii.gz")
    box = (slice(None), slice(60, 180), slice(140, 230))
    return im.data[box].astype(np.float32), (lb.data[box] > 0).astype(np.uint8), tuple(float(s) for s in im.spacing)


@pytest.fixture()
def lung():
    """lung1 cropped around its tumour (slices 32-34): image, tumour mask, spacing."""
    im, lb = _read("lung1_image.nii.gz"), _read("lung1_labels.nii.gz")
    box = (slice(26, 41), slice(320, 400), slice(180, 260))
    return im.data[box].astype(np.float32), (lb.data[box] > 0).astype(np.uint8), tuple(float(s) for s in im.spacing)


def _panel(make_napari_viewer, image, mask, spacing, name="case"):
    from napari_attnseg._napari.correct_widget import CorrectWidget

    viewer = make_napari_viewer()
    viewer.add_image(image, name=name, scale=spacing)
    layer = viewer.add_labels(mask.copy(), name=f"{name} mask", scale=spacing)
    return viewer, CorrectWidget(viewer), layer


# -- core ------------------------------------------------------------------------------------------------------------
def test_interpolation_gaps_name_slices_whose_shapes_do_not_overlap(brain):
    """brain1's tumour lies 27 mm lower on slice 14 than on slice 11: drawn there alone, shape interpolation fills
    nothing between (it blends the shapes in place); interpolation_gaps names that pair, and not a pair it filled."""
    from napari_attnseg import correct

    _, tumour, _ = brain
    drawn = tumour.copy()
    drawn[12:14] = 0
    drawn[15:17] = 0  # 11 and 14 annotated (3 apart, shapes apart), 14 and 17 (3 apart, overlapping)
    out = correct.interpolate_slices(drawn)
    assert not (out[12:14] != drawn[12:14]).any() and (out[15:17] == 1).any()
    assert correct.interpolation_gaps(drawn, out) == [(1, 11, 14)]
    assert correct.interpolation_gaps(drawn, out, reviewed=[12]) == []  # (11 and 12 are then the neighbours)


# -- panel -----------------------------------------------------------------------------------------------------------
@pytest.mark.gui
def test_interpolation_with_current_slice_only_fills_the_slice_on_screen(make_napari_viewer, brain, notifications):
    """'Current slice only' is ticked and the slice on screen is 15 of the empty slices 15-16 between the annotated
    slices 14 and 17 (3 apart): interpolation filled both 15 and 16, unasked (the docs: it applies the helpers to the
    slice on screen and leaves the others untouched). Now slice 16 stays empty, and Ctrl+Z undoes slice 15's fill."""
    image, tumour, spacing = brain
    drawn = tumour.copy()
    drawn[15:17] = 0
    viewer, corr, layer = _panel(make_napari_viewer, image, drawn, spacing, "brain1")
    corr.slice_only.value = True
    viewer.dims.set_point(0, 15 * spacing[0])
    corr.interpolate()
    now = np.asarray(layer.data)
    assert now[15].any(), "slice 15 (on screen) was not filled"
    assert not now[16].any(), "'Current slice only' ticked, and slice 16 (off screen) was filled"
    assert np.array_equal(np.delete(now, 15, axis=0), np.delete(drawn, 15, axis=0))
    layer.undo()
    assert np.array_equal(layer.data, drawn)
    corr.slice_only.value = False  # the whole volume: both, as before
    corr.interpolate()
    assert np.asarray(layer.data)[15].any() and np.asarray(layer.data)[16].any()


@pytest.mark.gui
def test_interpolation_between_shapes_apart_says_so(make_napari_viewer, brain, notifications):
    """The tumour drawn on slices 11 and 14 of the MRI, 27 mm apart: interpolation changed nothing and said to
    'erase the object on the slices to fill' (they were empty). Now it names the slices and says why."""
    image, tumour, spacing = brain
    drawn = tumour.copy()
    drawn[12:14] = 0
    drawn[15:] = 0
    viewer, corr, layer = _panel(make_napari_viewer, image, drawn, spacing, "brain1")
    corr.interpolate()
    assert np.array_equal(layer.data, drawn)
    text = " ".join(str(n.message) for n in notifications)
    assert "between slices 11 and 14" in text and "do not overlap" in text
    assert "erase the object" not in text


@pytest.mark.gui
def test_the_panel_says_the_units_of_size_and_radius(make_napari_viewer, lung):
    """'Remove objects <' [20] and 'radius' [1] said no unit (now 'Remove <' [20] 'voxels'), and the radius's tooltip said voxels while it is in
    pixels of the finest axis (the ball round in mm). The boxes are now followed by 'voxels' and 'px', and the tooltips give the
    lung CT's numbers: 20 voxels = 32.5 mm³, radius 2 = 1.14 mm reaching 0 slices of 5 mm."""
    image, tumour, spacing = lung
    viewer, corr, layer = _panel(make_napari_viewer, image, tumour, spacing, "lung1")
    assert corr.size_unit.value == "voxels" and corr.size_unit.parent is corr.size_spin.parent
    assert corr.radius_unit.value == "px" and corr.radius_unit.parent is corr.radius_spin.parent
    corr.radius_spin.value = 2
    assert "finest axis" in corr.radius_spin.tooltip and "voxels" not in corr.radius_spin.tooltip
    assert "1.14" in corr.radius_spin.tooltip and "reaching 0 slices" in corr.radius_spin.tooltip
    assert "32.5" in corr.size_spin.tooltip


@pytest.mark.gui
def test_k_on_an_object_alone_of_its_value_says_why_nothing_changed(make_napari_viewer, notifications):
    """K on a nucleus of an instance mask (a value per nucleus) changed nothing and said only 'nothing changed.'. It
    now says that K removes the other objects of the same value, and what to do in an instance mask."""
    from napari_attnseg._napari.correct_widget import CorrectWidget

    mask = np.zeros((64, 64), np.uint16)
    mask[5:15, 5:15], mask[30:40, 30:40], mask[50:60, 5:15] = 1, 2, 3
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros(mask.shape, np.float32), name="cells")
    layer = viewer.add_labels(mask.copy(), name="cells mask")
    CorrectWidget(viewer).keep_at_cursor(position=(35, 35))
    assert np.array_equal(layer.data, mask)
    text = " ".join(str(n.message) for n in notifications)
    assert "nothing changed" in text and "label value (2)" in text and "instance mask" in text


def test_a_huge_typed_slice_range_is_refused_at_once():
    """'0-99999999999' typed in the review ranges built a list of 10^11 slices before the volume's range was
    checked: napari hung."""
    from napari_attnseg.correct import parse_slice_ranges
    from napari_attnseg.errors import InputError

    with pytest.raises(InputError, match="no volume has that many"):
        parse_slice_ranges("0-99999999999")
    assert parse_slice_ranges("3,5,10-12") == [3, 5, 10, 11, 12]
