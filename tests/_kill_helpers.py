"""An export SIGKILLed mid-way, in a child process (tests/test_export.py, tests/test_export_staging.py): the export's
``_hook`` is called at each step ("file" per file written, "committed", "renamed"); the child kills itself the
``nth`` time it reaches ``step``, so the dataset is left as a power cut there would leave it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

KILL_CODE = """
import json, os, signal, sys
import numpy as np
from napari_attnseg.data import export
step, nth, fmt, overwrite = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
reviewed = json.loads(sys.argv[5])
seen = {"n": 0}
def hook(s):
    if s == step:
        seen["n"] += 1
        if seen["n"] == nth:
            os.kill(os.getpid(), signal.SIGKILL)
export._hook = hook
export.export_case(np.load(sys.argv[6]), np.load(sys.argv[7]), sys.argv[8], fmt,
                   case_id="case_0000" if overwrite else None, overwrite=overwrite, reviewed_slices=reviewed)
"""


def kill_export(work: Path, ds: Path, image: np.ndarray, labels: np.ndarray, step: str, nth: int, *,
                fmt: str = "nnunet", overwrite: bool = False, reviewed_slices: Sequence[int] | None = None) -> None:
    """``export_case(image, labels, ds, fmt)`` (as case_0000 with ``overwrite``, else a new case) in a child process
    killed with SIGKILL the ``nth`` time the export reaches ``step``; fails unless it was killed there. The arrays
    travel as ``img.npy`` / ``lab.npy`` in ``work`` (not inside ``ds``)."""
    np.save(work / "img.npy", image)
    np.save(work / "lab.npy", labels)
    args = [step, str(nth), fmt, "1" if overwrite else "0",
            json.dumps(None if reviewed_slices is None else [int(k) for k in reviewed_slices]),
            str(work / "img.npy"), str(work / "lab.npy"), str(ds)]
    proc = subprocess.run([sys.executable, "-c", KILL_CODE, *args], timeout=120, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, (
        f"the export was not killed at {step!r} #{nth} (exit code {proc.returncode}): {proc.stderr[-2000:]}")
