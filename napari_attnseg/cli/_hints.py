"""What a usage error of ``attnseg`` most likely meant: a mistyped sub-command (``predct``), or values given without
their option names (``attnseg predict image.tif nuclei-2d out``, ``attnseg export CT.nii.gz mask.nii.gz ds``), which
argparse answered with "the following arguments are required: --model, --out" only."""

from __future__ import annotations

import argparse
import difflib
import re
import shlex
from pathlib import Path

# the values a command's options are most often given without their names, in the order a user writes them
PLACEHOLDERS = {"--image": "IMAGE", "--labels": "LABELS", "--dataset": "DIR", "--model": "NAME_OR_PATH", "--out": "DIR"}


def usage_hint(parser: argparse.ArgumentParser, message: str, argv: list[str]) -> str:
    """A short hint to add to ``message`` (argparse's usage error of ``parser``), '' when there is none."""
    from . import SUBCOMMANDS

    if (m := re.search(r"invalid choice: '([^']*)' \(choose from", message)) and parser.prog == "attnseg":
        close = difflib.get_close_matches(m.group(1).lower(), SUBCOMMANDS, n=1, cutoff=0.6)
        return f"did you mean 'attnseg {close[0]}'?" if close else ""
    if not message.startswith("the following arguments are required:"):
        return ""
    missing = [a.strip() for a in message.split(":", 1)[1].split(",")]
    try:
        return _named(parser, [m for m in missing if m.startswith("--")], argv)
    except Exception:  # noqa: BLE001 - (a hint must never hide the usage error itself)
        return ""


def _named(parser: argparse.ArgumentParser, missing: list[str], argv: list[str]) -> str:
    """The command with the values given bare (without an option name) put under the missing options."""
    if not missing:
        return ""
    command = parser.prog.split()[-1]
    words = argv[argv.index(command) + 1:] if command in argv else []
    takes_value = {s for a in parser._actions if a.option_strings and a.nargs != 0 for s in a.option_strings}
    positional = [a for a in parser._actions if not a.option_strings and a.dest != "help"]
    bare, named, after_option = [], [], False
    for word in words:
        if after_option:
            named[-1] += f" {shlex.quote(word)}"
            after_option = False
        elif word.startswith("-"):
            named.append(word)
            after_option = word.split("=", 1)[0] in takes_value and "=" not in word
        else:
            bare.append(word)
    if not bare:
        return ""
    given: dict[str, str] = {}
    several = not positional or positional[0].nargs in ("+", "*") or len(bare) > 1
    if "--model" in missing and several:  # a model's name among the bare values (the model list imports torch)
        names = _model_names()
        model = next((w for w in bare if w in names or w.endswith(".safetensors")), None)
        if model is not None:
            given["--model"] = model
            bare.remove(model)
    keep = 0 if not positional else (len(bare) if positional[0].nargs in ("+", "*") else 1)
    if keep == len(bare) and keep > 1 and "--out" in missing and not Path(bare[-1]).exists():
        keep -= 1  # predict's inputs exist; a last word that does not is the output folder
    front, rest = bare[:keep], bare[keep:]
    if "--out" in missing and "--out" not in given and rest:  # the output folder comes last
        given["--out"] = rest.pop()
    for option in [m for m in missing if m not in given]:
        if rest:
            given[option] = rest.pop(0)
    if not given or rest:
        return ""
    parts = ["attnseg", command, *map(shlex.quote, front), *named]
    parts += [f"{o} {shlex.quote(given[o]) if o in given else PLACEHOLDERS.get(o, 'VALUE')}" for o in missing]
    return f"options go with their names; did you mean: {' '.join(parts)}"


def _model_names() -> set[str]:
    """The bundled models' names and your own (what ``--model NAME`` takes)."""
    from ..models.registry import available_models

    return set(available_models())
