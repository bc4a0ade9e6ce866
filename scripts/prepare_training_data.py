"""Build the training datasets of the bundled models from the real data in ../shared/data.

    python scripts/prepare_training_data.py SHARED_DATA OUT

writes OUT/nuclei_mask.tif (binary nuclei mask from the instance labels), and OUT/mni152_2mm_t1.nii.gz +
OUT/mni152_2mm_labels.nii.gz (0 background, 1 grey matter, 2 white matter: the MNI152 probability
maps averaged to 2 mm and thresholded at 128, white matter taking precedence). The datasets themselves
are then made with `attnseg export` (see scripts/train_default_models.sh).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import tifffile


def block_mean(a: np.ndarray, f: int = 2) -> np.ndarray:
    shape = [s // f * f for s in a.shape]
    a = a[: shape[0], : shape[1], : shape[2]].astype(np.float32)
    return a.reshape(shape[0] // f, f, shape[1] // f, f, shape[2] // f, f).mean((1, 3, 5))


def main(shared: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    labels = tifffile.imread(shared / "nuclei2d" / "labels.tif")
    tifffile.imwrite(out / "nuclei_mask.tif", (labels > 0).astype(np.uint8))

    t1 = nib.load(shared / "mni152" / "t1.nii.gz")
    gm = np.asarray(nib.load(shared / "mni152" / "gm.nii.gz").dataobj)
    wm = np.asarray(nib.load(shared / "mni152" / "wm.nii.gz").dataobj)
    affine = t1.affine.copy()
    affine[:3, :3] *= 2
    affine[:3, 3] += t1.affine[:3, :3] @ np.full(3, 0.5)  # centre of the first 2x2x2 block
    image = block_mean(np.asarray(t1.dataobj))
    gm2, wm2 = block_mean(gm), block_mean(wm)
    lab = np.zeros(image.shape, np.uint8)
    lab[gm2 >= 128] = 1
    lab[wm2 >= 128] = 2  # white matter takes precedence
    nib.save(nib.Nifti1Image(image.astype(np.float32), affine), out / "mni152_2mm_t1.nii.gz")
    nib.save(nib.Nifti1Image(lab, affine), out / "mni152_2mm_labels.nii.gz")
    print(f"wrote {out}: nuclei mask {labels.shape}, MNI152 2 mm {image.shape}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
