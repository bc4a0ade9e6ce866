"""brain-mri-3d on a T1 with skull and scalp (the shared radiomics/brain1), without and with brain
extraction: a before/after picture of two axial slices, and the share of predicted tissue outside the
largest connected brain component.

    python benchmarks/brain1_skull.py [--image ../shared/data/radiomics/brain1_image.nii.gz] [--out docs/images/brain1_skull.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from napari_attnseg import load_model, predict  # noqa: E402
from napari_attnseg.data import read_image  # noqa: E402
from napari_attnseg.data.orientation import volume_codes  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SLICES = (12, 16)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", default=str(REPO.parent / "shared" / "data" / "radiomics" / "brain1_image.nii.gz"))
    ap.add_argument("--out", default=str(REPO / "docs" / "images" / "brain1_skull.png"))
    args = ap.parse_args()
    vol = read_image(args.image)
    model = load_model("brain-mri-3d", device="cpu")
    runs = {}
    for label, flag in (("before (no brain extraction)", False), ("after (brain extraction, the default)", None)):
        pred = predict(model, vol.data, spacing=vol.spacing, brain_extraction=flag, return_probabilities=False,
                       orientation=volume_codes(vol))  # as the CLI and the panel run it
        runs[label] = np.asarray(pred.labels)
        info = pred.params.get("brain_extraction") or {}
        share = {c: float((runs[label] == i).mean()) for i, c in enumerate(model.card.classes) if i}
        print(f"{label}: {', '.join(f'{c} {v:.1%}' for c, v in share.items())} of the volume; {info}; "
              f"warnings: {pred.warnings}", flush=True)
    fig, axes = plt.subplots(len(runs), len(SLICES), figsize=(4 * len(SLICES), 4 * len(runs)))
    colours = np.array([[0, 0, 0, 0], [1.0, 0.55, 0.45, 0.55], [0.55, 0.85, 1.0, 0.55]])
    for r, (label, labels) in enumerate(runs.items()):
        for c, z in enumerate(SLICES):
            ax = axes[r, c]
            ax.imshow(vol.data[z], cmap="gray")
            ax.imshow(colours[labels[z]])
            ax.set_title(f"{label}\naxial slice {z}", fontsize=9)
            ax.axis("off")
    fig.suptitle("brain-mri-3d on radiomics/brain1 (T1 with skull): grey matter salmon, white matter blue", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
