"""A clinician's other mistakes (trial 2026-12-06): 'Replace the case' with a mistyped case id, Clear / Mark all in one
click, a case deleted by hand, a fine-tune output named like another model, napari's Duplicate layer of the mask."""

from __future__ import annotations

import pytest
import torch
from qtpy.QtWidgets import QPushButton

from napari_attnseg import create_model, save_model
from napari_attnseg.cli import main
from napari_attnseg.data.dataset import read_dataset
from napari_attnseg.data.export import export_case
from napari_attnseg.errors import DatasetError
from napari_attnseg.models.registry import user_models_dir


def test_a_case_deleted_by_hand_says_how_to_use_the_dataset_again(tmp_path, case):
    """Two rounds exported; the clinician deletes round 1's files by hand (a bad case). Fine-tuning then refused
    the whole dataset with 'file ... is missing from the dataset' and no way out (now: attnseg dataset --remove)."""
    image, labels = case
    ds = tmp_path / "ds"
    first = export_case(image, labels, ds, "nnunet", reviewed_slices=[0, 1, 2, 3, 4, 5])
    export_case(image * 1.1, labels, ds, "nnunet", reviewed_slices=[0, 1, 2, 3, 4, 5])
    for p in ds.rglob(f"{first.case_id}*"):
        p.unlink()
    with pytest.raises(DatasetError) as err:
        read_dataset(ds)
    text = str(err.value)
    assert f"--case-id {first.case_id} --overwrite" in text and f"--remove {first.case_id}" in text, text


def _model(path):
    torch.manual_seed(0)
    save_model(create_model("attention_unet", features=[4, 8, 16, 32]), path,
               card={"name": path.stem, "description": "a test model", "tile": [32, 32]})
    return path


@pytest.mark.parametrize("name", ["mine", "nuclei-2d"])
def test_finetune_into_the_models_folder_under_a_taken_name_is_refused_before_training(tmp_path, case, capsys, name):
    """`finetune --out <models folder>/mine` where the user's model mine.safetensors is (or a bundled model's name):
    the run trained to the end, then its model was not listed and --model mine loaded the old one; nothing said."""
    folder = user_models_dir()
    folder.mkdir(parents=True, exist_ok=True)
    _model(folder / "mine.safetensors")
    image, labels = case
    ds = tmp_path / "ds"
    export_case(image, labels, ds, "nnunet", reviewed_slices=[0, 1, 2, 3, 4, 5])
    rc = main(["finetune", str(ds), "--model", str(folder / "mine.safetensors"), "--out", str(folder / name),
               "--epochs", "1", "--iters-per-epoch", "1", "--patch", "16,16"])
    err = capsys.readouterr().err
    assert rc != 0 and "would not be listed" in err, err
    assert not (folder / name).exists()


def test_replacing_a_case_that_holds_another_scan_is_refused(tmp_path, case):
    """'Replace the case' / --case-id ID --overwrite with a mistyped id (case_0001 for case_0000): another scan's
    case, its image and corrected labels, was replaced without a word (only 'already holds this image' warnings)."""
    from napari_attnseg.data.manifest import read_manifest

    image, labels = case
    ds = tmp_path / "ds"
    export_case(image, labels, ds, "nnunet", reviewed_slices=[0, 1, 2], source_name="p1.nii.gz")
    other = export_case(image[::-1].copy(), labels[::-1].copy(), ds, "nnunet", reviewed_slices=[0, 1, 2],
                        source_name="p2.nii.gz")
    kept = (ds / "labelsTr" / f"{other.case_id}.nii.gz").read_bytes()
    with pytest.raises(DatasetError, match="holds another image") as refused:
        export_case(image, labels, ds, "nnunet", reviewed_slices=[0, 1, 2, 3], source_name="p1.nii.gz",
                    case_id=other.case_id, overwrite=True)
    assert f"attnseg dataset {ds} --remove {other.case_id}" in str(refused.value)  # (no CLI-only --source-name)
    assert (ds / "labelsTr" / f"{other.case_id}.nii.gz").read_bytes() == kept
    assert [c["source_name"] for c in read_manifest(ds)["cases"]] == ["p1.nii.gz", "p2.nii.gz"]
    # its own case is still replaced, as before
    export_case(image, labels, ds, "nnunet", reviewed_slices=[0, 1, 2, 3], source_name="p1.nii.gz",
                case_id="case_0000", overwrite=True)


