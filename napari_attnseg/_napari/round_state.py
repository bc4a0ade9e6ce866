"""What a clinician's reviewed work keeps from one round of the correction loop to the next, in one session.

- :func:`carry_reviewed`: a re-run (e.g. with round 1's fine-tuned model) whose mask went to ``<image> mask (2)``
  because the clinician kept their edited mask (*No* to "Overwrite edited mask?"): the new mask started with no
  reviewed slice, so *Next suggested slice* sent them back to slices they had reviewed in round 1, and an export of it
  (with *Replace the case*, as the export's own warning advises) dropped round 1's corrections from the dataset. The
  reviewed slices of the kept mask (its voxels and marks) are copied into the new one; the kept mask stays as it was.
- :func:`replace_loses`: *Replace the case* with a mask that does not mark reviewed every slice the case holds as
  reviewed (the same image) is refused: the clinician's reviewed labels of that case would be lost.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from napari.layers import Labels

from .. import correct
from ._common import notify_info

REVIEWED_KEY = "reviewed_slices"
NUMBERED = re.compile(r"^(?P<base>.+) \((?P<n>\d+)\)$")  # a run's next mask: <image> mask (n)


def kept_sibling(viewer, layer):
    """The mask a run kept when it put its prediction in ``layer`` (``<image> mask (n)``: ``<image> mask (n-1)``,
    or ``<image> mask`` for n = 2), when it is open, of the same image and grid; else None."""
    found = NUMBERED.match(layer.name)
    if found is None or "attnseg_prediction" not in layer.metadata:  # (a Segment run's mask; not one opened)
        return None
    n = int(found["n"])
    name = found["base"] if n == 2 else f"{found['base']} ({n - 1})"
    if name not in viewer.layers or not isinstance(older := viewer.layers[name], Labels):
        return None
    uids = {older.metadata.get("attnseg_source_uid"), layer.metadata.get("attnseg_source_uid")} - {None}
    if len(uids) > 1 or older.data.shape != layer.data.shape:  # (another image's mask, or another grid)
        return None
    return older


def carry_reviewed(viewer, layer) -> list[int]:
    """Copy the reviewed slices of the mask the run kept (their voxels and marks) into its new mask ``layer`` (a
    volume with no reviewed slice yet), and say so. Returns the slices carried ([] when nothing was)."""
    if layer not in viewer.layers or layer.ndim != 3 or layer.metadata.get(REVIEWED_KEY):
        return []
    older = kept_sibling(viewer, layer)
    n = layer.data.shape[0]
    rev = sorted({int(z) for z in (older.metadata.get(REVIEWED_KEY) or []) if 0 <= int(z) < n}) if older else []
    if not rev:
        return []
    data = np.array(layer.data)
    source = np.asarray(older.data)
    data[rev] = source[rev].astype(data.dtype, copy=False)
    layer.data = data
    layer.metadata[REVIEWED_KEY] = rev
    if older.metadata.get("class_names") and not layer.metadata.get("class_names"):
        layer.metadata["class_names"] = list(older.metadata["class_names"])
    # (the layer names quoted, the slices named: "reviewed in vol mask (1-2,5)" read like the layer "vol mask (2)")
    notify_info(f"'{layer.name}' holds the new prediction, except on the slices you reviewed in '{older.name}' "
                f"(slices {correct.format_slice_ranges(rev)}): their labels and reviewed marks were carried over, so "
                f"your corrections stay and Next suggested slice skips them. '{older.name}' is kept as it was (hidden).")
    return rev


def replace_loses(folder: str, case_id: str, source_name: str, shape, reviewed: list[int]) -> str | None:
    """Why *Replace the case* ``case_id`` in ``folder`` would lose reviewed labels (None when it would not): the case
    holds the same image (its source file and shape) with slices reviewed that this export does not mark reviewed."""
    from ..data.manifest import read_manifest

    try:
        manifest = read_manifest(Path(folder).expanduser())
    except Exception:  # (the export says what is wrong with the folder)
        return None
    case = next((c for c in (manifest or {}).get("cases", []) if c.get("case_id") == case_id), None)
    if case is None or case.get("source_name") != source_name or list(case.get("shape") or []) != list(shape):
        return None
    before = case.get("reviewed_slices")
    if before is None or len(shape) != 3:
        return None
    lost = sorted({int(z) for z in before} - {int(z) for z in reviewed})
    if not lost:
        return None
    return (f"Replacing {case_id} would lose slices {correct.format_slice_ranges(lost)}: {case_id} holds them as "
            "reviewed, and this mask does not mark them reviewed (they would be exported as ignore). Export it as a new case instead (untick Replace the case; fine-tuning takes both as one "
            "case, this export's labels first), or check those slices in this mask and mark them reviewed first.")
