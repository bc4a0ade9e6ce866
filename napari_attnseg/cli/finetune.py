"""`attnseg finetune`: Fine-tune a model on an exported dataset of corrected masks."""

from __future__ import annotations

import argparse

NAME = "finetune"
HELP = "Fine-tune a model on an exported dataset of corrected masks."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("attnseg finetune is not implemented yet (issue #7).")
