"""`attnseg demo`: Open napari with the plugin docked, the nuclei sample loaded and the default model run on it."""

from __future__ import annotations

import argparse

NAME = "demo"
HELP = "Open napari with the plugin docked, the nuclei sample loaded and the default model run on it."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("attnseg demo is not implemented yet (issue #5).")
