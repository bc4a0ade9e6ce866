"""The distribution, its manifest and its console script, as a user installs them."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml

import napari_attnseg

REPO = Path(__file__).resolve().parents[1]


def test_manifest_found_through_entry_point_and_valid():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-attnseg")
    assert manifest.name == "napari-attnseg"
    top = yaml.safe_load((REPO / "napari.yaml").read_text())
    assert top["name"] == manifest.name
    commands = {c.id for c in manifest.contributions.commands}
    for reader in manifest.contributions.readers:
        assert reader.command in commands


def test_npe2_validate_cli():
    result = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-attnseg"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_cli_help_lists_subcommands_and_version():
    out = subprocess.run(
        [sys.executable, "-m", "napari_attnseg", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for sub in ("demo", "predict", "evaluate", "export", "train", "finetune", "models"):
        assert sub in out
    version = subprocess.run(
        [sys.executable, "-m", "napari_attnseg", "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert napari_attnseg.__version__ in version


@pytest.mark.slow
def test_wheel_carries_manifest_and_resources(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path)],
        cwd=REPO, check=True, capture_output=True,
    )
    wheel = next(tmp_path.glob("napari_attnseg-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        manifest = zf.read("napari_attnseg/napari.yaml").decode()
    assert "name: napari-attnseg" in manifest  # a real file, not a symlink
    assert any(n.startswith("napari_attnseg/resources/") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    with zipfile.ZipFile(wheel) as zf:
        assert "napari_attnseg:napari.yaml" in zf.read(entry_points).decode()


def test_hard_dependencies_are_imported_by_the_package():
    """Every hard dependency is imported somewhere in napari_attnseg (or is the Qt binding / the
    manifest format it needs), and everything the package imports is a dependency."""
    import ast

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+ (the package itself supports 3.10)

    import napari_attnseg

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {d.split(">")[0].split("=")[0].split("[")[0].strip().lower() for d in deps}
    module_of = {"scikit-image": "skimage", "pyqt5": "PyQt5", "pillow": "PIL"}
    indirect = {"pyqt5", "npe2"}  # the binding behind qtpy; the napari.yaml manifest format
    imported = set()
    for path in Path(napari_attnseg.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    unused = {n for n in names - indirect if module_of.get(n, n) not in imported}
    assert not unused, f"required but never imported: {unused}"
    assert "zarr" not in names and "tqdm" in names
    third_party = imported - set(sys.stdlib_module_names) - {"napari_attnseg", "napari_builtins"}
    missing = {m for m in third_party if m not in {module_of.get(n, n) for n in names}}
    assert not missing, f"imported but not a dependency: {missing}"


def test_readers_do_not_claim_other_formats():
    """No catch-all pattern: TIFF, PNG, NPY and Zarr stay napari's, without a reader question."""
    from fnmatch import fnmatch

    top = yaml.safe_load((REPO / "napari.yaml").read_text())
    readers = top["contributions"]["readers"]
    patterns = [p for r in readers for p in r["filename_patterns"]]
    assert "*" not in patterns and "" not in patterns
    for name in ("a.tif", "a.tiff", "a.png", "a.npy", "a.zarr", "a.csv", "noext"):
        assert not any(fnmatch(name, p.lower()) for p in patterns), name
    for name in ("a.nii", "a.nii.gz", "a.dcm", "a.ima", "a_predict.json"):
        assert any(fnmatch(name, p.lower()) for p in patterns), name
    assert top["on_activate"] == "napari_attnseg._napari.io_hooks:activate"


def _hatch_build(target: str, source: Path, dest: Path) -> Path:
    """Build ``target`` (wheel or sdist) from ``source`` with the installed hatchling (no network)."""
    out = subprocess.run([sys.executable, "-m", "hatchling", "build", "-t", target, "-d", str(dest)],
                         cwd=source, capture_output=True, text=True)
    assert out.returncode == 0, f"{target} from {source}: {out.stderr[-1500:]}"
    return next(dest.glob("napari_attnseg-*" + (".whl" if target == "wheel" else ".tar.gz")))


def _wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return {n for n in zf.namelist() if not n.endswith(".dist-info/RECORD")}


def test_sdist_builds_the_same_wheel_as_the_checkout(tmp_path):
    """pip install from the sdist (no wheel for the platform, conda-forge, --no-binary) builds a wheel with
    the models, samples and manifest. The sdist carried resources/ only through the package's symlink, and
    building a wheel from it failed with "Forced include not found: .../resources"."""
    sdist = _hatch_build("sdist", REPO, tmp_path / "sdist")
    with tarfile.open(sdist) as tf:
        links = [m.name for m in tf.getmembers() if m.issym() or m.islnk()]
        tf.extractall(tmp_path / "src", **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    root = tmp_path / "src" / sdist.name.removesuffix(".tar.gz")
    from_sdist = _wheel_names(_hatch_build("wheel", root, tmp_path / "wheel-from-sdist"))
    assert not links, f"symlinks in the sdist (break on Windows, and duplicate resources/): {links}"
    for rel in ("napari.yaml", "resources/models", "resources/samples", "resources/ATTRIBUTION.md",
                "scripts/test.sh", ".ci/run"):  # the last two: the README's test command, read by test_docs
        assert (root / rel).exists(), f"{rel} missing from the sdist"
    from_repo = _wheel_names(_hatch_build("wheel", REPO, tmp_path / "wheel-from-repo"))
    assert from_sdist == from_repo, from_sdist ^ from_repo
    # the wheel: the package with every bundled resource, nothing else (no tests, benchmarks, docs, caches)
    bundled = {f"napari_attnseg/resources/{p.relative_to(REPO / 'resources').as_posix()}"
               for p in (REPO / "resources").rglob("*") if p.is_file()}
    assert bundled <= from_repo, bundled - from_repo
    assert {n.split("/")[0] for n in from_repo} == {"napari_attnseg", f"napari_attnseg-{napari_attnseg.__version__}.dist-info"}
    assert not [n for n in from_repo if "__pycache__" in n or n.endswith(".pyc")]
    # BSD-3-Clause: the licence travels with binary copies (the repo had none)
    assert (root / "LICENSE").exists()
    assert f"napari_attnseg-{napari_attnseg.__version__}.dist-info/licenses/LICENSE" in from_repo


# torch APIs the package calls and the release that introduced them: the declared floor must have them all
# (torch.amp.GradScaler(device_type): 2.3; before, only torch.cuda.amp.GradScaler, and fine-tuning failed
# with "module 'torch.amp' has no attribute 'GradScaler'")
TORCH_API_SINCE = {"torch.amp.GradScaler": (2, 3), "torch.compile": (2, 0), "torch.inference_mode": (1, 9)}


def test_torch_floor_has_every_torch_api_the_package_calls():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+ (the package itself supports 3.10)

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_req = next(d for d in deps if re.match(r"torch\b", d))
    floor = tuple(int(x) for x in re.search(r">=\s*([0-9.]+)", torch_req).group(1).split(".")[:2])
    source = "\n".join(p.read_text() for p in Path(napari_attnseg.__file__).parent.rglob("*.py"))
    needed = {api: since for api, since in TORCH_API_SINCE.items() if api in source}
    too_new = {api: since for api, since in needed.items() if since > floor}
    assert not too_new, f"{torch_req!r} admits torch releases without {too_new}"
