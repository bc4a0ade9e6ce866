"""Export never replaces files it did not write, refuses labels on another grid or instance ids
unless asked, and warns about duplicate cases."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import tifffile

from napari_attnseg.cli import main as cli
from napari_attnseg.data import write_image
from napari_attnseg.data.export import export_case
from napari_attnseg.errors import DatasetError, InputError

AFFINE = np.array([[-0.8, 0, 0, 12.0], [0, 0.8, 0, -30.0], [0, 0, 3.0, 5.0], [0, 0, 0, 1]])


def _instances(n: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """A 2D image with ``n`` labelled objects (instance ids 1..n)."""
    labels = np.zeros((40, 60), np.uint16)
    for i in range(n):
        y, x = divmod(i, 10)
        labels[y * 10 + 2: y * 10 + 6, x * 6 + 1: x * 6 + 4] = i + 1
    return (labels * 3.0).astype(np.float32), labels


@pytest.mark.parametrize("fmt", ["monai", "tiff", "nnunet"])
def test_folder_with_user_files_is_refused(tmp_path, case, fmt):
    image, labels = case
    ds = tmp_path / "uf"
    sub, ext = ("imagesTr", ".nii.gz") if fmt == "nnunet" else ("images", ".tif" if fmt == "tiff" else ".nii.gz")
    for d, name in [(sub, f"case_0000{'_0000' if fmt == 'nnunet' else ''}{ext}"), ("labels", f"case_0000{ext}")]:
        (ds / d).mkdir(parents=True, exist_ok=True)
        (ds / d / name).write_text("mine")
    before = {p: p.read_bytes() for p in ds.rglob("*") if p.is_file()}
    with pytest.raises(DatasetError, match=r"did not write \(no manifest.json\)"):
        export_case(image, labels, ds, fmt)
    assert {p: p.read_bytes() for p in ds.rglob("*") if p.is_file()} == before  # not even a lock file


def test_nonempty_labels_folder_is_refused_and_monai_cli_keeps_user_files(tmp_path, case, capsys):
    image, labels = case
    ds = tmp_path / "uf"
    (ds / "labels").mkdir(parents=True)
    (ds / "labels" / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match=r"notes.txt.*new or empty folder"):
        export_case(image, labels, ds, "monai")
    (ds / "images").mkdir()
    (ds / "images" / "case_0000.nii.gz").write_text("mine")
    (ds / "labels" / "case_0000.nii.gz").write_text("mine")
    write_image(tmp_path / "img.nii.gz", image, affine=AFFINE)
    write_image(tmp_path / "lab.nii.gz", labels, affine=AFFINE)
    rc = cli(["export", "--image", str(tmp_path / "img.nii.gz"), "--labels", str(tmp_path / "lab.nii.gz"),
              "--dataset", str(ds), "--format", "monai"])
    assert rc == 1 and "did not write (no manifest.json)" in capsys.readouterr().err
    assert (ds / "images" / "case_0000.nii.gz").read_text() == "mine"
    assert (ds / "labels" / "case_0000.nii.gz").read_text() == "mine"
    assert not (ds / "manifest.json").exists()


@pytest.mark.parametrize("fmt", ["monai", "nnunet", "tiff"])
def test_file_that_is_not_a_manifest_case_is_never_replaced(tmp_path, case, fmt):
    image, labels = case
    ds = tmp_path / "ds"
    first = export_case(image, labels, ds, fmt)
    stray = ds / first.files["label"].replace("case_0000", "case_0001")
    stray.write_text("mine")
    with pytest.raises(DatasetError, match="not a case in .*manifest.json"):
        export_case(image, labels, ds, fmt, case_id="case_0001", overwrite=True)
    assert stray.read_text() == "mine"
    rec = export_case(image + 1, labels, ds, fmt)  # the next free id skips the user's file
    assert rec.case_id == "case_0002" and stray.read_text() == "mine"
    export_case(image, 1 - labels, ds, fmt, case_id="case_0000", overwrite=True)  # our own case: replaced
    manifest = json.loads((ds / "manifest.json").read_text())
    assert [c["case_id"] for c in manifest["cases"]] == ["case_0002", "case_0000"]


def _cli_export(tmp_path, labels_affine, image, labels, *extra, ds="ds"):
    write_image(tmp_path / "img.nii.gz", image, affine=AFFINE)
    write_image(tmp_path / "lab.nii.gz", labels, affine=labels_affine)
    return cli(["export", "--image", str(tmp_path / "img.nii.gz"), "--labels", str(tmp_path / "lab.nii.gz"),
                "--dataset", str(tmp_path / ds), *extra])


def test_labels_on_another_grid_are_refused(tmp_path, case, capsys):
    image, labels = case
    moved = AFFINE.copy()
    moved[0, 3] += 50
    assert _cli_export(tmp_path, moved, image, labels) == 1
    err = capsys.readouterr().err
    assert "lab.nii.gz (labels) is not on the grid of" in err and "img.nii.gz" in err and "50 mm" in err
    assert not (tmp_path / "ds").exists()
    rotated = AFFINE.copy()
    rotated[:2, :2] = [[0, -0.8], [0.8, 0]]
    assert _cli_export(tmp_path, rotated, image, labels) == 1
    assert "orientation" in capsys.readouterr().err
    bigger = AFFINE @ np.diag([1.0, 1.0, 1.01, 1.0])
    assert _cli_export(tmp_path, bigger, image, labels) == 1
    assert "voxel size" in capsys.readouterr().err


def test_tiny_affine_differences_and_tiff_labels_pass(tmp_path, case):
    image, labels = case
    nearly = AFFINE + 1e-6
    nearly[3] = [0, 0, 0, 1]
    assert _cli_export(tmp_path, nearly, image, labels) == 0
    tifffile.imwrite(tmp_path / "lab.tif", labels)  # no affine: nothing to compare
    assert cli(["export", "--image", str(tmp_path / "img.nii.gz"), "--labels", str(tmp_path / "lab.tif"),
                "--dataset", str(tmp_path / "ds2")]) == 0
    assert _cli_export(tmp_path, np.eye(4), image, labels, ds="ds3") == 0  # identity: written without geometry
    moved = AFFINE.copy()
    moved[0, 3] += 50
    img = nib.Nifti1Image(labels.T, moved)
    img.set_qform(None, code=0)
    img.set_sform(None, code=0)  # NIfTI codes 0: the file says it has no orientation
    nib.save(img, tmp_path / "nocodes.nii.gz")
    assert cli(["export", "--image", str(tmp_path / "img.nii.gz"), "--labels", str(tmp_path / "nocodes.nii.gz"),
                "--dataset", str(tmp_path / "ds4")]) == 0


def test_prediction_on_another_grid_is_refused(tmp_path, case, capsys):
    image, labels = case
    moved = AFFINE.copy()
    moved[2, 3] += 3
    write_image(tmp_path / "pred.nii.gz", labels, affine=moved)
    assert _cli_export(tmp_path, AFFINE, image, labels, "--prediction", str(tmp_path / "pred.nii.gz")) == 1
    assert "pred.nii.gz (prediction) is not on the grid" in capsys.readouterr().err


def test_instance_ids_need_foreground_or_names(tmp_path):
    image, labels = _instances(30)
    with pytest.raises(InputError, match="look like instance ids.*--foreground"):
        export_case(image, labels, tmp_path / "ds", "tiff")
    assert not (tmp_path / "ds").exists()
    rec = export_case(image, labels, tmp_path / "ds", "tiff", foreground=True)
    assert rec.label_names == ["background", "foreground"]
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "ds" / rec.files["label"]), labels > 0)
    with pytest.raises(InputError, match="instance ids"):  # an existing 2-class dataset: same advice
        export_case(image, labels, tmp_path / "ds", "tiff")
    names = ["background"] + [f"cell{i}" for i in range(1, 31)]
    assert export_case(image, labels, tmp_path / "named", "tiff", label_names=names).label_names == names


def test_cli_foreground_flag_and_ordinary_classes_unchanged(tmp_path, capsys):
    image, labels = _instances(30)
    tifffile.imwrite(tmp_path / "img.tif", image)
    tifffile.imwrite(tmp_path / "lab.tif", labels)
    base = ["export", "--image", str(tmp_path / "img.tif"), "--labels", str(tmp_path / "lab.tif"),
            "--dataset", str(tmp_path / "ds"), "--format", "tiff"]
    assert cli(base) == 1 and "attnseg export --foreground" in capsys.readouterr().err
    assert cli([*base, "--foreground"]) == 0
    assert json.loads((tmp_path / "ds" / "manifest.json").read_text())["label_names"] == ["background", "foreground"]
    three = np.minimum(labels, 3).astype(np.uint8)
    rec = export_case(image, three, tmp_path / "classes", "tiff")
    assert rec.label_names == ["background", "class 1", "class 2", "class 3"]


def test_duplicate_case_warns_but_is_kept(tmp_path, case, capsys):
    image, labels = case
    ds = tmp_path / "ds"
    assert export_case(image, labels, ds, "nnunet").warnings == []
    rec = export_case(image, labels, ds, "nnunet")
    assert rec.case_id == "case_0001" and len(rec.warnings) == 1
    assert "case_0000" in rec.warnings[0] and "same labels" in rec.warnings[0] and "as one case" in rec.warnings[0]
    assert "give its id and replace it" in rec.warnings[0]
    other = export_case(image, 1 - labels, ds, "nnunet")
    assert "other labels" in other.warnings[0] and "case_0001" in other.warnings[1]
    again = export_case(image, labels, ds, "nnunet", case_id="case_0000", overwrite=True)  # replaced, as it said
    assert "give its id and replace it" not in again.warnings[0], "it told the user to do what they had just done"
    assert "remove case case_0001" in again.warnings[0]
    manifest = json.loads((ds / "manifest.json").read_text())
    assert all("warnings" not in c and len(c["labels_sha256"]) == 64 for c in manifest["cases"])
    assert export_case(image + 1, labels, ds, "nnunet", case_id="solo").warnings == []
    assert export_case(image + 1, labels, ds, "nnunet", case_id="solo", overwrite=True).warnings == []
    write_image(tmp_path / "img.nii.gz", image, affine=AFFINE)
    write_image(tmp_path / "lab.nii.gz", labels, affine=AFFINE)
    base = ["export", "--image", str(tmp_path / "img.nii.gz"), "--labels", str(tmp_path / "lab.nii.gz"),
            "--dataset", str(tmp_path / "ds2")]
    assert cli(base) == 0 and cli(base) == 0
    out = capsys.readouterr()
    assert "warning: case case_0000 already holds this image" in out.err and "exported case_0001" in out.out


def test_label_name_messages(tmp_path, case):
    image, labels = case
    with pytest.raises(InputError, match="background \\(0\\) first.*--label-names background,tumour"):
        export_case(image, labels, tmp_path / "ds", "nnunet", label_names=["tumour"])
    with pytest.raises(InputError, match="0=tumour, 1=lung\\).*--label-names background,tumour,lung"):
        export_case(image, labels * 2, tmp_path / "ds", "nnunet", label_names=["tumour", "lung"])
    assert not (tmp_path / "ds").exists()
    export_case(image, labels, tmp_path / "ds", "nnunet", case_id="p1")
    with pytest.raises(DatasetError, match="already exists in .*choose another case id"):
        export_case(image, labels, tmp_path / "ds", "nnunet", case_id="p1")


def test_export_with_a_model_takes_its_class_names_for_a_new_dataset(tmp_path):
    """`--model nuclei-2d` without --label-names names the classes as the model does (README: the default
    comes from the model); an existing dataset keeps its table; --label-names still wins."""
    img = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    lab = np.zeros((32, 32), np.uint8)
    lab[8:16, 8:16] = 1
    tifffile.imwrite(tmp_path / "i.tif", img)
    tifffile.imwrite(tmp_path / "l.tif", lab)
    args = ["export", "--image", str(tmp_path / "i.tif"), "--labels", str(tmp_path / "l.tif"), "--format", "tiff"]
    assert cli([*args, "--dataset", str(tmp_path / "a"), "--model", "nuclei-2d"]) == 0
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["label_names"] == ["background", "nucleus"]
    assert cli([*args, "--dataset", str(tmp_path / "b"), "--model", "nuclei-2d", "--label-names", "background,cell"]) == 0
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["label_names"] == ["background", "cell"]
    assert cli([*args, "--dataset", str(tmp_path / "b"), "--model", "nuclei-2d"]) == 0  # keeps "cell"
