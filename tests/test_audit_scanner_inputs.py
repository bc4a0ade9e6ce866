"""Scans as other scanners and exports deliver them: a NIfTI that ITK-based tools wrote with singleton axes after
the 4th (x, y, z, 1, 1) reads as the 3D volume it is, and the mask written back lies on its grid; a CT padded with
-3024 / -2048 HU outside the scanner's field of view is still a CT; an MRI with one hot voxel does not open black."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_attnseg.data import read_image, write_image
from napari_attnseg.data.nifti import nifti_volumes, read_nifti
from napari_attnseg.display import (
    CT_WINDOWS,
    DEFAULT_CT_WINDOW,
    default_window,
    is_hounsfield,
    outlier_limits,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "radiomics"
needs_scans = pytest.mark.skipif(not (SHARED / "lung1_image.nii.gz").exists(), reason="../shared/data not here")


def _affine() -> np.ndarray:
    affine = np.diag([-0.8, 0.8, 3.0, 1.0])
    affine[:3, 3] = [100.0, -90.0, -40.0]
    return affine


def test_a_5d_nifti_with_singleton_axes_reads_as_its_3d_volume(tmp_path):
    """(x, y, z, 1, 1) was refused: 'expected a 2D, 3D or 4D NIfTI image, got shape (..., 1, 1)'."""
    data = np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4)
    path = tmp_path / "t1.nii.gz"
    nib.save(nib.Nifti1Image(data[..., None, None], _affine()), path)
    vol = read_image(path)
    assert vol.data.shape == (4, 5, 6) and np.array_equal(vol.data, data.T)
    assert np.allclose(vol.spacing, (3.0, 0.8, 0.8)) and np.allclose(vol.affine, _affine())
    assert nifti_volumes(path) == 1
    out = write_image(tmp_path / "t1_mask.nii.gz", (vol.data > 50).astype(np.uint8), like=vol)
    back = nib.load(out)
    assert back.shape == (6, 5, 4) and np.allclose(back.affine, _affine())


def test_a_5d_nifti_of_stacked_volumes_reads_one_volume_each(tmp_path):
    """(x, y, z, 2, 1): two volumes, one per --channel / napari layer, as a 4D file of two."""
    data = np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4)
    path = tmp_path / "seq.nii.gz"
    nib.save(nib.Nifti1Image(np.stack([data, data * 2], -1)[..., None], _affine()), path)
    assert nifti_volumes(path) == 2
    assert np.array_equal(read_nifti(path, volume=1).data, (data * 2).T)


def _padded_lung(tmp_path, pad: float):
    """lung1 as GE / Siemens scanners store it: -3024 / -2048 HU outside the circular field of view."""
    vol = read_image(SHARED / "lung1_image.nii.gz")
    ct = np.asarray(vol.data, np.int16).copy()
    yy, xx = np.mgrid[: ct.shape[1], : ct.shape[2]]
    outside = (yy - ct.shape[1] / 2) ** 2 + (xx - ct.shape[2] / 2) ** 2 > (0.47 * ct.shape[1]) ** 2
    ct[:, outside] = pad
    path = tmp_path / f"lung_pad{int(-pad)}.nii.gz"
    nib.save(nib.Nifti1Image(ct.T, vol.affine), path)
    return path, ct


@needs_scans
@pytest.mark.parametrize("pad", [-3024.0, -2048.0])
def test_a_ct_padded_outside_its_field_of_view_is_still_a_ct(tmp_path, pad):
    """is_hounsfield asked for a minimum between -1200 and -900 HU: a padded CT opened in its full range, the Segment
    tab preset the brain MRI model and predict warned 'use brain-mri-3d' on a chest CT."""
    path, ct = _padded_lung(tmp_path, pad)
    assert is_hounsfield(ct) and default_window(ct) == CT_WINDOWS[DEFAULT_CT_WINDOW]
    from napari_attnseg._napari.io_hooks import get_nifti_reader

    (data, kwargs, kind), = get_nifti_reader(str(path))(str(path))
    assert kind == "image" and tuple(kwargs["contrast_limits"]) == CT_WINDOWS[DEFAULT_CT_WINDOW]


@needs_scans
def test_mri_and_noise_are_not_taken_for_a_padded_ct():
    """The padding rule must not make a CT of an MRI, a z-scored image or an MR phase map (uniform over +-4096)."""
    for path in (SHARED / "brain1_image.nii.gz", SHARED.parent / "mni152" / "t1.nii.gz"):
        assert not is_hounsfield(np.asarray(read_image(path).data)), path
    rng = np.random.default_rng(0)
    assert not is_hounsfield(rng.normal(0, 1, (8, 64, 64)).astype(np.float32))
    assert not is_hounsfield(rng.uniform(-4096, 4096, (8, 64, 64)).astype(np.float32))


@needs_scans
def test_an_mri_with_one_hot_voxel_opens_in_a_window_that_shows_it(tmp_path):
    """One voxel at 32767 (int16) made napari's contrast (0, 32767): the whole scan black, without a word."""
    vol = read_image(SHARED / "brain1_image.nii.gz")
    mri = np.asarray(vol.data, np.int16).copy()
    top = float(np.percentile(mri, 99.9))
    mri[12, 100, 100] = 32767
    path = tmp_path / "brain_hot.nii.gz"
    nib.save(nib.Nifti1Image(mri.T, vol.affine), path)
    from napari_attnseg._napari import io_hooks

    said = []
    io_hooks_notify, io_hooks._notify = io_hooks._notify, lambda m, info=False: said.append(m)
    try:
        (data, kwargs, kind), = io_hooks.get_nifti_reader(str(path))(str(path))
    finally:
        io_hooks._notify = io_hooks_notify
    lo, hi = kwargs["contrast_limits"]
    assert hi < 0.2 * 32767 and abs(hi - top) <= 0.05 * top
    assert any("32767" in m and "contrast limits" in m for m in said)
    assert outlier_limits(np.asarray(read_image(SHARED / "brain1_image.nii.gz").data)) is None  # the clean scan


