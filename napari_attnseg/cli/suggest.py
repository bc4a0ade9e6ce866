"""`attnseg suggest`: the slices of a volume to review next (where the model is least sure)."""

from __future__ import annotations

import argparse

NAME = "suggest"
HELP = "List the unreviewed slices of a volume the model is least sure about (review these next)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..devices import DEVICE_CHOICES

    parser.add_argument("image", help="image file (NIfTI, TIFF) or DICOM folder")
    parser.add_argument("--model", required=True, help="bundled model name or a .safetensors checkpoint")
    parser.add_argument("--reviewed", metavar="a,b,c-d", help="slices already reviewed (first array axis), e.g. 3,10-12")
    parser.add_argument("-n", type=int, default=5, help="how many slices to suggest (default 5)")
    parser.add_argument("--no-flips", action="store_true",
                        help="entropy only (skip the mirrored second pass: half the time)")
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    parser.add_argument("--uncertainty", metavar="FILE", help="also write the uncertainty map (NIfTI/TIFF)")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..checkpoint import load_model
    from ..correct import parse_slice_ranges
    from ..data import read_image
    from ..errors import InputError
    from ..suggest import predict_uncertainty, suggest_slices

    if args.n < 1:
        raise InputError("-n must be >= 1.")
    vol = read_image(args.image)
    image = np.asarray(vol.data)
    if image.ndim < 3:
        raise InputError(f"{args.image} is a 2D image; suggestions are slices of a volume.")
    model = load_model(args.model, device=args.device)
    reviewed = parse_slice_ranges(args.reviewed) if args.reviewed else []
    _, unc = predict_uncertainty(model, image, flips=not args.no_flips, device=args.device, spacing=vol.spacing)
    if args.uncertainty:
        from ..data.io import write_image

        write_image(args.uncertainty, unc.astype(np.float32), spacing=vol.spacing, affine=vol.affine)
    picks = suggest_slices(model, image, reviewed, args.n, uncertainty=unc)
    print("slice\tscore")
    for index, score in picks:
        print(f"{index}\t{score:.4f}")
    return 0
