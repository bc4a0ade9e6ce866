"""A microscopist's ImageJ z-stack opened with napari's own TIFF reader, segmented slice by slice."""

from __future__ import annotations

import numpy as np
import tifffile


def test_segment_tab_says_when_napari_dropped_the_tiff_z_spacing(segment_panel, tmp_path):
    """napari's TIFF reader opens an ImageJ hyperstack (2 um planes, 0.5 um pixels) at scale 1: the results,
    heatmaps and export were in pixels without a word. The Segment tab now says so, with the line to apply it."""
    viewer, w = segment_panel
    path = tmp_path / "zstack.tif"
    tifffile.imwrite(path, np.zeros((4, 32, 32), np.uint16), imagej=True, resolution=(2.0, 2.0),
                     metadata={"spacing": 2.0, "unit": "um", "axes": "ZYX"})
    layer = viewer.open(str(path), plugin="napari")[0]
    w.refresh_layers(prefer=layer.name)
    w._describe_fit(w._current_model(quiet=True))
    assert tuple(layer.scale) == (1, 1, 1)
    text = w.model_info.value
    assert "zstack.tif records a pixel spacing of 2 x 0.5 x 0.5 micron" in text
    assert "viewer.layers['zstack'].scale = (2.0, 0.5, 0.5)" in text
    layer.scale = (2.0, 0.5, 0.5)  # applied: the note goes
    w._describe_fit(w._current_model(quiet=True))
    assert "records a pixel spacing" not in w.model_info.value
    plain = tmp_path / "plain.tif"  # a TIFF without calibration: nothing to say
    tifffile.imwrite(plain, np.zeros((4, 32, 32), np.uint16), photometric="minisblack")
    other = viewer.open(str(plain), plugin="napari")[0]
    w.refresh_layers(prefer=other.name)
    w._describe_fit(w._current_model(quiet=True))
    assert "records a pixel spacing" not in w.model_info.value


def test_k_on_a_plane_says_what_it_removed_on_the_planes_off_screen(dock, notifications):
    """K on plane 7 of a nuclei z-stack segmented slice by slice follows the nucleus through the planes and
    removed every other nucleus on the 19 other planes, unseen and unsaid. It now says which planes lost what."""
    viewer, panel = dock
    corr = panel.correct
    labels = np.zeros((20, 40, 40), np.uint8)
    labels[:, 5:12, 5:12] = 1  # the nucleus kept: through every plane
    labels[:, 25:32, 25:32] = 1  # another one, on every plane
    viewer.add_image(np.zeros(labels.shape, np.float32), name="zstack", scale=(2, 0.5, 0.5))
    mask = viewer.add_labels(labels.copy(), name="zstack mask", scale=(2, 0.5, 0.5))
    corr.refresh(prefer=mask.name)
    corr.labels_combo.value = mask.name
    viewer.dims.set_point(0, 7 * 2.0)
    corr.keep_at_cursor(position=mask.data_to_world((7, 8, 8)))
    assert not np.asarray(mask.data)[:, 25:32, 25:32].any()  # (K's behaviour: every other object goes)
    text = " ".join(str(n.message) for n in notifications)
    assert "also removed 931 voxels of other objects on the slices 0-6,8-19 (not on screen)" in text
    assert "Ctrl+Z undoes it" in text


def test_the_spacing_note_gives_no_length_unit_to_a_time_axis(segment_panel, tmp_path):
    viewer, w = segment_panel
    path = tmp_path / "timelapse.tif"
    tifffile.imwrite(path, np.zeros((4, 32, 32), np.uint16), imagej=True, resolution=(2.0, 2.0),
                     metadata={"unit": "um", "axes": "TYX", "finterval": 60})
    layer = viewer.open(str(path), plugin="napari")[0]
    w.refresh_layers(prefer=layer.name)
    w._describe_fit(w._current_model(quiet=True))
    assert "viewer.layers['timelapse'].scale = (1.0, 0.5, 0.5), then" in w.model_info.value
