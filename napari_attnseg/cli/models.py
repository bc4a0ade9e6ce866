"""`attnseg models`: List the architectures and the bundled models."""

from __future__ import annotations

import argparse

NAME = "models"
HELP = "List the architectures and the bundled models."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("attnseg models is not implemented yet (issue #3).")
