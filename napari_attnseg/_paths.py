"""Where the bundled resources (sample data, default models) live.

In a wheel they are inside the package (``napari_attnseg/resources``); in a source checkout
``napari_attnseg/resources`` is a symlink to the repository's top-level ``resources/``.
"""

from __future__ import annotations

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
