"""A killed export leaves nothing a dataset reader counts, and the next export recovers it; exported NIfTI files
keep the source's qform/sform codes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import pytest
from _kill_helpers import kill_export

from napari_attnseg.cli import main as cli
from napari_attnseg.data import read_image, write_image
from napari_attnseg.data.dataset import read_dataset
from napari_attnseg.data.export import export_case


def _subfiles(folder, suffix):
    """batchgenerators' ``subfiles(folder, suffix=..., join=False)``, which nnU-Net v2 lists with: every file
    whose name ends with the suffix, hidden ones included; folders skipped."""
    return sorted(i for i in os.listdir(folder) if os.path.isfile(os.path.join(folder, i)) and i.endswith(suffix))


def _nnunet_view(ds):
    """The training cases nnU-Net v2 finds in a raw dataset without a 'dataset' key (nnunetv2.utilities.utils:
    get_identifiers_from_splitted_dataset_folder, create_lists_from_splitted_dataset_folder), and what its
    verify_dataset_integrity would object to (case count against numTraining, missing labels or channels)."""
    meta = json.loads((ds / "dataset.json").read_text())
    ending = meta["file_ending"]
    files = _subfiles(ds / "imagesTr", ending)
    ids = sorted({f[: -(len(ending) + 5)] for f in files})
    problems = []
    if len(ids) != meta["numTraining"]:
        problems.append(f"{len(ids)} cases found ({ids}), numTraining {meta['numTraining']}")
    for i in ids:
        channels = [f for f in files if re.fullmatch(re.escape(i) + r"_\d\d\d\d" + re.escape(ending), f)]
        if len(channels) != len(meta["channel_names"]):
            problems.append(f"{i}: {len(channels)} image files")
        if not (ds / "labelsTr" / f"{i}{ending}").is_file():
            problems.append(f"{i}: no label file")
    return ids, problems


def _hidden_in_layout(ds):
    return sorted(str(p.relative_to(ds)) for sub in ("imagesTr", "labelsTr", "images", "labels")
                  if (ds / sub).is_dir() for p in (ds / sub).iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("step,nth,overwrite", [("file", 1, False), ("file", 2, False), ("committed", 1, False),
                                                ("renamed", 1, False), ("file", 2, True), ("renamed", 1, True)])
def test_a_killed_export_leaves_nothing_nnunet_counts_and_the_next_export_recovers_it(
        tmp_path, case, step, nth, overwrite):
    image, labels = case
    ds = tmp_path / "ds"
    export_case(image, labels, ds, "nnunet")
    kill_export(tmp_path, ds, image + 1, 1 - labels, step, nth, overwrite=overwrite)
    # what nnU-Net sees right after the kill, before anything of ours ran again
    ids, problems = _nnunet_view(ds)
    assert not problems, problems
    assert ids == ["case_0000"] or (step == "renamed" and ids == ["case_0000", "case_0001"])
    assert _hidden_in_layout(ds) == []
    # the next export (attnseg export, run again) finishes a committed one, drops an uncommitted one
    write_image(tmp_path / "img.nii.gz", image)
    write_image(tmp_path / "lab.nii.gz", labels)
    assert cli(["export", "--image", str(tmp_path / "img.nii.gz"), "--labels", str(tmp_path / "lab.nii.gz"),
                "--dataset", str(ds), "--format", "nnunet"]) == 0
    committed = step in ("committed", "renamed")
    d = read_dataset(ds)
    expected = ["case_0000", "case_0001", "case_0002"] if committed and not overwrite else ["case_0000", "case_0001"]
    assert [c.case_id for c in d.cases] == expected
    img, lab, _ = d.cases[0].load()
    np.testing.assert_array_equal(img[0], image + 1 if committed and overwrite else image)
    np.testing.assert_array_equal(lab, 1 - labels if committed and overwrite else labels)
    if committed and not overwrite:
        img, lab, _ = d.cases[1].load()
        np.testing.assert_array_equal(img[0], image + 1)
        np.testing.assert_array_equal(lab, 1 - labels)
    assert _nnunet_view(ds) == (expected, [])
    assert not [p for p in ds.rglob(".*") if p.name != ".attnseg.lock"]  # no journal, staged file or folder left


@pytest.mark.parametrize("fmt,ext", [("monai", ".nii.gz"), ("tiff", ".tif")])
def test_a_killed_export_leaves_no_hidden_file_in_monai_or_tiff_folders(tmp_path, case, fmt, ext):
    """pathlib's glob("*.tif") matches hidden names: a staged file beside the cases would be listed."""
    image, labels = case
    ds = tmp_path / "ds"
    export_case(image, labels, ds, fmt)
    kill_export(tmp_path, ds, image, labels, "file", 2, fmt=fmt)
    for sub in ("images", "labels"):
        assert sorted(p.name for p in (ds / sub).glob(f"*{ext}")) == [f"case_0000{ext}"]
    assert export_case(image, labels, ds, fmt).case_id == "case_0001"
    assert [c.case_id for c in read_dataset(ds).cases] == ["case_0000", "case_0001"]
    assert not [p for p in ds.rglob(".*") if p.name != ".attnseg.lock"]


