"""Datasets made elsewhere (not by ``attnseg export``): the Medical Segmentation Decathlon, nnU-Net v1 and v2 raw
folders, MONAI datalists and Cellpose/StarDist TIFF folders are read with the right image/label pairs, channels,
label names and spacing (junk files and imagesTs left alone); what is not supported is refused with a message
that names the file and says what to do."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile

from napari_attnseg.data.dataset import read_dataset
from napari_attnseg.errors import DatasetError

AFFINE = np.array([[-0.7, 0, 0, 90.0], [0, -0.7, 0, 120.0], [0, 0, 5.0, -40.0], [0, 0, 0, 1]])  # LPS, as lung1
LUNG = Path("/work/shared/data/radiomics")


def case(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Image and labels (x, y, z) of case k: the image's values say which case it is."""
    rng = np.random.default_rng(k)
    image = (rng.integers(-900, 300, (16, 12, 6)) + 1000 * k).astype(np.int16)
    labels = np.zeros(image.shape, np.uint8)
    labels[4:9, 3:7, 2 + k % 2: 4 + k % 2] = 1
    return image, labels


def nii(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(arr, AFFINE)
    img.set_qform(AFFINE, 1)
    img.set_sform(AFFINE, 1)
    nib.save(img, str(path))


def junk(folder: Path) -> None:
    """What a macOS copy leaves: AppleDouble ``._x`` files and ``.DS_Store``."""
    for p in list(folder.iterdir()):
        (folder / f"._{p.name}").write_bytes(b"\x00\x05\x16\x07" + b"\x00" * 60)
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + b"\x00" * 60)


def same_case(ds, cid: str, k: int, channels: int = 1) -> None:
    image, labels = case(k)
    c = next(c for c in ds.cases if c.case_id == cid)
    img, lab, spacing = c.load()
    assert img.shape == (channels, *image.T.shape) and np.array_equal(img[0], image.T) and np.array_equal(lab, labels.T)
    assert spacing == pytest.approx((5.0, 0.7, 0.7)) and c.orientation() == ("S", "P", "L")


def decathlon(root: Path, v1: bool = False, modalities: int = 1) -> Path:
    for k in (1, 2, 3):
        image, labels = case(k)
        if v1:  # nnU-Net v1 (nnUNet_convert_decathlon_task): one file per modality, the list names the case
            for m in range(modalities):
                nii(root / "imagesTr" / f"lung_{k:03d}_{m:04d}.nii.gz", image + m)
        else:
            nii(root / "imagesTr" / f"lung_{k:03d}.nii.gz",
                image if modalities == 1 else np.stack([image + m for m in range(modalities)], -1))
        nii(root / "labelsTr" / f"lung_{k:03d}.nii.gz", labels)
    nii(root / "imagesTs" / "lung_010.nii.gz", case(9)[0])
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        junk(root / sub)
    (root / "dataset.json").write_text(json.dumps({
        "name": "Lung", "tensorImageSize": "3D", "modality": {str(m): f"CT{m}" for m in range(modalities)},
        "labels": {"0": "background", "1": "tumour"}, "numTraining": 3, "numTest": 1,
        "training": [{"image": f"./imagesTr/lung_{k:03d}.nii.gz", "label": f"./labelsTr/lung_{k:03d}.nii.gz"}
                     for k in (1, 2, 3)],
        "test": ["./imagesTs/lung_010.nii.gz"]}))
    return root


def test_decathlon_task_folder_pairs_names_and_spacing(tmp_path):
    """Task09_Spleen style: files without _0000, labels {"0": "background"}: was a ValueError (int('background'))
    and, past that, every image looked for as <case>_0000.nii.gz."""
    ds = read_dataset(decathlon(tmp_path / "Task06_Lung"))
    assert ds.label_names == ["background", "tumour"] and ds.ignore_label is None
    assert [c.case_id for c in ds.cases] == ["lung_001", "lung_002", "lung_003"]  # imagesTs and ._ files not read
    for k in (1, 2, 3):
        same_case(ds, f"lung_{k:03d}", k)


def test_nnunet_v1_task_and_decathlon_4d_modalities_are_channels(tmp_path):
    ds = read_dataset(decathlon(tmp_path / "Task001_Lung", v1=True, modalities=2))
    assert [p.name for p in ds.cases[1].image_paths] == ["lung_002_0000.nii.gz", "lung_002_0001.nii.gz"]
    same_case(ds, "lung_002", 2, channels=2)
    assert np.array_equal(ds.cases[1].load_image()[1], case(2)[0].T + 1)
    ds = read_dataset(decathlon(tmp_path / "Task05_Prostate", modalities=2))  # one 4D NIfTI per case
    same_case(ds, "lung_003", 3, channels=2)
    assert np.array_equal(ds.cases[2].load_image()[1], case(3)[0].T + 1)


