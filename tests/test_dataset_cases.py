"""`attnseg dataset`: a case exported by mistake taken out of a dataset. Before, the only way was deleting its files by
hand, after which every read of the dataset was refused (the manifest and dataset.json still listed the case)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_attnseg.cli import main
from napari_attnseg.data.dataset import read_dataset
from napari_attnseg.data.export import export_case
from napari_attnseg.errors import DatasetError


def _cases(tmp_path, fmt="nnunet", n=3):
    rng = np.random.default_rng(0)
    for k in range(n):
        lab = np.zeros((6, 24, 24), np.uint8)
        lab[2:4, 5 + k:12 + k, 6:14] = 1
        img = (lab * 200.0 + rng.normal(100, 10, lab.shape)).astype(np.float32)
        export_case(img, lab, tmp_path / "ds", fmt, case_id=f"case_{k}", reviewed_slices=[1, 2, 3],
                    source_name=f"scan{k}.nii.gz", label_names=["background", "tumour"])
    return tmp_path / "ds"


@pytest.mark.parametrize("fmt", ["nnunet", "monai", "tiff"])
def test_a_removed_case_leaves_the_index_and_keeps_its_files(tmp_path, capsys, fmt):
    ds = _cases(tmp_path, fmt)
    before = {c.case_id: [*c.image_paths, c.label_path] for c in read_dataset(ds).cases}
    assert main(["dataset", str(ds), "--remove", "case_1"]) == 0
    out = capsys.readouterr().out
    assert "removed case case_1" in out and "2 cases left" in out
    left = read_dataset(ds)
    assert [c.case_id for c in left.cases] == ["case_0", "case_2"]  # the dataset reads (it was refused after a hand delete)
    if fmt == "nnunet":
        assert json.loads((ds / "dataset.json").read_text())["numTraining"] == 2
    if fmt == "monai":
        assert len(json.loads((ds / "datalist.json").read_text())["training"]) == 2
    kept = next((ds / "removed").iterdir())
    assert kept.name.startswith("case_1_")
    for path in before["case_1"]:  # moved, not deleted: same bytes, same layout sub-folder
        assert not path.exists() and (kept / path.relative_to(ds)).is_file()
    entry = json.loads((kept / "case.json").read_text())
    assert entry["case_id"] == "case_1" and entry["source_name"] == "scan1.nii.gz" and entry["missing_files"] == []
    assert all(p.exists() for p in before["case_0"] + before["case_2"])


def test_the_listing_names_each_case_and_what_was_reviewed(tmp_path, capsys):
    ds = _cases(tmp_path, n=2)
    assert main(["dataset", str(ds)]) == 0
    out = capsys.readouterr().out
    assert "2 cases" in out and "case_0  scan0.nii.gz  6 x 24 x 24  reviewed 1-3" in out and "case_1  scan1.nii.gz" in out


def test_a_case_whose_files_were_deleted_by_hand_can_be_removed(tmp_path, capsys):
    ds = _cases(tmp_path, n=2)
    (ds / "labelsTr" / "case_0.nii.gz").unlink()
    with pytest.raises(DatasetError, match="missing from the dataset") as refused:
        read_dataset(ds)
    assert f"attnseg dataset {ds} --remove case_0" in str(refused.value)  # the way out, named
    assert main(["dataset", str(ds), "--remove", "case_0"]) == 0
    assert [c.case_id for c in read_dataset(ds).cases] == ["case_1"]
    entry = json.loads(next((ds / "removed").iterdir()).joinpath("case.json").read_text())
    assert entry["missing_files"] == ["labelsTr/case_0.nii.gz"]


def test_an_unknown_case_and_a_foreign_folder_are_refused_with_what_to_do(tmp_path, capsys):
    ds = _cases(tmp_path, n=2)
    assert main(["dataset", str(ds), "--remove", "case_9"]) == 1
    err = capsys.readouterr().err
    assert "no case 'case_9'" in err and "case_0, case_1" in err
    assert [c.case_id for c in read_dataset(ds).cases] == ["case_0", "case_1"] and not (ds / "removed").exists()
    foreign = tmp_path / "nnunet_raw"
    (foreign / "imagesTr").mkdir(parents=True)
    (foreign / "dataset.json").write_text("{}")
    assert main(["dataset", str(foreign), "--remove", "case_0"]) == 1
    assert "not a dataset exported by napari-attnseg" in capsys.readouterr().err


def test_the_same_case_id_exported_again_after_removal_is_a_new_case(tmp_path, capsys):
    ds = _cases(tmp_path, n=2)
    assert main(["dataset", str(ds), "--remove", "case_1"]) == 0
    lab = np.zeros((6, 24, 24), np.uint8)
    lab[2:4, 8:14, 6:14] = 1
    export_case((lab * 150.0 + 90).astype(np.float32), lab, ds, "nnunet", case_id="case_1", reviewed_slices=[2, 3],
                source_name="scan1b.nii.gz")
    assert [c.source_name for c in read_dataset(ds).cases] == ["scan0.nii.gz", "scan1b.nii.gz"]
    assert main(["dataset", str(ds), "--remove", "case_1"]) == 0  # a second removal keeps the first one's files
    assert len(list((ds / "removed").iterdir())) == 2


def test_the_commands_the_refusals_name_can_be_pasted_with_a_space_in_the_folder(tmp_path, capsys):
    """Was: 'attnseg dataset /data/round 1/ds --remove case_0': pasted in a shell, a dataset 'round' and a stray '1/ds'."""
    import shlex

    ds = _cases(tmp_path / "round 1", n=2)
    assert main(["dataset", str(ds), "--remove", "case_9"]) == 1
    assert f"attnseg dataset {shlex.quote(str(ds))} lists them" in capsys.readouterr().err
    (ds / "labelsTr" / "case_0.nii.gz").unlink()
    with pytest.raises(DatasetError) as refused:
        read_dataset(ds)
    words = shlex.split(str(refused.value).split("take the case out (")[1].split(")")[0])
    assert words == ["attnseg", "dataset", str(ds), "--remove", "case_0"], words
