"""A cohort of many inputs in one folder that also holds predict's records (links to the images written into the
output folder, listed in a CSV): each input is checked against the folder's records, which were read again for
every input (500 inputs: 11 s of JSON reading on a 2-core machine); each record is now read once per version."""

from __future__ import annotations

import json
import os

import pytest

from napari_attnseg.data import mask_input
from napari_attnseg.errors import InputError


def _records(folder, n):
    for i in range(n):
        (folder / f"case{i:03d}_predict.json").write_text(json.dumps(
            {"input": f"/scans/case{i:03d}.nii.gz", "mask": f"case{i:03d}_mask.nii.gz",
             "outputs": [f"case{i:03d}_mask.nii.gz", f"case{i:03d}_prob.nii.gz"]}))
        (folder / f"case{i:03d}.nii.gz").write_bytes(b"")
        (folder / f"case{i:03d}_mask.nii.gz").write_bytes(b"")


def test_each_record_is_read_once_for_a_folder_of_inputs(tmp_path, monkeypatch):
    _records(tmp_path, 40)
    mask_input._record_outputs.cache_clear()
    mask_input._records_in.cache_clear()
    reads = []
    real = json.loads
    monkeypatch.setattr(mask_input.json, "loads", lambda text, *a, **k: reads.append(1) or real(text, *a, **k))
    for i in range(40):
        mask_input.refuse_our_output(tmp_path / f"case{i:03d}.nii.gz")  # images: not refused
    assert len(reads) < 80  # each of the 40 records once (was 40 x 40 = 1,600 reads)
    with pytest.raises(InputError, match=r"case007_mask.nii.gz is the mask attnseg predict wrote .*/scans/case007"):
        mask_input.refuse_our_output(tmp_path / "case007_mask.nii.gz")


def test_a_record_rewritten_or_added_later_is_read_again(tmp_path):
    _records(tmp_path, 3)
    mask_input.refuse_our_output(tmp_path / "case000.nii.gz")
    # case000.nii.gz is now listed as an output of a later run (rewritten record), and a new record appears
    rec = tmp_path / "case001_predict.json"
    rec.write_text(json.dumps({"input": "/scans/other.nii.gz", "outputs": ["case000.nii.gz"], "mask": "case000.nii.gz"}))
    st = rec.stat()
    os.utime(rec, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(InputError, match="case000.nii.gz is the mask"):
        mask_input.refuse_our_output(tmp_path / "case000.nii.gz")
    (tmp_path / "late_predict.json").write_text(json.dumps({"input": "/scans/late.nii.gz", "outputs": ["case002.nii.gz"]}))
    st = tmp_path.stat()
    os.utime(tmp_path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(InputError, match="case002.nii.gz is the output"):
        mask_input.refuse_our_output(tmp_path / "case002.nii.gz")
