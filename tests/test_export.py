"""Export of corrected masks as nnU-Net / MONAI / TIFF datasets, read back voxel by voxel."""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np
import pytest
from _kill_helpers import kill_export

from napari_attnseg.cli import main as cli
from napari_attnseg.data import read_image, write_image
from napari_attnseg.data.dataset import read_dataset
from napari_attnseg.data.export import export_case
from napari_attnseg.errors import DatasetError, InputError

AFFINE = np.array([[-0.8, 0, 0, 12.0], [0, 0.8, 0, -30.0], [0, 0, 3.0, 5.0], [0, 0, 0, 1]])


@pytest.mark.parametrize("fmt", ["nnunet", "monai", "tiff"])
def test_formats_read_back_exactly(tmp_path, case, fmt):
    image, labels = case
    rec = export_case(image, labels, tmp_path / "ds", fmt, spacing=(3.0, 0.8, 0.8), affine=AFFINE,
                      label_names=["background", "lesion"])
    ds = read_dataset(tmp_path / "ds")
    assert ds.format == fmt and ds.label_names == ["background", "lesion"] and ds.ignore_label is None
    img, lab, spacing = ds.cases[0].load()
    np.testing.assert_array_equal(img[0], image)
    np.testing.assert_array_equal(lab, labels)
    assert spacing == pytest.approx((3.0, 0.8, 0.8))
    if fmt != "tiff":
        a = nib.load(tmp_path / "ds" / rec.files["images"][0]).affine
        b = nib.load(tmp_path / "ds" / rec.files["label"]).affine
        np.testing.assert_allclose(a, AFFINE)
        np.testing.assert_allclose(b, AFFINE)
    if fmt == "nnunet":
        meta = json.loads((tmp_path / "ds" / "dataset.json").read_text())
        assert meta["labels"] == {"background": 0, "lesion": 1} and meta["numTraining"] == 1
        assert meta["file_ending"] == ".nii.gz" and (tmp_path / "ds" / "imagesTr" / f"{rec.case_id}_0000.nii.gz").exists()
    if fmt == "monai":
        assert json.loads((tmp_path / "ds" / "datalist.json").read_text())["training"][0]["label"] == rec.files["label"]


def test_reviewed_slices_become_ignore_and_append(tmp_path, case):
    image, labels = case
    export_case(image, labels, tmp_path / "ds", "nnunet", reviewed_slices=[1, 3], prediction=np.zeros_like(labels))
    export_case(image, labels, tmp_path / "ds", "nnunet")
    meta = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert meta["labels"]["ignore"] == 2 and meta["numTraining"] == 2
    ds = read_dataset(tmp_path / "ds")
    _, lab, _ = ds.cases[0].load()
    assert (lab[0] == 2).all() and (lab[1] == labels[1]).all()
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    first = manifest["cases"][0]
    assert first["reviewed_slices"] == [1, 3] and first["edit_stats"]["per_class"]["1"]["removed"] == 0
    assert len(first["image_sha256"]) == 64 and [c["case_id"] for c in manifest["cases"]] == ["case_0000", "case_0001"]


def test_existing_case_is_never_overwritten_silently(tmp_path, case):
    image, labels = case
    export_case(image, labels, tmp_path / "ds", "tiff", case_id="p1")
    before = (tmp_path / "ds" / "labels" / "p1.tif").read_bytes()
    with pytest.raises(DatasetError, match="already exists"):
        export_case(image, 1 - labels, tmp_path / "ds", "tiff", case_id="p1")
    assert (tmp_path / "ds" / "labels" / "p1.tif").read_bytes() == before
    export_case(image, 1 - labels, tmp_path / "ds", "tiff", case_id="p1", overwrite=True)
    assert (tmp_path / "ds" / "labels" / "p1.tif").read_bytes() != before


@pytest.mark.parametrize(
    "labels,match",
    [
        (np.zeros((6, 16, 21), np.uint8), "do not match"),
        (np.full((6, 16, 20), 0.5, np.float32), "whole numbers"),
        (np.full((6, 16, 20), -1, np.int16), "negative"),
    ],
)
def test_bad_inputs_write_nothing(tmp_path, case, labels, match):
    image, _ = case
    with pytest.raises(InputError, match=match):
        export_case(image, labels, tmp_path / "ds", "nnunet")
    assert not (tmp_path / "ds" / "manifest.json").exists()


