"""Where ``predict`` writes its outputs: arrays in memory, or memory-mapped ``.npy`` files in a folder
that appears (renamed from a hidden temporary one) only when the prediction is complete."""

from __future__ import annotations

import contextlib
import errno
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


def size_text(nbytes: int) -> str:
    """``1.3 GB`` / ``52.4 MB``."""
    return f"{nbytes / 1e9:.1f} GB" if nbytes >= 1e9 else f"{nbytes / 1e6:.1f} MB"


def output_bytes(pred) -> tuple[int, int]:
    """(all outputs, the probability map) of a Prediction as written, in bytes before compression:
    labels as they are, foreground probabilities and attention maps as float32."""
    n = int(np.prod(np.shape(pred.labels)))
    prob = 0
    if pred.probabilities is not None:
        prob = 4 * n * (np.shape(pred.probabilities)[0] - 1)
    maps = sum(4 * int(np.prod(np.shape(m.data))) for m in pred.attention)
    return n * np.dtype(getattr(pred.labels, "dtype", np.uint8)).itemsize + prob + maps, prob


def foreground_float32(probabilities, reversed_layout: bool = False) -> np.ndarray:
    """The foreground probabilities ``probabilities[1:]`` as float32, (*spatial) for one foreground class,
    else (K-1, *spatial), converted one class at a time (no float32 temporary of the float16 whole).

    ``reversed_layout``: for a NIfTI writer, which stores the axes reversed and makes them contiguous
    that way. The copy is then a C-contiguous buffer of the reversed shape, returned as its transpose
    (a view): the writer's contiguous transpose is that same buffer, not a second full-size copy.
    """
    fg = probabilities[1:]
    shape = tuple(fg.shape[1:]) if fg.shape[0] == 1 else tuple(fg.shape)
    if not reversed_layout:
        out = np.empty(shape, np.float32)
    else:
        out = np.empty(shape[::-1], np.float32).transpose(tuple(reversed(range(len(shape)))))
    if fg.shape[0] == 1:
        out[...] = fg[0]
    else:
        for k in range(fg.shape[0]):
            out[k] = fg[k]
    return out


@contextlib.contextmanager
def room_for(path, out, src, pred):
    """A full disk or a file-size limit while writing ``path``: an InputError naming the file, the space
    the case's outputs need and what to do (instead of a bare ``[Errno 28]``)."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            raise
        total, prob = output_bytes(pred)
        no_prob = f" ({size_text(prob)} of them the probability map, which --no-prob leaves out)" if prob else ""
        raise InputError(
            f"{path} could not be written ({exc.strerror or exc}): the disk holding {out} is full or a file-size "
            f"limit (ulimit -f) was reached. The outputs of {Path(src).name} take up to {size_text(total)} before "
            f"compression{no_prob}. Free some space or choose another --out; nothing of this case was kept, "
            "run it again.") from None


def map_affine(affine, amap) -> np.ndarray:
    """NIfTI affine of an attention map on its own grid: index (i, j, k) of the map -> the image's world mm
    (map pixel ``m`` is centred on image pixel ``translate + m * scale``, per array axis)."""
    a = np.asarray(affine, float)
    # array axes are (k, j, i); NIfTI axes are (i, j, k): reverse the map's scale/translate
    scale = list(reversed(amap.scale)) + [1.0] * (3 - len(amap.scale))
    trans = list(reversed(amap.translate)) + [0.0] * (3 - len(amap.translate))
    m = np.eye(4)
    m[:3, :3] = np.diag(scale)
    m[:3, 3] = trans
    return a @ m


def map_origin(amap, source_meta: dict) -> tuple[float, ...]:
    """The ImageJ calibration origin (pixels, per array axis) of an attention map written as a TIFF, so that
    Fiji lays it over its image's calibrated extent: ImageJ's x = (pixel - origin) * pixel width, pixel
    edges at integers, and map pixel ``m`` is centred on image pixel ``translate + m * scale``. The image's
    own ImageJ origin (``source_meta["imagej"]``) is kept. 0 where the map starts at the image's corner."""
    ij = source_meta.get("imagej") if isinstance(source_meta.get("imagej"), dict) else {}
    ndim = len(amap.scale)
    axes = source_meta.get("axes")
    letters = axes[-ndim:] if isinstance(axes, str) and len(axes) >= ndim else "ZYX"[-ndim:]
    out = []
    for letter, s, t in zip(letters, amap.scale, amap.translate):
        try:
            own = float(ij.get(f"{letter.lower()}origin") or 0.0)
        except (TypeError, ValueError):
            own = 0.0
        out.append(0.5 - (float(t) + 0.5 - own) / float(s))
    return tuple(out)