def _press(panel, text: str) -> None:
    [button] = [b for b in panel.findChildren(QPushButton) if b.text() == text]
    button.click()


def _undo_action(notifications):
    found = [n for n in notifications if getattr(n, "actions", None)]
    assert found, [str(n.message) for n in notifications]
    return found[-1]


@pytest.mark.gui
def test_clear_says_which_marks_it_took_off_and_undo_puts_them_back(volume_run, notifications, qtbot):
    """'Clear' (beside 'Mark all') took every reviewed mark off at once: no question, no word, and Ctrl+Z does not
    bring marks back: the clinician's record of which slices they checked was gone."""
    viewer, dock = volume_run
    corr, mask = dock.correct, viewer.layers["vol mask"]
    corr.mark_slices([2, 3, 4, 7])
    _press(corr, "Clear")
    assert mask.metadata["reviewed_slices"] == []
    note = _undo_action(notifications)
    assert "2-4,7" in str(note.message), note.message
    note.actions[0][1]()
    assert mask.metadata["reviewed_slices"] == [2, 3, 4, 7]


@pytest.mark.gui
def test_mark_all_over_some_marks_can_be_undone(volume_run, notifications, qtbot):
    """'Mark all' pressed by mistake made every slice 'reviewed' (the model's unchecked guesses exported as truth)
    and the marks of before could not be told apart any more."""
    viewer, dock = volume_run
    corr, mask = dock.correct, viewer.layers["vol mask"]
    corr.mark_slices([2, 3])
    _press(corr, "Mark all")
    assert mask.metadata["reviewed_slices"] == list(range(10))
    _undo_action(notifications).actions[0][1]()
    assert mask.metadata["reviewed_slices"] == [2, 3]


@pytest.mark.gui
def test_duplicating_the_mask_does_not_switch_the_panel_to_the_copy(volume_run, notifications, qtbot):
    """napari's Duplicate layer (a backup before trying a helper): the panel went to 'vol mask copy' unasked (the copy
    carries the run's metadata, taken for a model's new mask); R, the helpers and Export then acted on the backup
    while the clinician went on correcting 'vol mask'."""
    from napari.layers._layer_actions import _duplicate_layer

    viewer, dock = volume_run
    corr, mask = dock.correct, viewer.layers["vol mask"]
    corr.mark_slices([2, 3])
    viewer.layers.selection.active = mask
    _duplicate_layer(viewer.layers)
    qtbot.wait(50)
    assert "vol mask copy" in viewer.layers
    assert corr.labels_combo.value == "vol mask"
    viewer.layers.selection.active = mask
    corr.mark_slices([5])
    assert mask.metadata["reviewed_slices"] == [2, 3, 5]


@pytest.mark.gui
def test_the_finetune_tab_refuses_an_output_named_like_a_listed_model(tmp_path, qapp):
    """The Fine-tune tab's output folder chosen as <models folder>/mine where mine.safetensors is: the run trained,
    then its model was not listed (hidden behind the other 'mine')."""
    from napari_attnseg._napari.finetune_run import output_problem

    folder = user_models_dir()
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    save_model(create_model("attention_unet", features=[4, 8, 16, 32]), folder / "mine.safetensors",
               card={"name": "mine", "description": "test", "tile": [32, 32]})
    text = output_problem(str(folder / "mine"), str(tmp_path / "ds"))
    assert text and "would not be listed" in text, text


def test_a_damaged_settings_file_is_kept_beside_the_new_one(tmp_path):
    """A settings file that does not read as JSON (edited by hand, a typo) was replaced by the next export's settings
    without a word: what it held was gone. It is kept as settings.json.damaged."""
    from napari_attnseg.settings import last_export, remember_export, settings_path

    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"last_export": {"dataset": "/data/ds", }', encoding="utf-8")  # a trailing comma
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "manifest.json").write_text("{}", encoding="utf-8")
    assert remember_export(tmp_path / "ds", "nnunet")
    assert path.with_name("settings.json.damaged").read_text(encoding="utf-8").startswith('{"last_export"')
    assert last_export()["dataset"] == str(tmp_path / "ds")
    assert remember_export(tmp_path / "ds", "tiff")  # a good file is replaced as before, the copy left alone
    assert last_export()["format"] == "tiff"
    assert path.with_name("settings.json.damaged").read_text(encoding="utf-8").endswith('"/data/ds", }')