def monai(root: Path, name: str = "datalist.json") -> Path:
    for k in (1, 2, 3):
        image, labels = case(k)
        nii(root / "imagesTr" / f"c{k}_t1.nii.gz", image)
        nii(root / "imagesTr" / f"c{k}_t2.nii.gz", image + 1)
        nii(root / "labelsTr" / f"c{k}.nii.gz", labels)
    items = [{"image": [f"imagesTr/c{k}_t1.nii.gz", f"imagesTr/c{k}_t2.nii.gz"], "label": f"labelsTr/c{k}.nii.gz",
              "fold": k % 2} for k in (1, 2, 3)]
    junk(root / "imagesTr")
    junk(root / "labelsTr")  # and a datalist made by a glob over a macOS copy lists them
    items.append({"image": ["imagesTr/._c1_t1.nii.gz", "imagesTr/._c1_t2.nii.gz"], "label": "labelsTr/._c1.nii.gz"})
    (root / name).write_text(json.dumps({"training": items[:2] + items[3:], "validation": items[2:3],
                                         "labels": {"0": "background", "1": "tumour"}}))
    return root


def test_monai_datalist_beside_imagestr_reads_training_and_validation(tmp_path):
    """A MONAI datalist over imagesTr/labelsTr folders was taken for an nnU-Net dataset without dataset.json;
    its image lists (channels) were cut to their first file and its validation entries dropped."""
    ds = read_dataset(monai(tmp_path / "m"))
    assert ds.format == "monai" and ds.label_names == ["background", "tumour"]
    assert [c.case_id for c in ds.cases] == ["c1", "c2", "c3"]
    same_case(ds, "c3", 3, channels=2)
    assert np.array_equal(ds.cases[0].load_image()[1], case(1)[0].T + 1)


def test_monai_datalist_of_another_name_or_given_as_file(tmp_path):
    root = monai(tmp_path / "btcv", "dataset_0.json")  # MONAI's BTCV tutorial names it so
    assert [c.case_id for c in read_dataset(root).cases] == ["c1", "c2", "c3"]
    shutil.copy(root / "dataset_0.json", root / "dataset_1.json")
    with pytest.raises(DatasetError, match=r"several datalists \(dataset_0.json, dataset_1.json\); rename the one to train "
                                           r"on datalist.json, or give attnseg train / finetune that file"):
        read_dataset(root)
    ds = read_dataset(root / "dataset_1.json")
    assert ds.format == "monai" and len(ds.cases) == 3 and ds.root == root


def test_monai_datalist_without_label_table_says_what_to_add(tmp_path):
    root = tmp_path / "m"
    image, labels = case(1)
    nii(root / "img" / "a.nii.gz", image)
    nii(root / "seg" / "a.nii.gz", labels * 2)
    (root / "datalist.json").write_text(json.dumps({"training": [{"image": "img/a.nii.gz", "label": "seg/a.nii.gz"}]}))
    ds = read_dataset(root)
    assert ds.label_names == ["background", "foreground"]
    with pytest.raises(DatasetError, match=r"seg/a.nii.gz holds label values 0 to 2, but datalist.json has no "
                                           r"\"labels\" table.*add one"):
        ds.cases[0].load()


def tiff_folder(root: Path, masks: str = "masks", suffix: str = "") -> Path:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / masks).mkdir()
    for k in range(3):
        inst = np.zeros((32, 40), np.uint16)
        inst[4:10, 5:12], inst[20:28, 20 + k:30 + k] = 7 + k, 40 + k  # instance ids
        tifffile.imwrite(root / "images" / f"tile_{k}.tif", (rng.random((32, 40)) * 100 + 10 * k).astype(np.uint16))
        tifffile.imwrite(root / masks / f"tile_{k}{suffix}.tif", inst)
    junk(root / "images")
    junk(root / masks)
    return root


