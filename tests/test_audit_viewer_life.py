"""napari users who set a layer's geometry by hand and close and reopen the plugin's dock (audit): a layer flipped
with a negative scale could not be exported ("Export failed: error: argument out of range"), clicked ("spacing values
must be positive") or run with a model that resamples (the same refusal); a dock closed with its ✕ stayed connected
to the viewer, and after a reopen its deleted widgets raised in the event loop."""

from __future__ import annotations

import numpy as np
import pytest
from test_napari_prompt_events import _press_release

pytestmark = pytest.mark.gui


def _nuclei(size: int = 192) -> np.ndarray:
    from napari_attnseg._paths import samples_dir
    from napari_attnseg.data import read_image

    return read_image(samples_dir() / "nuclei2d_image.tif").data[:size, :size]


def test_a_flipped_layer_is_exported_with_its_voxel_size(dock, qtbot, tmp_path, notifications):
    """``layer.scale = (0.5, -0.5)`` flips the view only; the export failed with a struct error and wrote nothing."""
    from napari_attnseg.data import read_image

    viewer, d = dock
    image = viewer.add_image(_nuclei(64), name="cells", scale=(0.5, -0.5))
    mask = viewer.add_labels((image.data > image.data.mean()).astype(np.uint8), name="cells mask", scale=(0.5, -0.5))
    c = d.correct
    c.labels_combo.value, c.image_combo.value = mask.name, image.name
    c.dataset_edit.value, c.format_combo.value = str(tmp_path / "ds"), "tiff"
    c.mark_current()
    worker = c.export()
    assert worker is not None
    with qtbot.waitSignal(worker.finished, timeout=60000):
        pass
    messages = [str(n.message) for n in notifications]
    assert not any("Export failed" in m or " failed: " in m for m in messages), messages
    for kind in ("images", "labels"):
        assert read_image(tmp_path / "ds" / kind / "case_0000.tif").spacing == (0.5, 0.5)


def test_a_click_on_a_flipped_image_lands_on_the_object(nuclei_click_panel, qtbot):
    """The click model's spacing was the layer's scale, sign included: every click on a flipped image failed."""
    from scipy import ndimage as ndi

    viewer, corr, mask, ref = nuclei_click_panel
    image = viewer.layers["cells"]
    for layer in (image, mask, corr.prompt.points_layer):
        layer.scale = (0.5, -0.5)
    target = [i for i in np.unique(ref[30:-30, 30:-30]) if i][0]
    viewer.layers.selection.active = corr.prompt.points_layer
    _press_release(viewer, tuple(image.data_to_world(ndi.center_of_mass(ref == target))))
    qtbot.waitUntil(lambda: not corr.prompt.busy and not corr.prompt.pending, timeout=60000)
    assert "voxels changed" in corr.prompt.status.value, corr.prompt.status.value
    got, want = mask.data > 0, ref == target
    assert (got & want).sum() / (got | want).sum() > 0.6


def test_a_flipped_volume_runs_with_a_model_that_resamples(segment_panel, qtbot, tmp_path):
    """A model whose card has a spacing (resampled to it, as brain-mri-3d) on a volume flipped along z: refused with
    "spacing values must be positive and finite"."""
    import torch

    from napari_attnseg import create_model, save_model
    from napari_attnseg.checkpoint import ModelCard

    viewer, w = segment_panel
    torch.manual_seed(0)
    path = tmp_path / "spaced-3d.safetensors"
    save_model(create_model("attention_unet", spatial_dims=3, features=(4, 8, 16, 32, 64)), path,
               ModelCard(arch="", config={}, name="spaced-3d", description="test model", tile=[16, 32, 32],
                         spacing=[2.0, 1.0, 1.0]))
    viewer.add_image(np.random.default_rng(0).random((8, 32, 32)).astype(np.float32), name="vol",
                     scale=(-2.0, 1.0, 1.0))
    w.add_model(path)
    with qtbot.waitSignal(w.run_done, timeout=60000) as done:
        w.run()
    assert done.args == [True], (w.status.value, w.messages)
    assert viewer.layers["vol mask"].scale[0] == -2.0


