"""A clinician's trial of the heatmaps: a rerun after renaming the image, and the clicks under the prompt attention."""

import numpy as np
import pytest

from napari_attnseg._paths import samples_dir
from napari_attnseg.data import read_image
from napari_attnseg.models.registry import bundled_models


def _run(w, qtbot) -> None:
    with qtbot.waitSignal(w.run_done, timeout=120000):
        w.run()
    qtbot.waitUntil(lambda: not w._showing, timeout=60000)


def test_a_rerun_after_renaming_the_image_leaves_one_set_of_heatmaps_on_it(segment_panel, qtbot):
    """A clinician renames 'nuc' to 'patient 7' and runs again: the first run's heatmaps stayed, visible and named
    after the former name, under the new run's, so two heatmaps of one image were composited (alpha 0.8 * v twice: a
    value 0.5 read as 0.64 opacity, 0.9 as 0.95), and the first mask stayed shown under the new one. The old
    heatmaps go; the old mask (it may hold corrections) is kept, hidden."""
    if "nuclei-2d" not in bundled_models():
        pytest.skip("no bundled nuclei-2d")
    viewer, w = segment_panel
    image = viewer.add_image(read_image(samples_dir() / "nuclei2d_image.tif").data[:64, :64], name="nuc",
                             scale=(0.65, 0.65))
    w.image_combo.value = "nuc"
    w.model_combo.value = "nuclei-2d"
    w.attention_box.value = True
    _run(w, qtbot)
    image.name = "patient 7"
    w.image_combo.value = "patient 7"
    _run(w, qtbot)
    names = [ly.name for ly in viewer.layers]
    assert [n for n in names if "attention" in n and viewer.layers[n].visible] == ["patient 7 attention level2"], names
    assert not any(n.startswith("nuc attention") for n in names), names
    assert not viewer.layers["nuc mask"].visible and viewer.layers["patient 7 mask"].visible


def test_the_clicks_stay_drawn_above_the_prompt_attention(nuclei_click_panel, qtbot):
    """Click to fix: '<image> prompt attention' was added above '<image> prompts', so the click marker, where the
    modulated attention peaks (1.0 at the click on the nuclei crop), was drawn under 0.8 opacity of its brightest
    colour."""
    viewer, corr, _mask, ref = nuclei_click_panel
    pm = corr.prompt
    label = int(np.bincount(ref.ravel())[1:].argmax()) + 1
    pm.click(tuple(np.argwhere(ref == label).mean(0)))
    qtbot.waitUntil(lambda: not pm.busy and not pm.pending, timeout=60000)
    names = [ly.name for ly in viewer.layers]
    assert names.index("cells prompts") > names.index("cells prompt attention"), names
    assert viewer.layers.selection.active is viewer.layers["cells prompts"]  # (still the layer that takes the clicks)
