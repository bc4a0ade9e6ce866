"""A clinician's second day (h_trial_day2): day 1 segmented a lung CT, corrected and reviewed slices, saved the mask,
exported it and fine-tuned round 1; day 2 reopened scan and mask in a restarted napari, segmented with round 1's model,
corrected more, exported and fine-tuned round 2; day 3 (and a colleague on another machine, with copies of the
dataset and models folders) goes on from day 2's mask. Which start model the Fine-tune tab proposes for the next
round: the one that learnt last on this dataset, the mask's model found by its weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.gui

LUNG = Path(__file__).resolve().parents[2] / "shared" / "data" / "radiomics"


def _lung(tmp_path: Path):
    """A crop of lung1 (7 slices around the tumour, 64 x 64 px) and its reference labels, as napari shows them."""
    from napari_attnseg._napari.io_hooks import get_nifti_reader

    if not (LUNG / "lung1_image.nii.gz").exists():
        pytest.skip("no lung1 data")
    out = []
    for name in ("lung1_image", "lung1_labels"):
        path = str(LUNG / f"{name}.nii.gz")
        out.append(np.asarray(get_nifti_reader(path)(path)[0][0]))
    image, labels = out
    z, y, x = (int(v) for v in np.argwhere(labels > 0).mean(0))
    crop = (slice(z - 3, z + 4), slice(y - 32, y + 32), slice(x - 32, x + 32))
    return image[crop].astype(np.float32), (labels[crop] > 0).astype(np.uint8)


def _save(path: Path, name: str, seed: int, **training) -> str:
    """A small 2D tumour model with a card (``training``: its fine-tuning record); its weights' digest."""
    from napari_attnseg import create_model, save_model
    from napari_attnseg.checkpoint import ModelCard, read_card

    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(create_model("unet", spatial_dims=2, features=[4, 8, 16]), path,
               ModelCard(arch="", config={}, name=name, classes=["background", "tumour"], tile=[32, 32],
                         training=training or {}))
    return read_card(path).weights_sha256


def _day1_dataset(tmp_path: Path, where: Path):
    from napari_attnseg.data.export import export_case

    image, labels = _lung(tmp_path)
    export_case(image, labels, where, "nnunet", reviewed_slices=[3], label_names=["background", "tumour"])
    return image, labels


def test_an_export_of_day_twos_mask_proposes_round_twos_model(dock, qtbot, tmp_path):
    """Day 3: day 2's corrected mask (predicted by round 1's model) reopened, a slice more corrected and exported. The
    Fine-tune tab (not opened before the export) proposed round 1's model, the mask's: round 3 threw away what round 2
    learnt (before the export, with the dataset chosen, it proposed round 2's; the export replaced it)."""
    from napari_attnseg._napari.correct_export import folder_text

    models, ds = tmp_path / "user-models", tmp_path / "ds"
    image, labels = _day1_dataset(tmp_path, ds)
    s = _save(models / "s.safetensors", "s", 0)
    r1 = _save(models / "s-finetuned.safetensors", "s-finetuned", 1, dataset=str(ds), start_model="s",
               start_model_sha256=s)
    _save(models / "s-finetuned-2.safetensors", "s-finetuned-2", 2, dataset=str(ds), start_model="s-finetuned",
          start_model_sha256=r1)
    viewer, d = dock
    corr, ft = d.correct, d.finetune
    ft.refresh_models()
    viewer.add_image(image, name="lung1")
    mask = viewer.add_labels(labels.copy(), name="lung1 mask", metadata={  # (as reopened from its file)
        "attnseg": {"model": "s-finetuned", "checkpoint": str(models / "s-finetuned.safetensors"),
                    "checkpoint_sha256": r1}, "reviewed_slices": [3], "class_names": ["background", "tumour"]})
    corr.labels_combo.value, corr.image_combo.value = "lung1 mask", "lung1"
    corr.mark_slices([3, 4])
    corr.dataset_edit.value = str(ds)
    assert mask.metadata["reviewed_slices"] == [3, 4]
    corr.export()
    qtbot.waitUntil(lambda: folder_text(ft.dataset_edit) == str(ds), timeout=60000)
    assert ft.model_combo.value == "s-finetuned-2", ft.model_combo.value
    assert ft.name_edit.value == "s-finetuned-3"


