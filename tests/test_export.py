"""Export of corrected masks as nnU-Net / MONAI / TIFF datasets, read back voxel by voxel."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import pytest

from napari_attnseg.cli import main as cli
from napari_attnseg.data import read_image, write_image
from napari_attnseg.data.dataset import read_dataset
from napari_attnseg.data.export import export_case
from napari_attnseg.errors import DatasetError, InputError

AFFINE = np.array([[-0.8, 0, 0, 12.0], [0, 0.8, 0, -30.0], [0, 0, 3.0, 5.0], [0, 0, 0, 1]])


@pytest.fixture()
def case():
    rng = np.random.default_rng(0)
    image = rng.normal(100, 20, (6, 16, 20)).astype(np.float32)
    labels = (image > 110).astype(np.uint8)
    return image, labels


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


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_folder(tmp_path, case):
    image, labels = case
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    with pytest.raises(DatasetError, match="Cannot write"):
        export_case(image, labels, ro, "nnunet")


def test_killed_export_leaves_dataset_before_or_after(tmp_path, case):
    image, labels = case
    ds = tmp_path / "ds"
    export_case(image, labels, ds, "nnunet")
    before = json.loads((ds / "manifest.json").read_text())
    np.save(tmp_path / "img.npy", image)
    np.save(tmp_path / "lab.npy", labels)
    code = (
        "import numpy as np, sys; from napari_attnseg.data.export import export_case; "
        f"export_case(np.load(r'{tmp_path / 'img.npy'}'), np.load(r'{tmp_path / 'lab.npy'}'), r'{ds}', 'nnunet'); "
        "print('done')"
    )
    env = {**os.environ, "ATTNSEG_EXPORT_TEST_DELAY": "3"}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    deadline = time.time() + 60
    while not list((ds / "imagesTr").glob("case_0001*")) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads((ds / "manifest.json").read_text()) == before  # the half-written case does not count
    assert len(read_dataset(ds).cases) == 1
    rec = export_case(image, labels, ds, "nnunet")  # and the next export works
    assert rec.case_id == "case_0001" and len(read_dataset(ds).cases) == 2


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
