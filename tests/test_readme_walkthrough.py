"""A user follows the README literally: its `attnseg ...` commands and option summaries, and the napari menu
names it gives, must match what the program offers (a renamed or dropped option, a sample or widget renamed
in the manifest). No model runs here: the commands are parsed by the CLI's own argparse parser."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
CLI_MD = DOCS / "cli.md"
SUBCOMMANDS = ("demo", "models", "predict", "evaluate", "export", "dataset", "train", "finetune", "suggest")
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
_OPTION = re.compile(r"(?<![\w-])(--?[a-zA-Z][\w-]*)")

pytestmark = pytest.mark.skipif(not CLI_MD.exists(), reason="docs/ is not part of this copy")


def _options() -> dict[str, set[str]]:
    """Each sub-command's option strings, from the parser `attnseg` runs."""
    from napari_attnseg.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: {s for a in p._actions for s in a.option_strings} for name, p in sub.choices.items()}


def _synopsis_lines(path: Path) -> list[tuple[int, str, str]]:
    """(line, sub-command, text) of the `attnseg SUB ...` lines of the code blocks (summaries and examples) and
    their indented continuation lines, the `# comment` dropped."""
    rows = []
    text = path.read_text(encoding="utf-8")
    for m in _FENCE.finditer(text):
        first = text[: m.start(2)].count("\n") + 1
        sub = None
        for i, line in enumerate(m.group(2).splitlines()):
            head = re.match(r"attnseg (\w+)\s", line)
            if head and head.group(1) in SUBCOMMANDS:
                sub = head.group(1)
                line = line[head.end():]
            elif not (sub and line.startswith("   ")):
                sub = None
            if sub:
                rows.append((first + i, sub, line.split("  #")[0]))
    return rows


def _example_commands(path: Path) -> list[tuple[str, str]]:
    """(sub-command, command) of the complete `attnseg SUB ...` commands of the ```bash blocks; lines with
    placeholders (`...`, `[`, `<`) are summaries, not commands."""
    found = []
    for lang, body in _FENCE.findall(path.read_text(encoding="utf-8")):
        if lang not in ("bash", "sh", "shell"):
            continue
        for line in body.replace("\\\n", " ").splitlines():
            m = re.search(r"(?:^|\s)attnseg (" + "|".join(SUBCOMMANDS) + r")\b.*", line.strip())
            if not m:
                continue
            command = re.split(r"\s+#\s", m.group(0).strip())[0]
            command = re.split(r"\s*(?:&&|\|\||\||;|>)\s*", command)[0]
            if not any(p in command for p in ("...", "[", "<")):
                found.append((m.group(1), command))
    return found


@pytest.mark.parametrize("page", [README, CLI_MD], ids=lambda p: p.relative_to(REPO).as_posix())
def test_the_option_summaries_name_only_options_the_cli_has(page):
    options = _options()
    rows = _synopsis_lines(page)
    assert {sub for _, sub, _ in rows} >= set(SUBCOMMANDS), rows  # the summary block lists every sub-command
    unknown = [f"{page.name}:{n}: attnseg {sub} {opt}" for n, sub, text in rows
               for opt in _OPTION.findall(text) if opt not in options[sub]]
    assert not unknown, unknown


def test_every_option_of_every_subcommand_is_in_cli_md():
    """docs/cli.md is "the full reference" (README): an option added to a parser is listed there."""
    text = CLI_MD.read_text(encoding="utf-8")
    missing = [f"attnseg {sub} {opt}" for sub, opts in _options().items() for opt in sorted(opts)
               if opt not in ("-h", "--help") and not re.search(r"(?<![\w-])" + re.escape(opt) + r"(?![\w-])", text)]
    assert not missing, f"documented nowhere in docs/cli.md: {missing}"


def test_the_readme_and_docs_example_commands_parse():
    from napari_attnseg.cli import build_parser

    pages = [README, *sorted(DOCS.glob("*.md"))]
    commands = [(page, sub, cmd) for page in pages for sub, cmd in _example_commands(page)]
    readme_subs = {sub for page, sub, _ in commands if page == README}
    assert readme_subs >= {"demo", "predict", "export", "train", "finetune"}, readme_subs
    refused = []
    for page, _, cmd in commands:
        try:
            build_parser().parse_args(shlex.split(cmd)[1:])
        except SystemExit:
            refused.append(f"{page.name}: {cmd}")
    assert not refused, refused


def test_the_readme_test_command_is_what_ci_runs():
    readme = README.read_text(encoding="utf-8")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    run_lines = [ln.strip() for ln in ci.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert run_lines[-1] in ("exec bash scripts/test.sh", 'exec bash scripts/test.sh "$@"'), run_lines
    assert "bash scripts/test.sh" in readme


def test_the_napari_names_the_readme_gives_are_the_manifests():
    """File > Open Sample > Attention Segmentation > "Nuclei (2D fluorescence)" / "Brain MRI (3D T1)" and
    Plugins > Attention Segmentation > *Attention segmentation*, as the README spells them."""
    yaml = pytest.importorskip("yaml")
    manifest = yaml.safe_load((REPO / "napari_attnseg" / "napari.yaml").read_text(encoding="utf-8"))
    contrib = manifest["contributions"]
    readme = " ".join(README.read_text(encoding="utf-8").split())  # (the names may wrap)
    samples = [s["display_name"] for s in contrib["sample_data"]]
    assert f"File > Open Sample > {manifest['display_name']} > \"{samples[0]}\"" in readme
    for name in samples:
        assert f'"{name}"' in readme, name
    widgets = [w["display_name"] for w in contrib["widgets"]]
    assert f"Plugins > {manifest['display_name']} > *{widgets[0]}*" in readme
