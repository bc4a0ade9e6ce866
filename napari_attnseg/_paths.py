"""Where the bundled resources (sample data, default models) live, and the paths a user types.

In a wheel they are inside the package (``napari_attnseg/resources``); in a source checkout
``napari_attnseg/resources`` is a symlink to the repository's top-level ``resources/``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def resources_dir() -> Path:
    """Return the folder holding ``samples/`` and ``models/``."""
    for candidate in (Path(__file__).parent / "resources", _PACKAGE_DIR.parent / "resources"):
        if (candidate / "models").is_dir() or (candidate / "samples").is_dir():
            return candidate
    raise FileNotFoundError(
        "napari-attnseg's bundled resources were not found next to the package "
        f"({_PACKAGE_DIR}); reinstall napari-attnseg."
    )


def models_dir() -> Path:
    return resources_dir() / "models"


def samples_dir() -> Path:
    return resources_dir() / "samples"


def expand_user_args(args: argparse.Namespace, *names: str) -> None:
    """Expand a leading ``~`` in the path arguments ``names`` of ``args`` (a string or a list of them; None stays).

    The shell expands ``~`` only outside quotes, and a path with spaces is quoted: ``--out "~/Ergebnisse Lunge"``
    reached the command as typed, so the outputs went to a folder named ``~`` in the current folder and an input
    ``"~/scans/CT 1.nii.gz"`` did not exist. ``--model`` and ``models --add`` already expanded it.
    """
    for name in names:
        value = getattr(args, name, None)
        if isinstance(value, str):
            setattr(args, name, os.path.expanduser(value))
        elif isinstance(value, list):
            setattr(args, name, [os.path.expanduser(v) if isinstance(v, str) else v for v in value])
