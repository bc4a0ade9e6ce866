"""`attnseg evaluate`: Dice per class of a model's prediction against reference labels."""

from __future__ import annotations

import argparse
import json

NAME = "evaluate"
HELP = "Dice per class of a model's prediction against reference labels."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..options import DEVICES, PRECISIONS

    parser.add_argument("--model", required=True, help="bundled model name or .safetensors file")
    parser.add_argument("--image", required=True)
    parser.add_argument("--labels", required=True, help="reference labels on the image's grid")
    parser.add_argument("--region", help="array-index box to score, e.g. '0:512,256:512' (a held-out part)")
    parser.add_argument("--device", default="auto", choices=DEVICES)
    parser.add_argument("--precision", default="auto", choices=PRECISIONS)
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..checkpoint import load_model
    from ..data import read_image
    from ..errors import InputError
    from ..inference import predict
    from ..training.losses import dice_per_class
    from ..training.sampling import parse_region

    model = load_model(args.model, device=args.device)
    image, ref = read_image(args.image), read_image(args.labels)
    labels = np.asarray(ref.data)
    if labels.shape != image.data.shape[-labels.ndim:]:
        raise InputError(f"{args.labels} has shape {labels.shape}, {args.image} has {image.data.shape}; they must match.")
    note = ""
    if model.out_channels == 2 and labels.max() > 1:
        labels = (labels > 0).astype(np.uint8)
        note = "reference labels have several ids and the model is binary: scored as labels > 0"
    box = None
    if args.region:  # checked before the (long) prediction
        try:
            box = parse_region(args.region, labels.ndim)
        except ValueError as exc:
            raise InputError(f"--region {args.region!r}: {exc}; give a box like '0:512,256:512'.") from None
    pred = predict(model, image.data, spacing=image.spacing, device=args.device, precision=args.precision,
                   return_probabilities=False)
    mask = np.asarray(pred.labels)
    if box is not None:
        mask, labels = mask[box], labels[box]
    dice = dice_per_class(mask, labels, max(model.out_channels, 2))
    classes = pred.classes[1:]
    result = {"model": args.model, "image": args.image, "region": args.region,
              "dice": {c: d for c, d in zip(classes, dice)}, "note": note}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        if note:
            print(note)
        for c, d in result["dice"].items():
            print(f"{c}: Dice {d:.4f}")
    return 0
