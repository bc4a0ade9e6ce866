"""Follow-ups of the time-lapse export (one 2D case per frame, ``<case>_t000``...) and of RGBA pictures (an opaque
alpha dropped when read, real transparency refused): the places that still met the old behaviour.

1. ``attnseg predict`` of a transparent RGBA picture with a model reading 3 colours said "choose one with --channel K
   (0 to 3)"; the grey path of a one-channel model lost the reader's note.
2. Training on a transparent RGBA picture loaded it as 4 channels ("4 channel(s) but the model takes 3").
3. The napari Correct tab's export of a time-lapse said "Exported case_0000_t000", proposed that frame's id for the
   next export, and *Replace the case* never found the movie's frames.
4. The split by case put frames of one movie on both sides (train t002, validate t000).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from test_audit_inputs_more import _model, _nuclei  # (a crop of the nuclei image; a tiny model of n channels)

from napari_attnseg.cli import main
from napari_attnseg.cohort.inputs import pick_channel
from napari_attnseg.data import read_image
from napari_attnseg.data.dataset import read_dataset
from napari_attnseg.errors import DatasetError
from napari_attnseg.training.colour import ColourCases
from napari_attnseg.training.split import make_split


def _transparent_png(path: Path, grey: np.ndarray, transparent: bool = True) -> Path:
    alpha = np.full_like(grey, 255)
    if transparent:
        alpha[:12] = 0  # a quarter of the picture: outside an exported region
    Image.fromarray(np.dstack([grey, 255 - grey, grey // 2, alpha]), "RGBA").save(path)
    return path


# 1. predict: a transparent RGBA picture and a model reading colours ------------------------------------------------


def test_predict_refuses_a_transparent_picture_for_a_colour_model_with_the_transparency_message(tmp_path, capsys):
    grey, _ = _nuclei()
    path = _transparent_png(tmp_path / "slide.png", grey)
    assert main(["predict", str(path), "--model", str(_model(tmp_path, 3)), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "transparent pixels (25% of them" in err and "rgba2rgb" in err and "Image > Type > RGB Color" in err, err
    assert "--channel K (0 to 3" not in err, err  # (choosing one of red, green, blue, alpha was never the answer)


def test_a_grey_model_given_a_transparent_colour_picture_is_not_offered_the_alpha_as_a_channel(tmp_path, capsys):
    """'choose one with --channel K (0 to 3)' offered the transparency as a channel to segment."""
    grey, _ = _nuclei()
    path = _transparent_png(tmp_path / "colours.png", grey)
    assert main(["predict", str(path), "--model", "nuclei-2d", "--out", str(tmp_path / "out"), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "--channel K (0 to 2" in err and "3 is its transparency (alpha)" in err, err


def test_the_grey_of_an_opaque_rgba_picture_keeps_the_readers_note(tmp_path):
    grey, _ = _nuclei()
    path = tmp_path / "grey.png"
    Image.fromarray(np.dstack([grey, grey, grey, np.full_like(grey, 255)]), "RGBA").save(path)
    vol = pick_channel(read_image(path), None, 1, path)
    assert vol.data.shape == (48, 48)
    assert "alpha channel of grey.png is fully opaque" in vol.meta["note"], vol.meta["note"]  # the reader's, kept
    assert "grey" in vol.meta["note"].split(";")[-1], vol.meta["note"]  # and the grey path's


# 2. training on a transparent RGBA picture -------------------------------------------------------------------------


def test_training_refuses_a_transparent_picture_naming_the_case_and_file(tmp_path):
    grey, mask = _nuclei()
    (tmp_path / "ds" / "images").mkdir(parents=True)
    (tmp_path / "ds" / "labels").mkdir()
    alpha = np.full_like(grey, 255)
    alpha[:12] = 0
    tifffile.imwrite(tmp_path / "ds" / "images" / "c0.tif", np.dstack([grey, grey, grey, alpha]),
                     photometric="rgb", extrasamples=["unassalpha"])
    tifffile.imwrite(tmp_path / "ds" / "labels" / "c0.tif", mask)
    (case,) = read_dataset(tmp_path / "ds").cases
    for start in (None, str(_model(tmp_path, 3))):  # from scratch, or a model reading colours
        with pytest.raises(DatasetError, match=r"Case c0: c0\.tif is an RGBA picture with transparent pixels "
                                               r"\(25% .*rgba2rgb"):
            ColourCases(start).load(case)
    image, _, _ = ColourCases(str(_model(tmp_path, 1))).load(case)  # a one-channel model: its grey, as before
    assert image.shape == (1, 48, 48)


# 4. the split by case keeps a movie's frames together --------------------------------------------------------------


def _frames(ids: list[str]) -> list[np.ndarray]:
    _, mask = _nuclei(32)
    return [np.roll(mask, 2 * k, axis=1) for k in range(len(ids))]


def test_the_split_by_case_keeps_the_frames_of_one_movie_on_one_side():
    ids = [f"case_0000_t00{t}" for t in range(4)] + ["case_0001", "case_0002", "case_0003", "case_0004"]
    for seed in range(6):
        split = make_split(_frames(ids), ids, ignore=None, seed=seed)
        held = {split.case_ids[p.case] for p in split.val}
        sides = {any(f"case_0000_t00{t}" in held for t in range(4)), all(f"case_0000_t00{t}" in held for t in range(4))}
        assert len(sides) == 1, (seed, split.describe())  # all four frames in validation, or none
        assert any("each movie is on one side" in w for w in split.warnings), split.warnings


def test_one_movie_validates_on_a_block_of_consecutive_frames_and_says_so():
    ids = [f"case_0000_t{t:03d}" for t in range(10)]
    split = make_split(_frames(ids), ids, ignore=None, val_fraction=0.2, seed=3)
    held = sorted(split.case_ids[p.case] for p in split.val)
    assert held == ["case_0000_t008", "case_0000_t009"], split.describe()  # at one end, not drawn among neighbours
    assert any("validation Dice is optimistic" in w for w in split.warnings), split.warnings


def test_cases_not_named_as_frames_are_drawn_one_by_one_as_before():
    ids = ["a", "b", "c", "d", "e_t001"]  # (one case named like a frame has no movie)
    split = make_split(_frames(ids), ids, ignore=None, seed=0)
    assert split.how == "by case" and len(split.val) == 1
    assert not any("time-lapse" in w for w in split.warnings), split.warnings


# 3. the napari Correct tab's export of a time-lapse ----------------------------------------------------------------


def test_the_correct_tab_exports_a_time_lapse_as_frames_and_replaces_them_safely(make_napari_viewer, qtbot, tmp_path,
                                                                                 monkeypatch):
    from napari_attnseg._napari import correct_widget as cw
    from napari_attnseg._napari.correct_widget import CorrectWidget

    infos: list[str] = []
    errors: list[str] = []
    monkeypatch.setattr(cw, "notify_info", infos.append)
    monkeypatch.setattr(cw, "notify_error", errors.append)
    grey, _ = _nuclei()
    movie = np.stack([np.roll(grey, 3 * t, axis=1) for t in range(3)])
    viewer = make_napari_viewer()
    viewer.add_image(movie, name="movie", axis_labels=("t", "y", "x"))
    layer = viewer.add_labels((movie > 120).astype(np.uint8), name="movie mask", axis_labels=("t", "y", "x"))
    w = CorrectWidget(viewer)
    ds = tmp_path / "ds"
    w.dataset_edit.line_edit.value = str(ds)
    w.format_combo.value = "nnunet"
    w.mark_slices([0, 1, 2])
    assert w.export() is not None, errors
    qtbot.waitUntil(lambda: w.export_button.enabled, timeout=60000)
    assert any("Exported 3 frames as 2D cases case_0000_t000, case_0000_t001, case_0000_t002" in m for m in infos), infos
    assert "last export: case_0000)" in w.case_edit.native.placeholderText()  # the movie's id, not its first frame's
    assert "type case_0000 and tick Replace the case" in w.case_edit.tooltip

    layer.metadata["reviewed_slices"] = [0]  # the next round's mask reviews frame 0 only
    w.case_edit.value, w.replace_box.value = "case_0000", True
    assert w.export() is None
    assert errors and "would not replace frames 1-2 (case_0000_t001, case_0000_t002)" in errors[-1], errors
    w.case_edit.value = "case_0000_t000"  # the first frame's id, as the hint proposed
    assert w.export() is None and "Type case_0000 as the case id" in errors[-1], errors
    manifest = json.loads((ds / "manifest.json").read_text())
    assert [c["case_id"] for c in manifest["cases"]] == [f"case_0000_t00{t}" for t in range(3)]

    w.mark_slices([1, 2])  # the frames checked again in this mask: the replacement goes ahead
    w.case_edit.value = "case_0000"
    assert w.export() is not None, errors
    qtbot.waitUntil(lambda: w.export_button.enabled, timeout=60000)
    manifest = json.loads((ds / "manifest.json").read_text())
    assert [c["case_id"] for c in manifest["cases"]] == [f"case_0000_t00{t}" for t in range(3)]
