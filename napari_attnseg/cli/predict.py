"""`attnseg predict`: Segment images (TIFF, NIfTI, DICOM) and write masks, probabilities and attention maps."""

from __future__ import annotations

import argparse

NAME = "predict"
HELP = "Segment images (TIFF, NIfTI, DICOM) and write masks, probabilities and attention maps."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("attnseg predict is not implemented yet (issue #4).")
