"""Inputs from files we did not have: a one-plane (1, Y, X) TIFF with its (Y, X) mask (and the reverse) refused as
off the image's grid; a (3, Y, X) z-stack saved by ``tifffile.imwrite`` (stored as planar RGB by tifffile's default)
refused as "3 channels, 0 red..."; a dataset of movies where one movie holds all the foreground, split with it
wholly on one side. Real nuclei crops, tiny models."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import tifffile
from test_audit_inputs_more import DATA, _model, _nuclei  # (nuclei crop; a tiny model of n channels)

from napari_attnseg.cli import main
from napari_attnseg.data import read_image
from napari_attnseg.data.export import export_case
from napari_attnseg.training.split import make_split

# 1. a one-plane stack (1, Y, X) and a (Y, X) mask are one 2D image and its mask ------------------------------------


def _one_plane_pair(tmp_path, stacked: str, axes: str | None = None):
    """image.tif and mask.tif of a nuclei crop, ``stacked`` ('image' or 'mask') saved as (1, Y, X) by tifffile (QYX,
    or ``axes``), 0.5 units per pixel (resolution in pixels per centimetre)."""
    grey, mask = _nuclei()
    res = {"resolution": (2.0, 2.0), "resolutionunit": "CENTIMETER"}
    meta = {"metadata": {"axes": axes}} if axes else {}
    tifffile.imwrite(tmp_path / "image.tif", grey[None] if stacked == "image" else grey, **res,
                     **(meta if stacked == "image" else {}))
    tifffile.imwrite(tmp_path / "mask.tif", mask[None] if stacked == "mask" else mask,
                     **(meta if stacked == "mask" else {}))
    return grey, mask


@pytest.mark.parametrize("axes", [None, "ZYX", "TYX"])
def test_a_one_plane_tiff_reads_as_a_2d_image_on_its_pixel_size(tmp_path, axes):
    grey, _ = _one_plane_pair(tmp_path, "image", axes)
    image = read_image(tmp_path / "image.tif")
    assert image.data.shape == grey.shape and image.meta["axes"] == "YX", (image.data.shape, image.meta["axes"])
    assert image.spacing == pytest.approx((0.5, 0.5)) and image.meta["unit"] == "cm"
    np.testing.assert_array_equal(image.data, grey)


@pytest.mark.parametrize("stacked", ["image", "mask"])
@pytest.mark.parametrize("fmt", ["tiff", "nnunet"])
def test_export_takes_a_one_plane_stack_with_a_2d_mask(tmp_path, capsys, stacked, fmt):
    _, mask = _one_plane_pair(tmp_path, stacked)
    ds = tmp_path / "ds"
    code = main(["export", "--image", str(tmp_path / "image.tif"), "--labels", str(tmp_path / "mask.tif"),
                 "--dataset", str(ds), "--format", fmt])
    assert code == 0, capsys.readouterr().err  # was: "--labels mask.tif has shape (48, 48), but --image ... (1, 48, 48)"
    case = json.loads((ds / "manifest.json").read_text())["cases"][0]
    # 0.5 cm pixels: the TIFF layout keeps the file's unit, NIfTI (nnU-Net) names mm: 5 mm (was written as 0.5 mm)
    spacing = [0.5, 0.5] if fmt == "tiff" else [5.0, 5.0]
    assert case["shape"] == list(mask.shape) and case["spacing"] == pytest.approx(spacing), case
    assert case["reviewed_slices"] is None  # a 2D image, reviewed as a whole


@pytest.mark.parametrize("stacked", ["image", "mask"])
def test_evaluate_scores_a_one_plane_stack_against_a_2d_mask(tmp_path, capsys, stacked):
    _one_plane_pair(tmp_path, stacked)
    code = main(["evaluate", "--model", str(_model(tmp_path, 1)), "--image", str(tmp_path / "image.tif"),
                 "--labels", str(tmp_path / "mask.tif"), "--json"])
    assert code == 0, capsys.readouterr().err  # was: "mask.tif has shape (48, 48), image.tif has (1, 48, 48)"


def test_a_mask_saved_from_a_one_plane_stack_keeps_its_whole_plane_reviewed(tmp_path):
    from napari_attnseg.data.io import write_image

    grey, mask = _nuclei()
    tifffile.imwrite(tmp_path / "image.tif", grey)
    image = read_image(tmp_path / "image.tif")
    write_image(tmp_path / "mask.tif", mask[None], None, spacing=(1.0, 1.0, 1.0), reviewed_slices=[0])
    labels = read_image(tmp_path / "mask.tif")  # (a (1, Y, X) mask saved with its one slice reviewed)
    assert labels.data.shape == image.data.shape and labels.meta.get("reviewed_slices") is None, labels.meta


@pytest.mark.parametrize("stacked", ["image", "labels"])
def test_the_correct_tabs_export_takes_a_one_plane_layer_beside_a_2d_one(tmp_path, stacked):
    """The napari Correct tab hands ``export_case`` its layers' arrays: a (1, Y, X) image layer (napari's own TIFF
    reader) with a (Y, X) labels layer, or a (1, Y, X) labels layer marked reviewed with a (Y, X) image."""
    grey, mask = _nuclei()
    image, labels = (grey[None], mask) if stacked == "image" else (grey, mask[None])
    spacing = [1.0, 0.5, 0.5] if stacked == "image" else [0.5, 0.5]
    rec = export_case(image, labels, tmp_path / "ds", "tiff", spacing=spacing, axes="ZYX" if stacked == "labels" else None,
                      reviewed_slices=[0] if stacked == "labels" else None,
                      prediction=mask[None] if stacked == "labels" else None)
    assert rec.shape == list(mask.shape) and rec.spacing == pytest.approx([0.5, 0.5]) and rec.reviewed_slices is None
    written = read_image(tmp_path / "ds" / rec.files["label"])
    np.testing.assert_array_equal(written.data, mask)


# 2. a (3, Y, X) array saved by tifffile.imwrite: a z-stack (or channels), not an RGB picture -----------------------


def _script_stack(path, n: int, **kwargs) -> np.ndarray:
    grey, _ = _nuclei()
    stack = np.stack([np.roll(grey, 5 * k, 0) for k in range(n)])
    with warnings.catch_warnings():  # (tifffile: "stored as RGB with separate component planes", its default)
        warnings.simplefilter("ignore", DeprecationWarning)
        tifffile.imwrite(path, stack, **kwargs)
    return stack


@pytest.mark.parametrize("n", [2, 3, 4])
def test_a_short_stack_saved_by_tifffile_reads_as_planes_whatever_its_length(tmp_path, n):
    stack = _script_stack(tmp_path / "z.tif", n)
    with tifffile.TiffFile(tmp_path / "z.tif") as tif:  # what tifffile wrote: 3 and 4 planes as planar RGB(A)
        assert (tif.pages[0].photometric == 2) == (n in (3, 4)) and tif.shaped_metadata[0]["shape"] == list(stack.shape)
    image = read_image(tmp_path / "z.tif")
    assert image.meta["axes"] == "QYX" and image.data.shape == stack.shape  # as its 2- and 5-plane siblings
    np.testing.assert_array_equal(image.data, stack)


@pytest.mark.parametrize("n", [3, 4])
def test_predict_segments_a_3_plane_stack_saved_by_tifffile_plane_by_plane(tmp_path, capsys, n):
    _script_stack(tmp_path / "z.tif", n)
    assert main(["predict", str(tmp_path / "z.tif"), "--model", str(_model(tmp_path, 1)), "--out",
                 str(tmp_path / "out")]) == 0, capsys.readouterr().err  # was: "has 3 channels (axes SYX)... 0 red"
    err = capsys.readouterr().err
    assert f"{n} planes along an unnamed first axis (axes QYX)" in err and "--channel K" in err, err
    assert tifffile.imread(tmp_path / "out" / "z_mask.tif").shape == (n, 48, 48)


def test_rgb_pictures_and_files_naming_their_axes_keep_them(tmp_path):
    grey, _ = _nuclei()
    rgb = np.stack([grey, 255 - grey, grey // 2], -1)
    tifffile.imwrite(tmp_path / "photo.tif", rgb)  # (Y, X, 3): an RGB picture
    assert read_image(tmp_path / "photo.tif").meta["axes"] == "YXS"
    _script_stack(tmp_path / "named.tif", 3, photometric="rgb", metadata={"axes": "SYX"})  # says it is colours
    assert read_image(tmp_path / "named.tif").meta["axes"] == "SYX"
    _script_stack(tmp_path / "ij.tif", 3, imagej=True)  # ImageJ: channels, as Fiji opens it
    assert read_image(tmp_path / "ij.tif").meta["axes"] == "CYX"


def test_a_stained_slide_saved_channel_first_by_tifffile_stays_a_colour_picture(tmp_path, capsys):
    """A bright-field (H&E-like) picture saved (3, Y, X) by tifffile (a PyTorch CHW tensor; tifffile stores it as
    planar RGB) is the same file as a 3-plane stack; read as planes it lost the hematoxylin a 1-channel model segments.
    A stained picture's planes are now read as colour, with a note; a fluorescence stack stays 3 planes."""
    grey, _ = _nuclei()
    he = np.stack([255 - grey // 3, 255 - grey, 255 - grey // 4], -1).astype(np.uint8)  # bright-field-like
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        tifffile.imwrite(tmp_path / "slide.tif", np.moveaxis(he, -1, 0))
    assert main(["predict", str(tmp_path / "slide.tif"), "--model", str(_model(tmp_path, 1)), "--out",
                 str(tmp_path / "out")]) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "stored as planar RGB, looks like a bright-field stained picture: read as colour" in err, err
    assert tifffile.imread(tmp_path / "out" / "slide_mask.tif").shape == grey.shape
    record = json.loads((tmp_path / "out" / "slide_predict.json").read_text())
    assert record.get("channel") == "hematoxylin", record


# 3. several movies, one holding all the foreground: foreground on both sides of the split --------------------------


def _movies(n_movies: int = 3, frames: int = 6) -> tuple[list[np.ndarray], list[str]]:
    """Frames of ``n_movies`` movies (crops of the nuclei labels), only movie m0 with foreground."""
    labels = tifffile.imread(DATA / ("labels.tif" if (DATA / "labels.tif").exists() else "nuclei2d_labels.tif"))
    fg = (labels[200:232, 200:232] > 0).astype(np.uint8)
    assert fg.any()
    ids = [f"m{m}_t{t:03d}" for m in range(n_movies) for t in range(frames)]
    return [np.roll(fg, t, 1) if m == 0 else np.zeros_like(fg) for m in range(n_movies) for t in range(frames)], ids


@pytest.mark.parametrize("seed", range(5))
def test_the_only_movie_with_foreground_trains_and_validates_on_a_block_at_its_end(seed):
    labels, ids = _movies()
    split = make_split(labels, ids, ignore=None, seed=seed)
    val = {split.case_ids[p.case] for p in split.val}
    train = {split.case_ids[p.case] for p in split.train}
    assert val & {f"m0_t{t:03d}" for t in range(6)} == {"m0_t005"}, split.describe()  # its last frame validates
    assert {f"m0_t{t:03d}" for t in range(5)} <= train, split.describe()  # the others train
    for m in ("m1", "m2"):  # the empty movies stay whole
        assert len({f"{m}_t{t:03d}" for t in range(6)} & val) in (0, 6), split.describe()
    said = " ".join(split.warnings)
    assert "m0 is the only one with foreground, so it is split" in said and "m0_t005 validates" in said, said
    assert "chosen by the training loss" not in said, said


def test_a_movie_with_one_foreground_frame_stays_in_training(tmp_path):
    labels, ids = _movies()
    labels = [lab if i == 0 else (np.zeros_like(lab) if ids[i].startswith("m0") else lab) for i, lab in enumerate(labels)]
    for seed in range(5):  # (its one frame cannot be on both sides: training needs it)
        split = make_split(labels, ids, ignore=None, seed=seed)
        assert "m0_t000" in {split.case_ids[p.case] for p in split.train}, split.describe()


def test_the_correct_tab_exports_a_one_plane_tiff_with_its_2d_mask(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    """napari's own reader (this plugin reads only .ome.tif) opens the one-plane TIFF as a (1, Y, X) layer; the
    (Y, X) mask beside it exports as the 2D case it is."""
    from napari_attnseg._napari import correct_widget as cw
    from napari_attnseg._napari.correct_widget import CorrectWidget

    errors: list[str] = []
    monkeypatch.setattr(cw, "notify_error", errors.append)
    _, mask = _one_plane_pair(tmp_path, "image")
    viewer = make_napari_viewer()
    image = viewer.open(str(tmp_path / "image.tif"), plugin="napari")[0]
    assert image.data.shape == (1, *mask.shape), image.data.shape
    viewer.add_labels(mask, name="image mask")
    w = CorrectWidget(viewer)
    w.dataset_edit.line_edit.value = str(tmp_path / "ds")
    w.format_combo.value = "tiff"
    assert w.export() is not None, errors
    qtbot.waitUntil(lambda: w.export_button.enabled, timeout=60000)
    assert not errors, errors  # was: "Labels of shape (48, 48) do not match the image's shape (1, 48, 48)"
    case = json.loads((tmp_path / "ds" / "manifest.json").read_text())["cases"][0]
    assert case["shape"] == list(mask.shape), case
