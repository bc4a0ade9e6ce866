"""read_dataset: the trainer's view of an exported (or plain nnU-Net / MONAI / TIFF) dataset."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from napari_attnseg.data import write_image
from napari_attnseg.data.dataset import read_dataset
from napari_attnseg.data.export import export_case
from napari_attnseg.errors import DatasetError


@pytest.fixture()
def vol():
    rng = np.random.default_rng(3)
    image = rng.integers(-1000, 400, (5, 12, 14)).astype(np.int16)
    labels = np.zeros(image.shape, np.uint8)
    labels[1:4, 3:9, 4:10] = 1
    labels[2, 5:7, 5:7] = 2
    return image, labels


def test_exported_dataset_api(tmp_path, vol):
    image, labels = vol
    names = ["background", "organ", "tumour"]
    export_case(image, labels, tmp_path / "ds", "nnunet", spacing=(5.0, 0.7, 0.7), label_names=names,
                reviewed_slices=[2], source_name="ct.nii.gz")
    export_case(image[:, :10], labels[:, :10], tmp_path / "ds", "nnunet", spacing=(2.0, 1.0, 1.0))
    ds = read_dataset(tmp_path / "ds")
    assert (ds.format, ds.label_names, ds.ignore_label, ds.num_classes) == ("nnunet", names, 3, 3)
    assert ds.manifest_sha256 == hashlib.sha256((tmp_path / "ds" / "manifest.json").read_bytes()).hexdigest()
    first, second = ds.cases
    assert (first.case_id, first.spacing, first.source_name) == ("case_0000", (5.0, 0.7, 0.7), "ct.nii.gz")
    img = first.load_image()
    lab = first.load_labels()
    assert img.dtype == np.float32 and img.shape == (1, 5, 12, 14) and lab.dtype == np.int64
    np.testing.assert_array_equal(img[0], image)
    assert (lab[[0, 1, 3, 4]] == 3).all() and np.array_equal(lab[2], labels[2])
    i2, l2, sp2 = second.load()
    assert i2.shape == (1, 5, 10, 14) and l2.max() == 2 and sp2 == pytest.approx((2.0, 1.0, 1.0))


def test_plain_nnunet_folder_without_manifest(tmp_path, vol):
    image, labels = vol
    root = tmp_path / "Dataset001_x"
    for c in range(2):
        write_image(root / "imagesTr" / f"abc_{c:04d}.nii.gz", image + c)
    write_image(root / "labelsTr" / "abc.nii.gz", labels)
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT", "1": "PET"}, "labels": {"background": 0, "organ": 1, "tumour": 2, "ignore": 3},
        "numTraining": 1, "file_ending": ".nii.gz"}))
    ds = read_dataset(root)
    assert ds.label_names == ["background", "organ", "tumour"] and ds.ignore_label == 3
    img, lab, _ = ds.cases[0].load()
    assert img.shape == (2, 5, 12, 14) and np.array_equal(img[1], image + 1) and np.array_equal(lab, labels)


def test_plain_monai_and_tiff_folders(tmp_path, vol):
    image, labels = vol
    m = tmp_path / "monai"
    write_image(m / "imgs" / "a.nii.gz", image)
    write_image(m / "segs" / "a.nii.gz", labels)
    (m / "datalist.json").write_text(json.dumps({"training": [{"image": "imgs/a.nii.gz", "label": "segs/a.nii.gz"}],
                                                 "labels": {"0": "background", "1": "a", "2": "b"}}))
    ds = read_dataset(m)
    assert ds.format == "monai" and ds.label_names == ["background", "a", "b"]
    assert np.array_equal(ds.cases[0].load_labels(), labels)
    t = tmp_path / "tiff"
    write_image(t / "images" / "p1.tif", image[2])
    write_image(t / "labels" / "p1.tif", labels[2])
    ds = read_dataset(t)
    assert ds.format == "tiff" and [c.case_id for c in ds.cases] == ["p1"]
    assert np.array_equal(ds.cases[0].load()[1], labels[2])


def test_two_channel_2d_tiff_export_reads_back(tmp_path, vol):
    image, labels = vol
    two = np.stack([image[2], image[3]])
    export_case(two, labels[2], tmp_path / "ds", "tiff", channel_axis=True, spacing=(0.5, 0.25))
    img, lab, sp = read_dataset(tmp_path / "ds").cases[0].load()
    assert img.shape == (2, 12, 14) and np.array_equal(img, two) and sp == pytest.approx((0.5, 0.25))


def test_clear_errors(tmp_path, vol):
    image, labels = vol
    with pytest.raises(DatasetError, match="not a folder"):
        read_dataset(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="not a dataset"):
        read_dataset(tmp_path / "empty")
    rec = export_case(image, labels, tmp_path / "ds", "monai")
    (tmp_path / "ds" / rec.files["label"]).unlink()
    with pytest.raises(DatasetError, match="missing"):
        read_dataset(tmp_path / "ds")
    rec = export_case(image, labels, tmp_path / "ds2", "monai")
    write_image(tmp_path / "ds2" / rec.files["label"], labels[:, :5])  # damaged after the export
    with pytest.raises(DatasetError, match="differ in shape"):
        read_dataset(tmp_path / "ds2").cases[0].load()
    (tmp_path / "ds2" / "manifest.json").write_text("{")
    with pytest.raises(DatasetError, match="not valid JSON"):
        read_dataset(tmp_path / "ds2")
