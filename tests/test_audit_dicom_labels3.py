"""DICOM SEG follow-ups: a segment every voxel of which a smaller one covers was said to have "no voxel on this
image" beside the overlap note saying where its voxels went (two notes, one of them false). The SEG is built as in
test_audit_dicom_labels (a 7-slice crop of the radiomics lung CT around its tumour, written with highdicom)."""

from __future__ import annotations

import numpy as np
import pytest
import test_audit_dicom_labels as base
from test_audit_dicom_labels import ct_series, seg

from napari_attnseg.data import read_image


@pytest.fixture(scope="module")
def lung():
    return base.lung.__wrapped__()


def test_a_segment_covered_by_a_smaller_one_is_said_once_and_truly(tmp_path, lung):
    from napari_attnseg.data.labels_in import read_labels

    _, labels, _, _, _ = lung
    cts = ct_series(lung, tmp_path / "CT")
    tumour = labels == 1
    core = tumour.copy()
    core[:, :, : int(np.nonzero(tumour)[2].mean())] = False  # half of the tumour: smaller, inside it
    # "GTV" drawn exactly as "GTV-core": all of one covered by the other
    sg = seg(cts, tmp_path / "SEG.dcm", {"GTV": core.astype(np.uint8),
                                         "GTV-core": core.astype(np.uint8),
                                         "Empty": np.zeros_like(labels, np.uint8)})
    ref = read_labels(sg, read_image(tmp_path / "CT"))
    warning = ref.meta["warning"]
    covered = [n for n in ("GTV", "GTV-core") if not np.any(ref.data == ref.meta["class_names"].index(n))]
    assert len(covered) == 1, warning  # equal sizes: one keeps the voxels, the other is covered whole
    assert f"{covered[0]!r} has no voxel left" in warning, warning
    assert f"segment {covered[0]!r} has no voxel on this image" not in warning, warning  # (was said too: false)
    assert "segment 'Empty' has no voxel on this image" in warning, warning  # a truly empty one still is


def test_a_finely_drawn_structure_set_is_read_without_an_object_per_value(tmp_path, lung):
    """pydicom turns every ContourData value into a Python object: a 7 MB RTSTRUCT of 840 k values took 6.1 s and
    378 MiB (Python allocations) to read; the text is now parsed straight into arrays (0.45 s, 14 MiB). Here 3 ROIs of
    2,000-point contours on 7 slices (126 k values; a contour of 4,000 points is stored as UN, over 64 kB)."""
    import tracemalloc

    from test_audit_dicom_labels import rtstruct

    from napari_attnseg.data.labels_in import read_labels

    _, labels, _, _, _ = lung
    cts = ct_series(lung, tmp_path / "CT")
    t = np.linspace(0, 2 * np.pi, 2000, endpoint=False)
    rois = {f"ROI{r}": {k: [np.c_[64 + (12 + 8 * r) * np.sin(t), 64 + (12 + 8 * r) * np.cos(t)]]
                        for k in range(labels.shape[0])} for r in range(3)}
    t4 = np.linspace(0, 2 * np.pi, 4000, endpoint=False)
    rois["fine"] = {3: [np.c_[30 + 6 * np.sin(t4), 30 + 6 * np.cos(t4)]]}
    with pytest.warns(UserWarning, match="64 kByte"):  # (pydicom stores the 4,000-point contour as UN)
        rs = rtstruct(lung, cts, tmp_path / "RS.dcm", rois)
    image = read_image(tmp_path / "CT")
    tracemalloc.start()
    try:
        ref = read_labels(rs, image)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, peak / 2**20  # (was 57 MiB)
    yy, xx = np.mgrid[:128, :128]
    for r in range(3):  # each ring: the disk minus the smaller ones inside it (the smaller keeps the voxels)
        disk = (yy - 64) ** 2 + (xx - 64) ** 2 <= (12 + 8 * r) ** 2
        inner = (yy - 64) ** 2 + (xx - 64) ** 2 <= (12 + 8 * (r - 1)) ** 2 if r else np.zeros_like(disk)
        got = ref.data[2] == r + 1
        assert np.count_nonzero(got ^ (disk & ~inner)) <= 0.03 * disk.sum(), r  # (edge pixels: the fill's rule)
    fine = (yy - 30) ** 2 + (xx - 30) ** 2 <= 36
    assert np.count_nonzero((ref.data[3] == 4) ^ fine) <= 12 and not np.any(ref.data[[0, 1, 2, 4, 5, 6]] == 4)


def test_contour_text_padded_with_a_nul_reads_as_before(tmp_path, lung):
    """Some writers pad an odd-length ContourData with NUL, not a space (pydicom reads it): the text parser took the
    padded value for no number and left the contour out as 'points or open lines' (837 -> 676 voxels)."""
    import struct

    from test_audit_dicom_labels import rtstruct, tumour_rois

    from napari_attnseg.data.labels_in import read_labels

    _, labels, _, _, _ = lung
    cts = ct_series(lung, tmp_path / "CT")
    rs = rtstruct(lung, cts, tmp_path / "RS.dcm", {"GTV-1": tumour_rois(labels)})
    raw, i, patched = bytearray(rs.read_bytes()), 0, 0
    while (i := raw.find(b"\x06\x30\x50\x00DS", i)) >= 0:  # (3006,0050) ContourData, explicit VR
        n = struct.unpack("<H", raw[i + 6:i + 8])[0]
        if raw[i + 8 + n - 1] == ord(" "):
            raw[i + 8 + n - 1], patched = 0, patched + 1
        i += 8 + n
    assert patched
    (tmp_path / "RS_nul.dcm").write_bytes(bytes(raw))
    image = read_image(tmp_path / "CT")
    ref = read_labels(tmp_path / "RS_nul.dcm", image)
    np.testing.assert_array_equal(ref.data == 1, labels == 1)
    assert "open lines" not in (ref.meta.get("warning") or "")
