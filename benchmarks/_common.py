"""Shared helpers for the benchmark scripts: machine description, medians, tables."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from napari_attnseg._files import describe_machine

RESULTS = Path(__file__).resolve().parent / "results"  # the committed tables
_out: Path | None = None  # where write() puts tables: --out, else RESULTS


def add_out_option(ap) -> None:
    """``--out DIR``: write the tables there instead of over the committed ones in benchmarks/results/."""
    ap.add_argument("--out", type=Path, default=None,
                    help="folder for the .md/.json tables (default: benchmarks/results/, the committed ones)")


def results_dir(out: Path | str | None = None) -> Path:
    """The folder tables go to; ``out`` (a script's --out) sets it for the rest of the run."""
    global _out
    if out is not None:
        _out = Path(out)
    folder = _out or RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    return folder


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
    folder = results_dir()
    (folder / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    cols = list(rows[0])
    lines = [header, "", f"Machine: {meta['machine']}", "", "| " + " | ".join(cols) + " |",
             "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(str(r[c]) for c in cols) + " |")
    text = "\n".join(lines) + "\n"
    (folder / f"{name}.md").write_text(text)
    print(text)
    return text


def require_monai(script: str) -> None:
    """Stop with how to install MONAI when a script that compares with it runs without it."""
    try:
        import monai  # noqa: F401
    except ImportError:
        raise SystemExit(f"{script} compares with MONAI, which is not installed here. Install the bench extra: "
                         "pip install -e '.[bench]' (or: pip install monai==1.6.1)") from None
