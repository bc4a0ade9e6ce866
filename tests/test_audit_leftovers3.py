"""Audit leftovers (3): a time-lapse exported as TIFF kept as a time-lapse, upper-case scan names (SCAN.NII.GZ) and
MetaImage / NRRD opened without napari's question, shell-quoted paths in the commands the CLI prints, a fine-tuning
--out that is the dataset folder, a dataset's imagesTr/ given as the dataset, a DICOM series given as its folder and
one of its files, and a too-long name counted in bytes."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from napari_attnseg.cli import main

PLUGIN = "napari-attnseg"


def _nuclei_dataset(folder: Path, fmt: str = "nnunet", n: int = 2) -> Path:
    from napari_attnseg._paths import samples_dir
    from napari_attnseg.data import read_image
    from napari_attnseg.data.export import export_case

    image = read_image(samples_dir() / "nuclei2d_image.tif").data
    labels = read_image(samples_dir() / "nuclei2d_labels.tif").data
    for k in range(n):
        export_case(image[k * 64:(k + 1) * 64, :64], labels[k * 64:(k + 1) * 64, :64], folder, fmt, foreground=True)
    return folder


# -- 1. a time-lapse (TYX) exported in the TIFF layout -----------------------------------------------------------
def test_a_time_lapse_exported_as_tiff_keeps_its_time_axis(tmp_path, capsys):
    """`attnseg export --image tyx.tif --labels tyx_mask.tif --format tiff --foreground` of an ImageJ time-lapse wrote
    the case as ZYX (Fiji: a z-stack of 4 slices 1 unit apart, not 4 frames): export_case was given no axes."""
    import tifffile

    from napari_attnseg.data import read_image

    rng = np.random.default_rng(0)
    image = (rng.random((4, 32, 32)) * 200).astype(np.uint8)
    mask = np.zeros((4, 32, 32), np.uint8)
    mask[:, 8:16, 8:16] = 3  # (instance ids: --foreground)
    res = (1 / 0.5, 1 / 0.5)
    tifffile.imwrite(tmp_path / "tyx.tif", image, imagej=True, resolution=res,
                     metadata={"axes": "TYX", "unit": "micron", "finterval": 2.0})
    tifffile.imwrite(tmp_path / "tyx_mask.tif", mask, imagej=True, resolution=res, metadata={"axes": "TYX"})
    ds = tmp_path / "ds"
    assert main(["export", "--image", str(tmp_path / "tyx.tif"), "--labels", str(tmp_path / "tyx_mask.tif"),
                 "--dataset", str(ds), "--format", "tiff", "--foreground"]) == 0
    for name in ("images", "labels"):
        with tifffile.TiffFile(ds / name / "case_0000.tif") as tif:
            assert tif.series[0].axes == "TYX", name
            assert tif.imagej_metadata.get("frames") == 4 and "slices" not in tif.imagej_metadata, name
        vol = read_image(ds / name / "case_0000.tif")
        assert vol.meta["axes"] == "TYX" and tuple(vol.spacing)[1:] == pytest.approx((0.5, 0.5))
    # the core takes the axes (napari's Correct tab passes its layer's); without them ZYX as before
    from napari_attnseg.data.export import export_case

    export_case(image, mask, tmp_path / "ds2", "tiff", foreground=True, axes="TYX")
    export_case(image, mask, tmp_path / "ds3", "tiff", foreground=True)
    with tifffile.TiffFile(tmp_path / "ds2" / "labels" / "case_0000.tif") as tif:
        assert tif.series[0].axes == "TYX"
    with tifffile.TiffFile(tmp_path / "ds3" / "labels" / "case_0000.tif") as tif:
        assert tif.series[0].axes == "ZYX"


# -- 2. upper-case names (Windows PACS exports), MetaImage and NRRD: no reader question -------------------------------
def _write_scan(path: Path) -> None:
    import nibabel as nib

    vol = np.arange(4 * 8 * 8, dtype=np.int16).reshape(4, 8, 8)
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        nib.save(nib.Nifti1Image(vol, np.diag([0.8, 0.8, 2.0, 1.0])), path)  # (nibabel writes by content)
    elif name.endswith(".nrrd"):
        path.write_bytes(b"NRRD0004\ntype: short\ndimension: 3\nsizes: 8 8 4\nspacings: 0.8 0.8 2\nendian: little\n"
                         b"encoding: raw\n\n" + vol.tobytes())
    else:
        path.write_bytes(b"ObjectType = Image\nNDims = 3\nDimSize = 8 8 4\nElementSpacing = 0.8 0.8 2\n"
                         b"ElementType = MET_SHORT\nElementDataFile = LOCAL\n" + vol.tobytes())


@pytest.mark.gui
@pytest.mark.parametrize("name", ["SCAN.NII.GZ", "scan.NII", "SCAN.MHA", "scan.mha", "scan.nrrd", "SCAN.NRRD"])
def test_upper_case_scans_and_metaimage_nrrd_open_without_a_question(opened, tmp_path, name):
    """File > Open of scan.NII.GZ (upper case, as PACS exports on Windows name them): napari asked which reader (its
    preferences match case-sensitively; the plugin had recorded *.nii.gz only), and napari's own failed "Could not
    find a backend". .mha / .nrrd were asked in any case (napari's reader claims them, and needs itk)."""
    path = tmp_path / name
    _write_scan(path)
    (layer,) = opened(path)  # File > Open; the fixture asserts napari's question was not asked
    assert layer.source.reader_plugin == PLUGIN and sorted(layer.data.shape) == [4, 8, 8]


