"""The cases a CSV names (``attnseg predict cohort.csv``)."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError
from .cases import CSV_PATH_COLUMNS

if TYPE_CHECKING:  # pragma: no cover
    from .inputs import Collected


def _delimiter(lines: list[str], folder: Path) -> str:
    """``;`` (or a tab) when the first line has it and no comma, and is not itself a file's path: Excel's "CSV" in a
    locale with a decimal comma (German, French, Dutch, ...) separates cells with semicolons. Else ``,``."""
    first = next((line for line in lines if line.strip()), "")
    for sep in (";", "\t"):
        cell = first.strip().strip('"')
        if sep in first and "," not in first and not (folder / cell).exists() and not Path(cell).exists():
            return sep
    return ","


def read_csv(path: Path, got: Collected | None = None) -> list[Path]:
    """The paths a CSV lists (:func:`.inputs.collect_inputs`): its ``path``/``input``/``image``/``file``/``case`` column,
    else its first; relative to the CSV's folder. UTF-8 with or without Excel's byte-order mark, else Windows-1252 with
    a note; Windows line endings; cells quoted (paths with spaces or commas); separated by commas, or by the semicolons
    (tabs) of Excel in a locale whose decimal mark is a comma. ``got.hints``: why a row's file will not be found."""
    try:
        raw = path.read_bytes()
        try:  # UTF-8, with the byte-order mark Excel's "CSV UTF-8" starts with (else it sticks to the first path)
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:  # Excel's plain "CSV" on Windows: Windows-1252 (Müller, Série)
            text = raw.decode("cp1252")
            if got is not None:
                got.notes.append(f"{path}: not UTF-8 text; read as Windows-1252 (Excel's plain CSV). If a path "
                                 "is not found, save the CSV as 'CSV UTF-8'")
        lines = text.splitlines()
        rows = [r for r in csv.reader(lines, delimiter=_delimiter(lines, path.parent)) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"Could not read the CSV {path} ({exc}); save it as UTF-8 text ('CSV UTF-8').") from None
    if not rows:
        raise InputError(f"The CSV {path} names no inputs.")
    header = [c.strip().lower() for c in rows[0]]
    col = next((header.index(n) for n in CSV_PATH_COLUMNS if n in header), None)
    if col is not None:
        rows = rows[1:]
    else:
        col = 0
        first = Path(rows[0][0].strip())
        if not (first if first.is_absolute() else path.parent / first).exists() and not first.suffix:
            rows = rows[1:]  # a header with another name for the column
    cases = []
    for r in rows:
        if col < len(r) and r[col].strip():
            p = Path(r[col].strip()).expanduser()
            case = p if p.is_absolute() else path.parent / p
            if got is not None and p.is_absolute() and not case.exists():
                got.hints[str(case)] = f"{path} names it"
            elif got is not None and not p.is_absolute() and not case.exists():
                there = (f"; {p} does exist relative to the working directory: write it in the CSV as "
                         f"{os.path.relpath(p.resolve(), path.parent.resolve())} (from the CSV's folder) or "
                         f"{p.resolve()}") if p.exists() else ""
                got.hints[str(case)] = (f"{path} names {p}, and a CSV's relative paths are read relative to the "
                                        f"CSV's own folder ({path.parent}){there}")
            cases.append(case)
    return cases
