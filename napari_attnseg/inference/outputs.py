"""Where ``predict`` writes its outputs: arrays in memory, or memory-mapped ``.npy`` files in a folder
that appears (renamed from a hidden temporary one) only when the prediction is complete."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..errors import InputError


class Outputs:
    """Output arrays in memory, or memory-mapped .npy files in a folder that appears only when done."""

    def __init__(self, out: str | os.PathLike | None):
        self.final = Path(out) if out is not None else None
        self.tmp = None
        if self.final is not None:
            if self.final.exists() and any(self.final.iterdir()):
                raise InputError(f"Output folder {self.final} exists and is not empty; choose a new folder.")
            self.final.parent.mkdir(parents=True, exist_ok=True)
            self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.", dir=self.final.parent))

    def array(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        if self.tmp is None:
            return np.zeros(shape, dtype)
        return np.lib.format.open_memmap(self.tmp / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)

    def commit(self) -> None:
        if self.tmp is not None:
            if self.final.exists():
                self.final.rmdir()
            os.replace(self.tmp, self.final)

    def discard(self) -> None:
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def reopen(self, return_probabilities: bool):
        """The committed labels and probabilities, memory-mapped from their final place."""
        labels = np.load(self.final / "labels.npy", mmap_mode="r+")
        probs = np.load(self.final / "probabilities.npy", mmap_mode="r+") if return_probabilities else None
        return labels, probs
