"""The Segment panel keeps the user's choices as layers come, go and are renamed, and a re-run after
"No, keep my edits" goes to the new mask, in the tabbed dock of a real viewer with the bundled nuclei-2d."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def _cells(size: int = 48) -> np.ndarray:
    img = np.zeros((size, size), np.float32)
    img[8:20, 8:20] = 1.0
    img[28:40, 26:38] = 1.0
    return img


def _run(qtbot, seg) -> None:
    with qtbot.waitSignal(seg.run_done, timeout=120000) as done:
        seg.run_button.native.click()
    assert done.args == [True], seg.status.value


def _messages(seen) -> list[str]:
    return [str(n.message) for n in seen]


def test_image_list_follows_a_rename(dock, qtbot, notifications):
    viewer, d = dock
    seg = d.segment
    img = viewer.add_image(_cells(), name="cells")
    viewer.add_image(_cells(), name="other")
    seg.image_combo.value = "cells"
    seg.model_combo.value = "nuclei-2d"

    img.name = "patient 7 CT"
    assert "patient 7 CT" in seg.image_combo.choices and "cells" not in seg.image_combo.choices
    assert seg.image_combo.value == "patient 7 CT"  # the selection stays on the renamed layer
    viewer.layers["other"].name = "other scan"  # renaming another layer leaves the selection alone
    assert seg.image_combo.value == "patient 7 CT" and "other scan" in seg.image_combo.choices

    _run(qtbot, seg)
    assert "patient 7 CT mask" in viewer.layers
    assert not any("No image layer" in m for m in _messages(notifications)), _messages(notifications)


def test_rerun_after_keeping_edits_updates_the_new_mask(dock, qtbot, notifications):
    viewer, d = dock
    seg, corr = d.segment, d.correct
    viewer.add_image(_cells(), name="cells")
    seg.model_combo.value = "nuclei-2d"
    asked, answers = [], []
    seg.confirm_overwrite = lambda name: asked.append(name) or (answers.pop(0) if answers else False)
    _run(qtbot, seg)
    edited = viewer.layers["cells mask"]
    edited.data_setitem((np.array([0]), np.array([0])), np.array([7], np.uint8))

    answers.append(False)  # "No, keep my edits"
    _run(qtbot, seg)
    assert asked == ["cells mask"] and not edited.visible and edited.data[0, 0] == 7
    second = viewer.layers["cells mask (2)"]

    _run(qtbot, seg)  # nothing touched: "(2)" is updated in place, nothing asked
    assert asked == ["cells mask"]
    assert "cells mask (3)" not in viewer.layers and viewer.layers["cells mask (2)"] is second
    assert edited.data[0, 0] == 7 and not edited.visible and second.visible
    assert corr.labels_combo.value == "cells mask (2)"

    second.data_setitem((np.array([0]), np.array([0])), np.array([7], np.uint8))
    answers.append(False)  # "(2)" edited: asked about "(2)", not the older mask; No -> "(3)"
    _run(qtbot, seg)
    assert asked == ["cells mask", "cells mask (2)"]
    assert second.data[0, 0] == 7 and not second.visible
    third = viewer.layers["cells mask (3)"]
    assert corr.labels_combo.value == "cells mask (3)"

    third.data_setitem((np.array([0]), np.array([0])), np.array([7], np.uint8))
    answers.append(True)  # Yes: "(3)" replaced in place, asked once
    _run(qtbot, seg)
    assert asked == ["cells mask", "cells mask (2)", "cells mask (3)"]
    assert viewer.layers["cells mask (3)"] is third and third.data[0, 0] != 7
    assert "cells mask (4)" not in viewer.layers
    assert edited.data[0, 0] == 7 and second.data[0, 0] == 7
    assert not [n for n in notifications if getattr(n, "exception", None) is not None], _messages(notifications)


def test_mode_the_user_chose_survives_other_layers(dock, qtbot):
    viewer, d = dock
    seg = d.segment
    viewer.add_image(np.random.default_rng(0).random((3, 32, 32)).astype(np.float32), name="stack")
    seg.model_combo.value = "nuclei-2d"
    assert seg.mode_combo.value == "slices"  # preset from the layer and the model
    seg.mode_combo.value = "2d"
    viewer.add_points(np.empty((0, 3)), name="notes")
    assert seg.mode_combo.value == "2d"
    viewer.layers.remove("notes")
    viewer.layers["stack"].name = "stack 1"
    assert seg.mode_combo.value == "2d"

    # a run's own result layers leave it too
    viewer.add_image(_cells(), name="cells")
    seg.image_combo.value = "cells"
    assert seg.mode_combo.value == "2d"  # another image: preset again
    seg.mode_combo.value = "auto"
    _run(qtbot, seg)
    assert "cells mask" in viewer.layers and seg.mode_combo.value == "auto"

    # choosing another image or model presets it again
    seg.image_combo.value = "stack 1"
    assert seg.mode_combo.value == "slices"
    seg.mode_combo.value = "auto"
    seg.model_combo.value = "brain-mri-3d"
    assert seg.mode_combo.value == "3d"


def test_advanced_settings_choose_the_precision_and_brain_extraction(dock, qtbot):
    """Precision and brain extraction are in the panel's Advanced settings (the CLI has both): fp32 gives an
    fp32 run, recorded in the mask's metadata; the brain-extraction choice reaches the engine."""
    viewer, d = dock
    seg = d.segment
    viewer.add_image(_cells(), name="cells")
    seg.image_combo.value = "cells"
    seg.model_combo.value = "nuclei-2d"
    seg.precision_combo.value = "fp32"
    _run(qtbot, seg)
    assert viewer.layers["cells mask"].metadata["attnseg"]["precision"] == "fp32"
    vol = viewer.add_image(np.repeat(_cells(32)[None], 24, 0) * 100, name="head", scale=(2.0, 2.0, 2.0))
    seg.image_combo.value = vol.name
    seg.model_combo.value = "brain-mri-3d"
    seg.brain_combo.value = "on"
    _run(qtbot, seg)
    assert "brain_extraction" in viewer.layers["head mask"].metadata["attnseg"]["params"]
    seg.brain_combo.value = "off"
    _run(qtbot, seg)
    assert "brain_extraction" not in viewer.layers["head mask"].metadata["attnseg"]["params"]
