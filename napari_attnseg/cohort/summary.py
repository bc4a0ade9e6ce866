"""The cohort's summary CSV (``cohort_summary.csv``): reading one a run wrote (a user's own table of that name is
never taken for it, nor lost), merging this run's rows with the earlier runs' other cases, writing it atomically.
:mod:`.cases` re-exports these names (their home before)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

from .cases import _EARLIER_COLUMNS, SUMMARY_COLUMNS

if TYPE_CHECKING:  # pragma: no cover
    from .cases import CohortSummary


def _read_summary(path: Path) -> list[dict[str, str]] | None:
    """The rows of a summary this command wrote at ``path`` ([] when there is none, or an empty file);
    None when the file is something else (another table). A summary of ours that gained columns (a
    ``reviewed_by`` added in a spreadsheet) is ours: its rows keep those columns, after ours."""
    table = _read_summary_table(path)
    return None if table is None else table[0]


def _read_summary_table(path: Path) -> tuple[list[dict[str, str]], list[str]] | None:
    """:func:`_read_summary`'s rows and the columns the user added."""
    if not path.exists() or (path.is_file() and path.stat().st_size == 0):
        return [], []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # (UTF-8, also after a save in Excel)
            reader = csv.DictReader(f)
            rows = list(reader)
            fields = list(reader.fieldnames or ())
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    if not set(_EARLIER_COLUMNS) <= set(fields) or any(None in r for r in rows):
        return None
    extra = [k for k in fields if k not in SUMMARY_COLUMNS]
    return [{k: r.get(k) or "" for k in (*SUMMARY_COLUMNS, *extra)} for r in rows], extra


def is_summary(path: Path) -> bool:
    """Whether ``path`` is a summary CSV a cohort wrote (its header has the summary's columns, whatever its name: a
    ``--summary NAME``): an output of ours, not an input, in a folder that is both the input and ``--out``."""
    if path.suffix.lower() != ".csv":
        return False
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    return set(_EARLIER_COLUMNS) <= set(header)


def _merge_rows(earlier: list[dict[str, str]], now: list[dict[str, str]]) -> tuple[list[dict[str, str]], int]:
    """This run's rows replace the earlier rows of their cases (where the first of them stood); the rows
    of cases not in this run are kept as they were. Returns the rows and how many were kept. The values of the columns
    a user added (``reviewed_by``, ``reader_comment``) stay with the case, also when its rows are merged into one: a
    series renamed since (its row of the same ``input``), or two rows of one case (the first value of each column)."""
    by_case: dict[str, list[dict[str, str]]] = {}
    keys = (("case", "input"), ("case",), ("input",))  # the rows of that case and input; else of the case (moved); else
    found = [_user_values(earlier, key) for key in keys]  # of the input (a series named otherwise before)
    for row in now:
        user = next((v[k] for key, v in zip(keys, found) if (k := tuple(row.get(c) or "" for c in key)) in v), {})
        by_case.setdefault(row["case"], []).append({**user, **row})
    merged: list[dict[str, str]] = []
    placed: set[str] = set()
    kept = 0
    inputs = {row.get("input") for row in now}  # (a series renamed since, PAT001_ST001_SE003 once SE003: its old row goes)
    for row in earlier:
        case = row["case"]
        if case not in by_case and row.get("input") in inputs:
            continue
        if case not in by_case:
            merged.append(row)
            kept += 1
        elif case not in placed:
            merged.extend(by_case[case])
            placed.add(case)
    merged += [row for case, rows in by_case.items() if case not in placed for row in rows]
    return merged, kept


def _user_values(rows: list[dict[str, str]], key: tuple[str, ...]) -> dict[tuple[str, ...], dict[str, str]]:
    """The rows' ``key`` columns -> the values of the columns a user added to those rows (the first value of each)."""
    found: dict[tuple[str, ...], dict[str, str]] = {}
    for row in rows:
        have = found.setdefault(tuple(row.get(c) or "" for c in key), {})
        for k, v in row.items():
            if k not in SUMMARY_COLUMNS and (v or k not in have) and not have.get(k):
                have[k] = v
    return found


