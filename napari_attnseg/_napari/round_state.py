"""What a clinician's reviewed work keeps from one round of the correction loop to the next, in one session.

- :func:`carry_reviewed`: a re-run (e.g. with round 1's fine-tuned model) whose mask went to ``<image> mask (2)``
  because the clinician kept their edited mask (*No* to "Overwrite edited mask?"): the new mask started with no
  reviewed slice, so *Next suggested slice* sent them back to slices they had reviewed in round 1, and an export of it
  (with *Replace the case*, as the export's own warning advises) dropped round 1's corrections from the dataset. The
  reviewed slices of the kept mask (its voxels and marks) are copied into the new one; the kept mask stays as it was.
- :func:`carry_names` (and :meth:`~.result_layers.ResultLayers._show_one` for a mask a run updates in place): the
  class names a person gave the mask stay with the run's new mask, and that is said (they were lost without a word).
- :func:`replace_loses`: *Replace the case* with a mask that does not mark reviewed every slice the case holds as
  reviewed (the same image) is refused: the clinician's reviewed labels of that case would be lost.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from napari.layers import Image, Labels

from .. import correct
from ..data.export_plan import FRAME_CASE
from ._common import find_docked, is_deleted, notify_info, notify_warning
from .correct_stats import BASELINE_KEY

REVIEWED_KEY = "reviewed_slices"
NUMBERED = re.compile(r"^(?P<base>.+) \((?P<n>\d+)\)$")  # a run's next mask: <image> mask (n)


def kept_sibling(viewer, layer):
    """The mask a run kept when it put its prediction in ``layer`` (``<image> mask (n)``: ``<image> mask (n-1)``,
    or ``<image> mask`` for n = 2), when it is open, of the same image and grid; else None."""
    found = NUMBERED.match(layer.name)
    if "attnseg_prediction" not in layer.metadata:  # (a Segment run's mask; not one opened)
        return None
    if found is None:  # a first run's '<image> mask' beside a mask of other name reopened (yesterday's 'lung1 seg')
        return _reviewed_beside(viewer, layer)
    n = int(found["n"])
    name = found["base"] if n == 2 else f"{found['base']} ({n - 1})"
    if name not in viewer.layers or not isinstance(older := viewer.layers[name], Labels):
        return None
    uids = {older.metadata.get("attnseg_source_uid"), layer.metadata.get("attnseg_source_uid")} - {None}
    if len(uids) > 1 or older.data.shape != layer.data.shape:  # (another image's mask, or another grid)
        return None
    return older


def _reviewed_beside(viewer, layer):
    """The one other mask on ``layer``'s grid (shape and placement) holding reviewed slices, of no other image: day 2's
    mask reopened from a file not named '<image> mask' (Save mask's '-2' proposal, a name typed), then a run. The
    run's mask went beside it with 'Reviewed slices: none' and the Correct tab took it: Next suggested slice no
    longer skipped them, and its export dropped yesterday's corrections. None when none or several."""
    uid = layer.metadata.get("attnseg_source_uid")
    # a mask reopened from a file names no image: it is this image's only while no other image open lies on this grid
    # (two scans of one shape and spacing: patient A's reopened mask went into patient B's run, and was hidden)
    alone = not any(_on_grid(im, layer) for im in viewer.layers if isinstance(im, Image) and im.unique_id != uid
                    and not im.metadata.get("attnseg"))
    found = [ly for ly in viewer.layers if isinstance(ly, Labels) and ly is not layer and ly.metadata.get(REVIEWED_KEY)
             and _on_grid(ly, layer) and (ly.metadata.get("attnseg_source_uid") == uid
                                          or (ly.metadata.get("attnseg_source_uid") is None and alone))]
    return found[0] if len(found) == 1 else None


def _on_grid(other, layer) -> bool:
    """Whether the layer ``other`` (a mask, or an image: its channels or RGB left out) lies on ``layer``'s grid."""
    n = layer.ndim
    shape = tuple(other.data.shape[:-1] if getattr(other, "rgb", False) else other.data.shape)
    return (shape[-n:] == tuple(layer.data.shape) and len(other.scale) >= n
            and np.allclose(other.scale[-n:], layer.scale) and np.allclose(other.translate[-n:], layer.translate))


def own_names(layer) -> list[str] | None:
    """The class names a person gave ``layer`` (typed in the Correct panel, or the file's it was opened from): its
    ``class_names`` unless they are the classes of the model whose run made it (its ``class`` feature)."""
    names = [str(n) for n in layer.metadata.get("class_names") or []]
    made = "attnseg" in layer.metadata and "class" in getattr(layer, "features", {})
    model = [str(c) for c in layer.features["class"]] if made else None
    return names if names and names != model else None


def say_names_kept(layer, own: list[str], given: str | None = None) -> None:
    """Say that ``layer``, a run's new mask, keeps the class names ``own`` a person gave it (or the mask ``given``),
    naming the classes of the model that made it."""
    model = [str(c) for c in layer.features["class"]] if "class" in getattr(layer, "features", {}) else []
    notify_warning(f"'{layer.name}' keeps the class names you gave {'it' if given is None else repr(given)} "
                   f"({', '.join(own)}) for its export and Save mask; the model that made it predicts "
                   f"{', '.join(model) or 'other classes'}. If its label values are the model's classes, type their "
                   "names in Class names (Export for fine-tuning).")


def carry_names(viewer, older, layer) -> bool:
    """The class names typed for the kept mask ``older`` go with its run's new mask ``layer`` too (they were lost
    without a word: the Class names field showed the model's, and the next export named the labels with them), as
    they stay on a mask a run updates in place; said, with the model's classes. Returns whether names were carried."""
    own = own_names(older)
    if own is None or own == [str(n) for n in layer.metadata.get("class_names") or []]:
        return False
    layer.metadata["class_names"] = list(own)
    from .correct_widget import CorrectWidget

    panel = find_docked(viewer, CorrectWidget)
    if panel is not None and panel._watched is layer:  # (the field showed the model's names: it shows these)
        panel._take_names(layer)
    say_names_kept(layer, own, older.name)
    return True


def carry_reviewed(viewer, layer) -> list[int]:
    """Copy the reviewed slices of the mask the run kept (their voxels and marks) into its new mask ``layer`` (a
    volume with no reviewed slice yet), and its class names (:func:`carry_names`), and say so. Returns the slices
    carried ([] when none were). The edit statistics of ``layer`` count edits from the carried labels there."""
    if layer not in viewer.layers or (older := kept_sibling(viewer, layer)) is None:
        return []
    carry_names(viewer, older, layer)
    if layer.ndim != 3 or layer.metadata.get(REVIEWED_KEY):
        return []
    n = layer.data.shape[0]
    rev = sorted({int(z) for z in (older.metadata.get(REVIEWED_KEY) or []) if 0 <= int(z) < n})
    if not rev:
        return []
    data = np.array(layer.data)
    source = np.asarray(older.data)
    data[rev] = source[rev].astype(data.dtype, copy=False)
    prediction = layer.metadata.get("attnseg_prediction")
    if prediction is not None and np.shape(prediction) == data.shape:  # (not edits of this round: not counted)
        baseline = np.array(prediction, copy=True)
        baseline[rev] = data[rev]
        layer.metadata[BASELINE_KEY] = (prediction, baseline)
    layer.metadata[REVIEWED_KEY] = rev
    layer.data = data
    older.visible = False  # (a reopened mask beside the run's: a run hides only the '<image> mask' it kept)
    # (the layer names quoted, the slices named: "reviewed in vol mask (1-2,5)" read like the layer "vol mask (2)")
    notify_info(f"'{layer.name}' holds the new prediction, except on the slices you reviewed in '{older.name}' "
                f"(slices {correct.format_slice_ranges(rev)}): their labels and reviewed marks were carried over, so "
                f"your corrections stay and Next suggested slice skips them (the edit statistics count only what you "
                f"change there now). '{older.name}' is kept as it was (hidden).")
    return rev


def replace_loses(folder: str, case_id: str, source_name: str, shape, reviewed: list[int],
                  time_lapse: bool = False, replace: bool = True) -> str | None:
    """Why *Replace the case* ``case_id`` in ``folder`` would lose reviewed labels (None when it would not): the case
    holds the same image (its source file and shape) with slices reviewed that this export does not mark reviewed.
    ``time_lapse``: the mask is a time-lapse's, exported as one 2D case per reviewed frame (``<case_id>_t000``...):
    frames exported before that this mask does not mark reviewed would stay with their earlier labels beside the new
    ones (``replace``: *Replace the case* ticked), and a frame's own id given as ``case_id`` would make new cases
    ``<frame>_t000``... (both refused, said)."""
    from ..data.manifest import read_manifest

    try:
        manifest = read_manifest(Path(folder).expanduser())
    except Exception:  # (the export says what is wrong with the folder)
        return None
    cases = (manifest or {}).get("cases", [])
    if time_lapse:
        return _frames_lost(cases, case_id, source_name, shape, reviewed, replace)
    case = next((c for c in cases if c.get("case_id") == case_id), None)
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




def _frames_lost(cases: list[dict], case_id: str, source_name: str, shape, reviewed: list[int],
                 replace: bool) -> str | None:
    """:func:`replace_loses` for a time-lapse: its frames' cases (``<case_id>_tNNN``, source ``<source> (frame t)``,
    one frame's shape) exported before and not marked reviewed now."""
    ids = {str(c.get("case_id")) for c in cases}
    if (typed := FRAME_CASE.match(case_id)) and case_id in ids:
        base = typed["base"]
        return (f"{case_id} is a frame of the time-lapse {base}, exported as one 2D case per frame: exporting the "
                f"movie under {case_id} would add new cases {case_id}_t000... beside it. Type {base} as the case id to "
                "replace the movie's frames (with Replace the case), or leave the case id empty for a new case.")
    if not replace:  # (frames of an earlier export are added to, not replaced)
        return None
    frames = {}
    for c in cases:
        found = FRAME_CASE.match(str(c.get("case_id")))
        if (found and found["base"] == case_id and c.get("source_name") == f"{source_name} (frame {int(found['t'])})"
                and list(c.get("shape") or []) == list(shape[1:])):
            frames[int(found["t"])] = str(c["case_id"])
    lost = sorted(set(frames) - {int(t) for t in reviewed})
    if not lost:
        return None
    names = ", ".join(frames[t] for t in lost[:3]) + (", ..." if len(lost) > 3 else "")
    return (f"Replacing {case_id} would not replace frames {correct.format_slice_ranges(lost)} ({names}): they were "
            "exported as reviewed frames of this time-lapse, and this mask does not mark them reviewed, so they would "
            "stay in the dataset with their earlier labels beside this export's frames. Mark them reviewed (R on each "
            "frame) if this mask's labels there are checked, or export as a new case (untick Replace the case).")


def offer_marks_back(panel, layer, before: list[int]) -> None:
    """Clear or Mark all changed the reviewed marks of ``layer`` in one click (which slices were checked before was
    gone for good: napari's Ctrl+Z undoes voxels, not marks; audit): said, with *Undo* to put the marks
    ``before`` back while nothing changed them since."""
    import weakref

    from napari.utils.notifications import Notification, notification_manager

    after, name, ref = list(layer.metadata.get(REVIEWED_KEY) or []), layer.name, weakref.ref(layer)

    def undo(notification=None) -> None:  # (a weak reference: a closed case's mask is not kept in memory by it)
        if (layer := ref()) is None:
            return notify_info(f"{name} is no longer open; its marks were not changed.")
        if list(layer.metadata.get(REVIEWED_KEY) or []) != after:
            notify_info(f"{layer.name}: its reviewed marks were changed since; they were left as they are.")
            return
        layer.metadata[REVIEWED_KEY] = list(before)
        if not is_deleted(panel):  # (its dock closed meanwhile)
            panel._update_info()

    panel._marks_back = undo  # (the last one, for a test)
    now = f"slices {correct.format_slice_ranges(after)}" if after else "no slice"
    notification_manager.dispatch(Notification(
        f"{layer.name}: {now} marked reviewed now (before: slices {correct.format_slice_ranges(before)}). Ctrl+Z does "
        "not bring marks back; Undo does.", actions=[("Undo", undo)]))