# -- 3. paths in printed commands are shell-quoted ---------------------------------------------------------------
def test_the_finetune_hint_of_a_scratch_run_quotes_the_dataset(tiny_checkpoint):
    """`attnseg train "データ セット" ...`: the hint `attnseg finetune データ セット --model ...` was not quoted, so
    the suggested command split the dataset at its space (the reproduce: line was quoted)."""
    from napari_attnseg.cli._train_run import scratch_hint

    dataset = "/data/データ セット"
    cfg = SimpleNamespace(start_model=None, dataset=dataset)
    result = SimpleNamespace(cancelled=False, criterion="val_dice", val_dice_after=0.0,
                             checkpoint=str(tiny_checkpoint(2, arch="unet")))
    hint = scratch_hint(cfg, result)
    if hint is None:
        pytest.skip("no bundled 2D model to suggest")
    command = hint.split("attnseg finetune ", 1)[1].split(" --minutes")[0]
    assert shlex.split(command)[0] == dataset, hint


def test_the_suggested_out_folder_is_quoted(tmp_path, capsys):
    """--out 'my model.safetensors' (a file name): "Try --out my model" was not quoted."""
    ds = _nuclei_dataset(tmp_path / "ds")
    out = tmp_path / "my model.safetensors"
    assert main(["train", str(ds), "--arch", "unet", "--dims", "2", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"Try --out {shlex.quote(str(tmp_path / 'my model'))}." in err, err


# -- 4. --out that is the dataset folder -------------------------------------------------------------------------
def test_finetune_out_in_the_dataset_folder_is_refused(tmp_path, capsys):
    """`finetune DS --out DS` wrote best.safetensors, state.*, training_log.csv among the dataset's files."""
    ds = _nuclei_dataset(tmp_path / "DS")
    for out in (ds, ds / "imagesTr" / "m", ds / ".." / "DS"):
        assert main(["finetune", str(ds), "--model", "nuclei-2d", "--out", str(out), "--epochs", "1"]) == 1
        err = capsys.readouterr().err
        assert "among the dataset's files" in err and "--out " + str(tmp_path / "DS-model") in err, err
    assert not any((ds / name).exists() for name in ("best.safetensors", "state.safetensors", "training_log.csv"))
    from napari_attnseg.cli._train_common import refuse_out_in_dataset

    refuse_out_in_dataset(ds / "model", ds)  # a folder of its own in it: exports and readers leave it alone
    refuse_out_in_dataset(tmp_path / "DS-model", ds / "dataset.json")  # (a datalist file given: its folder)
    with pytest.raises(Exception, match="the dataset folder"):
        refuse_out_in_dataset(ds, ds / "dataset.json")


# -- 5. the images/labels folder of a dataset given as the dataset ------------------------------------------------
@pytest.mark.parametrize("fmt,sub", [("nnunet", "imagesTr"), ("nnunet", "labelsTr"), ("tiff", "images"),
                                     ("tiff", "labels")])
def test_a_datasets_own_folder_given_names_the_dataset_folder(tmp_path, capsys, fmt, sub):
    """`attnseg finetune ds/imagesTr` said "ds/imagesTr is not a dataset ... export one first": nothing pointed at ds."""
    ds = _nuclei_dataset(tmp_path / "ds", fmt)
    assert main(["finetune", str(ds / sub), "--model", "nuclei-2d", "--out", str(tmp_path / "m")]) == 1
    err = capsys.readouterr().err
    assert f"give the dataset folder {ds} (the folder above {sub})" in err and "export one first" not in err, err


# -- 6. a DICOM series as its folder and as one of its files -----------------------------------------------------
def test_a_dicom_series_given_as_folder_and_file_runs_once(tmp_path, capsys):
    """`attnseg predict CT CT/002.dcm` ran the series twice (CT_* and 002_*): one file reads its whole series."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_io import write_dicom_series

    from napari_attnseg.cli.predict import _distinct_inputs

    hu = np.random.default_rng(0).normal(0, 100, (5, 16, 16)).astype(np.float32)
    ct = write_dicom_series(tmp_path / "CT", hu)
    other = write_dicom_series(tmp_path / "CT" / "x", hu[:4])  # (another series' file under it: not the folder's)
    one = sorted(ct.glob("*.dcm"))[2]
    assert _distinct_inputs([ct, one], tmp_path / "out") == [ct]
    assert _distinct_inputs([one, ct], tmp_path / "out") == [ct]
    assert "run once" in capsys.readouterr().err
    lone = sorted(other.glob("*.dcm"))[0]
    assert _distinct_inputs([ct, lone], tmp_path / "out") == [ct, lone]


# -- 7. a too-long name counted in bytes -------------------------------------------------------------------------
def test_a_too_long_name_is_counted_in_bytes(tmp_path):
    """"its 79 characters ... exceed the 255" of a name of 238 bytes in UTF-8: the limit is in bytes."""
    from napari_attnseg.cohort.outputs import name_too_long

    src = tmp_path / ("画" * 76 + ".nii.gz")  # 76 characters, 228 bytes
    said = name_too_long(tmp_path, src)
    assert said is not None and "228 bytes in UTF-8 (76 characters)" in said and "255 bytes" in said, said
    assert "76 characters plus" not in said