def describe_summary(summary: CohortSummary) -> str:
    """The run's line: cases done / skipped / failed, time, speed, and how long the model waited for reading. One
    process (``slots`` 1) says it as a share of the run ("compute waited 0.3 s for input (1.2% of 1 slot x wall)" was
    jargon to a user); several Dask workers keep the slots, which the share needs."""
    s = summary
    wait = s.input_wait_s
    if s.slots > 1:
        waited = (f"the {s.slots} workers' models waited {wait:.1f} s in all for reading ({100 * s.input_wait_share:.1f}% "
                  f"of {s.slots} workers x {s.wall_s:.1f} s)")
    else:
        waited = f"the model waited {wait:.1f} s for reading ({100 * s.input_wait_share:.1f}% of the run)"
    return (f"{len(s.cases)} cases: {s.done} done, {s.skipped} skipped"
            + (f" ({s.by_other_runs} computed by another run while this one ran)" if s.by_other_runs else "")
            + f", {s.failed} failed in {s.wall_s:.1f} s ({s.throughput / 1e6:.2f} Mvoxel/s); {waited}"
            + (f"; the summary keeps {s.kept} case{'s' if s.kept != 1 else ''} of earlier runs" if s.kept else "")
            + (f"; {s.note}" if s.note else ""))


def summary_refusal(path: Path) -> str:
    return (f"{path} exists and is not a summary written by attnseg (its columns are not the summary's: "
            "another table). It was left as it is and nothing was run. Name another summary file with "
            "--summary NAME (summary='NAME' in Python), or move that file away; --overwrite would also "
            f"keep it (renamed {_aside_name(path).name}) but redoes every finished case.")


def _free_name(path: Path) -> Path:
    n = 1
    while (candidate := path.with_name(f"{path.stem}.{n}{path.suffix}")).exists():
        n += 1
    return candidate


def _aside_name(path: Path) -> Path:
    """Where ``--overwrite`` moves a file of the summary's name that is not ours: ``<name>.yours.csv``, ..."""
    candidate, n = path.with_name(f"{path.stem}.yours{path.suffix}"), 2
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}.yours-{n}{path.suffix}")
        n += 1
    return candidate


def row_key(row: dict[str, str]) -> tuple[str, ...]:
    """What tells a summary row from another run's row of its case (for :func:`_write_summary`'s ``before``)."""
    return tuple(str(row.get(k) or "") for k in ("case", "run", "status", "seconds"))


def _write_summary(path: Path, summary: CohortSummary, run: str = "", overwrite: bool = False,
                   before: set[tuple[str, ...]] | None = None) -> Path:
    """Write this run's rows into the summary at ``path``, keeping the rows of earlier runs' other cases
    (``summary.kept``) and the columns a user added. A file there that is not a summary of ours is never
    lost: with ``overwrite`` it is renamed ``<name>.yours.csv`` (and this summary takes its name); one
    that became such a file during the run is left as it is and this summary goes beside it. ``before``: the rows
    (:func:`row_key`) the summary had when this run started: a case this run skipped keeps a ``done`` row that another
    run, ending while this one ran, wrote (that run computed it: two runs at once), instead of this run's ``skipped``;
    a case another run computed while this one waited shows that run's row (:attr:`.cases.CaseResult.by_other_run`)."""
    import os

    from .._files import atomic_write

    table = _read_summary_table(path)
    note = ""
    if table is None:
        if overwrite:
            aside = _aside_name(path)
            os.replace(path, aside)
            note = (f"{path.name} there was not a summary of attnseg: --overwrite replaced it with this run's "
                    f"summary and kept it as {aside.name}")
        else:
            new = _free_name(path)
            note = (f"{path.name} was changed during the run to a file this command did not write and was "
                    f"left as it is; this run's summary is {new.name}")
            path = new
        table = [], []
    earlier, extra = table
    summary.note = "; ".join(n for n in (summary.note, note) if n)
    theirs = {r["case"]: r for r in earlier if before is not None and r.get("status") == "done"
              and row_key(r) not in before}  # (written by a run that ended while this one ran)
    now = [theirs[c.case] if c.status == "skipped" and c.case in theirs else {"run": run, **c.row()}
           for c in summary.cases]
    rows, summary.kept = _merge_rows(earlier, now)

    def dump(tmp: str) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:  # the same on every system (Windows: not cp1252)
            w = csv.DictWriter(f, fieldnames=[*SUMMARY_COLUMNS, *extra], restval="")
            w.writeheader()
            w.writerows(rows)

    return atomic_write(path, dump)