def test_label_table_and_format_mismatches(tmp_path, case):
    image, labels = case
    export_case(image, labels, tmp_path / "ds", "nnunet", label_names=["background", "lesion"])
    with pytest.raises(InputError, match="not in the dataset's label table"):
        export_case(image, labels * 3, tmp_path / "ds", "nnunet")
    with pytest.raises(DatasetError, match="nnunet dataset"):
        export_case(image, labels, tmp_path / "ds", "monai")


def test_unwritable_folder_writes_nothing(tmp_path, case, monkeypatch):
    image, labels = case
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() != 0:
        ro.chmod(0o500)
    else:  # root may write anywhere: make the permission check say no
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p).startswith(str(ro)) else real(p, mode, **kw))
    with pytest.raises(DatasetError, match="Cannot write"):
        export_case(image, labels, ro / "ds", "nnunet")
    assert not (ro / "ds").exists()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DatasetError, match="is a file"):
        export_case(image, labels, blocker, "nnunet")
    with pytest.raises(DatasetError, match="not a folder"):
        export_case(image, labels, blocker / "ds", "nnunet")


def test_foreign_dataset_is_not_appended_to(tmp_path, case):
    image, labels = case
    ds = tmp_path / "ds"
    (ds / "imagesTr").mkdir(parents=True)
    (ds / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "x": 1}, "numTraining": 5}))
    with pytest.raises(DatasetError, match="did not write"):
        export_case(image, labels, ds, "nnunet")
    assert json.loads((ds / "dataset.json").read_text())["numTraining"] == 5


def test_label_table_is_fixed_and_channels_must_match(tmp_path, case):
    image, labels = case
    export_case(image, labels, tmp_path / "ds", "nnunet", label_names=["background", "lesion"])
    with pytest.raises(InputError, match="differ from the dataset"):
        export_case(image, labels, tmp_path / "ds", "nnunet", label_names=["background", "tumour"])
    with pytest.raises(InputError, match="channel"):
        export_case(np.stack([image, image]), labels, tmp_path / "ds", "nnunet", channel_axis=True)
    with pytest.raises(InputError, match="reserved"):
        export_case(image, labels, tmp_path / "ds2", "nnunet", label_names=["background", "ignore"])
    with pytest.raises(InputError, match="outside the volume"):
        export_case(image, labels, tmp_path / "ds", "nnunet", reviewed_slices=[0, 6])
    assert json.loads((tmp_path / "ds" / "manifest.json").read_text())["cases"][0]["case_id"] == "case_0000"
    assert len(json.loads((tmp_path / "ds" / "manifest.json").read_text())["cases"]) == 1


def test_multichannel_nnunet_writes_one_file_per_channel(tmp_path, case):
    image, labels = case
    two = np.stack([image, -image])
    rec = export_case(two, labels, tmp_path / "ds", "nnunet", channel_axis=True, channel_names=["T1", "T2"])
    assert rec.files["images"] == ["imagesTr/case_0000_0000.nii.gz", "imagesTr/case_0000_0001.nii.gz"]
    meta = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "T1", "1": "T2"}
    img, lab, _ = read_dataset(tmp_path / "ds").cases[0].load()
    np.testing.assert_array_equal(img, two)


def _dataset_state(ds):
    """Everything a trainer would see: case ids, voxels, label table, the layout's index."""
    d = read_dataset(ds)
    cases = []
    for c in d.cases:
        img, lab, sp = c.load()
        cases.append((c.case_id, img.tobytes(), lab.tobytes(), sp))
    index = json.loads((ds / "dataset.json").read_text())
    listed = sorted(p.name for p in (ds / "imagesTr").iterdir() if not p.name.startswith("."))
    return cases, d.label_names, index, listed


