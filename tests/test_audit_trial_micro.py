"""A microscopist's files that differ from ours (audit 2026-12-06, a trial on re-stored real data): a saturated stripe,
an OME-TIFF whose nuclei are its second channel, a mask of instance ids exported from napari, and `attnseg evaluate`
on nuclei of another size. Each test failed before its fix."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

NUC = Path(__file__).resolve().parents[2] / "shared" / "data" / "nuclei2d"
pytestmark = pytest.mark.skipif(not (NUC / "image.tif").exists(), reason="shared nuclei data not present")


def test_a_saturated_stripe_does_not_erase_every_other_nucleus():
    """More than 1 % of the image at 65535 (a saturated stripe, a stitched tile): the 99th percentile became the
    maximum and nuclei-2d found no nucleus anywhere, silently (Dice outside the stripe 0.947 -> 0.0)."""
    import napari_attnseg as ag

    im, ref = tifffile.imread(NUC / "image.tif")[:, :256], tifffile.imread(NUC / "labels.tif")[:, :256] > 0
    im[200:206] = 65535  # 6 rows: 1.2 % of the image saturated
    keep = np.ones(512, bool)
    keep[200:206] = False
    pred = ag.predict(ag.load_model("nuclei-2d", device="cpu"), im, device="cpu", precision="fp32")
    found = pred.labels[keep] > 0
    dice = 2 * (found & ref[keep]).sum() / (found.sum() + ref[keep].sum())
    assert dice > 0.85, dice
    assert any("saturated" in w for w in pred.warnings), pred.warnings


def test_an_8_bit_image_with_saturated_nuclei_is_scaled_as_before():
    from napari_attnseg.inference.normalize import compute_stats

    im = np.clip(tifffile.imread(NUC / "image.tif").astype(float) * 3, 0, 255).astype(np.uint8)  # 3.6 % at 255
    stats = compute_stats(im, {"scheme": "percentile", "lower": 1, "upper": 99}, False)
    lo, hi = np.percentile(im, [1, 99])
    assert float(stats["scale"][0]) == hi - lo and not stats.get("saturated")


def _ome(tmp_path, n=192):
    im = tifffile.imread(NUC / "image.tif")[:n, :n]
    actin = (np.random.default_rng(0).random((3, n, n)) * 30).astype(np.uint16)
    p = tmp_path / "cells.ome.tif"
    tifffile.imwrite(p, np.stack([actin, np.stack([im] * 3)]), ome=True,
                     metadata={"axes": "CZYX", "PhysicalSizeX": 0.5, "PhysicalSizeXUnit": "µm", "PhysicalSizeY": 0.5,
                               "PhysicalSizeYUnit": "µm", "PhysicalSizeZ": 2.0, "Channel": {"Name": ["actin", "DAPI"]}})
    return p


@pytest.mark.gui
def test_the_segment_tab_says_before_the_run_when_a_nuclei_model_gets_a_non_nuclear_channel(opened, tmp_path):
    """An OME-TIFF with actin as channel 0 and DAPI as channel 1: the Segment tab chose 'cells [actin]' and nuclei-2d
    ran on it with no word about the channel (its status then advised 'Estimate the size and run' for '3 px' objects)."""
    from napari_attnseg._napari import segment_widget as sw

    actin, dapi = opened(_ome(tmp_path))
    w = sw.SegmentWidget(opened.viewer)
    assert w.image_combo.value == actin.name and w.model_combo.value == "nuclei-2d"
    assert "'actin' channel of cells.ome.tif" in w.model_info.value, w.model_info.value
    w.image_combo.value = dapi.name
    assert "channel of" not in w.model_info.value, w.model_info.value


@pytest.mark.gui
def test_instance_ids_export_from_napari_as_one_class(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    """A mask of instance ids (one value per nucleus, as Cellpose or StarDist write) was refused naming
    'attnseg export --foreground' / '--label-names', options the Correct tab does not have."""
    from napari_attnseg._napari import _common
    from napari_attnseg._napari import correct_widget as cw

    errors = []
    monkeypatch.setattr(cw, "notify_error", errors.append)
    monkeypatch.setattr(_common, "show_error", errors.append)
    viewer = make_napari_viewer()
    viewer.add_image(tifffile.imread(NUC / "image.tif")[:128, :128], name="image")
    ids = tifffile.imread(NUC / "labels.tif")[:128, :128]
    viewer.add_labels(ids, name="labels")
    corr = cw.CorrectWidget(viewer)
    corr.dataset_edit.value = str(tmp_path / "ds")
    corr.format_combo.value = "tiff"
    corr.class_names_edit.value = "background, nucleus"
    corr.foreground_box.value = True
    worker = corr.export()
    assert worker is not None, errors
    qtbot.waitUntil(lambda: (tmp_path / "ds" / "manifest.json").exists() or bool(errors), timeout=30000)
    assert not errors, errors
    case = json.loads((tmp_path / "ds" / "manifest.json").read_text())["cases"][0]
    out = tifffile.imread(tmp_path / "ds" / case["files"]["label"])
    np.testing.assert_array_equal(out, (ids > 0).astype(out.dtype))
    assert case["label_names"] == ["background", "nucleus"]


def test_evaluate_takes_the_diameter_predict_takes(tmp_path, capsys):
    """On nuclei twice nuclei-2d's size evaluate warned 'Give their size: --diameter auto' yet had no --diameter."""
    from napari_attnseg.cli import main

    im = ndi.zoom(tifffile.imread(NUC / "image.tif")[:160, :160].astype(np.float32), 2, order=1).astype(np.uint16)
    ref = ndi.zoom(tifffile.imread(NUC / "labels.tif")[:160, :160], 2, order=0)
    tifffile.imwrite(tmp_path / "big.tif", im)
    tifffile.imwrite(tmp_path / "big_labels.tif", ref)
    args = ["evaluate", "--model", "nuclei-2d", "--image", str(tmp_path / "big.tif"), "--labels",
            str(tmp_path / "big_labels.tif"), "--precision", "fp32", "--json"]
    assert main(args) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main([*args, "--diameter", "50"]) == 0
    sized = json.loads(capsys.readouterr().out)
    assert sized["dice"] != plain["dice"] and not any("typically" in w for w in sized["warnings"]), sized