def test_cellpose_stardist_tiff_folder_instance_masks_are_foreground(tmp_path):
    """images/ + masks/ (StarDist; Cellpose's <name>_masks.tif): was 'file labels/tile_0.tif is missing'."""
    for root in (tiff_folder(tmp_path / "stardist"), tiff_folder(tmp_path / "cellpose", suffix="_masks")):
        ds = read_dataset(root)
        assert ds.format == "tiff" and ds.label_names == ["background", "foreground"]
        assert [c.case_id for c in ds.cases] == ["tile_0", "tile_1", "tile_2"]
        img, lab, _ = ds.cases[1].load()
        assert np.array_equal(img[0], tifffile.imread(root / "images" / "tile_1.tif"))
        assert set(np.unique(lab)) == {0, 1} and lab[22, 22] == 1 and lab[0, 0] == 0
    (tmp_path / "stardist" / "masks" / "tile_2.tif").unlink()
    with pytest.raises(DatasetError, match=r"1 image\(s\) in images/ have no file of the same name in masks/ "
                                           r"\(tile_2.tif\); add their masks"):
        read_dataset(tmp_path / "stardist")


def nrrd(path: Path, arr: np.ndarray) -> None:
    """An NRRD (LPS space) as 3D Slicer writes it, placed as ``AFFINE`` places the NIfTI."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lps, origin = np.diag([-1, -1, 1]) @ AFFINE[:3, :3], np.diag([-1, -1, 1]) @ AFFINE[:3, 3]
    dirs = " ".join("(" + ",".join(f"{v:g}" for v in lps[:, i]) + ")" for i in range(3))
    kind = {"int16": "short", "uint8": "uchar"}[arr.dtype.name]
    head = (f"NRRD0004\ntype: {kind}\ndimension: 3\nspace: left-posterior-superior\nsizes: "
            f"{' '.join(map(str, arr.shape))}\nspace directions: {dirs}\nkinds: domain domain domain\nendian: little\n"
            f"encoding: gzip\nspace origin: ({','.join(f'{v:g}' for v in origin)})\n\n")
    path.write_bytes(head.encode() + gzip.compress(arr.tobytes(order="F")))


def test_nnunet_v2_nrrd_dataset_has_its_orientation(tmp_path):
    """file_ending .nrrd: pairs and channels were right, but the cases had no orientation (NIfTI only), so
    fine-tuning a model with an orientation on its card trained them unturned while inference turns them."""
    root = tmp_path / "Dataset124_Lung"
    for k in (1, 2):
        image, labels = case(k)
        nrrd(root / "imagesTr" / f"lung_{k:03d}_0000.nrrd", image)
        nrrd(root / "imagesTr" / f"lung_{k:03d}_0001.nrrd", image + 1)
        nrrd(root / "labelsTr" / f"lung_{k:03d}.nrrd", labels)
    junk(root / "labelsTr")
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT", "1": "copy"}, "numTraining": 2,
                                                   "labels": {"background": 0, "tumour": 1}, "file_ending": ".nrrd"}))
    ds = read_dataset(root)
    assert [c.case_id for c in ds.cases] == ["lung_001", "lung_002"] and ds.label_names == ["background", "tumour"]
    same_case(ds, "lung_002", 2, channels=2)


@pytest.mark.parametrize("change, message", [
    (lambda m: m.update(labels={"background": 0, "whole": [1, 2], "core": [2]}), "region-based labels"),
    (lambda m: m.update(labels={"background": 0, "tumour": 2}), r"label values \[0, 2\] should be 0"),
    (lambda m: m.update(file_ending=".nii"), r"no label files labelsTr/\*.nii \(the \"file_ending\""),
    (lambda m: m.update(channel_names={"0": "CT", "1": "PET"}), r"lung_001_0001.nii.gz is missing; add it"),
])
def test_nnunet_v2_what_is_not_supported_is_said(tmp_path, change, message):
    root = tmp_path / "Dataset001_x"
    for k in (1, 2):
        nii(root / "imagesTr" / f"lung_{k:03d}_0000.nii.gz", case(k)[0])
        nii(root / "labelsTr" / f"lung_{k:03d}.nii.gz", case(k)[1])
    meta = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "tumour": 1}, "file_ending": ".nii.gz"}
    (root / "dataset.json").write_text(json.dumps(meta))
    assert len(read_dataset(root).cases) == 2
    change(meta)
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=message):
        read_dataset(root)


def test_foreign_layouts_mixed_up_say_what_to_do(tmp_path):
    root = decathlon(tmp_path / "Dataset201_x")  # Decathlon file names under an nnU-Net v2 dataset.json
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "file_ending": ".nii.gz",
                                                   "labels": {"background": 0, "tumour": 1}}))
    with pytest.raises(DatasetError, match=r"imagesTr/lung_001_0000.nii.gz is missing; nnU-Net v2 names the channels "
                                           r".*rename lung_001.nii.gz to lung_001_0000.nii.gz"):
        read_dataset(root)
    (root / "dataset.json").unlink()
    with pytest.raises(DatasetError, match="without dataset.json; add the dataset.json"):
        read_dataset(root)
    root = monai(tmp_path / "m")
    meta = json.loads((root / "datalist.json").read_text())
    meta["validation"][0]["image"] = ["data/c3_t1.nii.gz"]
    (root / "datalist.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=r"entry 0 of \"validation\" .* names .*data/c3_t1.nii.gz, which does not "
                                           r"exist; its paths are read relative to"):
        read_dataset(root)
    del meta["validation"][0]["label"]
    (root / "datalist.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=r"needs an \"image\" and a \"label\""):
        read_dataset(root)


@pytest.mark.skipif(not LUNG.exists(), reason="shared data not present")
def test_attnseg_train_on_a_decathlon_task_of_real_ct(tmp_path, capsys):
    """The README's command on a Decathlon-style folder of crops of the shared lung CT, ending with a model whose
    card names the dataset's classes."""
    from napari_attnseg.cli import main

    img, lab = nib.load(LUNG / "lung1_image.nii.gz"), nib.load(LUNG / "lung1_labels.nii.gz")
    root = tmp_path / "Task06_Lung"
    items = []
    for k, (x, y) in enumerate([(184, 336), (176, 328)]):
        box = (slice(x, x + 64), slice(y, y + 48), slice(28, 38))
        for sub, src in (("imagesTr", img), ("labelsTr", lab)):
            out = nib.Nifti1Image(np.asarray(src.dataobj)[box], src.affine)
            (root / sub).mkdir(parents=True, exist_ok=True)
            nib.save(out, str(root / sub / f"lung_{k}.nii.gz"))
        items.append({"image": f"./imagesTr/lung_{k}.nii.gz", "label": f"./labelsTr/lung_{k}.nii.gz"})
    junk(root / "imagesTr")
    (root / "dataset.json").write_text(json.dumps({"modality": {"0": "CT"}, "training": items,
                                                   "labels": {"0": "background", "1": "tumour"}}))
    rc = main(["train", str(root), "--arch", "unet", "--out", str(tmp_path / "run"), "--epochs", "1",
               "--iters-per-epoch", "1", "--batch", "1", "--patch", "8,32,32", "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    card = json.loads((tmp_path / "run" / "best.json").read_text())
    assert card["classes"] == ["background", "tumour"]


def test_instance_ids_in_a_labels_folder_point_to_masks(tmp_path, capsys):
    """Instance ids (one value per object) in images/ + labels/ failed with a bare "label value 178 is not in the
    label table": the message now says such masks go in masks/ (read as foreground)."""
    from napari_attnseg.cli import main

    root = tmp_path / "cells"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rng = np.random.default_rng(0)
    inst = np.zeros((48, 48), np.uint16)
    for k in range(12):
        y, x = divmod(k, 4)
        inst[2 + 12 * y: 8 + 12 * y, 2 + 11 * x: 8 + 11 * x] = 170 + k
    tifffile.imwrite(root / "images" / "tile_0.tif", rng.random((48, 48)).astype(np.float32))
    tifffile.imwrite(root / "labels" / "tile_0.tif", inst)
    rc = main(["train", str(root), "--arch", "unet", "--out", str(tmp_path / "run"), "--epochs", "1",
               "--iters-per-epoch", "1", "--batch", "1", "--patch", "32,32", "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc != 0 and "is not in the label table" in err and "masks/ folder" in err, err


def test_class_table_of_a_dataset_made_elsewhere_is_checked_against_the_model(tmp_path):
    """finetune's class-table check read manifest.json only: an nnU-Net v2 dataset naming the brain model's white
    matter 1 and grey matter 2 (the model's are grey 1, white 2) was fine-tuned with no word."""
    from napari_attnseg.training.class_checks import class_table_warning

    root = tmp_path / "Dataset130_Brain"
    for k in (1, 2):
        image, labels = case(k)
        labels[labels == 1] = 2
        labels[0:3] = 1
        nii(root / "imagesTr" / f"b_{k:03d}_0000.nii.gz", image)
        nii(root / "labelsTr" / f"b_{k:03d}.nii.gz", labels)
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "T1"}, "numTraining": 2, "file_ending": ".nii.gz",
        "labels": {"background": 0, "white matter": 1, "grey matter": 2}}))
    said = class_table_warning("brain-mri-3d", root)
    assert said is not None and "value 1 'white matter'" in said and "renumber" in said, said
    assert "--label-names" not in said  # (no export made it)
