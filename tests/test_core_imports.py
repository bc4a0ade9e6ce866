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


def _relative_imports(package: str) -> dict[str, set[str]]:
    """Module -> sibling modules it imports (at any depth of the file), within one package folder."""
    import ast
    from pathlib import Path

    folder = Path(napari_attnseg.__file__).parent / package
    graph = {}
    for path in folder.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                deps.add(node.module.split(".")[0])
        graph[path.stem] = deps
    return graph


def test_data_modules_have_no_import_cycle_and_one_volume():
    graph = _relative_imports("data")
    assert graph["volume"] == set()  # Volume's module imports nothing from data/
    for name in ("dicom", "nifti", "tiff", "io", "dataset"):
        assert "volume" in graph[name], name
    seen: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node, path):
        assert seen.get(node) != 1, f"import cycle in data/: {' -> '.join([*path, node])}"
        if seen.get(node) == 2 or node not in graph:
            return
        seen[node] = 1
        for dep in sorted(graph[node]):
            visit(dep, [*path, node])
        seen[node] = 2

    for node in sorted(graph):
        visit(node, [])
    from napari_attnseg.data import Volume, dicom, io, nifti, tiff
    from napari_attnseg.data.volume import Volume as defined

    assert Volume is defined and io.Volume is defined and dicom.Volume is nifti.Volume is tiff.Volume is defined


def test_core_modules_stay_small():
    """No core module over ~400 lines (the widgets under _napari/ are not core)."""
    from pathlib import Path

    root = Path(napari_attnseg.__file__).parent
    sizes = {str(p.relative_to(root)): len(p.read_text().splitlines()) for p in root.rglob("*.py")
             if "_napari" not in p.parts}
    pending: set[str] = set()  # modules allowed to be larger for a while (none now)
    big = {k: v for k, v in sizes.items() if v > 420 and k not in pending}
    assert not big, big
