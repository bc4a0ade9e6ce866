"""`attnseg export`: Add an image and its corrected mask to a fine-tuning dataset (nnU-Net, MONAI or TIFF layout)."""

from __future__ import annotations

import argparse

NAME = "export"
HELP = "Add an image and its corrected mask to a fine-tuning dataset (nnU-Net, MONAI or TIFF layout)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("attnseg export is not implemented yet (issue #6).")
