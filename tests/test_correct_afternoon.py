"""The Correct-and-export panel and its click mode used the way a clinician corrects masks over an afternoon and
comes back the next day, on real data (the nuclei sample, a crop of the radiomics brain1 MRI): the defects that
audit found, each test failing without its fix."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.gui

DATA = "/work/shared/data"


@pytest.fixture(autouse=True)
def _user_settings(tmp_path, monkeypatch):
    """Every test gets its own settings folder: no test reads or writes the user's real settings file."""
    monkeypatch.setenv("ATTNSEG_SETTINGS_DIR", str(tmp_path / "user-settings"))


def _read(name):
    from pathlib import Path

    from napari_attnseg._paths import samples_dir
    from napari_attnseg.data import read_image

    shipped = {"nuclei2d/image.tif": "nuclei2d_image.tif", "nuclei2d/labels.tif": "nuclei2d_labels.tif"}
    path = Path(DATA) / name
    if not path.exists() and name in shipped:  # (the same image ships as the plugin's sample)
        path = samples_dir() / shipped[name]
    if not path.exists():
        pytest.skip(f"{path} is not here")
    return read_image(path)


@pytest.fixture()
def brain():
    """brain1 (MRI, tumour on slices 11-17) cropped around the tumour: image, tumour mask, spacing."""
    im, lb = _read("radiomics/brain1_image.nii.gz"), _read("radiomics/brain1_labels.nii.gz")
    box = (slice(None), slice(60, 180), slice(140, 230))
    return im.data[box].astype(np.float32), (lb.data[box] > 0).astype(np.uint8), tuple(im.spacing)


class _Event:
    def __init__(self, position, kind="mouse_press", modifiers=(), button=1):
        self.type, self.position, self.modifiers, self.button = kind, tuple(position), list(modifiers), button
        self.pos = np.zeros(2)


def _press_release(viewer, position) -> None:
    """One click the way napari dispatches it: the viewer's drag callbacks, then the selected layer's."""
    from napari.utils._proxies import ReadOnlyWrapper
    from napari.utils.interactions import mouse_press_callbacks, mouse_release_callbacks

    for obj in (viewer, viewer.layers.selection.active):
        mouse_press_callbacks(obj, ReadOnlyWrapper(_Event(position)))
        mouse_release_callbacks(obj, _Event(position, kind="mouse_release"))


def _prompt_model_or_skip():
    from napari_attnseg.models.registry import bundled_models

    if "nuclei-2d-prompt" not in bundled_models():
        pytest.skip("no bundled promptable model")


# -- day 2: the dataset folder ------------------------------------------------------------------------------------
def test_the_next_session_proposes_the_dataset_folder_last_exported_to(make_napari_viewer, qtbot, tmp_path, brain):
    """The dataset folder (and its format) had to be typed again every day: a new panel now proposes the folder last
    exported to while it is still a dataset; the case id stays empty (the next free id), so day 2's export adds a
    case and never writes over day 1's."""
    from napari_attnseg._napari.correct_widget import CorrectWidget
    from napari_attnseg.settings import settings_path

    image, mask, spacing = brain
    ds = tmp_path / "brain-ds"

    def session():
        viewer = make_napari_viewer()
        viewer.add_image(image, name="brain1", scale=spacing)
        viewer.add_labels(mask.copy(), name="brain1 mask", scale=spacing)
        return viewer, CorrectWidget(viewer)

    _, day1 = session()
    assert str(day1.dataset_edit.line_edit.value).strip() == ""  # never exported: nothing to propose
    day1.dataset_edit.value = str(ds)
    day1.format_combo.value = "monai"
    day1.mark_slices(range(10, 19))
    assert day1.export() is not None
    qtbot.waitUntil(lambda: day1.export_button.enabled, timeout=30000)
    first = json.loads((ds / "manifest.json").read_text())["cases"]
    assert len(first) == 1 and settings_path().is_file()
    written = {p: p.read_bytes() for p in ds.rglob("*.nii.gz")}

    _, day2 = session()  # the next napari session
    assert str(day2.dataset_edit.line_edit.value) == str(ds) and day2.format_combo.value == "monai"
    assert day2.case_edit.value == "" and first[0]["case_id"] in day2.case_edit.native.placeholderText()
    day2.mark_slices(range(10, 19))
    assert day2.export() is not None
    qtbot.waitUntil(lambda: day2.export_button.enabled, timeout=30000)
    cases = json.loads((ds / "manifest.json").read_text())["cases"]
    assert len(cases) == 2 and cases[0] == first[0], "day 1's case was replaced"
    assert all(p.read_bytes() == b for p, b in written.items()), "day 1's files were written over"

    import shutil

    shutil.rmtree(ds)  # a dataset moved or removed since is not proposed
    _, day3 = session()
    assert str(day3.dataset_edit.line_edit.value).strip() == ""


