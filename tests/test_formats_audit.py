"""MetaImage / NRRD walk-through (radiologist and analyst, helper audit): a `.mhd` reached through a link (the
`<stem>_image.mhd` that `attnseg predict` leaves beside its outputs) looked for its `.raw` beside the link and failed;
a 3D Slicer segmentation (`brain1.seg.nrrd`) opened in napari as an image named 'brain1 [1]' (its name does not say
'label') and its segment names were dropped (`attnseg export` called the tumour 'foreground').

tests/data/itk_oblique.* were written by SimpleITK (see test_metaio.py); the segmentation below uses its header."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from napari_attnseg.cli import main
from napari_attnseg.data import read_image

DATA = Path(__file__).resolve().parent / "data"


def _slicer_segmentation(folder: Path) -> tuple[Path, Path, np.ndarray]:
    """``scan.nrrd`` (the ITK volume) and ``scan.seg.nrrd``, a 3D Slicer segmentation on its grid: one layer, segments
    'tumour' (label value 1) and 'oedema' (value 3), with the ``SegmentN_*:=`` fields Slicer writes."""
    shutil.copy(DATA / "itk_oblique.nrrd", folder / "scan.nrrd")
    header = [line for line in (DATA / "itk_oblique.nhdr").read_text().splitlines()
              if line and not line.startswith(("type:", "encoding:", "data file:"))]
    mask = np.zeros((7, 9, 11), np.uint8)  # (z, y, x)
    mask[2:5, 3:6, 4:8] = 1
    mask[5, 1:3, 1:3] = 3
    fields = ["type: unsigned char", "encoding: gzip", "Segment0_ID:=Segment_1", "Segment0_LabelValue:=1",
              "Segment0_Layer:=0", "Segment0_Name:=tumour", "Segment1_ID:=Segment_2", "Segment1_LabelValue:=3",
              "Segment1_Layer:=0", "Segment1_Name:=oedema", "Segmentation_MasterRepresentation:=Binary labelmap"]
    seg = folder / "scan.seg.nrrd"
    seg.write_bytes(("\n".join(header + fields) + "\n\n").encode() + gzip.compress(mask.tobytes()))
    return folder / "scan.nrrd", seg, mask


def test_a_link_to_a_header_finds_the_data_file_beside_its_target(tmp_path):
    """`attnseg predict lung1.mhd --out o` links o/lung1_image.mhd to the input; opening that link (napari, `attnseg
    export --image`) said 'its data file o/lung1.raw does not exist'."""
    from napari_attnseg._napari.io_hooks import get_nifti_reader

    src, out = tmp_path / "scans", tmp_path / "out"
    src.mkdir(), out.mkdir()
    for name in ("itk_oblique.nhdr", "itk_oblique.raw"):
        shutil.copy(DATA / name, src / name)
    link = out / "itk_oblique_image.nhdr"
    try:
        os.symlink(src / "itk_oblique.nhdr", link)
    except OSError:
        pytest.skip("no symbolic links on this file system")
    np.testing.assert_array_equal(read_image(link).data, read_image(DATA / "itk_oblique.nrrd").data)
    [(data, kwargs, kind)] = get_nifti_reader(str(link))(str(link))
    assert kind == "image" and data.shape == (7, 9, 11)


def test_napari_opens_a_slicer_segmentation_as_labels_on_its_scan_with_its_segment_names(tmp_path):
    from napari_attnseg._napari.io_hooks import get_nifti_reader

    scan, seg, mask = _slicer_segmentation(tmp_path)
    [(_, image_kw, _)] = get_nifti_reader(str(scan))(str(scan))
    [(data, kwargs, kind)] = get_nifti_reader(str(seg))(str(seg))
    assert kind == "labels" and kwargs["name"] == "scan.seg"  # not an image named 'scan' ('scan [1]' in napari)
    np.testing.assert_array_equal(data, mask)
    np.testing.assert_allclose(kwargs["scale"], image_kw["scale"])
    np.testing.assert_allclose(kwargs["translate"], image_kw["translate"])
    assert kwargs["metadata"]["class_names"] == ["background", "tumour", "label 2", "oedema"]


def test_export_names_the_classes_of_a_slicer_segmentation(tmp_path, capsys):
    scan, seg, _ = _slicer_segmentation(tmp_path)
    assert main(["export", "--image", str(scan), "--labels", str(seg), "--dataset", str(tmp_path / "ds")]) == 0
    assert "using the class names saved with the mask: background, tumour, label 2, oedema" in capsys.readouterr().err
    labels = json.loads((tmp_path / "ds" / "dataset.json").read_text())["labels"]
    assert labels == {"background": 0, "tumour": 1, "label 2": 2, "oedema": 3}
    assert read_image(next((tmp_path / "ds" / "labelsTr").iterdir())).data.max() == 3


def test_user_fields_that_are_not_segments_name_no_classes(tmp_path):
    """A label map from elsewhere (``-label.nrrd``, no Segment fields) or with a segment whose value is unreadable
    keeps no names: export falls back to its defaults."""
    _, seg, _ = _slicer_segmentation(tmp_path)
    text = seg.read_bytes()
    bad = tmp_path / "bad.seg.nrrd"
    bad.write_bytes(text.replace(b"Segment1_LabelValue:=3", b"Segment1_LabelValue:=x"))
    assert "class_names" not in read_image(bad).meta
    plain = tmp_path / "scan-label.nrrd"
    head, body = text.split(b"\n\n", 1)
    plain.write_bytes(b"\n".join(line for line in head.split(b"\n") if b":=" not in line) + b"\n\n" + body)
    assert "class_names" not in read_image(plain).meta


def test_a_slicer_folder_runs_as_one_case_and_a_rewritten_raw_is_a_new_input(tmp_path, tiny_checkpoint, capsys):
    """A 3D Slicer folder as a cohort (scan.nrrd, scan.seg.nrrd, scan-label.nrrd) plus a LUNA16-style .mhd + .raw:
    the segmentation and label map were run as scans (the .seg.nrrd then failed 'has the same name as scan.nrrd',
    exit 1), the .raw was counted among 'files of other types', and a resumed run skipped a case whose .raw had been
    rewritten (only the header's size and time were compared): a stale mask kept as finished."""
    from napari_attnseg.cohort import predict_cohort

    folder = tmp_path / "slicer"
    folder.mkdir()
    scan, seg, _ = _slicer_segmentation(folder)
    shutil.copy(seg, folder / "scan-label.nrrd")
    for name in ("itk_oblique.mhd", "itk_oblique.raw") if (DATA / "itk_oblique.mhd").exists() else ():
        shutil.copy(DATA / name, folder / name)
    header = (DATA / "itk_oblique.nhdr").read_text().replace("itk_oblique.raw", "ct.raw")
    (folder / "ct.nhdr").write_text(header)
    shutil.copy(DATA / "itk_oblique.raw", folder / "ct.raw")
    model = tiny_checkpoint(dims=3)
    opts = dict(device="cpu", precision="fp32", tile=(16, 32, 32), threads=1)
    first = predict_cohort(model, folder, tmp_path / "o", **opts)
    assert sorted(c.case for c in first.cases) == ["ct", "scan"], [c.case for c in first.cases]
    assert all(c.status == "done" for c in first.cases), [(c.case, c.error) for c in first.cases]
    again = predict_cohort(model, folder, tmp_path / "o", **opts)
    assert [c.status for c in again.cases] == ["skipped", "skipped"]
    raw = folder / "ct.raw"
    raw.write_bytes(raw.read_bytes()[::-1])  # the data rewritten, its header untouched
    third = predict_cohort(model, folder, tmp_path / "o", **opts)
    assert {c.case: c.status for c in third.cases} == {"ct": "done", "scan": "skipped"}
    assert main(["predict", str(folder), "--model", str(model), "--out", str(tmp_path / "o2"), "--device", "cpu",
                 "--tile", "16,32,32"]) == 0
    assert "other types" not in capsys.readouterr().err


def test_a_cropped_slicer_segmentation_is_exported_on_its_scans_grid(tmp_path):
    """3D Slicer saves a segmentation cropped to its extent (its origin moved onto the first voxel it covers);
    export refused it ('origin ... mm apart: resample them onto its grid'). A block of the image's grid is now
    padded onto it, background elsewhere."""
    import nibabel as nib

    scan, seg, mask = _slicer_segmentation(tmp_path)
    full = read_image(seg)
    at = np.array([2, 3, 4])  # (k, j, i) of the block's first voxel
    block = mask[2:6, 3:6, 4:8]
    origin = (full.affine @ [*at[::-1], 1])[:3] * [-1, -1, 1]  # RAS -> the header's LPS
    lines = []
    for line in seg.read_bytes().split(b"\n\n")[0].decode().splitlines():
        if line.startswith("sizes:"):
            line = "sizes: " + " ".join(map(str, block.shape[::-1]))
        elif line.startswith("space origin:"):
            line = "space origin: (" + ",".join(repr(float(v)) for v in origin) + ")"
        lines.append(line)
    crop = tmp_path / "crop.seg.nrrd"
    crop.write_bytes(("\n".join(lines) + "\n\n").encode() + gzip.compress(np.ascontiguousarray(block).tobytes()))
    np.testing.assert_array_equal(read_image(crop).data, block)
    assert main(["export", "--image", str(scan), "--labels", str(crop), "--dataset", str(tmp_path / "ds"),
                 "--format", "nnunet"]) == 0
    (labels,) = sorted((tmp_path / "ds" / "labelsTr").glob("*.nii.gz"))
    expected = np.zeros_like(mask)
    expected[2:6, 3:6, 4:8] = block
    got = np.asarray(nib.load(str(labels)).dataobj).transpose(2, 1, 0)
    np.testing.assert_array_equal(got > 0, expected > 0)
    # a block off the image's voxels (half a voxel) is still refused
    lines = [ln if not ln.startswith("space origin:") else
             "space origin: (" + ",".join(repr(float(v)) for v in origin + 0.3) + ")" for ln in lines]
    crop.write_bytes(("\n".join(lines) + "\n\n").encode() + gzip.compress(np.ascontiguousarray(block).tobytes()))
    assert main(["export", "--image", str(scan), "--labels", str(crop), "--dataset", str(tmp_path / "ds2"),
                 "--format", "nnunet"]) != 0


def test_an_ome_tiffs_outputs_are_named_after_its_stem(tmp_path, tiny_checkpoint):
    """`attnseg predict x.ome.tif` wrote `x.ome_mask.tif` (the stem kept `.ome`)."""
    import tifffile

    from napari_attnseg.data.io import stem

    assert stem("a/b/cells.ome.tif") == "cells" and stem("cells.OME.TIFF") == "cells" and stem("c.tif") == "c"
    img = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    tifffile.imwrite(tmp_path / "cells.ome.tif", img, ome=True, metadata={"axes": "YX", "PhysicalSizeX": 0.325,
                                                                          "PhysicalSizeY": 0.325})
    out = tmp_path / "o"
    assert main(["predict", str(tmp_path / "cells.ome.tif"), "--model", str(tiny_checkpoint()), "--out", str(out),
                 "--device", "cpu"]) == 0
    assert sorted(p.name for p in out.glob("*_mask*")) == ["cells_mask.tif"]
