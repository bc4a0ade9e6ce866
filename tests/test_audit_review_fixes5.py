"""Review fixes of 2026-12-06 (yesterday's last commits, read again): each test failed before its fix."""

from __future__ import annotations

import json

import numpy as np
import tifffile
from test_audit_review_fixes4 import _nuclei

from napari_attnseg.cli import main
from napari_attnseg.data.tiff import write_tiff

# 1. evaluate --region with reviewed marks: the slices it scores are the region's --------------------------------------


def _marked(tmp_path):
    image, fg = _nuclei(4)
    tifffile.imwrite(tmp_path / "img.tif", image)
    write_tiff(tmp_path / "marked.tif", fg, (1.0, 1.0, 1.0), reviewed_slices=[1, 2])
    return ["evaluate", "--model", "nuclei-2d", "--image", str(tmp_path / "img.tif"),
            "--labels", str(tmp_path / "marked.tif"), "--json"]


def test_evaluate_region_lists_only_the_reviewed_slices_it_scores(tmp_path, capsys):
    """Slices 1-2 reviewed, --region 2:4: slice 2 is scored and the JSON says [2] (it said [1, 2])."""
    args = _marked(tmp_path)
    assert main(args + ["--region", "2:4,0:64,0:64"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["reviewed_slices"] == [2]
    assert "--region keeps 1 of them (2)" in result["note"]
    assert result["dice"]["nucleus"] is not None and result["dice"]["nucleus"] > 0.5


def test_evaluate_refuses_a_region_holding_no_reviewed_slice(tmp_path, capsys):
    """--region 3:4 holds only an unreviewed slice, which has nuclei: it was scored "no voxel of nucleus in the
    reference" (Dice null) with reviewed_slices [1, 2]; now refused, naming the reviewed slices, before predicting."""
    args = _marked(tmp_path)
    assert main(args + ["--region", "3:4,0:64,0:64"]) == 1
    err = capsys.readouterr().err
    assert "--region 3:4,0:64,0:64 holds none of the slices" in err and "marked.tif" in err and "(1-2)" in err


def test_evaluate_region_over_all_reviewed_slices_says_nothing_more(tmp_path, capsys):
    args = _marked(tmp_path)
    assert main(args + ["--region", "0:4,0:64,0:64"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["reviewed_slices"] == [1, 2] and "--region keeps" not in result["note"]
    assert np.isfinite(result["dice"]["nucleus"])