def test_an_export_killed_from_outside_while_it_writes_leaves_the_layout_folders_clean(tmp_path, case):
    image, labels = case
    ds = tmp_path / "ds"
    export_case(image, labels, ds, "nnunet")
    before = (ds / "manifest.json").read_bytes()
    np.save(tmp_path / "img.npy", image)
    np.save(tmp_path / "lab.npy", labels)
    code = ("import numpy as np, sys, time; from napari_attnseg.data import export; "
            "export._hook = lambda step: time.sleep(30) if step == 'file' else None; "
            "export.export_case(np.load(sys.argv[1]), np.load(sys.argv[2]), sys.argv[3], 'nnunet')")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "img.npy"), str(tmp_path / "lab.npy"), str(ds)])
    deadline = time.time() + 60
    while not list(ds.rglob(".case_0001_0000*staged.nii.gz")) and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(ds.rglob(".case_0001_0000*staged.nii.gz")), "the export was not stopped mid-case"
    assert _nnunet_view(ds) == (["case_0000"], []) and _hidden_in_layout(ds) == []
    assert (ds / "manifest.json").read_bytes() == before and len(read_dataset(ds).cases) == 1
    assert export_case(image, labels, ds, "nnunet").case_id == "case_0001"
    assert not list(ds.rglob("*staged*")) and not (ds / ".attnseg-staging").exists()


def test_a_layout_folder_on_another_disk_is_staged_in_a_hidden_folder_inside_it(tmp_path, case, monkeypatch):
    """os.replace cannot cross file systems: imagesTr linked to another disk gets its own hidden staging folder,
    which nnU-Net's listing skips (a folder), and which the next export empties and removes."""
    from napari_attnseg.data import export, staging

    image, labels = case
    ds = tmp_path / "ds"
    export_case(image, labels, ds, "nnunet")
    monkeypatch.setattr(staging, "_device", lambda p: 2 if p == ds / "imagesTr" else 1)
    seen = []

    def stop(step):
        if step == "file":
            seen.append(sorted(str(p.relative_to(ds)) for p in ds.rglob("*staged*")))
            if len(seen) == 2:
                raise _Stop

    monkeypatch.setattr(export, "_hook", stop)
    with pytest.raises(_Stop):
        export_case(image, labels, ds, "nnunet")
    assert [os.path.dirname(r) for r in seen[0]] == ["imagesTr/.attnseg-staging"]
    assert sorted(os.path.dirname(r) for r in seen[1]) == [".attnseg-staging/labelsTr", "imagesTr/.attnseg-staging"]
    assert not list(ds.rglob("*staged*")) and not (ds / "imagesTr" / ".attnseg-staging").exists()  # discarded
    left = ds / "imagesTr" / ".attnseg-staging" / ".case_0001_0000.0badf00d.attnseg-staged.nii.gz"  # a killed one's
    write_image(left, image)
    assert _nnunet_view(ds) == (["case_0000"], [])  # a folder: nnU-Net's listing skips it
    monkeypatch.setattr(export, "_hook", lambda step: None)
    assert export_case(image, labels, ds, "nnunet").case_id == "case_0001"
    assert _nnunet_view(ds) == (["case_0000", "case_0001"], [])
    assert not [p for p in ds.rglob(".*") if p.name != ".attnseg.lock"]


def test_recovery_keeps_files_that_are_not_an_exports(tmp_path, case):
    image, labels = case
    ds = tmp_path / "ds"
    export_case(image, labels, ds, "nnunet")
    mine = ds / ".attnseg-staging" / "imagesTr" / "notes.txt"
    mine.parent.mkdir(parents=True)
    mine.write_text("keep me")
    finder = ds / "imagesTr" / ".DS_Store"
    finder.write_text("x")
    export_case(image, labels, ds, "nnunet")
    assert mine.read_text() == "keep me" and finder.exists()


class _Stop(Exception):
    pass


