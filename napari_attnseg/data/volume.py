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
    tiff, dicom), ``axis_order`` and format details (``meta["nifti"]``: header codes to write back).
    """

    data: np.ndarray
    spacing: tuple[float, ...]
    affine: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
