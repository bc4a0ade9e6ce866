"""The plugin's NIfTI/DICOM readers and NIfTI writer in a real viewer: geometry (affine, qform/sform
codes, orientation) survives a round trip, a mask without geometry takes its image's, warnings reach
the user, and a labels NIfTI opens as a Labels layer."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

pytestmark = pytest.mark.gui

PLUGIN = "napari-attnseg"
DATA = Path("/work/shared/data")
BRAIN = DATA / "radiomics" / "brain1_image.nii.gz"
BRAIN_LABELS = DATA / "radiomics" / "brain1_labels.nii.gz"
LUNG = DATA / "radiomics" / "lung1_image.nii.gz"
MNI_T1 = DATA / "mni152" / "t1.nii.gz"


def need(*paths: Path):
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        pytest.skip(f"real data not available: {', '.join(missing)}")


@pytest.fixture()
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture()
def notes():
    """Messages of the napari notifications shown during the test."""
    from napari.utils.notifications import notification_manager

    seen: list[str] = []

    def record(event):
        seen.append(str(getattr(event, "message", None) or getattr(getattr(event, "value", None), "message", event)))

    notification_manager.notification_ready.connect(record)
    yield seen
    notification_manager.notification_ready.disconnect(record)


def synthetic_nifti(path: Path, data: np.ndarray, affine: np.ndarray, qcode=1, scode=1) -> Path:
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=qcode)
    img.set_sform(affine, code=scode)
    nib.save(img, str(path))
    return path


def test_new_labels_without_geometry_take_the_open_images_affine(viewer, tmp_path, notes):
    need(LUNG)
    ct = viewer.open(str(LUNG), plugin=PLUGIN)[0]
    source = nib.load(str(LUNG))
    new = viewer.add_labels(np.zeros(ct.data.shape, np.uint8), name="new", scale=ct.scale)
    new.data[10, 100:120, 200:230] = 1
    out = tmp_path / "new.nii.gz"
    new.save(str(out), plugin=PLUGIN)
    saved = nib.load(str(out))
    np.testing.assert_allclose(saved.affine, source.affine, atol=1e-4)
    assert nib.aff2axcodes(saved.affine) == nib.aff2axcodes(source.affine)
    assert saved.shape == source.shape
    # the painted voxels are where they were painted: array (k, j, i) = stored (i, j, k)
    assert np.asarray(saved.dataobj)[200:230, 100:120, 10].all() and np.asarray(saved.dataobj).sum() == 600
    assert not any("patient position" in n for n in notes)


def test_labels_without_any_image_warn_that_they_have_no_position(viewer, tmp_path, notes):
    lab = viewer.add_labels(np.zeros((4, 6, 8), np.uint8), name="alone", scale=(2.0, 1.0, 1.0))
    out = tmp_path / "alone.nii.gz"
    lab.save(str(out), plugin=PLUGIN)
    assert nib.load(str(out)).header.get_zooms() == (1.0, 1.0, 2.0)
    assert any("without a patient position" in n for n in notes)


def test_qform_and_sform_codes_survive_a_round_trip(viewer, tmp_path):
    need(MNI_T1)
    src = nib.load(str(MNI_T1))
    assert (int(src.header["qform_code"]), int(src.header["sform_code"])) == (0, 2)
    t1 = viewer.open(str(MNI_T1), plugin=PLUGIN)[0]
    assert t1.metadata["nifti"]["qform_code"] == 0 and t1.metadata["nifti"]["sform_code"] == 2
    mask = viewer.add_labels(np.zeros(t1.data.shape, np.uint8), name="mask", scale=t1.scale,
                             metadata=dict(t1.metadata))
    out = tmp_path / "mask.nii.gz"
    mask.save(str(out), plugin=PLUGIN)
    saved = nib.load(str(out))
    assert (int(saved.header["qform_code"]), int(saved.header["sform_code"])) == (0, 2)
    np.testing.assert_allclose(saved.affine, src.affine, atol=1e-4)
    # a mask that carries only the affine (as the Segment widget's results do) gets the codes of its image
    mask2 = viewer.add_labels(np.zeros(t1.data.shape, np.uint8), name="mask2", scale=t1.scale,
                              metadata={"affine": t1.metadata["affine"], "spacing": t1.metadata["spacing"]})
    out2 = tmp_path / "mask2.nii.gz"
    mask2.save(str(out2), plugin=PLUGIN)
    saved2 = nib.load(str(out2))
    assert (int(saved2.header["qform_code"]), int(saved2.header["sform_code"])) == (0, 2)


def test_uneven_dicom_spacing_warning_reaches_the_user(viewer, tmp_path, notes):
    import pydicom
    from test_io import write_dicom_series

    from napari_attnseg.data import read_image

    hu = (np.arange(4)[:, None, None] * 50 - 200 + np.zeros((4, 8, 6))).astype(np.float32)
    folder = write_dicom_series(tmp_path / "ct", hu, shuffle=False)
    last = sorted(folder.iterdir())[-1]
    ds = pydicom.dcmread(str(last))
    ds.ImagePositionPatient = [-100.0, -80.0, 40.0 + 2 * 2.5 + 6.0]  # the last gap is 6 mm, not 2.5
    ds.save_as(str(last))
    warning = read_image(folder).meta["warning"]
    assert "uneven slice spacing" in warning
    layer = viewer.open(str(folder), plugin=PLUGIN)[0]
    assert layer.metadata["warning"] == warning
    assert any(warning in n for n in notes)


def test_labels_nifti_opens_as_labels(viewer, tmp_path):
    need(BRAIN_LABELS)
    layer = viewer.open(str(BRAIN_LABELS), plugin=PLUGIN)[0]
    assert layer._type_string == "labels"
    assert set(np.unique(layer.data)) <= {0, 1, 2}
    # an integer image with a plain name stays an image; so does a "mask" of many values
    aff = np.diag([1.0, 1.0, 2.0, 1.0])
    img = synthetic_nifti(tmp_path / "scan.nii.gz", np.zeros((6, 5, 4), np.uint8), aff)
    assert viewer.open(str(img), plugin=PLUGIN)[0]._type_string == "image"
    many = synthetic_nifti(tmp_path / "mask.nii.gz", np.arange(6 * 5 * 20, dtype=np.int16).reshape(6, 5, 20), aff)
    assert viewer.open(str(many), plugin=PLUGIN)[0]._type_string == "image"
    seg = synthetic_nifti(tmp_path / "liver_seg.nii", np.ones((6, 5, 4), np.int16), aff)
    assert viewer.open(str(seg), plugin=PLUGIN)[0]._type_string == "labels"


def test_labels_in_another_orientation_are_reoriented_onto_the_image(viewer, tmp_path, notes):
    need(BRAIN, BRAIN_LABELS)
    src = nib.load(str(BRAIN_LABELS))
    ras = tmp_path / "ras_labels.nii.gz"
    nib.save(nib.as_closest_canonical(src), str(ras))
    assert nib.aff2axcodes(nib.load(str(ras)).affine) == ("R", "A", "S")
    image = viewer.open(str(BRAIN), plugin=PLUGIN)[0]
    moved = viewer.open(str(ras), plugin=PLUGIN)[0]
    original = viewer.open(str(BRAIN_LABELS), plugin=PLUGIN)[0]
    assert moved.data.shape == image.data.shape
    np.testing.assert_array_equal(np.asarray(moved.data), np.asarray(original.data))  # voxel by voxel
    np.testing.assert_allclose(np.asarray(moved.metadata["affine"]), np.asarray(image.metadata["affine"]), atol=1e-4)
    assert any("reoriented" in n and "RAS" in n and "LAS" in n for n in notes)
    # saved back, it is the same mask in the same place as the original file
    out = tmp_path / "saved.nii.gz"
    moved.save(str(out), plugin=PLUGIN)
    saved = nib.load(str(out))
    np.testing.assert_allclose(saved.affine, src.affine, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(saved.dataobj), np.asarray(src.dataobj))


def test_other_orientation_on_another_grid_only_warns(viewer, tmp_path, notes):
    las = np.diag([-1.0, 1.0, 2.0, 1.0])
    las[:3, 3] = (10.0, -5.0, 0.0)
    ras = np.diag([1.0, 1.0, 2.0, 1.0])  # not the LAS grid mirrored: another origin
    data = np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4)
    a = synthetic_nifti(tmp_path / "a.nii.gz", data, las)
    b = synthetic_nifti(tmp_path / "b.nii.gz", data, ras)
    viewer.open(str(a), plugin=PLUGIN)
    layer = viewer.open(str(b), plugin=PLUGIN)[0]
    np.testing.assert_array_equal(np.asarray(layer.data), data.transpose(2, 1, 0))  # left as stored
    assert any("do not overlay voxel by voxel" in n and "LAS" in n and "RAS" in n for n in notes)


def test_reviewed_slices_are_saved_with_the_mask_and_come_back(viewer, tmp_path, notes):
    """The reviewed-slice marks are part of the work: saved with the mask (a NIfTI header extension;
    TIFF: the JSON description), back on the layer when it is reopened, and used by `attnseg export`
    without --reviewed-slices. Another tool's comment extension is not mistaken for them."""
    from napari_attnseg.cli import main
    from napari_attnseg.data import read_image

    need(BRAIN, BRAIN_LABELS)
    viewer.open(str(BRAIN), plugin=PLUGIN)
    mask = viewer.open(str(BRAIN_LABELS), plugin=PLUGIN)[0]
    assert "reviewed_slices" not in mask.metadata
    mask.metadata["reviewed_slices"] = [3, 4, 5, 12]
    out = tmp_path / "corrected_mask.nii.gz"
    mask.save(str(out), plugin=PLUGIN)
    back = viewer.open(str(out), plugin=PLUGIN)[0]
    assert back._type_string == "labels" and back.metadata["reviewed_slices"] == [3, 4, 5, 12]
    np.testing.assert_array_equal(np.asarray(back.data), np.asarray(mask.data))
    assert nib.load(str(out)).header.get_data_dtype() == nib.load(str(BRAIN_LABELS)).header.get_data_dtype()
    tif = tmp_path / "corrected_mask.tif"
    mask.save(str(tif), plugin=PLUGIN)
    assert read_image(tif).meta["reviewed_slices"] == [3, 4, 5, 12]
    other = nib.load(str(BRAIN_LABELS))
    other.header.extensions.append(nib.nifti1.Nifti1Extension(6, b"made by another tool"))
    nib.save(other, str(tmp_path / "other_seg.nii.gz"))
    assert "reviewed_slices" not in viewer.open(str(tmp_path / "other_seg.nii.gz"), plugin=PLUGIN)[0].metadata
    assert main(["export", "--image", str(BRAIN), "--labels", str(out), "--dataset", str(tmp_path / "ds"),
                 "--format", "nnunet"]) == 0
    import json

    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert json.dumps(manifest).count("reviewed_slices") and [3, 4, 5, 12] in _values(manifest, "reviewed_slices")


