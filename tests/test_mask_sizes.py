"""What a clinician reads off a corrected mask: each class's volume (mL on a scan in mm) or area (um² on a
calibrated microscope image) in the Correct tab, kept up to date with the edits. Figures recomputed with numpy on
crops of the real lung CT (0.57 x 0.57 x 5 mm voxels, read from its NIfTI) and the nuclei sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_attnseg.measure import class_sizes

LUNG = Path(__file__).resolve().parents[2] / "shared" / "data" / "radiomics"


def test_class_sizes_give_millilitres_square_microns_or_counts():
    assert class_sizes({0: 9, 1: 8312, 2: 5}, (5.0, 0.7, 0.7), "millimeter", ["background", "tumour"]) == \
        "tumour 20.4 mL (8,312 voxels); class 2 0.0122 mL (5 voxels)"  # (5 x 0.7 x 0.7 mm: 2.45 mm³ a voxel)
    assert class_sizes({1: 100}, (0.325, 0.325), "um", ["background", "nucleus"]) == "nucleus 10.6 µm² (100 pixels)"
    assert class_sizes({1: 600}, (0.325, 0.325), "micrometer", ["bg", "nucleus"], frames=6) == \
        "nucleus 10.6 µm² per frame (600 pixels over 6 frames)"
    assert class_sizes({1: 1, 255: 7}, (2.0, 2.0, 2.0), "pixel", ignore=255) == "class 1 1 voxel"  # no physical unit
    assert class_sizes({0: 5}, (1.0, 1.0, 1.0), "mm") == ""


@pytest.fixture()
def lung(tmp_path):
    if not (LUNG / "lung1_image.nii.gz").is_file():
        pytest.skip("the shared radiomics data is not here")
    import nibabel as nib

    img, lab = (nib.load(LUNG / f"lung1_{k}.nii.gz") for k in ("image", "labels"))
    crop = (slice(170, 270), slice(310, 410), slice(29, 37))  # (x, y, z as stored: slices 29-36, the tumour 32-34)
    paths = []
    for kind, src in (("image", img), ("labels", lab)):
        data = np.asarray(src.dataobj)[crop]
        path = tmp_path / f"lung_{kind}.nii.gz"
        nib.save(nib.Nifti1Image(data, src.affine, src.header), path)
        paths.append(path)
    return paths


def test_the_correct_tab_shows_the_tumour_volume_in_ml_as_it_is_edited(opened, lung):
    from napari_attnseg._napari.correct_widget import CorrectWidget
    from napari_attnseg.data import read_image

    image_path, labels_path = lung
    (image,) = opened(image_path)
    viewer = opened.viewer
    ref = np.asarray(read_image(labels_path).data).astype(np.uint8)
    spacing = read_image(image_path).spacing
    assert ref.shape == image.data.shape and ref.any()
    assert [str(u) for u in image.units] == ["millimeter"] * 3, image.units  # (the plugin's reader: mm)
    mask = viewer.add_labels(ref.copy(), name="lung mask", scale=image.scale, translate=image.translate,
                             units=image.units, metadata={"class_names": ["background", "tumour"]})
    mask.metadata["attnseg_prediction"] = ref.copy()
    corr = CorrectWidget(viewer)
    corr.labels_combo.value = mask.name
    corr._update_info()
    voxel = float(np.prod(spacing))
    n = int(np.count_nonzero(ref))
    assert corr.sizes_label.value == f"Mask: tumour {n * voxel / 1000:.3g} mL ({n:,} voxels)", corr.sizes_label.value
    z, y, x = np.nonzero(ref == 0)
    mask.data_setitem((z[:500], y[:500], x[:500]), np.ones(500, np.uint8))  # a brush adds 500 voxels
    corr._update_info()
    n = int(np.count_nonzero(np.asarray(mask.data) == 1))
    assert corr.sizes_label.value == f"Mask: tumour {n * voxel / 1000:.3g} mL ({n:,} voxels)", corr.sizes_label.value
    drawn = viewer.add_labels(np.zeros_like(ref), name="drawn", scale=image.scale, units=image.units)
    corr.labels_combo.value = drawn.name  # a mask drawn from nothing: no prediction, still measured
    corr._update_info()
    assert corr.sizes_label.value == "Mask: empty"
    drawn.data_setitem((z[:40], y[:40], x[:40]), np.full(40, 2, np.uint8))
    corr._update_info()
    assert corr.sizes_label.value == f"Mask: class 2 {40 * voxel / 1000:.3g} mL (40 voxels)", corr.sizes_label.value


def test_a_calibrated_2d_mask_is_measured_in_square_microns(make_napari_viewer):
    from napari_attnseg._napari.correct_widget import CorrectWidget
    from napari_attnseg._paths import samples_dir
    from napari_attnseg.data import read_image

    ref = (np.asarray(read_image(samples_dir() / "nuclei2d_labels.tif").data)[:128, :128] > 0).astype(np.uint8)
    viewer = make_napari_viewer()
    viewer.add_image(ref * 100, name="cells", scale=(0.325, 0.325), units="um")
    mask = viewer.add_labels(ref.copy(), name="cells mask", scale=(0.325, 0.325), units="um",
                             metadata={"class_names": ["background", "nucleus"]})
    mask.metadata["attnseg_prediction"] = ref.copy()
    corr = CorrectWidget(viewer)
    corr.labels_combo.value = mask.name
    corr._update_info()
    n = int(ref.sum())
    assert corr.sizes_label.value == f"Mask: nucleus {n * 0.325 ** 2:.3g} µm² ({n:,} pixels)", corr.sizes_label.value