def test_a_colleagues_own_model_of_the_masks_model_name_is_not_its_start(dock, tmp_path):
    """A colleague got day 2's mask and round 1's model (added as 'anna-round1': their own 's-finetuned' took the
    name). The mask names 's-finetuned' and its weights: the Fine-tune tab proposed the colleague's own 's-finetuned'
    (another model, by name), not the model whose weights made the mask."""
    models, ds = tmp_path / "user-models", tmp_path / "ds"
    image, labels = _day1_dataset(tmp_path, ds)
    _save(models / "s-finetuned.safetensors", "s-finetuned", 5, dataset=str(tmp_path / "theirs"))
    r1 = _save(models / "anna-round1.safetensors", "anna-round1", 1, dataset="/home/anna/study/ds")
    viewer, d = dock
    ft = d.finetune
    ft.refresh_models()
    viewer.add_image(image, name="lung1")
    viewer.add_labels(labels, name="lung1 mask", metadata={"attnseg": {
        "model": "s-finetuned", "checkpoint": "/home/anna/models/s-finetuned/best.safetensors", "checkpoint_sha256": r1}})
    ft.dataset_edit.value = str(tmp_path / "theirs")  # (not round 1's dataset: the mask's model itself)
    ft.dataset_edit.value = str(ds)
    assert ft.mask_model() == "anna-round1"
    assert ft.model_combo.value == "anna-round1", ft.model_combo.value
    # a provenance without weights (older masks) is still found by name
    viewer.layers["lung1 mask"].metadata["attnseg"] = {"model": "s-finetuned", "checkpoint": None}
    assert ft.mask_model() == "s-finetuned"


def test_a_prediction_corrected_and_saved_over_reopens_from_its_record_with_its_marks(make_napari_viewer, tmp_path):
    """Day 1: File > Open of `attnseg predict`'s lung1_predict.json, slice 3 corrected and marked reviewed, File > Save
    of the mask over the record's lung1_mask.nii.gz (this plugin's writer: 'keeps reviewed slices'). Day 2: File >
    Open of the record showed the corrected voxels with 'Reviewed slices: none' and the model's class names: the
    review was lost (the mask file holds it; the record reader read its voxels only)."""
    from napari_attnseg._napari.correct_widget import CorrectWidget
    from napari_attnseg.cli import main
    from napari_attnseg.data import write_image

    image, labels = _lung(tmp_path)
    write_image(tmp_path / "lung1.nii.gz", image, spacing=(5.0, 0.57, 0.57))
    folder = tmp_path / "pred"
    assert main(["predict", str(tmp_path / "lung1.nii.gz"), "--model", "nuclei-2d", "--out", str(folder)]) == 0
    record = folder / "lung1_predict.json"
    viewer = make_napari_viewer()
    corr = CorrectWidget(viewer)
    viewer.open(str(record), plugin="napari-attnseg")
    mask = viewer.layers[corr.labels_combo.value]
    assert mask.metadata.get("reviewed_slices") is None
    mask.data = labels.copy()
    corr.class_names_edit.value = "background, tumour"
    corr.mark_slices([3])
    viewer.layers.selection = {mask}
    viewer.layers.save(str(folder / "lung1_mask.nii.gz"), selected=True, plugin="napari-attnseg")
    viewer.close()

    viewer = make_napari_viewer()  # day 2
    corr = CorrectWidget(viewer)
    viewer.open(str(record), plugin="napari-attnseg")
    back = viewer.layers[corr.labels_combo.value]
    assert (np.asarray(back.data) == labels).all()
    assert back.metadata.get("reviewed_slices") == [3], back.metadata.get("reviewed_slices")
    assert corr.reviewed_label.value == "Reviewed slices: 3"
    assert back.metadata["class_names"] == ["background", "tumour"]


