"""A clinician who makes mistakes must not lose work (trial 2026-12-06): a scan replaced under its name after the
prediction, File > Save typed over the image, --image and --labels swapped, the demo's screenshot over a file, a
corrected mask removed from the layer list."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_attnseg.cli import main

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nuclei2d"
pytestmark = pytest.mark.skipif(not (DATA / "image.tif").is_file(), reason="shared nuclei data not found")


@pytest.fixture()
def replaced(tmp_path):
    """cells.tif predicted, then replaced by another scan of the same name and shape (a PACS re-export)."""
    a = tifffile.imread(DATA / "image.tif")
    img = tmp_path / "cells.tif"
    tifffile.imwrite(img, a[:192, :192])
    assert main(["predict", str(img), "--model", "nuclei-2d", "--out", str(tmp_path / "pred"), "--device", "cpu"]) == 0
    tifffile.imwrite(img, np.ascontiguousarray(a[192:384, 192:384]))
    return img, tmp_path / "pred"


def test_a_record_reopened_on_a_replaced_scan_warns(replaced):
    from napari_attnseg.results_layers import record_layers

    img, pred = replaced
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        record_layers(pred / "cells_predict.json")
    text = " ".join(str(w.message) for w in seen)
    assert "cells.tif changed since the prediction" in text, text


def test_the_export_of_a_mask_made_on_the_scan_before_it_was_replaced_warns(replaced, capsys):
    img, pred = replaced
    main(["export", "--image", str(img), "--labels", str(pred / "cells_mask.tif"), "--dataset",
          str(img.parent / "ds"), "--foreground"])
    err = capsys.readouterr().err
    assert "cells.tif changed since the prediction" in err and "Export it only if" in err, err


def test_an_unchanged_scan_exports_without_the_warning(tmp_path, capsys):
    img = tmp_path / "cells.tif"
    tifffile.imwrite(img, tifffile.imread(DATA / "image.tif")[:192, :192])
    assert main(["predict", str(img), "--model", "nuclei-2d", "--out", str(tmp_path / "pred"), "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["export", "--image", str(img), "--labels", str(tmp_path / "pred" / "cells_mask.tif"), "--dataset",
                 str(tmp_path / "ds"), "--foreground"]) == 0
    assert "changed since the prediction" not in capsys.readouterr().err


@pytest.mark.gui
def test_the_plugins_tiff_writer_never_writes_a_mask_over_its_open_image(make_napari_viewer, tmp_path):
    """File > Save Selected Layers, the plugin's 'keeps reviewed slices' type, the image's name typed without its
    suffix: npe2 adds .tif after the dialog asked about the bare name, and the mask replaced the image file."""
    img = tmp_path / "cells.tif"
    shutil.copy(DATA / "image.tif", img)
    before = tifffile.imread(img)
    viewer = make_napari_viewer()
    viewer.open(str(img), plugin="napari")
    mask = viewer.add_labels((before > before.mean()).astype(np.uint8), name="cells mask")
    viewer.layers.selection = {mask}
    with pytest.raises(Exception, match="the file the image 'cells' was opened from"):
        viewer.layers.save(str(tmp_path / "cells"), selected=True, plugin="napari-attnseg")
    np.testing.assert_array_equal(tifffile.imread(img), before)


def test_swapped_image_and_labels_are_refused_naming_both(tmp_path, capsys):
    """The refusal of the scan as labels ('instance ids') advised --foreground, which then exported the scan as labels
    (99.99 % foreground) and the mask as the image."""
    img, lab = tmp_path / "cells.tif", tmp_path / "cells_labels.tif"
    tifffile.imwrite(img, tifffile.imread(DATA / "image.tif")[:128, :128])
    tifffile.imwrite(lab, (tifffile.imread(DATA / "labels.tif")[:128, :128] > 0).astype(np.uint8))
    for extra in ([], ["--foreground"]):
        rc = main(["export", "--image", str(lab), "--labels", str(img), "--dataset", str(tmp_path / "ds"), *extra])
        err = capsys.readouterr().err
        assert rc != 0 and "were they swapped?" in err and "cells_labels.tif" in err, (extra, rc, err)
    assert not (tmp_path / "ds" / "manifest.json").exists()


def test_the_demo_never_writes_its_screenshot_over_a_file(tmp_path, capsys):
    mine = tmp_path / "figure.png"
    mine.write_bytes(b"my figure")
    rc = main(["demo", "--screenshot", str(mine), "--quit"])
    assert rc == 1 and mine.read_bytes() == b"my figure" and "exists" in capsys.readouterr().err


@pytest.mark.gui
def test_a_removed_corrected_mask_can_be_restored(dock, notifications, qtbot):
    """The layer list's delete on a mask with reviewed marks, never saved: no question, no word, and napari cannot undo
    a removal. It is now said, with Restore; a mask without marks or edits, and closing the viewer, say nothing."""
    viewer, d = dock
    viewer.add_image(np.random.default_rng(0).random((6, 32, 32)).astype(np.float32), name="vol")
    mask = viewer.add_labels(np.zeros((6, 32, 32), np.uint8), name="vol mask")
    mask.data[2, 5, 5] = 1
    d.correct.labels_combo.value = "vol mask"
    d.correct.mark_slices([1, 2])
    plain = viewer.add_labels(np.zeros((6, 32, 32), np.uint8), name="scratch")
    viewer.layers.remove(plain)
    viewer.layers.remove(mask)
    qtbot.waitUntil(lambda: any("vol mask" in str(n.message) for n in notifications), timeout=5000)
    said = [n for n in notifications if "vol mask" in str(n.message)]
    assert len(said) == 1 and "Restore" in str(said[0].message) and said[0].actions, said
    assert not any("scratch" in str(n.message) for n in notifications)
    said[0].actions[0][1](said[0])  # Restore
    restored = viewer.layers["vol mask"]
    assert restored.data[2, 5, 5] == 1 and restored.metadata["reviewed_slices"] == [1, 2]
    notifications.clear()
    viewer.close()
    qtbot.wait(100)
    assert not any("vol mask" in str(n.message) for n in notifications)


@pytest.mark.gui
def test_a_mask_removed_unchanged_since_its_export_is_not_offered_back(dock, notifications, qtbot, tmp_path):
    """Closing a case after its export (its layers deleted) loses nothing: no Restore, and nothing keeps the mask in
    memory (the worklist's 'a closed case leaves nothing in memory')."""
    import gc
    import weakref

    viewer, d = dock
    viewer.add_image(np.random.default_rng(0).random((6, 32, 32)).astype(np.float32), name="vol")
    mask = viewer.add_labels(np.zeros((6, 32, 32), np.uint8), name="vol mask")
    mask.data[2, 5:9, 5:9] = 1
    corr = d.correct
    corr.labels_combo.value, corr.image_combo.value = "vol mask", "vol"
    corr.mark_slices([1, 2])
    corr.dataset_edit.value = str(tmp_path / "ds")
    corr.class_names_edit.value = "background, cell"
    assert corr.export() is not None
    qtbot.waitUntil(lambda: corr.export_button.enabled and (tmp_path / "ds" / "manifest.json").is_file(), timeout=60000)
    ref = weakref.ref(mask)
    del mask
    viewer.layers.clear()
    qtbot.wait(100)
    gc.collect()
    assert not any("vol mask" in str(n.message) and "Restore" in str(n.message) for n in notifications)
    assert ref() is None
