"""Review of the day's napari changes (h_review8, 2026-12-06): clicks waiting for a big slide's grey, the 'One class'
export box, the other-stain hint, an inserted DICOM slice after its series moved, and the demo's X display probe.
Each test failed before its fix (the actin hint is the control)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import test_audit_clickgrey as clickgrey
import tifffile

SLIDE, _panel = clickgrey.SLIDE, clickgrey._panel
big_slide = clickgrey.big_slide  # (a fixture)
NUC = Path(__file__).resolve().parents[2] / "shared" / "data" / "nuclei2d" / "image.tif"


@pytest.mark.gui
def test_undo_while_clicks_wait_for_the_grey(make_napari_viewer, qtbot, big_slide, monkeypatch):
    """Undo last click while the click waited for the slide's grey said "No click to undo." and the click ran."""
    picture, (first, _) = big_slide
    viewer, corr, _ = _panel(make_napari_viewer, picture, monkeypatch)
    pm = corr.prompt
    pm.enable_box.value = True
    assert pm.click(first) is None
    pm.undo_button.native.click()
    assert "No click to undo" not in pm.status.value, pm.status.value
    qtbot.waitUntil(lambda: pm._grey_job is None, timeout=120000)
    qtbot.waitUntil(lambda: not pm.busy, timeout=60000)
    qtbot.wait(200)
    assert not pm.clicks and not (viewer.layers[f"{SLIDE} mask"].data > 0).any()


@pytest.mark.gui
def test_new_object_while_clicks_wait_for_the_grey(make_napari_viewer, qtbot, big_slide, monkeypatch):
    """New object between two waiting clicks on two nuclei was ignored: they ran as one object."""
    picture, (first, second) = big_slide
    viewer, corr, _ = _panel(make_napari_viewer, picture, monkeypatch)
    pm = corr.prompt
    pm.enable_box.value = True
    pm.click(first)
    pm.new_button.native.click()
    pm.click(second)
    qtbot.waitUntil(lambda: pm._grey_job is None, timeout=120000)
    found = {}

    def done():
        mask = viewer.layers[f"{SLIDE} mask"] if f"{SLIDE} mask" in viewer.layers else None
        found["mask"] = mask
        return mask is not None and not pm.busy and all(mask.data[tuple(int(round(c)) for c in p)] for p in (first, second))

    qtbot.waitUntil(done, timeout=60000)
    a, b = (int(found["mask"].data[tuple(int(round(c)) for c in p)]) for p in (first, second))
    assert a and b and len(pm.clicks) == 1, (a, b, len(pm.clicks))


@pytest.mark.gui
def test_one_class_box_refuses_a_mask_named_with_several_classes(make_napari_viewer, notifications):
    """The box stays ticked when another mask is chosen: a nucleus + cytoplasm mask was exported as one class."""
    from napari_attnseg._napari.correct_widget import CorrectWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64), np.float32), name="tissue")
    m = np.zeros((64, 64), np.uint8)
    m[10:20, 10:20], m[30:40, 30:40] = 1, 2
    lay = viewer.add_labels(m, name="tissue mask")
    corr = CorrectWidget(viewer)
    corr.class_names_edit.value = "background, nucleus, cytoplasm"
    corr.foreground_box.value = True
    with pytest.raises(ValueError, match="One class"):
        corr.class_names(lay)


def _ome_channels(tmp_path, names) -> Path:
    if not NUC.exists():
        pytest.skip(f"{NUC} is not here")
    g = tifffile.imread(NUC)[:128, :128]
    p = tmp_path / "cells.ome.tif"
    tifffile.imwrite(p, np.stack([g, g[::-1]]), ome=True, metadata={"axes": "CYX", "Channel": {"Name": names}})
    return p


@pytest.mark.gui
@pytest.mark.parametrize("names", [["Hoechst33342", "actin"], ["SiR-DNA", "actin"], ["Channel:0:0", "Channel:0:1"],
                                   ["DAPI-T1", "GFP-T2"], ["actin", "DAPI"]])
def test_the_other_stain_hint_only_for_a_named_non_nuclear_channel(segment_panel, tmp_path, names):
    """Hoechst33342, SiR-DNA, DAPI-T1 and Bio-Formats' unnamed 'Channel:0:0' were told to pick another channel."""
    from napari_attnseg.data.tiff import tiff_layers

    viewer, w = segment_panel
    for data, kw, _ in tiff_layers(_ome_channels(tmp_path, names), "cells"):
        viewer.add_image(data, **kw)
    w.image_combo.value = f"cells [{names[0]}]"
    w.model_combo.value = "nuclei-2d"
    hinted = "segments nuclei: if they are in another channel" in w.model_info.value
    assert hinted == (names[0] == "actin"), w.model_info.value


@pytest.mark.gui
def test_an_inserted_slice_goes_out_as_ignore_after_the_series_folder_moved(dock, qtbot, tmp_path):
    """The reader's inserted slices were not kept on the layer: once the series folder moved, the export could not
    re-read them and listed slice 3 (no image) as reviewed. A mark still on it now goes out as 'ignore'."""
    import json

    from test_audit_trial_gap import gap_mask_marked

    corr = gap_mask_marked(dock, tmp_path, move=True)
    corr.viewer.layers["ct mask"].metadata["reviewed_slices"] = list(range(6))  # (a mask saved with that mark)
    assert corr.export() is not None
    qtbot.waitUntil(lambda: corr.export_button.enabled and (tmp_path / "ds" / "manifest.json").is_file(),
                    timeout=60000)
    assert json.loads((tmp_path / "ds" / "manifest.json").read_text())["cases"][0]["reviewed_slices"] == [0, 1, 2, 4, 5]


def test_the_demo_probe_takes_an_x_server_on_tcp_only():
    """An X server listening only on TCP (Qt's libxcb tries localhost after the socket) was called gone."""
    from napari_attnseg.cli.demo import x_display_gone

    if not shutil.which("Xvfb"):
        pytest.skip("no Xvfb")
    n = next(n for n in range(4350, 4390) if not os.path.exists(f"/tmp/.X11-unix/X{n}"))
    proc = subprocess.Popen(["Xvfb", f":{n}", "-listen", "tcp", "-nolisten", "unix", "-nolisten", "local"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            try:
                socket.create_connection(("localhost", 6000 + n), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        assert x_display_gone(f":{n}") == ""
    finally:
        proc.terminate()
        proc.wait(10)
