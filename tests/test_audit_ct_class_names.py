"""A chest CT segmented with the Segment tab's preset (nuclei-2d, a microscopy model): the Correct tab's class names
default to the model's, so a corrected lung tumour was exported as 'nucleus' without a word. The run's warning that
the model was not trained on CT now travels with the mask, and Export says the names are the model's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gui

LUNG = Path(__file__).resolve().parents[2] / "shared" / "data" / "radiomics" / "lung1_image.nii.gz"


@pytest.mark.skipif(not LUNG.exists(), reason="../shared/data not here")
def test_a_ct_tumour_under_the_microscopy_models_names_is_said_at_export(dock, qtbot, monkeypatch):
    from napari_attnseg._napari import correct_export
    from napari_attnseg.data import read_image

    viewer, panel = dock
    ct = np.asarray(read_image(LUNG).data)[31:35, 160:288, 160:288]
    viewer.add_image(ct, name="chest")
    seg, corr = panel.segment, panel.correct
    assert seg.model_combo.value == "nuclei-2d"
    with qtbot.waitSignal(seg.run_done, timeout=120000):
        seg.run_button.native.click()
    qtbot.wait(200)
    mask = viewer.layers["chest mask"]
    assert any("CT" in w for w in mask.metadata["attnseg"]["warnings"])
    data = np.zeros_like(np.asarray(mask.data))
    data[1, 40:60, 40:60] = 1  # the clinician's tumour on slice 1
    mask.data = data
    mask.metadata["reviewed_slices"] = [1]
    said = []
    monkeypatch.setattr(correct_export, "notify_warning", said.append)
    assert corr.class_names(mask) == ["background", "nucleus"]
    assert any("nuclei-2d" in m and "'nucleus'" in m and "background, tumour" in m for m in said), said
    said.clear()
    corr.class_names_edit.value = "background, tumour"  # typed: nothing to say
    assert corr.class_names(mask) == ["background", "tumour"] and not said
