"""Training / validation / test splits: by case, or by disjoint regions (array-index boxes) of cases.

A split is a list of :class:`Part` per role. Three ways to get one, in this order:

1. a split file (JSON; a path or the JSON text itself)::

       {"train": ["case_0001", {"case": "case_0002", "region": "0:40"}],
        "val":   [{"case": "case_0002", "region": "40:56"}],
        "test":  ["case_0003"]}

   An entry is a case id (the whole case), ``{"case": ID, "region": BOX}``, or for a one-case dataset
   just a ``BOX``.
2. ``train_region`` / ``val_region`` / ``test_region`` boxes (``"0:512,0:224"``; missing axes are
   whole; several training boxes joined by ``;``) on a one-case dataset (or the case named by
   ``case``). Without ``train_region`` the training part is the rest of the axis the validation and
   test boxes cut (they must then cut one axis only).
3. by default: several cases -> ``val_fraction`` of the cases (seeded) for validation, at least one of
   them with foreground, the frames of one time-lapse (``<case>_t000``..., or when ``case_ids`` is a
   :class:`~.split_movies.CaseIds`, by the movie the export recorded, else their source: a movie exported in two
   rounds) on one side (:mod:`.split_movies`);
   one case -> validation that can measure:

   - a 2D model on a volume (``slices=True``): held-out *slices* along the first axis, spread over
     the labelled slices: ``val_fraction`` of the slices that hold foreground (at least one, never
     all) and ``val_fraction`` of the labelled foreground-free slices (they measure false
     positives). With reviewed slices (the rest 'ignore') these are reviewed slices.
   - a 3D model: one slab along the first axis holding ``val_fraction`` of the labelled positions,
     placed (latest first) where it holds some but not all of the foreground slices.

   When no such validation exists (foreground on a single slice, say) the split falls back to the
   last slab and the trainer selects the checkpoint by the *training loss*; ``Split.criterion`` and
   ``Split.warnings`` say so, and so does ``describe()``.

Every split is checked: parts non-empty, no two parts overlap, validation holds labelled voxels.
A validation without labelled foreground (given by hand) is reported, and the checkpoint is then
chosen by the training loss, never by a Dice that cannot measure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from .split_movies import frames_note, movie_groups, split_by_movie, time_lapse

ROLES = ("train", "val", "test")


@dataclass(frozen=True)
class Part:
    """Case ``case`` (index into the dataset's cases), restricted to ``box`` (one (start, stop) per axis)."""

    case: int
    box: tuple[tuple[int, int], ...]

    @property
    def slices(self) -> tuple[slice, ...]:
        return tuple(slice(a, b) for a, b in self.box)

    @property
    def size(self) -> int:
        return int(np.prod([b - a for a, b in self.box]))


@dataclass
class Split:
    train: list[Part]
    val: list[Part]
    test: list[Part]
    how: str  # "split file", "regions", "by case", "slabs along axis 0", "held-out slices along axis 0"
    case_ids: list[str]
    shapes: list[tuple[int, ...]]
    criterion: str = "val_dice"  # how the checkpoint is chosen: "val_dice" or "train_loss" (no usable validation)
    warnings: list[str] = field(default_factory=list)
    validation: str = ""  # what the validation holds, e.g. "4 slices, 1 with foreground (1 012 voxels)"
    text: str = ""  # the parts as the user gave them, when they differ from the boxes (a case turned: .orientation)

    def describe(self) -> str:
        text = self.parts_text()
        if self.validation:
            text += f" (validation: {self.validation})"
        if self.criterion != "val_dice":
            text += "; checkpoint chosen by the training loss"
        return text

    def parts_text(self) -> str:
        if self.text:
            return self.text
        if self.how.startswith("held-out slices") and len({p.case for p in self.train + self.val}) == 1:
            case = self.case_ids[self.val[0].case]
            held = [i for p in self.val for i in range(*p.box[0])]
            return f"{self.how}: validation {case} slices {_ranges(held)}; train {case} the other slices"

        def part(p: Part) -> str:
            whole = p.box == tuple((0, n) for n in self.shapes[p.case])
            return self.case_ids[p.case] + ("" if whole else f"[{format_box(p.box)}]")

        roles = [f"{name} {', '.join(part(p) for p in parts)}"
                 for name, parts in (("train", self.train), ("validation", self.val), ("test", self.test)) if parts]
        return f"{self.how}: " + "; ".join(roles)

    def as_json(self) -> dict:
        return {"how": self.how, **{role: [{"case": self.case_ids[p.case], "region": format_box(p.box)}
                                           for p in getattr(self, role)] for role in ROLES}}


def _ranges(indices) -> str:
    return ",".join(f"{a}" if b == a + 1 else f"{a}-{b - 1}" for a, b in _runs(indices))


def format_box(box) -> str:
    return ",".join(f"{a}:{b}" for a, b in box)


def parse_box(text: str, shape: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """``"0:512,0:224"`` on an array of ``shape`` -> ((0, 512), (0, 224)); missing axes are whole,
    negative indices count from the end, bounds are clipped to the array."""
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) > len(shape):
        raise DatasetError(f"Region {text!r} has {len(parts)} axes but the data has {len(shape)} ({shape}).")
    box = []
    for p, n in zip(parts, shape):
        lo, sep, hi = p.partition(":")
        try:
            if not sep:  # a single index
                i = int(lo)
                lo_i, hi_i = i, i + 1 if i != -1 else n
            else:
                lo_i = int(lo) if lo.strip() else 0
                hi_i = int(hi) if hi.strip() else n
        except ValueError:
            raise DatasetError(f"Region {text!r}: {p!r} is not 'start:stop' (array indices).") from None
        start, stop, _ = slice(lo_i, hi_i).indices(n)
        box.append((start, max(start, stop)))
    box += [(0, n) for n in shape[len(parts):]]
    return tuple(box)


def _overlap(a: Part, b: Part) -> bool:
    return a.case == b.case and all(max(x0, y0) < min(x1, y1) for (x0, x1), (y0, y1) in zip(a.box, b.box))


def _labelled(labels: np.ndarray, ignore: int | None) -> np.ndarray:
    return np.ones(labels.shape, bool) if ignore is None else labels != ignore


def make_split(labels: list[np.ndarray], case_ids: list[str], *, ignore: int | None, val_fraction: float = 0.2,
               seed: int = 0, split_file: str | None = None, train_region: str | None = None,
               val_region: str | None = None, test_region: str | None = None, case: str | None = None,
               slices: bool = False, val_slices: list[int] | None = None, seen: list[int] | None = None) -> Split:
    """Build and check the split (see the module docstring). ``labels`` are the cases' label arrays;
    ``slices``: the model is 2D on volumes, so one case may validate on single held-out slices; ``seen``:
    one case, the slices a start model already trained on (a round after a fine-tuning): the default
    validation prefers reviewed slices it never saw."""
    shapes = [lab.shape for lab in labels]
    full = [tuple((0, n) for n in s) for s in shapes]
    if split_file:
        split = _from_file(split_file, shapes, case_ids)
    elif val_slices:
        ci = _one_case(case, case_ids, "Validation slices")
        split = _given_slices(ci, shapes[ci], val_slices, case_ids)
    elif train_region or val_region or test_region:
        ci = _one_case(case, case_ids, "Regions")
        split = _from_regions(ci, shapes[ci], train_region, val_region, test_region, case_ids)
    elif len(labels) > 1 and (groups := movie_groups(case_ids, shapes)) is not None:  # a movie's frames: one side
        has_fg = [bool(((lab > 0) & _labelled(lab, ignore)).any()) for lab in labels]
        train_ids, val_ids, said = split_by_movie(labels, case_ids, groups, has_fg, val_fraction, seed)
        split = Split([Part(i, full[i]) for i in train_ids], [Part(i, full[i]) for i in val_ids], [], "by case",
                      case_ids, [], warnings=said)
    elif len(labels) > 1:
        n = len(labels)
        n_val = min(n - 1, max(1, int(round(n * val_fraction))))
        order = np.random.default_rng(seed).permutation(n).tolist()
        has_fg = [bool(((lab > 0) & _labelled(lab, ignore)).any()) for lab in labels]
        if not any(has_fg[i] for i in order[:n_val]) and sum(has_fg) >= 2:
            # the drawn validation cases hold no foreground: swap in the first (seeded) case that does
            j = next(k for k in range(n_val, n) if has_fg[order[k]])
            order[n_val - 1], order[j] = order[j], order[n_val - 1]
        val_ids, train_ids = sorted(order[:n_val]), sorted(order[n_val:])
        split = Split([Part(i, full[i]) for i in train_ids], [Part(i, full[i]) for i in val_ids], [], "by case", case_ids, [])
    elif slices and labels[0].ndim == 3 and not time_lapse(case_ids, 0):
        split = _default_slices(labels[0], ignore, val_fraction, case_ids, seen)
    else:  # (a time-lapse case: a block of consecutive frames, as a movie exported one 2D case per frame)
        split = _default_slabs(labels[0], ignore, val_fraction, case_ids, seen)
        if labels[0].ndim == 3 and time_lapse(case_ids, 0):
            split.warnings.append(frames_note(case_ids[0], split.val[0].box[0], labels[0].shape[0]))
    split.shapes = list(shapes)
    from .split_checks import (  # (they use this module's helpers)
        check_given_slices,
        check_split,
        describe_validation,
    )

    if val_slices and not split_file:
        check_given_slices(split, labels[split.val[0].case], val_slices, ignore, slices)
    check_split(split, labels, ignore)
    describe_validation(split, labels, ignore)
    return split


def _one_case(case: str | None, case_ids: list[str], what: str) -> int:
    if case is not None:
        if case not in case_ids:
            raise DatasetError(f"Case {case!r} is not in the dataset (cases: {', '.join(case_ids)}).")
        return case_ids.index(case)
    if len(case_ids) == 1:
        return 0
    raise DatasetError(f"{what} select parts of one case, but the dataset has {len(case_ids)} cases; name the "
                       "case (--case) or give a split file (--split).")


def _given_slices(ci: int, shape: tuple[int, ...], held: list[int], case_ids) -> Split:
    """Validation on the given positions along the first axis (any set, e.g. reviewed slices 20 and 33),
    training on every other position."""
    bad = [i for i in held if not 0 <= i < shape[0]]
    if bad:
        raise DatasetError(f"Validation slices {_ranges(bad)} are outside case {case_ids[ci]} (0-{shape[0] - 1}).")
    rest = [(0, n) for n in shape[1:]]
    held_set = set(held)
    train_rows = [i for i in range(shape[0]) if i not in held_set]
    if not train_rows:
        raise DatasetError("Every slice is a validation slice; leave some to train on.")
    return Split([Part(ci, ((a, b), *rest)) for a, b in _runs(train_rows)],
                 [Part(ci, ((a, b), *rest)) for a, b in _runs(held_set)], [], "held-out slices along axis 0",
                 case_ids, [])


def _rows(lab: np.ndarray, ignore, case_id: str) -> tuple[np.ndarray, np.ndarray]:
    """Positions along axis 0 with labelled voxels (at least two: one to train on, one to validate on),
    and those among them with labelled foreground."""
    rows = _labelled_rows(lab, ignore)
    if len(rows) < 2:  # (the napari panel shows this too: no command-line flags)
        raise DatasetError(f"Case {case_id} has labelled voxels at {len(rows)} position(s) along its first axis; "
                           "a one-case dataset needs at least two (one to train on, one to validate on): mark "
                           "another slice reviewed (R) and export again, or give validation and training regions.")
    fg = np.flatnonzero(((lab > 0) & _labelled(lab, ignore)).reshape(lab.shape[0], -1).any(1))
    return rows, fg


def _labelled_rows(lab: np.ndarray, ignore) -> np.ndarray:
    return np.flatnonzero(_labelled(lab, ignore).reshape(lab.shape[0], -1).any(1))


def _spread(positions: np.ndarray, n: int) -> list[int]:
    """``n`` of ``positions`` spread evenly over them, away from the ends (the middle one for n=1)."""
    if n <= 0:
        return []
    k = len(positions)
    return sorted({int(positions[min(k - 1, int((j + 0.5) * k / n))]) for j in range(n)})


def _runs(indices) -> list[tuple[int, int]]:
    """Sorted indices -> maximal (start, stop) runs."""
    out: list[tuple[int, int]] = []
    for i in sorted(indices):
        if out and out[-1][1] == i:
            out[-1] = (out[-1][0], i + 1)
        else:
            out.append((i, i + 1))
    return out


def _default_slices(lab: np.ndarray, ignore, val_fraction: float, case_ids, seen: list[int] | None = None) -> Split:
    rows, fg = _rows(lab, ignore, case_ids[0])
    if len(fg) < 2:  # one foreground slice: it must train; validation cannot measure the foreground
        return _default_slabs(lab, ignore, val_fraction, case_ids)
    bg = np.setdiff1d(rows, fg)
    n_fg = min(len(fg) - 1, max(1, int(round(len(fg) * val_fraction))))
    n_bg = min(len(bg) - 1, max(1, int(round(len(bg) * val_fraction)))) if len(bg) >= 2 else 0
    new_fg, new_bg = np.setdiff1d(fg, seen or []), np.setdiff1d(bg, seen or [])
    if seen and len(new_fg):  # a round after a fine-tuning: validate where the start model has not trained
        fg, n_fg = new_fg, min(n_fg, len(new_fg))
        bg, n_bg = (new_bg, min(n_bg, len(new_bg))) if len(new_bg) and n_bg else (bg, n_bg)
    held = sorted(set(_spread(fg, n_fg)) | set(_spread(bg, n_bg)))
    split = _given_slices(0, lab.shape, held, case_ids)
    if seen:
        split.warnings.append("validation on reviewed slices the start model never trained on" if len(new_fg) else
                              f"the start model trained on every reviewed slice with foreground ({_ranges(fg.tolist())}): "
                              "its validation Dice before fine-tuning is optimistic, so it is hard to beat; correct "
                              "a new foreground slice for a fair comparison")
    if n_bg == 0:
        split.warnings.append("no foreground-free labelled slice could be held out: the validation does not "
                              "measure false positives on empty slices")
    return split


def _from_regions(ci, shape, train_region, val_region, test_region, case_ids) -> Split:
    if not val_region:
        if train_region:
            raise DatasetError("--train-region needs --val-region too (the validation part must be given explicitly).")
        raise DatasetError("--test-region needs --val-region too.")
    val = [Part(ci, parse_box(val_region, shape))]
    test = [Part(ci, parse_box(test_region, shape))] if test_region else []
    if train_region:
        train = [Part(ci, parse_box(t, shape)) for t in train_region.split(";") if t.strip()]
    else:  # the rest of the one axis that the validation/test boxes cut
        cut = {ax for p in val + test for ax, (a, b) in enumerate(p.box) if (a, b) != (0, shape[ax])}
        if len(cut) != 1:
            raise DatasetError("Without --train-region the validation/test regions must be slabs along one axis "
                               f"(they cut axes {sorted(cut)}); give --train-region as well.")
        ax = cut.pop()
        taken = sorted(p.box[ax] for p in val + test)
        train, pos = [], 0
        for a, b in [*taken, (shape[ax], shape[ax])]:
            if a > pos:
                box = [(0, n) for n in shape]
                box[ax] = (pos, a)
                train.append(Part(ci, tuple(box)))
            pos = max(pos, b)
    return Split(train, val, test, "regions", case_ids, [])


def _default_slabs(lab: np.ndarray, ignore, val_fraction: float, case_ids, seen: list[int] | None = None) -> Split:
    rows, fg = _rows(lab, ignore, case_ids[0])
    n_val = min(len(rows) - 1, max(1, int(round(len(rows) * val_fraction))))
    rest = [(0, n) for n in lab.shape[1:]]
    fg_set = set(fg.tolist())
    # candidate slabs: n_val consecutive labelled positions; the latest that holds some but not all of
    # the foreground positions (the last slab when it does: the behaviour of earlier versions)
    # (none: the latest slab without foreground, so the foreground at least trains)
    windows = []
    for start in range(len(rows) - n_val, -1, -1):
        a = int(rows[start]) if start else 0
        b = int(rows[start + n_val]) if start + n_val < len(rows) else lab.shape[0]
        windows.append((a, b, sum(1 for i in fg_set if a <= i < b)))
    good = [w for w in windows if 0 < w[2] < len(fg_set)] or [w for w in windows if w[2] == 0] or windows
    said = []
    if seen:  # a round after a fine-tuning (a 3D model): validate where the start model has not trained, as 2D does
        new_fg = set(fg_set) - set(seen)
        fresh = [w for w in good if any(w[0] <= i < w[1] for i in new_fg)]
        if fresh:  # the slab with the largest share of never-trained reviewed slices (the latest of equals)
            held = [[int(i) for i in rows if a <= i < b] for a, b, _ in fresh]
            share = [sum(i not in seen for i in h) / max(1, len(h)) for h in held]
            good = [fresh[int(np.argmax(share))]]
            said.append("validation on a slab holding reviewed slices the start model never trained on")
        elif not new_fg:
            said.append(f"the start model trained on every reviewed slice with foreground ({_ranges(sorted(fg_set))}): "
                        "its validation Dice before fine-tuning is optimistic, so it is hard to beat; correct a new "
                        "foreground slice for a fair comparison")
    a, b, _ = good[0]
    if a == 0:  # a slab at the start: train on what follows it
        train = [Part(0, ((b, lab.shape[0]), *rest))]
    elif b == lab.shape[0]:
        train = [Part(0, ((0, a), *rest))]
    else:
        train = [Part(0, ((0, a), *rest)), Part(0, ((b, lab.shape[0]), *rest))]
    split = Split(train, [Part(0, ((a, b), *rest))], [], "slabs along axis 0", case_ids, [], warnings=said)
    return split


def _from_file(spec: str, shapes, case_ids) -> Split:
    text = spec
    if not spec.lstrip().startswith("{"):
        path = Path(spec)
        if not path.is_file():
            raise DatasetError(f"Split file {spec} does not exist.")
        text = path.read_text()
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DatasetError(f"Split {spec!r} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not data.get("train") or not data.get("val"):
        raise DatasetError('A split file needs "train" and "val" lists (and optionally "test").')
    unknown = set(data) - set(ROLES) - {"how"}
    if unknown:
        raise DatasetError(f"Split file: unknown keys {sorted(unknown)}; use train, val, test.")
    roles = {}
    for role in ROLES:
        entries = data.get(role) or []
        if isinstance(entries, (str, dict)):
            entries = [entries]
        parts = []
        for e in entries:
            if isinstance(e, dict):
                cid, region = e.get("case"), e.get("region")
            elif e in case_ids:
                cid, region = e, None
            elif len(case_ids) == 1:
                cid, region = case_ids[0], e
            else:
                raise DatasetError(f"Split file: {e!r} is not a case id (cases: {', '.join(case_ids)}).")
            if cid not in case_ids:
                raise DatasetError(f"Split file: case {cid!r} is not in the dataset (cases: {', '.join(case_ids)}).")
            ci = case_ids.index(cid)
            parts.append(Part(ci, parse_box(region, shapes[ci]) if region else tuple((0, n) for n in shapes[ci])))
        roles[role] = parts
    return Split(roles["train"], roles["val"], roles["test"], "split file", case_ids, [])
