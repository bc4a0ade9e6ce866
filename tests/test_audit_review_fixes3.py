"""Review fixes, follow-ups of test_audit_review_fixes1: (1) a mask saved with class names (napari's Save mask /
File > Save) exported by ``attnseg export`` into an existing dataset whose table lists the same classes in another
order is renumbered by name (was: exported by value, classes swapped, exit 0); a mask whose names are none of the
dataset's (a model's 'nucleus' against 'foreground') goes in by value with a warning, in the CLI and in the Correct
tab (which refused it); (2) a time-lapse kept as one t, y, x case (the TIFF layout) validates on a block of
consecutive frames, as the same movie exported one 2D case per frame does, said in the split line (was: frames
spread between trained ones, as the slices of a volume, unsaid)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_attnseg.cli import main
from napari_attnseg.data.nifti import write_nifti
from napari_attnseg.data.tiff import write_tiff

NUCLEI = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nuclei2d"
pytestmark = pytest.mark.skipif(not NUCLEI.exists(), reason="../shared/data not here")


def _crop(n: int = 1, size: int = 64, step: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """``n`` crops of the nuclei image, each ``step`` px further (a drifting time-lapse), and their instance ids."""
    im, lab = tifffile.imread(NUCLEI / "image.tif"), tifffile.imread(NUCLEI / "labels.tif")
    return (np.stack([im[step * t:step * t + size, 10:10 + size] for t in range(n)]),
            np.stack([lab[step * t:step * t + size, 10:10 + size] for t in range(n)]))


def _two_classes(ids: np.ndarray) -> np.ndarray:
    """Two classes of nuclei (odd and even instance ids): 1 and 2."""
    return np.where(ids > 0, np.where(ids % 2 == 0, 2, 1), 0).astype(np.uint8)


def _swap(labels: np.ndarray) -> np.ndarray:
    return np.where(labels == 1, 2, np.where(labels == 2, 1, 0)).astype(np.uint8)


def _export(capsys, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(["export", *args])
    return rc, capsys.readouterr().err


# 1. a saved mask's class names into an existing dataset -------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".tif", ".nii.gz"])
def test_a_saved_mask_listing_its_classes_in_another_order_goes_in_by_name(tmp_path, capsys, suffix):
    """Two masks saved from napari with class names (Save mask: TIFF or NIfTI, names in the file), the second with
    the classes in the other order: it goes in renumbered to the dataset's table, said (was: by value, the two classes
    swapped, exit 0). A saved mask with a class the dataset lacks beside one it has is refused, naming it."""
    image, ids = _crop(3 if suffix == ".nii.gz" else 1)
    image, ids = (image, ids) if suffix == ".nii.gz" else (image[0], ids[0])
    first = _two_classes(ids)
    img = tmp_path / f"img{suffix}"
    if suffix == ".tif":
        tifffile.imwrite(img, image)
        write = lambda p, data, names: write_tiff(p, data, (1.0, 1.0), class_names=names)  # noqa: E731
    else:
        write_nifti(img, image, (1.0, 1.0, 1.0), np.eye(4), None)
        write = lambda p, data, names: write_nifti(p, data, (1.0, 1.0, 1.0), np.eye(4), None,  # noqa: E731
                                                   class_names=names)
    a, b, c = (tmp_path / f"{k}_mask{suffix}" for k in "abc")
    write(a, first, ["background", "nucleus", "mitosis"])
    write(b, _swap(first), ["background", "Mitosis", "nucleus"])  # (names compared as training compares them)
    ds = tmp_path / "ds"
    assert _export(capsys, "--image", str(img), "--labels", str(a), "--dataset", str(ds), "--format", "tiff",
                   "--case-id", "a")[0] == 0
    rc, err = _export(capsys, "--image", str(img), "--labels", str(b), "--dataset", str(ds), "--format", "tiff",
                      "--case-id", "b")
    assert rc == 0, err
    assert "classes renumbered by name to the dataset's table: Mitosis 1->2, nucleus 2->1" in err, err
    out_a, out_b = (tifffile.imread(ds / "labels" / f"{k}.tif") for k in "ab")
    np.testing.assert_array_equal(out_b, out_a)  # was: 1729 (2D) voxels of the two classes swapped
    np.testing.assert_array_equal(out_a, first)
    write(c, first, ["background", "nucleus", "debris"])  # debris: not a class of the dataset, nucleus is
    rc, err = _export(capsys, "--image", str(img), "--labels", str(c), "--dataset", str(ds), "--format", "tiff")
    assert rc == 1 and f"{c} has class debris, which the dataset in {ds} does not have" in err, err
    assert "--label-names background,nucleus,mitosis" in err, err
    assert len(json.loads((ds / "manifest.json").read_text())["cases"]) == 2  # (was: debris went in as mitosis)


def test_a_saved_mask_with_names_none_of_the_datasets_goes_in_by_value_with_a_warning(tmp_path, capsys):
    """A mask saved with a model's default names (background, nucleus) into a dataset of background, foreground: no
    name in common, so not refused (these exports went in before): by value, with a warning naming both tables."""
    image, ids = _crop()
    img, plain, saved = tmp_path / "img.tif", tmp_path / "plain.tif", tmp_path / "saved_mask.tif"
    tifffile.imwrite(img, image[0])
    tifffile.imwrite(plain, (ids[0] > 0).astype(np.uint8))  # a mask without names: the table background, foreground
    write_tiff(saved, (ids[0] > 0).astype(np.uint8), (1.0, 1.0), class_names=["background", "nucleus"])
    ds = tmp_path / "ds"
    assert _export(capsys, "--image", str(img), "--labels", str(plain), "--dataset", str(ds), "--format", "tiff")[0] == 0
    rc, err = _export(capsys, "--image", str(img), "--labels", str(saved), "--dataset", str(ds), "--format", "tiff")
    assert rc == 0, err
    assert (f"{saved}: warning: {saved}'s class names (background, nucleus) are none of the label table of the dataset "
            f"in {ds} (background, foreground): its values go in as they are (1 nucleus as foreground)") in err, err
    assert "--label-names background,foreground" in err, err
    np.testing.assert_array_equal(tifffile.imread(ds / "labels" / "case_0001.tif"), ids[0] > 0)
    assert json.loads((ds / "manifest.json").read_text())["label_names"] == ["background", "foreground"]
    rc, err = _export(capsys, "--image", str(img), "--labels", str(saved), "--dataset", str(ds), "--format", "tiff",
                      "--label-names", "background,nucleus")  # names typed for this export: refused, as before
    assert rc == 1 and "has class nucleus, which the dataset in" in err, err


@pytest.mark.gui
def test_the_correct_tab_exports_a_mask_with_names_none_of_the_datasets_as_the_cli_does(dock, qtbot, tmp_path,
                                                                                        monkeypatch):
    """The same saved mask opened in napari (its names fill Class names) and exported from the Correct tab into that
    dataset: by value with the same warning (was refused: 'has class nucleus, which the dataset ... does not
    have', stricter than attnseg export on the same files). Names typed in the field are still matched by name."""
    from napari_attnseg._napari import correct_export, correct_widget

    image, ids = _crop()
    img, plain, saved = tmp_path / "img.tif", tmp_path / "plain.tif", tmp_path / "saved_mask.tif"
    tifffile.imwrite(img, image[0])
    tifffile.imwrite(plain, (ids[0] > 0).astype(np.uint8))
    write_tiff(saved, (ids[0] > 0).astype(np.uint8), (1.0, 1.0), class_names=["background", "nucleus"])
    ds = tmp_path / "ds"
    assert main(["export", "--image", str(img), "--labels", str(plain), "--dataset", str(ds), "--format", "tiff"]) == 0
    errors, said = [], []
    monkeypatch.setattr(correct_widget, "notify_error", errors.append)
    monkeypatch.setattr(correct_export, "notify_warning", said.append)
    viewer, d = dock
    corr = d.correct
    viewer.add_image(image[0], name="img")
    viewer.open(str(saved), plugin="napari")  # File > Open: napari's TIFF reader, a mask of ours made a Labels layer
    qtbot.waitUntil(lambda: viewer.layers["saved_mask"].__class__.__name__ == "Labels", timeout=5000)
    mask = viewer.layers["saved_mask"]
    corr.refresh()
    corr.labels_combo.value = mask.name
    assert corr.class_names_edit.value == "background, nucleus"
    corr.dataset_edit.value = str(ds)
    corr.format_combo.value = "tiff"
    assert corr.export() is not None, errors
    qtbot.waitUntil(lambda: corr.export_button.enabled, timeout=60000)
    assert not errors, errors
    assert any("saved_mask's class names (background, nucleus) are none of the label table" in m
               and "(1 nucleus as foreground)" in m for m in said), said
    manifest = json.loads((ds / "manifest.json").read_text())
    assert len(manifest["cases"]) == 2 and manifest["label_names"] == ["background", "foreground"]
    np.testing.assert_array_equal(tifffile.imread(ds / "labels" / "case_0001.tif"), ids[0] > 0)
    corr.class_names_edit.value = "background, tumour"  # typed: matched by name, a class the dataset lacks refused
    assert corr.class_names(mask) == ["background", "tumour"]


# 2. a time-lapse kept as one case (TIFF layout) ---------------------------------------------------------------------


def test_a_time_lapse_in_the_tiff_layout_validates_on_a_block_of_frames_as_per_frame_cases_do(tmp_path, capsys):
    """A time-lapse exported with attnseg export --format tiff is one t, y, x case: a 2D model validated on frames 2
    and 6, each between two trained frames, and nothing said so. Now its latest block of frames validates, the same
    frames as the movie exported one 2D case per frame (nnunet), and the split line says so."""
    from test_audit_train_data import cfg

    from napari_attnseg.training.trainer import Trainer

    movie, ids = _crop(8)
    img, lab = tmp_path / "movie.tif", tmp_path / "movie_mask.tif"
    tifffile.imwrite(img, movie, imagej=True, metadata={"axes": "TYX"})
    tifffile.imwrite(lab, (ids > 0).astype(np.uint8), imagej=True, metadata={"axes": "TYX"})
    for fmt in ("tiff", "nnunet"):
        assert _export(capsys, "--image", str(img), "--labels", str(lab), "--dataset", str(tmp_path / fmt),
                       "--format", fmt)[0] == 0
    t = Trainer(cfg(tmp_path / "tiff", tmp_path, val_fraction=0.25))
    assert t.mode == "slices" and t.split.val[0].box[0] == (6, 8) and len(t.split.val) == 1, t.split.describe()
    said = " ".join(t.split.warnings)  # was: 'held-out slices along axis 0: validation case_0000 slices 2,6'
    assert ("case_0000 is a time-lapse (8 frames in one t, y, x case): validation on the block of consecutive frames "
            "6-7, the others train") in said, said
    assert "2 labelled frames, 2 with foreground" in t.split.describe(), t.split.describe()
    per_frame = Trainer(cfg(tmp_path / "nnunet", tmp_path, val_fraction=0.25))
    assert [per_frame.case_ids[p.case] for p in per_frame.split.val] == ["case_0000_t006", "case_0000_t007"]
