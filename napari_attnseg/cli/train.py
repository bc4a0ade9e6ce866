"""`attnseg train`: Train a model from scratch on an exported dataset."""

from __future__ import annotations

import argparse

NAME = "train"
HELP = "Train a model from scratch on an exported dataset."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("attnseg train is not implemented yet (issue #7).")