def test_a_record_reopened_names_the_mask_saved_from_it(make_napari_viewer, qtbot, tmp_path, monkeypatch,
                                                        notifications):
    """Day 1: the record opened, slice 3 corrected and reviewed, *Save mask...* accepted as proposed ('lung1 mask.nii.gz'
    beside the scan). Day 2: File > Open of the record (as the day before) showed the uncorrected prediction with
    'Reviewed slices: none' and no word of the corrected file: the clinician corrects again or thinks it is lost."""
    from napari_attnseg._napari import save_mask
    from napari_attnseg._napari.correct_widget import CorrectWidget
    from napari_attnseg.cli import main
    from napari_attnseg.data import write_image

    image, labels = _lung(tmp_path)
    write_image(tmp_path / "lung1.nii.gz", image, spacing=(5.0, 0.57, 0.57))
    assert main(["predict", str(tmp_path / "lung1.nii.gz"), "--model", "nuclei-2d", "--out", str(tmp_path / "pred")]) == 0
    record = tmp_path / "pred" / "lung1_predict.json"
    proposed = []
    monkeypatch.setattr(save_mask.QFileDialog, "getSaveFileName",
                        lambda _w, _t, start, _f, chosen: proposed.append(start) or (start, chosen))
    viewer = make_napari_viewer()
    corr = CorrectWidget(viewer)
    viewer.open(str(record), plugin="napari-attnseg")
    mask = viewer.layers[corr.labels_combo.value]
    mask.data = labels.copy()
    corr.mark_slices([3])
    corr.save_mask()
    qtbot.waitUntil(lambda: Path(proposed[0]).exists(), timeout=30000)
    assert Path(proposed[0]) == tmp_path / "lung1 mask.nii.gz"
    viewer.close()

    viewer = make_napari_viewer()  # day 2
    corr = CorrectWidget(viewer)
    seen = len(notifications)
    viewer.open(str(record), plugin="napari-attnseg")
    said = [str(n.message) for n in notifications[seen:]]
    assert any("lung1 mask.nii.gz" in m and "File > Open" in m for m in said), said
    [back] = viewer.open(proposed[0], plugin="napari-attnseg")  # as the note says: the corrections and marks
    assert back.metadata["reviewed_slices"] == [3] and (np.asarray(back.data) == labels).all()


def test_the_foreground_warning_of_a_tumour_model_says_its_training_share(tmp_path):
    """Day 2's run of round 1's model (trained where the tumour is 0.26 % of the slices) said "called 61 % of the
    image foreground (its training images: 0%)": a model trained on no foreground, as read."""
    from types import SimpleNamespace

    from napari_attnseg.inference.checks import foreground_warning

    labels = np.zeros((10, 10), np.uint8)
    labels[:7] = 1
    said = foreground_warning(labels, SimpleNamespace(name="r1", metrics={"foreground_share": 0.0026}))
    assert "(its training images: 0.26%)" in said, said
    said = foreground_warning(labels, SimpleNamespace(name="nuclei", metrics={"foreground_share": 0.2}))
    assert "(its training images: 20%)" in said, said


def test_a_run_beside_a_reopened_mask_of_another_name_keeps_its_reviewed_slices(dock, qtbot, tmp_path):
    """Day 2: day 1's corrected mask reopened from 'lung1 seg.nii.gz' (a name typed at Save; Save mask proposes
    '<mask>-2.nii.gz' where its name is taken), then Run with round 1's model (Next suggested slice says to run the
    model first). The run's 'lung1 mask' went beside it with no question, the Correct tab chose it with 'Reviewed
    slices: none' (N no longer skipped yesterday's reviewed slices) and its export lacked their corrections (a mask
    reopened as 'lung1 mask' had its reviewed slices carried into the run's 'lung1 mask (2)')."""
    from napari_attnseg.data import write_image

    image, labels = _lung(tmp_path)
    write_image(tmp_path / "lung1.nii.gz", image, spacing=(5.0, 0.57, 0.57))
    viewer, d = dock
    seg, corr = d.segment, d.correct
    [img] = viewer.open(str(tmp_path / "lung1.nii.gz"), plugin="napari-attnseg")
    day1 = viewer.add_labels(labels.copy(), name="lung1 seg", scale=img.scale, translate=img.translate)
    corr.labels_combo.value = "lung1 seg"
    corr.mark_slices([3])
    viewer.layers.selection = {day1}
    viewer.layers.save(str(tmp_path / "lung1 seg.nii.gz"), selected=True, plugin="napari-attnseg")
    viewer.layers.remove(day1)
    [mask] = viewer.open(str(tmp_path / "lung1 seg.nii.gz"), plugin="napari-attnseg")  # day 2
    assert corr.labels_combo.value == "lung1 seg" and corr.reviewed_label.value == "Reviewed slices: 3"
    seg.model_combo.value = "nuclei-2d"
    with qtbot.waitSignal(seg.run_done, timeout=120000):
        seg.run()
    qtbot.waitUntil(lambda: corr.labels_combo.value == "lung1 mask", timeout=10000)
    new = viewer.layers["lung1 mask"]
    qtbot.waitUntil(lambda: bool(new.metadata.get("reviewed_slices")), timeout=5000)
    assert new.metadata["reviewed_slices"] == [3] and (np.asarray(new.data[3]) == labels[3]).all()
    assert corr.reviewed_label.value == "Reviewed slices: 3"
    assert (np.asarray(mask.data) == labels).all() and not mask.visible  # kept as it was, hidden under the new one
