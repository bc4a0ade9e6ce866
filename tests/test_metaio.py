"""MetaImage (.mha/.mhd) and NRRD (.nrrd/.nhdr) volumes, the formats of 3D Slicer, ITK-SNAP and challenge datasets
(LUNA16, Grand Challenge): read in the project's axis convention with a RAS affine, segmented, and written back as
NIfTI on the same grid. Before, `attnseg predict` and napari refused them as an unsupported format.

tests/data/itk_oblique.* were written by SimpleITK 2.5.7 (ITK 5.4) from a 7 x 9 x 11 int16 volume (values below)
with spacing (0.7, 0.8, 2.5), origin (-100, 50, 20) and a rotated direction; POINTS are ITK's own
TransformIndexToPhysicalPoint for three indices (LPS, mm), so the readers are checked against ITK, not themselves."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_attnseg.cli import main
from napari_attnseg.data import read_image, stem
from napari_attnseg.errors import InputError

DATA = Path(__file__).resolve().parent / "data"
ARRAY = (np.arange(7 * 9 * 11) * 7 % 3001 - 1000).reshape(7, 9, 11).astype(np.int16)  # (z, y, x)
POINTS = {(0, 0, 0): (-100.0, 50.0, 20.0), (10, 8, 6): (-100.8570922729842, 53.77529435452437, 37.31971551072035),
          (3, 2, 5): (-101.72209250592383, 48.318806743293415, 32.5470309888294)}


@pytest.mark.parametrize("name", ["itk_oblique.mha", "itk_oblique.nrrd", "itk_oblique.nhdr"])
def test_itk_files_read_with_itks_geometry(name):
    vol = read_image(DATA / name)
    np.testing.assert_array_equal(vol.data, ARRAY)
    np.testing.assert_allclose(vol.spacing, (2.5, 0.8, 0.7), atol=1e-9)
    for (i, j, k), lps in POINTS.items():
        np.testing.assert_allclose((vol.affine @ [i, j, k, 1])[:3], np.array(lps) * [-1, -1, 1], atol=1e-9)
    assert vol.meta["file_format"] in ("metaimage", "nrrd") and stem(DATA / name) == "itk_oblique"


def _as_mhd(src: Path, out: Path, compressed: bool = False) -> Path:
    """A NIfTI rewritten by hand as MetaImage (LPS), as the ITK MetaIO documentation lays it out."""
    img = nib.load(str(src))
    data = np.asarray(img.dataobj).astype(np.int16)
    flip = np.diag([-1.0, -1.0, 1.0])
    steps = flip @ img.affine[:3, :3]
    spacing = np.linalg.norm(steps, axis=0)
    raw = np.ascontiguousarray(data.transpose(2, 1, 0)).tobytes()  # x fastest
    header = ["ObjectType = Image", "NDims = 3", f"DimSize = {' '.join(map(str, data.shape))}",
              "ElementType = MET_SHORT", f"ElementSpacing = {' '.join(map(str, spacing.tolist()))}",
              f"Offset = {' '.join(map(str, (flip @ img.affine[:3, 3]).tolist()))}",
              f"TransformMatrix = {' '.join(map(str, (steps / spacing).T.ravel().tolist()))}",
              "BinaryDataByteOrderMSB = False", f"CompressedData = {compressed}"]
    if compressed:
        import zlib

        raw = zlib.compress(raw)
    out.write_bytes(("\n".join(header + ["ElementDataFile = LOCAL"]) + "\n").encode() + raw)
    return out


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    """A real head MRI crop (radiomics brain1, or the bundled MNI152 T1) as NIfTI and as .mha."""
    from napari_attnseg._paths import samples_dir

    brain1 = Path("/work/shared/data/radiomics/brain1_image.nii.gz")
    src = brain1 if brain1.exists() else samples_dir() / "mni152_t1.nii.gz"
    img = nib.load(str(src))
    crop = np.asarray(img.dataobj)[48:208, 48:208] if src == brain1 else np.asarray(img.dataobj)[20:160, 20:200, 40:140]
    folder = tmp_path_factory.mktemp("scan")
    affine = img.affine.copy()
    affine[:3, 3] = (img.affine @ [48, 48, 0, 1])[:3] if src == brain1 else (img.affine @ [20, 20, 40, 1])[:3]
    nib.save(nib.Nifti1Image(crop.astype(np.int16), affine), str(folder / "head.nii.gz"))
    _as_mhd(folder / "head.nii.gz", folder / "head.mha", compressed=True)
    return folder


def test_a_metaimage_scan_is_segmented_like_its_nifti_and_the_mask_overlays_it(scan, tmp_path, capsys):
    nifti, mha = read_image(scan / "head.nii.gz"), read_image(scan / "head.mha")
    np.testing.assert_array_equal(mha.data, nifti.data)
    np.testing.assert_allclose(mha.affine, nifti.affine, atol=1e-6)
    for src, out in (("head.nii.gz", "n"), ("head.mha", "m")):
        assert main(["predict", str(scan / src), "--model", "brain-mri-3d", "--device", "cpu", "--no-prob",
                     "--out", str(tmp_path / out)]) == 0, capsys.readouterr().err
    a, b = nib.load(str(tmp_path / "n" / "head_mask.nii.gz")), nib.load(str(tmp_path / "m" / "head_mask.nii.gz"))
    np.testing.assert_array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-5)
    assert int(np.asarray(b.dataobj).max()) > 0


def test_bad_metaimage_and_nrrd_files_are_named_with_what_is_wrong(tmp_path):
    cut = tmp_path / "cut.mha"
    cut.write_bytes((DATA / "itk_oblique.mha").read_bytes()[:400])
    with pytest.raises(InputError, match="cut.mha"):
        read_image(cut)
    shutil.copy(DATA / "itk_oblique.nhdr", tmp_path / "alone.nhdr")  # its .raw left behind
    with pytest.raises(InputError, match=r"alone.nhdr: its data file .*itk_oblique.raw does not exist"):
        read_image(tmp_path / "alone.nhdr")
    four = tmp_path / "four.nrrd"
    four.write_bytes(b"NRRD0004\ntype: short\ndimension: 4\nsizes: 2 2 2 2\nencoding: gzip\n\n" +
                     gzip.compress(np.zeros(16, np.int16).tobytes()))
    with pytest.raises(InputError, match="4-dimensional NRRD"):
        read_image(four)


def test_napari_opens_metaimage_and_nrrd_in_place(scan):
    from napari_attnseg._napari.io_hooks import get_nifti_reader

    path = str(scan / "head.mha")
    [(data, kwargs, kind)] = get_nifti_reader(path)(path)
    [(ndata, nkwargs, _)] = get_nifti_reader(str(scan / "head.nii.gz"))(str(scan / "head.nii.gz"))
    assert kind == "image" and kwargs["name"] == "head"
    np.testing.assert_array_equal(data, ndata)
    np.testing.assert_allclose(kwargs["scale"], nkwargs["scale"], atol=1e-6)
    np.testing.assert_allclose(kwargs.get("translate", 0), nkwargs.get("translate", 0), atol=1e-4)
