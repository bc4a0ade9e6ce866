"""The README is a user's page: short, with the test command CI runs, and every link it or docs/ makes
points at a file that exists (issue 22)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
# [text](target) and ![alt](target), target up to the first space or closing parenthesis
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)")
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    return {_anchor(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.*)$", text, re.M)}


def _pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


pytestmark = pytest.mark.skipif(not DOCS.is_dir(), reason="docs/ is not part of this copy")


def test_readme_is_short_and_keeps_the_ci_test_command():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) < 300
    assert "bash scripts/test.sh" in text
    assert "scripts/test.sh" in (REPO / ".ci" / "run").read_text()


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_resolves(page):
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    broken = []
    for target in _LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, fragment = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(target)
        elif fragment and dest.suffix == ".md" and fragment not in _anchors(dest):
            broken.append(target)
    assert not broken, f"{page.name}: links to nothing: {broken}"


def test_the_readme_python_api_block_runs(tmp_path, monkeypatch):
    """The README's Python API block runs as written on the nuclei sample (it once kept a CT voxel on a 2D
    mask), and the names it and the text around it use are on the package."""
    import numpy as np

    import napari_attnseg as ag
    from napari_attnseg._paths import samples_dir
    from napari_attnseg.data import read_image

    text = README.read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    for name in re.findall(r"`ag\.(\w+)", section.split("## ", 1)[0]):
        assert hasattr(ag, name), name
    monkeypatch.chdir(tmp_path)
    scope = {"image": read_image(samples_dir() / "nuclei2d_image.tif").data}
    exec(compile(block, "README.md (Python API)", "exec"), scope)
    assert scope["mask"].shape == scope["pred"].labels.shape and np.asarray(scope["mask"]).any()
    assert (tmp_path / "my-model.safetensors").exists()