def test_a_closed_dock_no_longer_reacts_after_a_reopen(make_napari_viewer, qtbot, tiny_checkpoint):
    """Close the dock (its ✕), reopen it from the Plugins menu (a new panel), run, edit and mark, and run again
    keeping the edited mask: the closed dock's Correct panel still took the new mask, and its deleted widgets
    raised "wrapped C/C++ object of type QComboBox has been deleted" in the event loop."""
    viewer = make_napari_viewer()
    _, first = viewer.window.add_plugin_dock_widget("napari-attnseg", "Attention segmentation")
    viewer.window.remove_dock_widget(first)
    _, dock = viewer.window.add_plugin_dock_widget("napari-attnseg", "Attention segmentation")
    assert dock is not first
    old = [first, *first.panels(), first.correct.prompt]

    def owners(emitter) -> list:
        found = [cb[0]() if isinstance(cb, tuple) else getattr(cb, "__self__", None) for cb in emitter.callbacks]
        return [o for o in found if any(o is p for p in old)]

    assert owners(viewer.layers.events.inserted) == [] and owners(viewer.layers.events.removed) == []
    viewer.add_image(np.random.default_rng(3).random((10, 32, 32)).astype(np.float32), name="vol", scale=(4.0, 1, 1))
    dock.segment.add_model(tiny_checkpoint(2))
    with qtbot.waitSignal(dock.segment.run_done, timeout=60000):
        dock.segment.run_button.native.click()
    qtbot.wait(200)
    mask = viewer.layers["vol mask"]
    assert owners(mask.events.paint) == [] and owners(mask.events.name) == []
    data = mask.data.copy()
    data[3, 5:15, 5:15] = 1
    mask.data = data
    dock.correct.labels_combo.value = "vol mask"
    dock.correct.mark_slices([3, 4])
    dock.segment.confirm_overwrite = lambda name: False
    with qtbot.waitSignal(dock.segment.run_done, timeout=60000):
        dock.segment.run_button.native.click()
    qtbot.wait(300)
    kept = viewer.layers["vol mask (2)"]
    assert kept.metadata.get("reviewed_slices") == [3, 4]
    assert dock.correct.labels_combo.value == "vol mask (2)"


def test_a_scale_typed_on_a_nifti_layer_is_said_at_export(dock, qtbot, tmp_path, notifications):
    """A NIfTI opened with the plugin, then ``layer.scale`` typed in napari: the export wrote the file's voxel size and
    position (its header), unsaid, while the Segment run had used the typed scale."""
    from pathlib import Path

    import nibabel as nib

    from napari_attnseg.data import read_image

    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((24, 20, 6)).astype(np.float32),
                             np.diag([0.8, 0.8, 6.5, 1.0])), str(path))
    viewer, d = dock
    image = viewer.open(str(path), plugin="napari-attnseg")[0]
    image.scale = (3.0, 0.8, 0.8)
    mask = viewer.add_labels(np.zeros(image.data.shape, np.uint8), name="scan mask", scale=image.scale)
    mask.data[2, 5:10, 5:10] = 1
    c = d.correct
    c.labels_combo.value, c.image_combo.value = mask.name, image.name
    c.mark_slices([1, 2, 3])
    c.dataset_edit.value, c.format_combo.value = str(tmp_path / "ds"), "nnunet"
    worker = c.export()
    with qtbot.waitSignal(worker.finished, timeout=60000):
        pass
    said = [str(n.message) for n in notifications if "set in napari" in str(n.message)]
    assert said and "3 x 0.8 x 0.8" in said[0] and "6.5 x 0.8 x 0.8" in said[0], said
    label = next(Path(tmp_path / "ds").rglob("labelsTr/*.nii.gz"))
    np.testing.assert_allclose(read_image(label).spacing, (6.5, 0.8, 0.8), rtol=1e-5)