@pytest.mark.parametrize("overwrite", [False, True], ids=["append", "overwrite"])
@pytest.mark.parametrize("step,nth", [("file", 1), ("file", 2), ("committed", 1), ("renamed", 1)])
def test_killed_export_leaves_dataset_before_or_after(tmp_path, case, step, nth, overwrite):
    image, labels = case
    ds = tmp_path / "ds"
    export_case(image, labels, ds, "nnunet")
    before = _dataset_state(ds)
    kill_export(tmp_path, ds, image + 1, 1 - labels, step, nth, overwrite=overwrite, reviewed_slices=[1, 2])
    after_kill = _dataset_state(ds)  # reading finishes a committed export, so this is before or after
    # what a completed export gives, from the same starting point
    ref = tmp_path / "ref"
    export_case(image, labels, ref, "nnunet")
    export_case(image + 1, 1 - labels, ref, "nnunet", case_id="case_0000" if overwrite else None,
                overwrite=overwrite, reviewed_slices=[1, 2])
    after = _dataset_state(ref)
    after = (after[0], after[1], {**after[2], "name": "ds"}, after[3])
    expected = after if step in ("committed", "renamed") else before
    assert after_kill == expected
    assert not (ds / ".attnseg-journal.json").exists()
    if step == "file":  # staged files of the uncommitted case may lie there, hidden, never read as a case
        assert list(ds.rglob(".case_0001_0000.*attnseg-staged.nii.gz")) or overwrite
    rec = export_case(image, labels, ds, "nnunet")  # the next export works and cleans up
    assert rec.case_id == f"case_{len(expected[0]):04d}"
    assert not [p for p in ds.rglob(".*") if p.name != ".attnseg.lock"]


def test_dicom_phi_never_reaches_the_dataset(tmp_path):
    from test_io import write_dicom_series

    hu = np.full((4, 10, 12), -500, np.float32)
    folder = write_dicom_series(tmp_path / "dcm", hu)
    labels = np.zeros((4, 10, 12), np.uint8)
    labels[1:3, 2:6, 3:7] = 1
    write_image(tmp_path / "lab.nii.gz", labels)
    rc = cli(["export", "--image", str(folder), "--labels", str(tmp_path / "lab.nii.gz"), "--dataset",
              str(tmp_path / "ds"), "--format", "nnunet", "--reviewed-slices", "1-2"])
    assert rc == 0
    for path in (tmp_path / "ds").rglob("*"):
        if path.is_file():
            raw = path.read_bytes()
            if path.suffix == ".gz":
                import gzip

                raw = gzip.decompress(raw)
            for phi in (b"Doe", b"PID-12345", b"19700101", b"20240102", b"General Hospital"):
                assert phi not in raw, (path, phi)
    vol = read_image(tmp_path / "ds" / "imagesTr" / "case_0000_0000.nii.gz")
    assert vol.data.shape == (4, 10, 12) and (vol.data == -500).all()
    assert json.loads((tmp_path / "ds" / "dataset.json").read_text())["channel_names"] == {"0": "CT"}


