"""The shipped class-agnostic 3D click model ``lesion-3d-prompt`` (issue 18): it loads, is promptable,
one positive click segments the object under it (a synthetic blob; the held-out lung1 CT tumour when
the shared data is here), and a click outside the volume is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_attnseg import load_model, segment_with_prompts
from napari_attnseg.errors import InputError
from napari_attnseg.models.registry import bundled_models
from napari_attnseg.prompts.convert import is_promptable

NAME = "lesion-3d-prompt"
RADIOMICS = Path(__file__).resolve().parents[2] / "shared" / "data" / "radiomics"
# measured with the shipped weights: blobs 0.67-0.69 (3 seeds, both blobs); lung1 tumour 0.246 after one click
# at its deepest voxel (the model is weak there: benchmarks/results/prompts_lesion3d.md)
BLOB_IOU = 0.55
LUNG_IOU = 0.15
pytestmark = pytest.mark.skipif(NAME not in bundled_models(), reason=f"{NAME} is not in resources/models")


@pytest.fixture(scope="module")
def model():
    return load_model(NAME, device="cpu")


def iou(a, b):
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_loads_as_a_small_promptable_3d_model(model):
    assert is_promptable(model) and model.spatial_dims == 3 and model.in_channels == 1
    assert model.card.classes == ["background", "object"]
    assert model.card.spacing is None  # clicks and crops in the image's own voxels (any spacing)
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    assert "lung1" in model.card.training["held_out"]


def blob_volume(seed=0):
    """A noisy 32 x 96 x 96 volume with an anisotropic bright ellipsoid and a dark one."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices((32, 96, 96))
    bright = ((z - 16) / 4.0) ** 2 + ((y - 40) / 12.0) ** 2 + ((x - 50) / 10.0) ** 2 <= 1
    dark = ((z - 14) / 5.0) ** 2 + ((y - 72) / 9.0) ** 2 + ((x - 24) / 9.0) ** 2 <= 1
    img = 100 + 8 * rng.standard_normal(z.shape) + 60 * bright - 50 * dark
    return img.astype(np.float32), bright, dark


def test_one_click_segments_the_blob_under_it(model):
    img, bright, dark = blob_volume()
    res = segment_with_prompts(model, img, [[16, 40, 50]], [1])
    assert res.mask.shape == img.shape and iou(res.mask, bright) >= BLOB_IOU, iou(res.mask, bright)
    assert not (res.mask & dark).any()
    res = segment_with_prompts(model, img, [[14, 72, 24]], [1])  # darker than its surroundings: the same
    assert iou(res.mask, dark) >= BLOB_IOU, iou(res.mask, dark)


def test_click_outside_the_volume_is_an_error(model):
    img, _, _ = blob_volume()
    with pytest.raises(InputError, match="outside the image"):
        segment_with_prompts(model, img, [[16, 40, 50], [40, 10, 10]], [1, 0])


@pytest.mark.skipif(not (RADIOMICS / "lung1_image.nii.gz").exists(), reason="shared radiomics data not here")
def test_one_click_on_the_held_out_lung_tumour(model):
    from napari_attnseg.data import read_image
    from napari_attnseg.prompts.simulate import first_click

    im = read_image(RADIOMICS / "lung1_image.nii.gz")
    target = np.asarray(read_image(RADIOMICS / "lung1_labels.nii.gz").data) > 0
    idx = np.nonzero(target)
    box = tuple(slice(max(int(i.min()) - 2, 0), int(i.max()) + 3) for i in idx)  # the deepest voxel, on its box
    click = first_click(target[box]) + np.array([s.start for s in box])
    res = segment_with_prompts(model, im.data, click[None], [1], spacing=im.spacing, attention=False)
    assert iou(res.mask, target) >= LUNG_IOU, iou(res.mask, target)
