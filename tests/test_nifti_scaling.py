"""A NIfTI stored with a scaling (scl_slope / scl_inter): read in a compact type, not nibabel's float64."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from napari_attnseg.data import read_image


def _save(path, raw: np.ndarray, slope: float, inter: float, shape4=False):
    img = nib.Nifti1Image(raw, np.diag([0.7, 0.7, 5.0, 1.0]))
    img.header.set_data_dtype(raw.dtype)
    img.header.set_slope_inter(slope, inter)
    nib.save(img, str(path))
    return np.asanyarray(nib.load(str(path)).dataobj)  # nibabel's own scaled values (float64)


@pytest.mark.parametrize("slope, inter, kind", [(1.0, -1024.0, np.int16), (2.0, -70000.0, np.int32),
                                                (0.0123, 3.5, np.float32)])
def test_a_scaled_nifti_reads_in_a_compact_type_with_nibabels_values(tmp_path, slope, inter, kind):
    """A CT saved as int16 with scl_inter -1024 read as float64: 4x the memory in napari, and the export wrote
    the image as float64."""
    raw = np.random.default_rng(0).integers(0, 4096, (40, 30, 6)).astype(np.int16)
    want = _save(tmp_path / "ct.nii.gz", raw, slope, inter)
    vol = read_image(tmp_path / "ct.nii.gz")
    assert vol.data.dtype == kind
    np.testing.assert_allclose(vol.data, want.transpose(2, 1, 0), rtol=1e-6, atol=1e-6 * abs(want).max())


def test_one_volume_of_a_scaled_4d_nifti_is_compact_too(tmp_path):
    from napari_attnseg.data.nifti import read_nifti

    raw = np.random.default_rng(1).integers(0, 3000, (20, 16, 4, 3)).astype(np.int16)
    want = _save(tmp_path / "dwi.nii.gz", raw, 1.0, -1024.0)
    vol = read_nifti(tmp_path / "dwi.nii.gz", volume=2)
    assert vol.data.dtype == np.int16
    np.testing.assert_array_equal(vol.data, want[..., 2].transpose(2, 1, 0))
