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
