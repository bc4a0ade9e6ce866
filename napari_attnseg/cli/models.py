"""`attnseg models`: the architectures and the bundled models."""

from __future__ import annotations

import argparse

NAME = "models"
HELP = "List the architectures and the bundled models."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    from ..models.registry import list_models

    listing = list_models()
    print("Architectures (attnseg train --arch NAME):")
    for a in listing["architectures"]:
        print(f"  {a['name']:<16} {a['dims']:<6} {a['description']}")
    print("Bundled models (--model NAME):")
    for m in listing["bundled"] or [{"name": "(none installed)", "dims": "", "description": ""}]:
        print(f"  {m['name']:<16} {m['dims']:<6} {m['description']}")
    return 0
