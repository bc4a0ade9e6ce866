"""Sample data (File > Open Sample > Attention Segmentation): real images with reference labels."""

from __future__ import annotations

import numpy as np

from .._paths import samples_dir
from ..data import read_image

# a sample's reference labels (to compare with, not the mask to correct: the Correct tab and Click to fix choose or
# make '<image> mask' instead; opening the sample had made the hidden reference the mask clicks were written into)
REFERENCE_KEY = "attnseg_reference"

def nuclei_2d():
    """Fluorescence nuclei (BBBC038 / DSB 2018, CC0) and their reference labels (hidden)."""
    folder = samples_dir()
    image = read_image(folder / "nuclei2d_image.tif")
    labels = read_image(folder / "nuclei2d_labels.tif")
    return [
        (image.data, {"name": "nuclei", "metadata": {"source": "BBBC038 / DSB 2018 (CC0)"}}, "image"),
        ((labels.data > 0).astype(np.uint8), {"name": "nuclei reference", "visible": False,
                                              "metadata": {"source": "hand annotations, BBBC038",
                                                           REFERENCE_KEY: True}}, "labels"),
    ]


def brain_mri_3d():
    """MNI152 T1 template (1 mm) with grey/white matter reference labels (hidden)."""
    folder = samples_dir()
    image = read_image(folder / "mni152_t1.nii.gz")
    labels = read_image(folder / "mni152_labels.nii.gz")
    note = "MNI ICBM152 2009a; Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, MNI, McGill University"
    meta = {"source": note, "affine": image.affine.tolist(), "spacing": list(image.spacing)}
    return [
        (image.data, {"name": "brain T1", "scale": image.spacing, "units": ("mm",) * 3, "metadata": meta}, "image"),
        (labels.data, {"name": "brain reference", "scale": labels.spacing, "units": ("mm",) * 3, "visible": False,
                       "features": {"class": ["background", "grey matter", "white matter"]},
                       "metadata": {**meta, REFERENCE_KEY: True}}, "labels"),
    ]
