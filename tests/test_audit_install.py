"""Installing napari-attnseg as a lab's IT person would: the dependency floors, the wheel, missing optional pieces."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _floors() -> dict[str, str]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    floors = {}
    for dep in deps:
        m = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*>=\s*([0-9][0-9A-Za-z.]*)", dep)
        if m:
            floors[m.group(1).lower()] = m.group(2)
    return floors


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def test_napari_floor_accepts_the_layers_the_panels_add():
    """The layers are added with ``units=(...)`` and ``axis_labels=(...)``; napari 0.5.0's add_image/add_labels
    refused any sequence not in its list ("Received sequence for argument 'axis_labels', did you mean to specify
    a 'channel_axis'?"): with napari==0.5.0 (allowed by "napari>=0.5") ``attnseg demo`` hung on that error in the
    Segment run. napari 0.5.1-0.5.3 took any image whose last axis is 3 or 4 long for RGB: the coarsest attention
    map of a 3D run on a volume about 30 voxels wide in x failed ("could not broadcast input array from shape (3,)
    into shape (2,)") and the run never finished (tests/test_napari_segment.py::test_3d_volume_with_3d_model);
    0.5.4 asks the other axes to be longer than 30 too."""
    common = (REPO / "napari_attnseg" / "_napari" / "_common.py").read_text()
    assert "axis_labels=" in common and "units=" in common  # the fact the floor rests on
    assert _version(_floors()["napari"]) >= (0, 5, 4), _floors()["napari"]


def test_npe2_floor_matches_the_nifti_writers_compound_extension():
    """napari.yaml's NIfTI writer declares ".nii.gz". npe2 before 0.9 matched a writer on ``Path(path).suffix``
    (".gz"): with npe2 0.7.6-0.8.3 (allowed by "npe2>=0.7") File > Save of ``mask.nii.gz`` failed with "There is no
    registered plugin named 'napari-attnseg'" and saved nothing, while ``mask.tif`` worked."""
    import yaml

    writers = yaml.safe_load((REPO / "napari.yaml").read_text())["contributions"]["writers"]
    compound = [e for w in writers for e in w["filename_extensions"] if e.count(".") > 1]
    assert ".nii.gz" in compound  # the fact the floor rests on
    assert _version(_floors()["npe2"]) >= (0, 9), _floors()["npe2"]


def test_pydicom_floor_has_the_encoding_attribute_the_reader_uses():
    """A DICOM file without a meta header (an old PACS/CD export) is decoded with ``ds.original_encoding``, a
    pydicom 3.0 property: with pydicom 2.4 (allowed by "pydicom>=2.4") such a series failed with
    "'FileDataset' object has no attribute 'original_encoding'"."""
    pixels = (REPO / "napari_attnseg" / "data" / "dicom_pixels.py").read_text()
    assert "original_encoding" in pixels  # the fact the floor rests on
    assert _version(_floors()["pydicom"]) >= (3, 0), _floors()["pydicom"]


def test_dask_option_without_distributed_says_what_to_install(monkeypatch):
    """``attnseg predict --dask`` where ``distributed`` is missing (pip install --no-deps, a split conda env):
    one line naming the package to install, not "ModuleNotFoundError: No module named 'distributed'"."""
    from napari_attnseg.cohort.workers import dask_client
    from napari_attnseg.errors import InputError

    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(InputError, match=r"pip install distributed"), dask_client("1", echo=lambda _m: None):
        pass


def test_cli_dask_without_distributed_is_one_line(monkeypatch, tmp_path, capsys):
    from napari_attnseg._paths import samples_dir
    from napari_attnseg.cli import main

    monkeypatch.setitem(sys.modules, "distributed", None)
    rc = main(["predict", str(samples_dir() / "nuclei2d_image.tif"), "--model", "nuclei-2d",
               "--out", str(tmp_path / "out"), "--dask", "1"])
    err = capsys.readouterr().err
    assert rc == 1 and "pip install distributed" in err and "ModuleNotFoundError" not in err, err


def test_wheel_runs_without_the_checkout(tmp_path):
    """The wheel alone: unpacked away from the repo and imported from there, the bundled models, samples,
    manifest and attribution resolve inside it (no symlink into the checkout, no path to it)."""
    out = subprocess.run([sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path / "dist")],
                         cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-1500:]
    wheel = next((tmp_path / "dist").glob("napari_attnseg-*.whl"))
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        links = [i.filename for i in zf.infolist() if (i.external_attr >> 16) & 0o170000 == 0o120000]
        assert not links, f"symlinks in the wheel: {links}"
        zf.extractall(site)
    for rel in ("napari.yaml", "resources/ATTRIBUTION.md", "resources/models/nuclei-2d.safetensors",
                "resources/models/brain-mri-3d.json", "resources/samples/nuclei2d_image.tif",
                "resources/samples/mni152_t1.nii.gz"):
        assert (site / "napari_attnseg" / rel).is_file(), rel
    code = (
        "import json, napari_attnseg as ag, napari_attnseg._paths as p\n"
        "from napari_attnseg.checkpoint import resolve_model_path, read_card\n"
        "path = resolve_model_path('brain-mri-3d')\n"
        "print(json.dumps({'pkg': ag.__file__, 'res': str(p.resources_dir()), 'model': str(path),"
        " 'classes': list(read_card(path).classes)}))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "HOME": str(tmp_path)})
    assert run.returncode == 0, run.stderr[-1500:]
    import json

    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["pkg"].startswith(str(site)) and got["res"] == str(site / "napari_attnseg" / "resources"), got
    assert got["model"].startswith(str(site)) and len(got["classes"]) == 3, got


def _run_demo_sh(tmp_path: Path, torch_version: str | None, pip_says: str = "", ok: bool = True) -> list[str]:
    """scripts/demo.sh with a stand-in interpreter: ``-c`` code runs on the real Python with a fake ``torch``
    of ``torch_version`` (None: no torch), every ``-m`` call is only logged (``pip_says``: a pip install prints
    that and fails)."""
    fake = tmp_path / f"fake-{torch_version}"
    (fake / "mods").mkdir(parents=True)
    if torch_version:
        (fake / "mods" / "torch.py").write_text(f"__version__ = {torch_version!r}\n")
    log = fake / "calls.log"
    py = fake / "python"
    py.write_text(f'#!/usr/bin/env bash\nif [ "$1" = "-c" ]; then PYTHONPATH={fake / "mods"} exec {sys.executable} -S "$@"; fi\n'
                  f'echo "$*" >> {log}\n'
                  + (f'if [ "$2" = "pip" ]; then echo "{pip_says}"; exit 1; fi\n' if pip_says else ""))
    py.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "PYTHON": str(py), "HOME": str(tmp_path)}
    out = subprocess.run(["bash", str(REPO / "scripts" / "demo.sh"), "--quit"], env=env, capture_output=True, text=True)
    assert (out.returncode == 0) is ok, out.stderr
    return log.read_text().splitlines() + ([] if ok else [out.stdout, out.stderr])


@pytest.mark.parametrize(("installed", "pins"), [(None, True), ("2.1.2+cu121", True), ("2.13.0+cpu", False),
                                                 ("2.3.0", False)])
def test_demo_sh_installs_the_pinned_torch_when_none_fits(tmp_path, installed, pins):
    """No torch, or one below pyproject's floor: demo.sh installs the pinned torch==2.13.0 first. An old torch
    (2.1 from another tool) had counted as installed, and ``pip install -e .`` then replaced it with whatever build
    the index served. A torch that fits is left alone."""
    calls = _run_demo_sh(tmp_path, installed)
    assert ("-m pip install torch==2.13.0" in calls) is pins, calls
    assert calls[-2:] == ["-m pip install -e .", "-m napari_attnseg demo --quit"], calls
    assert _version(_floors()["torch"]) == (2, 3)  # the floor demo.sh checks ("< (2, 3)")


def test_demo_sh_on_a_system_python_says_to_make_a_virtual_environment(tmp_path):
    """Debian's python3 refuses pip installs (PEP 668): demo.sh stopped at pip's "externally-managed-environment"
    error, which names --break-system-packages as a way out. Now it says to make a virtual environment."""
    calls = _run_demo_sh(tmp_path, "2.13.0", pip_says="error: externally-managed-environment", ok=False)
    assert calls[0] == "-m pip install -e ." and "externally-managed-environment" in calls[-2]
    assert "python3 -m venv" in calls[-1] and "bash scripts/demo.sh" in calls[-1], calls[-1]
    other = _run_demo_sh(tmp_path / "b", "2.13.0", pip_says="ERROR: No matching distribution found", ok=False)
    assert "venv" not in other[-1], other  # another pip failure: only pip's own message


def test_a_zarr_store_given_to_the_cli_says_where_zarr_is_read(tmp_path, capsys):
    """`attnseg predict image.zarr` said only "No images found in image.zarr" (the folder holds chunks)."""
    import numpy as np

    from napari_attnseg.cli import main

    store = tmp_path / "image.zarr"
    store.mkdir()
    (store / ".zarray").write_text("{}")
    np.zeros(4).tofile(store / "0.0")
    rc = main(["predict", str(store), "--model", "nuclei-2d", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc != 0 and "Zarr store is read by the Python API" in err, err
