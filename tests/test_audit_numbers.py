"""Numbers a user is shown, recomputed with numpy (trial audit): a microscopy model sized by its objects keeps
working in pixels after a fine-tune on a calibrated TIFF (its card's spacing, a number without a unit, made the
same pixels saved in nm enlarged 1000x and an uncalibrated copy 3.1x); the Correct tab counts a 2D mask's edits
in pixels, not voxels. Real data: crops of the nuclei sample."""

from __future__ import annotations

import numpy as np

from napari_attnseg._paths import samples_dir
from napari_attnseg.data import read_image
from napari_attnseg.data.export import export_case


def _nuclei(rows: int = 160, cols: int = 192):
    image = read_image(samples_dir() / "nuclei2d_image.tif").data[:rows, :cols]
    ref = read_image(samples_dir() / "nuclei2d_labels.tif").data[:rows, :cols]
    return np.asarray(image), (np.asarray(ref) > 0).astype(np.uint8)


def test_nuclei_2d_fine_tuned_on_a_micron_tiff_keeps_working_in_pixels(tmp_path):
    """`attnseg finetune` of nuclei-2d on an ImageJ TIFF of 0.325 um pixels wrote [0.325, 0.325] on the new card
    (nuclei-2d has none: it works in pixels, its object_diameter sizes objects). A card spacing has no unit, so the
    fine-tuned model resampled every image of another number: the same nuclei image saved in nm (325 nm pixels)
    was to be enlarged 1000x (977 GiB, the case failed), the image without a pixel size 3.1x (289 tiles instead of
    25, Dice against the reference 0.906 instead of 0.947)."""
    from napari_attnseg.training import TrainConfig
    from napari_attnseg.training.trainer import Trainer

    image, ref = _nuclei()
    for source, kept in (("cells.tif", None), ("scan.nii.gz", [0.325, 0.325])):  # a CT/MRI keeps its scans' spacing
        ds = tmp_path / source
        export_case(image, ref, ds, "tiff", spacing=(0.325, 0.325), unit="um", source_name=source,
                    label_names=["background", "nucleus"], case_id="c")
        t = Trainer(TrainConfig(dataset=str(ds), out=str(tmp_path / f"m_{source}"), start_model="nuclei-2d",
                                patch=[64, 64], epochs=1, iters_per_epoch=1, batch_size=1, refit=0.0))
        assert t.base_card.spacing is None and t.base_card.object_diameter
        assert t._card_spacing(t.base_card) == kept, source


def test_the_correct_tab_counts_a_2d_masks_edits_in_pixels(make_napari_viewer):
    """'Edits vs prediction: class 1: +40 / -0 voxels' (and 'Remove < 20 voxels') on a 2D nuclei mask: they are
    pixels, as the same panel's export messages call them; a volume's stay voxels. The counts are numpy's."""
    from napari_attnseg._napari.correct_widget import CorrectWidget

    image, ref = _nuclei()
    viewer = make_napari_viewer()
    viewer.add_image(image, name="cells", scale=(0.325, 0.325), units="um")
    mask = viewer.add_labels(ref.copy(), name="cells mask", scale=(0.325, 0.325), units="um")
    mask.metadata["attnseg_prediction"] = ref.copy()
    corr = CorrectWidget(viewer)
    corr.labels_combo.value = mask.name
    rows, cols = np.nonzero(ref[:40, :40] == 0)
    mask.data_setitem((rows[:40], cols[:40]), np.ones(40, np.uint8))
    corr._update_info()
    added = int(np.count_nonzero((np.asarray(mask.data) == 1) & (ref == 0)))
    removed = int(np.count_nonzero((np.asarray(mask.data) == 0) & (ref == 1)))
    said = corr.stats_label.value
    assert f"+{added} / -{removed} pixels" in said and "voxels" not in said, said
    assert corr.size_unit.value == "pixels"
    tip = corr.size_spin.tooltip  # 0.325 um pixels: 0.105625 um² each, 20 of them 2.11 um²
    assert "one pixel is 0.325 x 0.325 um, 0.106 um²: 20 pixels = 2.11 um²" in tip and "voxel is" not in tip, tip
    volume = viewer.add_labels(np.stack([ref, ref]), name="stack mask")
    volume.metadata["attnseg_prediction"] = np.stack([ref, ref])
    corr.labels_combo.value = volume.name
    corr._update_info()
    assert "voxels" in corr.stats_label.value and corr.size_unit.value == "voxels", corr.stats_label.value


def test_remove_small_on_a_time_lapse_counts_each_frames_objects(make_napari_viewer, qtbot):
    """'Remove < 100 voxels' on a time-lapse mask (t, y, x; 'Current slice only' unticked) labelled objects through
    time: nuclei of 34 and 51 px, present on 6 frames, were objects of 204 and 306 voxels and stayed in every frame.
    Each frame is now one image of its own: what numpy's per-frame labelling counts under 100 px goes, the rest
    stays (and 'Fill holes' fills a frame's hole, open through time before)."""
    from scipy import ndimage

    from napari_attnseg._napari.correct_widget import CorrectWidget

    image, ref = _nuclei()
    movie = np.stack([ref] * 6)
    viewer = make_napari_viewer()
    viewer.add_image(np.stack([image] * 6), name="movie", axis_labels=("t", "y", "x"))
    mask = viewer.add_labels(movie.copy(), name="movie mask", axis_labels=("t", "y", "x"))
    corr = CorrectWidget(viewer)
    corr.labels_combo.value = mask.name
    corr.slice_only.value = False
    cc, _ = ndimage.label(ref)
    sizes = np.bincount(cc.ravel())
    small = np.isin(cc, np.flatnonzero(sizes < 100)) & (cc > 0)
    assert sorted(sizes[1:][sizes[1:] < 100].tolist()) == [1, 34, 51]
    corr.size_spin.value = 100
    corr.remove_small()
    expected = np.where(small, 0, ref)
    qtbot.waitUntil(lambda: np.array_equal(np.asarray(mask.data)[0], expected), timeout=5000)
    assert all(np.array_equal(frame, expected) for frame in np.asarray(mask.data))
    holed = np.stack([ref] * 6)
    holed[:, 60:66, 60:66] = 1
    holed[:, 62:64, 62:64] = 0  # one hole per frame, a tube through time
    mask.data = holed
    corr.fill_holes()
    qtbot.waitUntil(lambda: (np.asarray(mask.data)[:, 62:64, 62:64] == 1).all(), timeout=5000)


def test_a_heatmaps_help_gives_a_flipped_layers_block_size_as_a_size():
    """A layer flipped with a negative scale (napari's way; the run keeps its voxel size): the heatmap's help said
    'one value per 0.308 x 2.56 x 2.56 image pixels (-2 x 2 x -2 mm; ...)' on brain1's 6.5 mm slices, a negative size."""
    from napari_attnseg.inference.prediction import AttentionMap
    from napari_attnseg.layers import Placement, attention_help

    amap = AttentionMap("gate 1", 1, np.full((10, 20, 20), 0.5, np.float32), (6.5 / 21.125, 2.56, 2.56), (0, 0, 0))
    said = [attention_help(amap, [1.0, 8.0], 2, "attention_unet",
                           Placement(scale, (0, 0, 0), None, units=("mm", "mm", "mm")))
            for scale in ((6.5, 0.78125, 0.78125), (-6.5, 0.78125, -0.78125))]
    assert "(2 x 2 x 2 mm;" in said[0] and said[1] == said[0], said
