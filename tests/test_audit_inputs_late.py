"""Advice a user can follow (review 2026-12-06): a channel-last TIFF told to use --channel K then refused it; a TZCYX
hyperstack refused by attnseg predict twice in turn (channel, then time); a --summary in a missing folder ran every
case and then failed on a hidden lock file with no summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_attnseg.cli import main

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nuclei2d"
pytestmark = pytest.mark.skipif(not (DATA / "image.tif").is_file(), reason="shared nuclei data not found")


def _crop() -> np.ndarray:
    return np.ascontiguousarray(tifffile.imread(DATA / "image.tif")[:128, :128])


def test_a_channel_last_tiff_takes_the_channel_its_refusal_asks_for(tmp_path, capsys):
    im = _crop()
    p = tmp_path / "two.tif"
    tifffile.imwrite(p, np.stack([im, im[::-1]], -1))  # numpy's channels-last order: tifffile writes axes QYX
    assert main(["predict", str(p), "--model", "nuclei-2d", "--out", str(tmp_path / "a")]) == 1
    assert "--channel K" in capsys.readouterr().err
    assert main(["predict", str(p), "--model", "nuclei-2d", "--out", str(tmp_path / "b"), "--channel", "1"]) == 0
    mask = tifffile.imread(tmp_path / "b" / "two_mask.tif")
    assert mask.shape == (128, 128) and mask.any()
    # the same file in a folder run: --channel is not dropped as "one channel" (it was, then refused again)
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "two.tif", np.stack([im, im[::-1]], -1))
    assert main(["predict", str(tmp_path / "in"), "--model", "nuclei-2d", "--out", str(tmp_path / "c"),
                 "--channel", "1"]) == 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "c" / "two_mask.tif"), mask)
    assert main(["predict", str(p), "--model", "nuclei-2d", "--out", str(tmp_path / "d"), "--channel", "2"]) == 1
    assert "--channel is 0 to 1, not 2" in capsys.readouterr().err


def test_predict_refuses_a_tzcyx_hyperstack_once_naming_time_point_and_channel(tmp_path, capsys):
    im = _crop()[:64, :64]
    stack = np.stack([np.stack([np.stack([im, im[::-1]]) for _ in range(4)]) for _ in range(3)])  # T Z C Y X
    p = tmp_path / "hs.tif"
    tifffile.imwrite(p, stack, imagej=True, metadata={"axes": "TZCYX"})
    for extra in ([], ["--channel", "1"]):
        assert main(["predict", str(p), "--model", "nuclei-2d", "--out", str(tmp_path / "o"), *extra]) == 1
        err = capsys.readouterr().err
        assert "hs.tif is a time-lapse of volumes" in err and "the time point t (0 to 2)" in err, err
        assert ("the channel k" in err) == (not extra), err


def test_a_summary_in_a_missing_folder_is_refused_before_any_case(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "p1.tif", _crop())
    rc = main(["predict", str(tmp_path / "in"), "--model", "nuclei-2d", "--out", str(tmp_path / "out"),
               "--summary", "reports/summary.csv"])
    err = capsys.readouterr().err
    assert rc == 1 and "FileNotFoundError" not in err and "does not exist" in err and "Nothing was run" in err, err
    assert not list((tmp_path / "out").glob("p1_*"))


def test_reading_a_series_reads_the_other_series_headers_once(tmp_path, monkeypatch):
    """A PACS folder of many series (1,200 files, 20 series): the search for damaged files of the chosen series read
    every other series' headers a second time (0.68 of 2.31 s); files read as images of a series are not damaged."""
    import pydicom
    from test_audit_dicom_pacs import axial
    from test_dicom import lung_crop

    from napari_attnseg.data.dicom import read_dicom_series

    lung = lung_crop()
    axial(lung, tmp_path / "s")  # the CT series (6 images)
    others = axial(lung, tmp_path / "s", series="1.2.9", name="OT{:04d}", number=9, slices=[2])  # a one-image series
    reads: list[str] = []
    real = pydicom.dcmread
    monkeypatch.setattr(pydicom, "dcmread", lambda f, *a, **k: (reads.append(str(f)), real(f, *a, **k))[1])
    vol = read_dicom_series(tmp_path / "s")
    assert vol.data.shape[0] == 6
    assert reads.count(str(others[0])) == 1, reads


def test_a_glob_into_its_own_folder_finds_its_images_and_not_its_outputs(tmp_path, capsys):
    """`attnseg predict "scans/*.tif" --out scans` found no image (everything inside --out was left out of a glob), where
    `attnseg predict scans --out scans` works; the rerun skips the finished case and takes none of its outputs."""
    scans = tmp_path / "scans"
    scans.mkdir()
    tifffile.imwrite(scans / "p1.tif", _crop())
    pattern = str(scans / "*.tif")
    assert main(["predict", pattern, "--model", "nuclei-2d", "--out", str(scans)]) == 0, capsys.readouterr().err
    assert (scans / "p1_mask.tif").is_file()
    capsys.readouterr()
    assert main(["predict", pattern, "--model", "nuclei-2d", "--out", str(scans)]) == 0
    text = "".join(capsys.readouterr())
    assert "1 skipped" in text and "p1_mask" not in text.split("summary")[0], text


def test_a_lone_predict_whose_record_was_deleted_says_so_and_overwrite_keeps_the_mask(tmp_path, capsys):
    """`attnseg predict a.tif --out out` after the user deleted out/a_predict.json called attnseg's own mask 'foreign'
    and refused even --overwrite (the cohort path said what happened and let --overwrite keep the mask)."""
    img, out = tmp_path / "a.tif", tmp_path / "out"
    tifffile.imwrite(img, _crop())
    assert main(["predict", str(img), "--model", "nuclei-2d", "--out", str(out)]) == 0
    (out / "a_predict.json").unlink()
    mask = (out / "a_mask.tif").read_bytes()
    capsys.readouterr()
    assert main(["predict", str(img), "--model", "nuclei-2d", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "a_predict.json, is missing" in err and "no run of attnseg" not in err, err
    assert main(["predict", str(img), "--model", "nuclei-2d", "--out", str(out), "--overwrite"]) == 0
    assert (out / "edited_masks" / "a_mask.tif").read_bytes() == mask and (out / "a_predict.json").is_file()
