"""A neuroradiologist's tumour flow on the shared brain1 MRI, in a real viewer through the tabbed dock: open it with the
plugin's reader, Segment with brain-mri-3d (grey / white matter), *Click to fix* with nuclei-2d-prompt on a new label
value (napari's M: 3) on three tumour slices, mark them reviewed, name the four classes, export nnU-Net,
fine-tune brain-mri-3d for half a minute (its grey / white output rows kept, a tumour row new), then Segment again with the new model (asked before the edited mask is replaced; No keeps it).

A crop around the tumour (slices 8-20, 160 x 160) keeps it short on 2 CPU cores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gui

BRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "radiomics"
CROP = (slice(8, 21), slice(40, 200), slice(96, 256))  # the tumour is on slices 11-17: 3-9 of the crop
NAMES = "background, grey matter, white matter, tumour"


def _brain_or_skip():
    if not (BRAIN / "brain1_image.nii.gz").exists():
        pytest.skip(f"{BRAIN} is not here")
    from napari_attnseg.models.registry import bundled_models

    if not {"brain-mri-3d", "nuclei-2d-prompt"} <= set(bundled_models()):
        pytest.skip("brain-mri-3d or nuclei-2d-prompt is not bundled")


def _no_exception(seen) -> None:
    raised = [n for n in seen if getattr(n, "exception", None) is not None]
    assert not raised, [str(n.message) for n in raised]


def test_tumour_clicked_into_label_3_exported_fine_tuned_and_segmented_again(make_napari_viewer, qtbot, tmp_path,
                                                                            notifications):
    _brain_or_skip()
    from napari_attnseg.checkpoint import read_card
    from napari_attnseg.data import read_image

    viewer = make_napari_viewer(show=True)
    full = viewer.open(str(BRAIN / "brain1_image.nii.gz"), plugin="napari-attnseg")[0]
    _, dock = viewer.window.add_plugin_dock_widget("napari-attnseg", "Attention segmentation")
    seg, corr, ft = dock.segment, dock.correct, dock.finetune
    crop = viewer.add_image(np.asarray(full.data)[CROP], name="brain crop", scale=full.scale,
                            metadata={"spacing": list(full.scale)})
    tumour = read_image(BRAIN / "brain1_labels.nii.gz").data[CROP] > 0

    # Segment: grey / white matter
    seg.image_combo.value = crop.name
    seg.model_combo.value = "brain-mri-3d"
    with qtbot.waitSignal(seg.run_done, timeout=180000) as done:
        seg.run_button.native.click()
    assert done.args == [True]
    mask = viewer.layers["brain crop mask"]
    assert set(np.unique(np.asarray(mask.data))) <= {0, 1, 2}
    tissue = np.asarray(mask.data).copy()

    # Correct: Click to fix with the only click model, on a new label value (napari's M picks 3)
    dock.show_tab("Correct and export")
    assert corr.labels_combo.value == mask.name and corr.image_combo.value == crop.name
    pm = corr.prompt
    assert "nuclei-2d-prompt" in pm.model_combo.choices
    pm.model_combo.value = "nuclei-2d-prompt"
    pm.enable_box.value = True
    mask.selected_label = int(np.asarray(mask.data).max()) + 1
    assert mask.selected_label == 3 and "label 3" in pm.value_line.value
    for i, z in enumerate((3, 5, 7)):  # slices 11, 13 and 15 of the volume
        if i:
            pm.new_button.changed.emit(True)  # a new object on the next slice: still label 3, the line says so
            assert "New object: label 3" in pm.value_line.value
        viewer.dims.set_point(0, crop.data_to_world((z, 0, 0))[0])
        pm.click((z, *np.argwhere(tumour[z]).mean(0).round()))
        qtbot.waitUntil(lambda: not pm.busy and not pm.pending, timeout=60000)
        written = np.asarray(mask.data)[z] == 3
        assert written.sum() > 100, pm.status.value
        assert "voxels changed" in pm.status.value and "This object: label 3" in pm.value_line.value
        corr.mark_current()  # R on the slice on screen
    data = np.asarray(mask.data)
    assert np.array_equal(data[data != 3], tissue[data != 3]), "a click changed voxels it did not label 3"
    assert set(np.unique(data)) == {0, 1, 2, 3}
    assert mask.metadata["reviewed_slices"] == [3, 5, 7]

    # Export (nnU-Net): the four names and 'ignore' after them
    corr.class_names_edit.value = NAMES
    corr.dataset_edit.value = str(tmp_path / "tumour-ds")
    assert corr.format_combo.value == "nnunet"
    corr.export_button.native.click()
    qtbot.waitUntil(lambda: corr.export_button.enabled, timeout=60000)
    labels = json.loads((tmp_path / "tumour-ds" / "dataset.json").read_text())["labels"]
    assert labels == {"background": 0, "grey matter": 1, "white matter": 2, "tumour": 3, "ignore": 4}

    # Fine-tune brain-mri-3d for half a minute: the notes say which output rows were kept
    dock.show_tab("Fine-tune")
    assert str(ft.dataset_edit.value) == str(tmp_path / "tumour-ds")
    assert ft.model_combo.value == "brain-mri-3d"
    ft.minutes_spin.value = 0.5
    ft.run_button.native.click()
    qtbot.waitUntil(lambda: ft.run_button.enabled, timeout=300000)
    assert ft.result is not None, ft.status.value
    assert "rows of background, grey matter, white matter kept" in ft.status.value
    card = read_card(ft.result.checkpoint)
    assert card.classes == ["background", "grey matter", "white matter", "tumour"]

    # Segment again with the new model: asked first, No keeps the edited mask (its tumour) and adds "(2)"
    dock.show_tab("Segment")
    new = card.name
    assert new in seg.model_combo.choices
    seg.model_combo.value = new
    asked = []
    seg.confirm_overwrite = lambda name: asked.append(name) or False
    with qtbot.waitSignal(seg.run_done, timeout=180000) as done:
        seg.run_button.native.click()
    assert done.args == [True] and asked == [mask.name]
    assert np.array_equal(np.asarray(mask.data), data), "the edited mask changed"
    again = viewer.layers["brain crop mask (2)"]
    assert again.metadata.get("class_names") == [n.strip() for n in NAMES.split(",")]
    assert corr.labels_combo.value == again.name
    _no_exception(notifications)


def test_the_start_model_note_says_which_output_rows_are_kept(make_napari_viewer, tmp_path):
    """Before the run, brain-mri-3d on a background / grey matter / white matter / tumour dataset: the note said
    "its output layer is trained anew", but the run keeps the grey and white matter rows (the notes say so after)."""
    _brain_or_skip()
    from napari_attnseg._napari.finetune_widget import FinetuneWidget
    from napari_attnseg.data.export import export_case

    image = np.random.default_rng(0).normal(100, 20, (6, 16, 20)).astype(np.float32)
    labels = np.zeros(image.shape, np.uint8)
    labels[:, 4:8, 4:8], labels[:, 8:12, 8:12], labels[:, 12:14, 12:14] = 1, 2, 3
    export_case(image, labels, tmp_path / "ds", "nnunet", spacing=(2.0, 2.0, 2.0),
                label_names=[n.strip() for n in NAMES.split(",")])
    ft = FinetuneWidget(make_napari_viewer())
    ft.dataset_edit.value = str(tmp_path / "ds")
    ft.model_combo.value = "brain-mri-3d"
    note = ft.model_note.value
    assert "trained anew" not in note or "grey matter" in note
    assert "grey matter" in note and "white matter" in note and "tumour" in note


def test_a_short_run_with_a_new_class_does_not_say_the_model_hardly_changed(tmp_path):
    """brain-mri-3d fine-tuned 0.5 min on background / grey / white matter / tumour: 7 of 25 steps, saved, status
    "the model has hardly changed from the start". The tumour row was new (random) and had 7 steps: segmenting brain1
    with it marked 8708 voxels tumour, 2 of them in the reference tumour. The sentence should say the new class is
    untrained, not that the model is the start's."""
    from types import SimpleNamespace

    import torch

    from napari_attnseg import create_model, save_model
    from napari_attnseg._napari.finetune_run import Run
    from napari_attnseg.checkpoint import ModelCard

    torch.manual_seed(0)
    path = tmp_path / "m.safetensors"
    names = [n.strip() for n in NAMES.split(",")]
    save_model(create_model("attention_unet", spatial_dims=2, out_channels=4, features=(4, 8, 16, 32, 64)), path,
               ModelCard(arch="", config={}, name="brain-mri-3d-finetuned", classes=names, tile=[32, 32],
                         training={"head_reinitialised": True, "start_model": "brain-mri-3d"}))
    notes = ["the start model predicts 3 classes (background, grey matter, white matter), the dataset has 4 "
             "(background, grey matter, white matter, tumour): encoder and decoder kept, the output head's rows of "
             "background, grey matter, white matter kept and the others initialised anew"]
    run = Run(tmp_path / "out")
    run.last_step = {"epoch": 1, "step": 7, "steps": 25}
    res = SimpleNamespace(epochs=1, setup_seconds=2.0, checkpoint=str(path), notes=notes)
    text = run.short_text(res, 0.5)
    assert text.startswith("Less than one epoch ran")
    assert "hardly changed from the start" not in text and "tumour" in text