def test_a_damaged_settings_file_proposes_nothing(monkeypatch, tmp_path):
    from napari_attnseg.settings import last_export, remember_export, settings_path

    settings_path().parent.mkdir(parents=True)
    settings_path().write_text("{not json")
    assert last_export() is None
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "manifest.json").write_text("{}")
    assert remember_export(tmp_path / "ds", "nnunet", "case_0001", "ct.nii.gz")
    assert last_export()["dataset"] == str(tmp_path / "ds")


# -- clicks -------------------------------------------------------------------------------------------------------
def test_a_2d_click_model_refuses_clicks_on_a_rolled_view(make_napari_viewer, brain):
    """With the axes rolled (a coronal plane on screen, the slider on x), a click with the 2D click model
    segmented the axial slice through the clicked voxel: the change was written on a plane nobody saw."""
    from napari_attnseg._napari.correct_widget import CorrectWidget

    _prompt_model_or_skip()
    image, mask, spacing = brain
    viewer = make_napari_viewer()
    viewer.add_image(image, name="brain1", scale=spacing)
    labels = viewer.add_labels(mask.copy(), name="brain1 mask", scale=spacing)
    corr = CorrectWidget(viewer)
    corr.prompt.model_combo.value = "nuclei-2d-prompt"
    corr.prompt.enable_box.value = True
    z, y, x = 14, *np.argwhere(mask[14]).mean(0).round().astype(int)
    viewer.dims.order = (2, 0, 1)  # Roll dimensions: z and y on screen, x on the slider
    viewer.dims.set_point(2, x * spacing[2])
    _press_release(viewer, np.array([z, y, x]) * np.array(spacing))
    assert not corr.prompt.clicks and not corr.prompt.busy
    assert np.array_equal(labels.data, mask) and "axial" in corr.prompt.status.value


def test_a_new_object_takes_the_label_selected_in_napari(make_napari_viewer, qtbot):
    """A click on background made every new object label 1, whatever label napari's layer controls had selected
    (what the brush paints): a nucleus clicked in an instance mask merged into object 1's id."""
    from scipy import ndimage as ndi

    from napari_attnseg._napari.correct_widget import CorrectWidget

    _prompt_model_or_skip()
    image = _read("nuclei2d/image.tif").data[:192, :192]
    ref = _read("nuclei2d/labels.tif").data[:192, :192]
    viewer = make_napari_viewer()
    viewer.add_image(image, name="cells")
    mask = viewer.add_labels(np.zeros(image.shape, np.uint8), name="cells mask")
    corr = CorrectWidget(viewer)
    pm = corr.prompt
    pm.model_combo.value = "nuclei-2d-prompt"
    pm.enable_box.value = True
    target = next(i for i in np.unique(ref[40:-40, 40:-40]) if i)
    centre = tuple(float(c) for c in ndi.center_of_mass(ref == target))
    mask.selected_label = 7
    pm.click(centre)
    qtbot.waitUntil(lambda: not pm.busy, timeout=60000)
    assert mask.data[tuple(int(round(c)) for c in centre)] == 7 and set(np.unique(mask.data)) == {0, 7}


# -- review -------------------------------------------------------------------------------------------------------
def test_next_suggested_on_a_volume_reviewed_whole_says_so(make_napari_viewer, brain, notifications):
    """N on a volume whose every slice is reviewed said to run the model first (no probabilities: a mask reopened
    the next day) instead of that nothing is left to review, and the old suggestion stayed in the panel."""
    from napari_attnseg._napari.correct_widget import CorrectWidget

    image, mask, spacing = brain
    viewer = make_napari_viewer()
    viewer.add_image(image, name="brain1", scale=spacing)
    viewer.add_labels(mask.copy(), name="brain1 mask", scale=spacing)
    corr = CorrectWidget(viewer)
    corr.suggest_label.value = "Suggested slice 12 (uncertainty 0.400)"  # from earlier in the afternoon
    corr.mark_all()
    assert corr.next_suggested() is None
    said = [str(n.message) for n in notifications]
    assert any("Every slice of brain1 mask is reviewed" in m for m in said), said
    assert not any("run the model" in m for m in said)
    assert "Suggested slice 12" not in corr.suggest_label.value


