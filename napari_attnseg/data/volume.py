"""``Volume``: an image array with its geometry; what every reader returns and every writer takes.

Its own module (no imports from the rest of ``data/``) so the format modules (``nifti``, ``tiff``,
``dicom``), ``io`` and ``dataset`` all import it from here without a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Volume:
    """An image with its geometry.

    ``data``: (z, y, x) or (y, x) array (a copy-on-write memory map for large uncompressed TIFFs).
    ``spacing``: voxel size per array axis. ``affine``: NIfTI-style (RAS) 4x4 mapping the *stored*
    (i, j, k) indices to millimetres, or None (TIFF). ``meta``: ``source_path``, ``format`` (nifti,
    tiff, dicom), ``axis_order`` and format details (``meta["nifti"]``: header codes to write back);
    a mask's ``meta["model_info"]``: the model that made it, as saved with it (:func:`model_info_of`).
    """

    data: np.ndarray
    spacing: tuple[float, ...]
    affine: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def model_info_of(value) -> dict | None:
    """The model that made a mask, as stored with it (``model``, ``weights_sha256``, ``checkpoint``: strings or
    None), from a file's own note or a layer's provenance; None when it names no model."""
    if not isinstance(value, dict):
        return None
    out = {"model": value.get("model"), "weights_sha256": value.get("weights_sha256") or value.get("checkpoint_sha256"),
           "checkpoint": value.get("checkpoint")}
    out = {k: str(v) if v not in (None, "") else None for k, v in out.items()}
    return out if out["model"] or out["weights_sha256"] else None
