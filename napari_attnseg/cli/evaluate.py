"""`attnseg evaluate`: Dice per class of a model's prediction against reference labels."""

from __future__ import annotations

import argparse

NAME = "evaluate"
HELP = "Dice per class of a model's prediction against reference labels."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("attnseg evaluate is not implemented yet (issue #4).")