def test_k_on_a_volume_leaves_the_reviewed_slices_off_screen(make_napari_viewer, brain, notifications):
    """K keeps the object under the cursor through 3D connectivity: an object a person had checked on another
    reviewed slice, not connected to it, was removed unseen. Now the reviewed slices other than the one on screen
    stay as they are (the panel says which); unreviewed slices are cleaned as before, and Ctrl+Z undoes it."""
    from scipy import ndimage as ndi

    from napari_attnseg._napari.correct_widget import CorrectWidget

    image, tumour, spacing = brain
    data = tumour.copy()
    data[20, 10:20, 10:20] = 1  # a second lesion, checked on reviewed slice 20
    data[3, 10:30, 60:80] = 1  # a false positive on slice 3, nobody reviewed
    viewer = make_napari_viewer()
    viewer.add_image(image, name="brain1", scale=spacing)
    mask = viewer.add_labels(data.copy(), name="brain1 mask", scale=spacing)
    corr = CorrectWidget(viewer)
    corr.mark_slices([14, 20])
    y, x = np.argwhere(tumour[14]).mean(0).round()
    viewer.dims.set_point(0, 14 * spacing[0])
    corr.keep_at_cursor(position=(14 * spacing[0], y * spacing[1], x * spacing[2]))
    now = np.asarray(mask.data)
    assert not now[3].any(), "the unreviewed false positive stays"
    assert np.array_equal(now[20], data[20]), "K removed the object of a reviewed slice, unseen"
    comp = ndi.label(tumour)[0]
    assert (now[comp == comp[14, int(y), int(x)]] == 1).all(), "the tumour under the cursor is kept"
    assert any("reviewed slices 20" in str(n.message) for n in notifications)
    mask.undo()
    assert np.array_equal(mask.data, data)


def test_the_fine_tune_tab_of_the_next_session_proposes_the_last_dataset(make_napari_viewer, tmp_path):
    """Day 2, no export yet in this napari: the Fine-tune tab proposes the dataset folder last exported to (it was
    empty, and Run said to export one first), and nothing when that folder is no longer a dataset."""
    import shutil

    from napari_attnseg._napari.finetune_widget import FinetuneWidget
    from napari_attnseg.data.export import export_case
    from napari_attnseg.settings import remember_export

    ds = tmp_path / "nuclei-ds"
    image = np.random.default_rng(0).normal(100, 10, (64, 64)).astype(np.float32)
    labels = np.zeros((64, 64), np.uint8)
    labels[20:30, 20:30] = 1
    record = export_case(image, labels, ds, "tiff", label_names=["background", "nucleus"])
    assert remember_export(ds, "tiff", record.case_id, "nuclei")

    viewer = make_napari_viewer()
    panel = FinetuneWidget(viewer)
    panel.show()
    assert str(panel.dataset_edit.value) == str(ds)

    shutil.rmtree(ds)
    later = FinetuneWidget(make_napari_viewer())
    later.show()
    assert str(later.dataset_edit.value).strip() in ("", ".")


def test_open_on_thick_slices_keeps_a_tumour_drawn_on_three_slices(make_napari_viewer):
    """*Open* (radius 2) with a ball of voxels reached 2 slices up and down: on a CT of 5 mm slices it erased a
    tumour drawn on 3 slices. The ball is now round in the layer's units (a disk in the slice here)."""
    from napari_attnseg._napari.correct_widget import CorrectWidget

    data = np.zeros((10, 64, 64), np.uint8)
    yy, xx = np.mgrid[:64, :64]
    for z in (4, 5, 6):
        data[z][(yy - 32) ** 2 + (xx - 32) ** 2 <= 12 ** 2] = 1
    data[8, 5, 5] = 1  # a speck
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros(data.shape, np.float32), name="ct", scale=(5.0, 0.57, 0.57))
    mask = viewer.add_labels(data.copy(), name="ct mask", scale=(5.0, 0.57, 0.57))
    corr = CorrectWidget(viewer)
    corr.radius_spin.value = 2
    corr.open_()
    now = np.asarray(mask.data)
    assert now[8, 5, 5] == 0, "the speck stays"
    assert (now[4:7] == 1).sum() >= 0.95 * (data[4:7] == 1).sum(), "open erased the tumour"
    corr.close_()  # a disk in the slice too: nothing bridged onto the empty slices 3 and 7
    assert not np.asarray(mask.data)[[3, 7]].any()