def test_cli_round_trip_append_and_refusal(tmp_path, case, capsys):
    image, labels = case
    write_image(tmp_path / "img.nii.gz", image, affine=AFFINE)
    write_image(tmp_path / "lab.nii.gz", labels, affine=AFFINE)
    write_image(tmp_path / "pred.nii.gz", np.zeros_like(labels), affine=AFFINE)
    base = ["export", "--image", str(tmp_path / "img.nii.gz"), "--labels", str(tmp_path / "lab.nii.gz"),
            "--dataset", str(tmp_path / "ds"), "--format", "monai"]
    assert cli([*base, "--reviewed-slices", "0,2-3", "--prediction", str(tmp_path / "pred.nii.gz"),
                "--case-id", "p1", "--model", "nuclei-2d", "--label-names", "background,lesion"]) == 0
    assert "exported p1" in capsys.readouterr().out
    assert cli(base) == 0
    assert cli([*base, "--case-id", "p1"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert cli([*base, "--format", "tiff"]) == 1  # a monai dataset stays monai
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    p1 = manifest["cases"][0]
    assert [c["case_id"] for c in manifest["cases"]] == ["p1", "case_0001"]
    assert p1["reviewed_slices"] == [0, 2, 3] and p1["source_name"] == "img.nii.gz"
    from napari_attnseg import load_model

    assert p1["model"] == {"model": "nuclei-2d", "weights_sha256": load_model("nuclei-2d").card.weights_sha256}
    assert p1["edit_stats"]["per_class"]["1"]["added"] == int(labels.sum())
    ds = read_dataset(tmp_path / "ds")
    img, lab, sp = ds.cases[0].load()
    np.testing.assert_array_equal(img[0], image)
    assert (lab[1] == 2).all() and np.array_equal(lab[2], labels[2]) and ds.ignore_label == 2
    assert sp == pytest.approx((3.0, 0.8, 0.8))
    np.testing.assert_allclose(nib.load(tmp_path / "ds" / p1["files"]["label"]).affine, AFFINE)
    datalist = json.loads((tmp_path / "ds" / "datalist.json").read_text())
    assert [d["label"] for d in datalist["training"]] == ["labels/p1.nii.gz", "labels/case_0001.nii.gz"]


def test_first_export_killed_leaves_a_folder_the_next_export_takes(tmp_path, case):
    image, labels = case
    ds = tmp_path / "ds"
    kill_export(tmp_path, ds, image, labels, "file", 1, reviewed_slices=[1, 2])
    with pytest.raises(DatasetError, match="not a dataset"):
        read_dataset(ds)  # a staged file is never read as a case
    assert export_case(image, labels, ds, "nnunet").case_id == "case_0000"
    assert len(read_dataset(ds).cases) == 1 and not list(ds.rglob("*staged*"))


def test_instance_ids_are_refused(tmp_path, case):
    image, labels = case
    with pytest.raises(InputError, match="too large"):
        export_case(image, labels.astype(np.int32) * 70000, tmp_path / "ds", "nnunet")
    assert not (tmp_path / "ds").exists()


def test_disk_errors_before_and_after_the_commit(tmp_path, case, monkeypatch):
    from napari_attnseg.data import export, manifest

    image, labels = case
    ds = tmp_path / "ds"
    export_case(image, labels, ds, "nnunet")
    before = (ds / "manifest.json").read_bytes()
    calls = {"n": 0}
    real_write = export.write_image

    def failing_write(path, *a, **kw):  # the disk fills up on the label file
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        return real_write(path, *a, **kw)

    monkeypatch.setattr(export, "write_image", failing_write)
    with pytest.raises(DatasetError, match="No space left.*unchanged"):
        export_case(image, labels, ds, "nnunet")
    monkeypatch.setattr(export, "write_image", real_write)
    assert (ds / "manifest.json").read_bytes() == before and not list(ds.rglob("*staged*"))

    real_replace = os.replace

    def failing_replace(src, dst):  # the first rename after the commit fails
        if "staged" in str(src) and "staged" not in str(dst):
            raise OSError(5, "Input/output error")
        return real_replace(src, dst)

    monkeypatch.setattr(manifest.os, "replace", failing_replace)
    with pytest.raises(DatasetError, match="committed"):
        export_case(image + 1, labels, ds, "nnunet")
    monkeypatch.setattr(manifest.os, "replace", real_replace)
    d = read_dataset(ds)  # finishes the committed export
    assert [c.case_id for c in d.cases] == ["case_0000", "case_0001"]
    np.testing.assert_array_equal(d.cases[1].load_image()[0], image + 1)


def test_values_only_on_unreviewed_slices_need_no_class_name(tmp_path):
    """The model's class 2 left on slices nobody reviewed (they go out as 'ignore') does not force a third
    class name (before: 'background, tumour' was refused, so the dataset carried a meaningless class)."""
    image = np.zeros((6, 8, 8), np.float32)
    labels = np.zeros((6, 8, 8), np.uint8)
    labels[1, 2:4, 2:4] = 1
    labels[4, :, :] = 2  # the model's guess on an unreviewed slice
    export_case(image, labels, tmp_path / "ds", "nnunet", reviewed_slices=[0, 1, 2],
                label_names=["background", "tumour"])
    written = read_image(tmp_path / "ds" / "labelsTr" / "case_0000.nii.gz").data
    assert set(np.unique(written[:3])) == {0, 1} and (written[3:] == 2).all()  # 2 = ignore (the last value)
    with pytest.raises(InputError, match="Label value 2"):  # on a reviewed slice it still needs a name
        export_case(image, labels, tmp_path / "ds2", "nnunet", reviewed_slices=[0, 1, 4],
                    label_names=["background", "tumour"])


def test_cli_exports_a_channels_first_tiff_with_labels_of_its_plane(tmp_path):
    """A two-stain TIFF (ImageJ axes CYX) and its mask: the CLI refused it ("Labels of shape (32, 32) do not
    match the image's shape (2, 32, 32)"); it is exported with one file per channel."""
    import tifffile

    rng = np.random.default_rng(0)
    image = rng.integers(0, 4000, (2, 32, 32)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "stains.tif", image, imagej=True, metadata={"axes": "CYX"})
    labels = np.zeros((32, 32), np.uint8)
    labels[8:20, 8:20] = 1
    tifffile.imwrite(tmp_path / "mask.tif", labels)
    assert cli(["export", "--image", str(tmp_path / "stains.tif"), "--labels", str(tmp_path / "mask.tif"),
                "--dataset", str(tmp_path / "ds"), "--format", "nnunet"]) == 0
    ds = read_dataset(tmp_path / "ds")
    img, lab, spacing = ds.cases[0].load()
    assert img.shape == (2, 32, 32) and np.array_equal(lab, labels) and len(spacing) == 2
    np.testing.assert_array_equal(img[1], image[1])


def test_cli_exports_an_imagej_hyperstack_with_channels_inside(tmp_path):
    """ImageJ's usual order ZCYX with a 3D mask was refused ("The image must be 2D or 3D")."""
    import tifffile

    image = np.random.default_rng(0).integers(0, 4000, (4, 2, 32, 32)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "stack.tif", image, imagej=True, metadata={"axes": "ZCYX", "spacing": 2.0},
                     resolution=(1 / 0.5, 1 / 0.5))
    labels = np.zeros((4, 32, 32), np.uint8)
    labels[1:3, 8:20, 8:20] = 1
    tifffile.imwrite(tmp_path / "mask.tif", labels)
    assert cli(["export", "--image", str(tmp_path / "stack.tif"), "--labels", str(tmp_path / "mask.tif"),
                "--dataset", str(tmp_path / "ds"), "--format", "nnunet"]) == 0
    img, lab, spacing = read_dataset(tmp_path / "ds").cases[0].load()
    assert img.shape == (2, 4, 32, 32) and np.array_equal(img[1], image[:, 1]) and np.array_equal(lab, labels)
    np.testing.assert_allclose(spacing, (2.0, 0.5, 0.5))


def test_a_monai_export_loads_with_monais_own_datalist_and_transforms(tmp_path, case):
    """What a MONAI user runs on the export: load_decathlon_datalist, then LoadImaged + EnsureChannelFirstd +
    Orientationd("RAS") + Spacingd to the source's spacing. Image and label must come out on one grid, the
    label's values and voxels those exported (the docs say this was checked with MONAI by hand)."""
    monai_data = pytest.importorskip("monai.data")
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Orientationd, Spacingd

    image, labels = case
    export_case(image, labels, tmp_path / "ds", "monai", spacing=(3.0, 0.8, 0.8), affine=AFFINE,
                label_names=["background", "lesion"])
    items = monai_data.load_decathlon_datalist(str(tmp_path / "ds" / "datalist.json"), data_list_key="training",
                                               base_dir=str(tmp_path / "ds"))
    assert len(items) == 1 and os.path.isfile(items[0]["image"]) and os.path.isfile(items[0]["label"])
    keys = ["image", "label"]
    load = Compose([LoadImaged(keys), EnsureChannelFirstd(keys), Orientationd(keys, axcodes="RAS"),
                    Spacingd(keys, pixdim=(0.8, 0.8, 3.0), mode=("bilinear", "nearest"))])
    out = load(items[0])
    img, lab = out["image"], out["label"]
    assert img.shape == lab.shape and img.shape[0] == 1
    np.testing.assert_allclose(img.affine.numpy(), lab.affine.numpy())
    assert set(np.unique(lab.numpy()).tolist()) == {0.0, 1.0}
    assert int(lab.numpy().sum()) == int(labels.sum())  # same voxels (the spacing is the source's: no resampling)
    # where the label is 1 the image is above the threshold the labels were made with: one grid
    assert float(img.numpy()[lab.numpy() > 0].min()) > 110