def test_leftovers_of_an_earlier_version_beside_the_cases_are_recovered(tmp_path, case, monkeypatch):
    """Earlier versions staged beside the cases: their journal is still applied, their staged files deleted."""
    from napari_attnseg.data import export

    image, labels = case
    ds = tmp_path / "ds"
    export_case(image, labels, ds, "nnunet")
    old = (ds / "labelsTr" / ".case_0009.0badf00d.attnseg-staged.nii.gz")  # an uncommitted one's file
    write_image(old, labels)

    def stop(step):
        if step == "committed":
            raise _Stop

    monkeypatch.setattr(export, "staged_name", lambda final, token: final.with_name(
        f".{final.name[:-7]}.{token}.attnseg-staged.nii.gz"))
    monkeypatch.setattr(export, "_hook", stop)
    with pytest.raises(_Stop):
        export_case(image + 1, labels, ds, "nnunet")  # committed with the old names, never renamed
    assert len(list((ds / "imagesTr").glob(".*staged*"))) == 1
    monkeypatch.undo()
    assert export_case(image, labels, ds, "nnunet").case_id == "case_0002"
    d = read_dataset(ds)
    assert [c.case_id for c in d.cases] == ["case_0000", "case_0001", "case_0002"]
    np.testing.assert_array_equal(d.cases[1].load()[0][0], image + 1)
    assert not list(ds.rglob("*staged*"))


SFORM = np.array([[-0.886, -0.139, 0.0, 10.0], [-0.156, 0.788, 0.0, -20.0], [0.0, 0.0, 2.5, 5.0], [0, 0, 0, 1]])
QFORM = np.array([[-0.9, 0.0, 0.0, 13.0], [0.0, 0.8, 0.0, -18.0], [0.0, 0.0, 2.5, 1.0], [0, 0, 0, 1]])


def _source(path, data, q_code, s_code):
    img = nib.Nifti1Image(data, None)
    img.set_qform(QFORM, code=q_code)
    img.set_sform(SFORM, code=s_code)
    nib.save(img, path)


@pytest.mark.parametrize("fmt", ["nnunet", "monai"])
@pytest.mark.parametrize("q_code,s_code", [(1, 2), (0, 4), (1, 0)])
def test_exported_nifti_keep_the_sources_qform_and_sform_codes(tmp_path, case, fmt, q_code, s_code):
    """ITK (3D Slicer, ITK-SNAP, nnU-Net's SimpleITK reader) reads the qform when the sform code is not 1, nibabel
    and FSL the sform: with the source's codes and both transforms, every tool overlays the case on the source."""
    image, labels = case
    _source(tmp_path / "img.nii.gz", image.transpose(2, 1, 0), q_code, s_code)
    vol = read_image(tmp_path / "img.nii.gz")
    rec = export_case(vol.data, labels, tmp_path / "ds", fmt, spacing=vol.spacing, affine=vol.affine,
                      nifti=vol.meta["nifti"])
    src = nib.load(tmp_path / "img.nii.gz").header
    for rel in [*rec.files["images"], rec.files["label"]]:
        h = nib.load(tmp_path / "ds" / rel).header
        assert (int(h["qform_code"]), int(h["sform_code"])) == (q_code, s_code), rel
        if q_code:
            np.testing.assert_allclose(h.get_qform(), src.get_qform(), atol=1e-4)
        if s_code:
            np.testing.assert_allclose(h.get_sform(), src.get_sform(), atol=1e-4)
        np.testing.assert_allclose(read_image(tmp_path / "ds" / rel).affine, vol.affine, atol=1e-4)


def test_exported_nifti_without_source_header_say_scanner(tmp_path, case):
    image, labels = case
    rec = export_case(image, labels, tmp_path / "ds", "nnunet", affine=QFORM)
    h = nib.load(tmp_path / "ds" / rec.files["label"]).header
    assert (int(h["qform_code"]), int(h["sform_code"])) == (1, 1)


def test_attnseg_export_keeps_the_sources_codes(tmp_path, case):
    """The command line passes the source's header facts on (export_case alone cannot know them)."""
    image, labels = case
    _source(tmp_path / "img.nii.gz", image.transpose(2, 1, 0), 1, 2)
    nib.save(nib.Nifti1Image(labels.transpose(2, 1, 0).astype(np.uint8), SFORM), tmp_path / "lab.nii.gz")
    assert cli(["export", "--image", str(tmp_path / "img.nii.gz"), "--labels", str(tmp_path / "lab.nii.gz"),
                "--dataset", str(tmp_path / "ds"), "--format", "nnunet"]) == 0
    for f in sorted((tmp_path / "ds").rglob("case_0000*.nii.gz")):
        h = nib.load(f).header
        assert (int(h["qform_code"]), int(h["sform_code"])) == (1, 2), f
        np.testing.assert_allclose(h.get_qform(), nib.load(tmp_path / "img.nii.gz").header.get_qform(), atol=1e-4)