def _values(obj, key):
    """Every value stored under ``key`` anywhere in a JSON object."""
    found = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            found += [v] if k == key else _values(v, key)
    elif isinstance(obj, list):
        for v in obj:
            found += _values(v, key)
    return found


def test_segment_panel_turns_a_sagittally_stored_volume_for_the_brain_model(make_napari_viewer, qtbot, tmp_path):
    """The same T1 voxels stored axially and sagittally, opened with the plugin's reader: the Segment
    panel's brain-mri-3d masks are the same voxels (the panel passes the layer's orientation)."""
    need(BRAIN)
    from napari_attnseg._napari.segment_widget import SegmentWidget

    src = nib.load(str(BRAIN))
    stored = np.asarray(src.dataobj)[48:208, 40:216, :]
    affine = src.affine.copy()
    affine[:3, 3] = (src.affine @ [48, 40, 0, 1])[:3]
    perm = affine.copy()
    perm[:3, :3] = affine[:3, [2, 1, 0]]
    synthetic_nifti(tmp_path / "axial.nii.gz", stored, affine)
    synthetic_nifti(tmp_path / "sagittal.nii.gz", stored.transpose(2, 1, 0), perm)
    masks = {}
    for name in ("axial", "sagittal"):
        viewer = make_napari_viewer()
        layer = viewer.open(str(tmp_path / f"{name}.nii.gz"), plugin=PLUGIN)[0]
        w = SegmentWidget(viewer)
        w.model_combo.value = "brain-mri-3d"
        w.image_combo.value = layer.name
        with qtbot.waitSignal(w.run_done, timeout=240000) as done:
            assert w.run() is not None
        assert done.args == [True]
        masks[name] = np.asarray(viewer.layers[f"{name} mask"].data)
    assert (masks["axial"] > 0).sum() > 10_000
    assert np.array_equal(masks["sagittal"].transpose(2, 1, 0), masks["axial"])