def test_a_few_bright_objects_are_not_taken_for_hot_voxels():
    """The hot-voxel rule (max over 10x the range up to the 99.9th percentile) also fired on six small bright cells
    (0.016 % of a 2048^2 image): their contrast was clipped to the background noise, the note calling them hot."""
    rng = np.random.default_rng(0)
    img = rng.normal(100, 5, (2048, 2048)).astype(np.float32)
    for k in range(6):
        img[300 + 250 * k: 308 + 250 * k, 400: 408] = 4100.0
    assert outlier_limits(img) is None
    img2 = rng.normal(100, 5, (2048, 2048)).astype(np.float32)
    img2[5, 5] = 30000.0  # one hot pixel: still shown up to the 99.9th percentile
    assert outlier_limits(img2) is not None


def test_a_nifti_with_pixdim_0_but_an_sform_takes_its_voxel_sizes_from_the_sform(tmp_path):
    """pixdim 0 with sform code 1: the spacing was 1 mm (nibabel's fill-in) while the affine placed 0.8 x 0.8 x 3 mm
    voxels, so a model's resampling and every size in mm disagreed with where napari showed the scan."""
    data = np.zeros((6, 5, 4), np.int16)
    img = nib.Nifti1Image(data, _affine())
    img.header["pixdim"][1:4] = 0
    img.set_sform(_affine(), code=1)
    img.set_qform(None, code=0)
    img.header["pixdim"][1:4] = 0
    nib.save(img, tmp_path / "zero.nii.gz")
    vol = read_image(tmp_path / "zero.nii.gz")
    assert np.allclose(vol.spacing, (3.0, 0.8, 0.8)) and np.allclose(vol.affine, _affine())
    assert "taken from its sform" in vol.meta["warning"]


def test_a_dataset_counts_the_volumes_of_a_5d_nifti(tmp_path):
    """A dataset made elsewhere whose case stacks two MRI sequences as (x, y, z, 2, 1) was taken as one volume."""
    from napari_attnseg.data.dataset import _volumes

    data = np.zeros((6, 5, 4, 2, 1), np.int16)
    nib.save(nib.Nifti1Image(data, _affine()), tmp_path / "case.nii.gz")
    assert _volumes(tmp_path / "case.nii.gz") == 2
