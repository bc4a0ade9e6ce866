"""The core must import and work with Qt and napari absent: only `_napari/` may touch them."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import napari_attnseg

BLOCKER = r"""
import sys, importlib.abc
BLOCKED = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "vispy", "superqt")
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked UI import: {name}")
sys.meta_path.insert(0, Block())
"""


def core_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(napari_attnseg.__path__, prefix="napari_attnseg."):
        if info.name.startswith("napari_attnseg._napari") or info.name.endswith("__main__"):
            continue
        names.append(info.name)
    return names


def test_core_modules_import_with_ui_blocked():
    modules = core_modules()
    assert "napari_attnseg.cli" in modules and "napari_attnseg.devices" in modules
    code = BLOCKER + "import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules)
    code += "import napari_attnseg as a\n[getattr(a, n) for n in a.__all__]\n"
    code += "from napari_attnseg.cli import build_parser; build_parser()\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_package_import_is_light():
    code = "import sys, napari_attnseg; print(sorted(m for m in ('torch','napari','qtpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
