"""Record in a model's card the share of each class in its training labels' foreground
(``metrics["class_shares"]``), weights untouched; the engine warns when a prediction is far from them.

    python scripts/set_class_shares.py resources/models/brain-mri-3d.safetensors resources/samples/mni152_labels.nii.gz
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from napari_attnseg.checkpoint import rewrite_card  # noqa: E402
from napari_attnseg.data import read_image  # noqa: E402


def main() -> None:
    model, labels = sys.argv[1:3]
    lab = np.asarray(read_image(labels).data)
    total = int((lab > 0).sum())

    def edit(card):
        card.metrics["class_shares"] = {name: round(float((lab == i).sum()) / total, 4)
                                        for i, name in enumerate(card.classes) if i}
        print(card.metrics["class_shares"])

    rewrite_card(model, edit)


if __name__ == "__main__":
    main()
