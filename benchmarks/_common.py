"""Shared helpers for the benchmark scripts: machine description, medians, tables."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from napari_attnseg._files import describe_machine

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    return describe_machine()


def median_time(fn, repeats: int = 3, warmup: int = 1) -> tuple[float, object]:
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def dice(a, b) -> float:
    import numpy as np

    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    denom = a.sum() + b.sum()
    return 1.0 if denom == 0 else float(2 * (a & b).sum() / denom)


def write(name: str, rows: list[dict], header: str, meta: dict) -> str:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    cols = list(rows[0])
    lines = [header, "", f"Machine: {meta['machine']}", "", "| " + " | ".join(cols) + " |",
             "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(str(r[c]) for c in cols) + " |")
    text = "\n".join(lines) + "\n"
    (RESULTS / f"{name}.md").write_text(text)
    print(text)
    return text
