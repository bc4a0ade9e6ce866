"""`attnseg export`: add an image and its corrected mask to a fine-tuning dataset."""

from __future__ import annotations

import argparse

NAME = "export"
HELP = "Add an image and its corrected mask to a fine-tuning dataset (nnU-Net, MONAI or TIFF layout)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", required=True, help="image file (TIFF, NIfTI) or DICOM folder")
    parser.add_argument("--labels", required=True, help="corrected mask (TIFF or NIfTI), same grid as the image")
    parser.add_argument("--dataset", required=True, help="dataset folder (created, or appended to)")
    parser.add_argument("--format", default="nnunet", choices=("nnunet", "monai", "tiff"))
    parser.add_argument("--reviewed-slices", help="axial slices a person checked, e.g. 3,5,10-12 (others become 'ignore')")
    parser.add_argument("--prediction", help="the model's original mask, to record what was edited")
    parser.add_argument("--case-id", help="case id (default: the next free case_NNNN)")
    parser.add_argument("--label-names", help="comma-separated class names, background first")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing case with the same id")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..correct import parse_slice_ranges
    from ..data import read_image
    from ..data.export import export_case

    image = read_image(args.image)
    labels = read_image(args.labels)
    prediction = np.asarray(read_image(args.prediction).data) if args.prediction else None
    record = export_case(
        np.asarray(image.data), np.asarray(labels.data), args.dataset, args.format,
        spacing=image.spacing, affine=image.affine,
        reviewed_slices=parse_slice_ranges(args.reviewed_slices) if args.reviewed_slices else None,
        prediction=prediction, case_id=args.case_id,
        label_names=args.label_names.split(",") if args.label_names else None,
        source_name=str(args.image).rstrip("/").split("/")[-1], overwrite=args.overwrite,
    )
    print(f"exported {record.case_id} to {args.dataset} ({args.format})")
    return 0
