"""What the brain-extraction audits share: the bundled skull-stripped MNI152 T1 at 2 mm and Rician noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SAMPLES = Path(__file__).resolve().parents[1] / "napari_attnseg" / "resources" / "samples"
BRAIN1 = Path(__file__).resolve().parents[2] / "shared" / "data" / "radiomics" / "brain1_image.nii.gz"
SPACING = (2.0, 2.0, 2.0)


def mni_2mm() -> np.ndarray:
    """The bundled (skull-stripped) MNI152 T1 as (z, y, x) block means at 2 mm (white matter about 214)."""
    nib = pytest.importorskip("nibabel")
    t1 = np.asarray(nib.load(SAMPLES / "mni152_t1.nii.gz").dataobj, np.float32).transpose(2, 1, 0)
    c = [n // 2 * 2 for n in t1.shape]
    t1 = t1[: c[0], : c[1], : c[2]].reshape(c[0] // 2, 2, c[1] // 2, 2, c[2] // 2, 2).mean((1, 3, 5))
    return np.ascontiguousarray(t1, np.float32)


def rician(img: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """``img`` as a magnitude MRI with noise of ``sigma`` in each of its two channels."""
    rng = np.random.default_rng(seed)
    return np.sqrt((img + rng.normal(0, sigma, img.shape)) ** 2 + rng.normal(0, sigma, img.shape) ** 2).astype(np.float32)


def brain1_stripped() -> tuple:
    """The shared brain1 (a raw head) and the product's extraction of it: ``(volume, image, BrainMask)``; skips
    without the shared data."""
    if not BRAIN1.exists():
        pytest.skip("the shared brain1 volume is not on this machine")
    from napari_attnseg.data import read_image
    from napari_attnseg.inference.brain import extract_brain_fast

    vol = read_image(BRAIN1)
    image = np.asarray(vol.data, np.float32)
    first = extract_brain_fast(image, vol.spacing)
    assert first.applied, first.note  # the raw head is stripped
    return vol, image, first