def test_a_file_the_plugin_cannot_open_says_why_in_napari(viewer, tmp_path):
    """A 5D NIfTI opened with the plugin: napari gets the plugin's message naming the file (before:
    napari said only that the reader "returned no data"). A 4D one opens as one layer per volume."""
    from napari_attnseg.errors import InputError

    path = synthetic_nifti(tmp_path / "five.nii.gz", np.zeros((8, 8, 4, 2, 2), np.int16), np.diag([2.0, 2.0, 3.0, 1.0]))
    with pytest.raises(InputError, match=r"five.nii.gz: expected a 2D, 3D or 4D NIfTI image"):
        viewer.open(str(path), plugin=PLUGIN)
    assert not viewer.layers
    four = np.arange(8 * 8 * 4 * 2, dtype=np.int16).reshape(8, 8, 4, 2)
    path = synthetic_nifti(tmp_path / "fmri.nii.gz", four, np.diag([2.0, 2.0, 3.0, 1.0]))
    viewer.open(str(path), plugin=PLUGIN)
    assert [ly.name for ly in viewer.layers] == ["fmri [0]", "fmri [1]"]
    np.testing.assert_array_equal(viewer.layers["fmri [1]"].data, four[..., 1].transpose(2, 1, 0))
    assert tuple(viewer.layers["fmri [1]"].scale) == (3.0, 2.0, 2.0)


