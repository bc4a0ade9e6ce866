"""`attnseg demo --screenshot PNG --quit` under the virtual display: the viewer shows mask + attention."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.gui


def test_demo_screenshot_shows_mask_and_heatmap(tmp_path):
    from napari_attnseg.models.registry import bundled_models

    if not bundled_models():
        pytest.skip("no bundled model in resources/models")
    shot = tmp_path / "demo.png"
    env = {**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "xcb")}
    out = subprocess.run([sys.executable, "-m", "napari_attnseg", "demo", "--screenshot", str(shot), "--quit"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    m = re.search(r"^layers: (.*)$", out.stdout, re.M)
    assert m, out.stdout + out.stderr[-2000:]
    layers = m.group(1).split(", ")
    assert "nuclei" in layers and "nuclei mask" in layers and "nuclei probability (hidden)" in layers
    visible_maps = [n for n in layers if n.startswith("nuclei attention ") and not n.endswith("(hidden)")]
    assert len(visible_maps) == 1  # the finest level shown, the others hidden
    assert float(re.search(r"Dice against the reference labels: ([0-9.]+)", out.stdout).group(1)) > 0.8

    from skimage.io import imread

    rgb = imread(shot)[..., :3].astype(int)
    h, w = rgb.shape[:2]
    canvas = rgb[h // 4 : 3 * h // 4, w // 3 : 2 * w // 3]  # the middle of the canvas, between the docks
    r, g, b = canvas[..., 0], canvas[..., 1], canvas[..., 2]
    warm = (r > g + 40) & (r > b + 20)  # inferno heatmap over the nuclei / label colours: red-orange
    assert 0.02 < warm.mean() < 0.9, warm.mean()
    assert canvas.std() > 20  # an image, not a blank canvas


def test_demo_falls_back_to_a_model_that_fits_the_sample(make_napari_viewer):
    from napari_attnseg._napari.segment_widget import SegmentWidget
    from napari_attnseg.cli.demo import _fallback_model

    w = SegmentWidget(make_napari_viewer())
    if not w.model_names():
        pytest.skip("no bundled model in resources/models")
    name = _fallback_model(w, 2)
    assert name == "" or (w.model_combo.value == name and w._current_model().spatial_dims == 2)
