"""Record the training data's typical object diameter in a 2D model's card (issue 19), weights untouched.

    python scripts/set_object_diameter.py resources/models/nuclei-2d.safetensors LABELS.tif [--region y0:y1,x0:x1]

The diameter is :func:`napari_attnseg.inference.diameter.measure_diameter` of ``labels > 0`` (the
measurement ``diameter="auto"`` makes on a prediction) over the training region. The card inside the
safetensors metadata (the one ``load_model`` reads) and the sibling ``.json`` are both rewritten; the
tensors are written back as they were, so ``weights_sha256`` still holds (checked).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_attnseg.checkpoint import rewrite_card
from napari_attnseg.data import read_image
from napari_attnseg.inference.diameter import measure_diameter


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("labels")
    ap.add_argument("--region", default=None, help="training region, e.g. 0:512,0:200")
    args = ap.parse_args()
    path = Path(args.model)
    labels = read_image(args.labels).data
    region = tuple(slice(*map(int, r.split(":"))) for r in args.region.split(",")) if args.region else ()
    diameter, n = measure_diameter(labels[region] > 0)
    note = (f"median equivalent diameter of the {n} objects (connected components of labels > 0, edge-cut ones "
            f"left out) of {Path(args.labels).name}[{args.region or 'all'}], by measure_diameter")

    def edit(card) -> None:
        card.object_diameter = round(diameter, 2)
        card.training["object_diameter_measured"] = note

    card = rewrite_card(path, edit)
    print(f"{path.name}: object_diameter {card.object_diameter} px from {n} objects")

if __name__ == "__main__":
    main()