def test_files_of_one_patient_with_other_fields_of_view_lie_over_each_other(viewer, tmp_path):
    """lung1 and a 3-slice slab of it cut out as its own file (origin moved to slice 32): both open at
    their place in space, so slab voxel (0, y, x) lies on lung1 voxel (32, y, x) (before: 160 mm apart)."""
    need(LUNG)
    src = nib.load(str(LUNG))
    affine = src.affine.copy()
    affine[:3, 3] = (src.affine @ [100, 120, 32, 1])[:3]
    slab = synthetic_nifti(tmp_path / "slab.nii.gz", np.asarray(src.dataobj)[100:164, 120:184, 32:35], affine)
    full = viewer.open(str(LUNG), plugin=PLUGIN)[0]
    part = viewer.open(str(slab), plugin=PLUGIN)[0]
    for index in [(0, 0, 0), (2, 63, 10)]:
        world = part.data_to_world(index)
        np.testing.assert_allclose(full.world_to_data(world), (index[0] + 32, index[1] + 120, index[2] + 100), atol=1e-3)


def test_a_mask_saved_as_tiff_keeps_its_pixel_size_and_unit(viewer, tmp_path):
    """A 2D mask of a calibrated image (0.5 micrometre pixels, napari units) saved as TIFF is an ImageJ
    TIFF with that calibration (Fiji shows 0.5 micron) and reads back with the same spacing and unit; a
    mask placed by a NIfTI affine is saved in mm."""
    import tifffile

    from napari_attnseg.data import read_image

    mask = viewer.add_labels(np.eye(64, dtype=np.uint8), scale=(0.5, 0.5), units=("micrometer", "micrometer"))
    out = tmp_path / "mask2d.tif"
    mask.save(str(out), plugin=PLUGIN)
    with tifffile.TiffFile(out) as tif:
        assert tif.is_imagej and tif.imagej_metadata.get("unit") == "micron"
    back = read_image(out)
    assert np.allclose(back.spacing, (0.5, 0.5)) and back.meta.get("unit") == "micron"
    np.testing.assert_array_equal(np.asarray(back.data), np.eye(64, dtype=np.uint8))
    need(BRAIN_LABELS)
    brain = viewer.open(str(BRAIN_LABELS), plugin=PLUGIN)[0]
    brain.save(str(tmp_path / "brain.tif"), plugin=PLUGIN)
    with tifffile.TiffFile(tmp_path / "brain.tif") as tif:
        assert tif.is_imagej and tif.imagej_metadata.get("unit") == "mm"


def test_a_scan_opens_in_millimetres_and_its_results_share_the_unit(viewer, tmp_path):
    """NIfTI / DICOM layers had napari's default unit 'pixel' while their scale is in mm: a scale bar read px.
    The result layers take the image's units (placement), so napari keeps them consistent."""
    from napari_attnseg._napari._common import placement_of

    affine = np.diag([0.8, 0.8, 3.0, 1.0])
    layer = viewer.open(str(synthetic_nifti(tmp_path / "ct.nii.gz", np.zeros((20, 16, 6), np.int16), affine)),
                        plugin=PLUGIN)[0]
    assert [str(u) for u in layer.units] == ["millimeter"] * 3
    mask = viewer.add_labels(np.zeros(layer.data.shape, np.uint8), name="ct mask", **placement_of(layer).compose(
        (1, 1, 1), (0, 0, 0)))
    assert [str(u) for u in mask.units] == ["millimeter"] * 3
    assert [str(u) for u in viewer.layers.extent.units] == ["millimeter"] * 3  # napari's scale bar unit
    img = nib.Nifti1Image(np.zeros((8, 8, 3), np.float32), np.diag([0.5, 0.5, 2.0, 1.0]))
    img.header.set_xyzt_units(xyz="micron")
    nib.save(img, str(tmp_path / "um.nii.gz"))
    assert [str(u) for u in viewer.open(str(tmp_path / "um.nii.gz"), plugin=PLUGIN)[0].units] == ["micrometer"] * 3
