"""Fine-tuning in the start model's orientation.

A model card may say which way its training volumes' array axes ran (``orientation``, e.g. ``S,P,L``: axial
slices along the first axis); inference turns a volume stored otherwise to it and the results back, without
resampling (:mod:`..inference.orient`). Fine-tuning does the same with each case of the dataset (image and
labels, hence the reviewed / 'ignore' voxels; the spacing follows its axes) before anything else, so a 2D
model learnt on axial slices keeps training on axial slices (a sagittal-stored CT fine-tuned as stored gave a
sagittal model: its card said ``L,P,S``, tile ``[128, 30]``) and its card keeps the start's orientation.
Training from scratch (no start model) keeps the stored orientation.

Slice numbers and regions the user gives (``--val-slices``, ``--train-region``/``--val-region``/``--test-region``,
a split file) are those of the stored case (what napari showed). The split is built on the stored labels and its
boxes are then moved onto the turned arrays (:func:`turn_box`: the same voxels); the split text keeps the stored
numbers. Everything the run derives afterwards (the default held-out slices, ``trained_rows`` and the image's
digest in the card, the hard and far negatives) is in the model's orientation, which is how the next round, from
the fine-tuned model (the same orientation), turns the case again.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..data.orientation import Reorientation, check_codes, reorientation


def start_orientation(start_model: str | None) -> tuple[str, ...] | None:
    """The orientation on the start model's card, or None (from scratch, none on the card, or a card that cannot
    be read: loading the model reports that)."""
    if not start_model:
        return None
    from ..checkpoint import read_card, resolve_model_path

    try:
        codes = read_card(resolve_model_path(start_model)).orientation
        return check_codes(codes, "the start model's orientation") if codes else None
    except Exception:  # noqa: BLE001 - said properly when the model itself is loaded
        return None


def turn_cases(case_ids: list[str], codes: list[tuple[str, ...] | None], loaded: Iterable[tuple],
               target: tuple[str, ...] | None) -> tuple[list[tuple], list[Reorientation | None], list[str]]:
    """Each case's (image (C, *spatial), labels, spacing) turned to ``target`` when its stored orientation
    (``codes``) differs; the turns (None: as stored) and the note saying which were turned. ``loaded`` may be a
    generator: one stored case at a time is held besides the turned ones."""
    out, turns, turned = [], [], {}
    for cid, source, (img, lab, spacing) in zip(case_ids, codes, loaded):
        turn = reorientation(source, target) if target and lab.ndim == 3 else None
        turns.append(turn)
        if turn is None:
            out.append((img, lab, spacing))
            continue
        spacing = turn.spacing(spacing) if spacing and len(spacing) == 3 else spacing
        out.append((turn.apply(img), turn.apply(lab), spacing))
        turned.setdefault(turn.describe(), []).append(cid)
    notes = [f"case{'s' if len(ids) > 1 else ''} {', '.join(ids)} turned {how} for the model (the start model's "
             "orientation, as inference turns them; not resampled): slice numbers and regions given for the run "
             "are those of the stored case" for how, ids in turned.items()]
    return out, turns, notes


def turn_box(box: tuple[tuple[int, int], ...], turn: Reorientation,
             stored_shape: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """The (start, stop) box of a stored array's voxels as a box of the turned array (the same voxels)."""
    out = []
    for axis, p in enumerate(turn.perm):
        a, b = box[p]
        n = stored_shape[p]
        out.append((n - b, n - a) if turn.flip[axis] else (a, b))
    return tuple(out)


def split_given_in_stored(make_split, labels: list[np.ndarray], turns: list[Reorientation | None],
                          given: bool, **kwargs):
    """:func:`.split.make_split` on the turned ``labels``; when parts were given by the user (slices, regions,
    a split file) and a case was turned, built on the stored labels and moved onto the turned arrays. The split
    text says which numbering it uses (the stored file's, or the turned case's)."""
    if not any(turns):
        return make_split(labels, **kwargs)
    how = ", ".join(sorted({t.describe() for t in turns if t}))
    if not given:  # chosen on the turned arrays: its slice numbers are the model's, not the stored file's
        split = make_split(labels, **kwargs)
        if split.how != "by case":  # (whole cases have no numbers to tell apart)
            split.text = f"{split.parts_text()} (of the case turned {how} for the model)"
        return split
    stored = [lab if t is None else t.undo(lab) for lab, t in zip(labels, turns)]
    split = make_split(stored, **{**kwargs, "seen": None})
    text = split.parts_text()
    for role in ("train", "val", "test"):
        parts = getattr(split, role)
        setattr(split, role, [p if turns[p.case] is None else
                              type(p)(p.case, turn_box(p.box, turns[p.case], stored[p.case].shape)) for p in parts])
    split.shapes = [lab.shape for lab in labels]
    split.text = f"{text} (of the stored case; turned {how} for the model)"
    return split
