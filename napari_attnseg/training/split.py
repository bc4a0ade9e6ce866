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
3. by default: several cases -> ``val_fraction`` of the cases (seeded) for validation; one case ->
   disjoint slabs along the first axis, the validation slab holding the last ``val_fraction`` of
   the *labelled* positions along it (so a sparsely annotated case validates on annotated slices).

Every split is checked: parts non-empty, no two parts overlap, validation holds labelled voxels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DatasetError

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
    how: str  # "split file", "regions", "by case", "slabs along axis 0"
    case_ids: list[str]
    shapes: list[tuple[int, ...]]

    def describe(self) -> str:
        def part(p: Part) -> str:
            whole = p.box == tuple((0, n) for n in self.shapes[p.case])
            return self.case_ids[p.case] + ("" if whole else f"[{format_box(p.box)}]")

        roles = [f"{name} {', '.join(part(p) for p in parts)}"
                 for name, parts in (("train", self.train), ("validation", self.val), ("test", self.test)) if parts]
        return f"{self.how}: " + "; ".join(roles)

    def as_json(self) -> dict:
        return {"how": self.how, **{role: [{"case": self.case_ids[p.case], "region": format_box(p.box)}
                                           for p in getattr(self, role)] for role in ROLES}}


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
               val_region: str | None = None, test_region: str | None = None, case: str | None = None) -> Split:
    """Build and check the split (see the module docstring). ``labels`` are the cases' label arrays."""
    shapes = [lab.shape for lab in labels]
    full = [tuple((0, n) for n in s) for s in shapes]
    if split_file:
        split = _from_file(split_file, shapes, case_ids)
    elif train_region or val_region or test_region:
        if case is not None:
            if case not in case_ids:
                raise DatasetError(f"Case {case!r} is not in the dataset (cases: {', '.join(case_ids)}).")
            ci = case_ids.index(case)
        elif len(labels) == 1:
            ci = 0
        else:
            raise DatasetError(f"Regions select parts of one case, but the dataset has {len(labels)} cases; name the "
                               "case (--case) or give a split file (--split).")
        split = _from_regions(ci, shapes[ci], train_region, val_region, test_region, case_ids)
    elif len(labels) > 1:
        n = len(labels)
        n_val = min(n - 1, max(1, int(round(n * val_fraction))))
        order = np.random.default_rng(seed).permutation(n).tolist()
        val_ids, train_ids = sorted(order[:n_val]), sorted(order[n_val:])
        split = Split([Part(i, full[i]) for i in train_ids], [Part(i, full[i]) for i in val_ids], [], "by case", case_ids, [])
    else:
        split = _default_slabs(labels[0], ignore, val_fraction, case_ids)
    split.shapes = list(shapes)
    _check(split, labels, ignore)
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


def _default_slabs(lab: np.ndarray, ignore, val_fraction: float, case_ids) -> Split:
    labelled = _labelled(lab, ignore)
    rows = np.flatnonzero(labelled.reshape(lab.shape[0], -1).any(1))
    if len(rows) < 2:
        raise DatasetError(f"Case {case_ids[0]} has labelled voxels at {len(rows)} position(s) along its first axis; "
                           "a one-case dataset needs at least two (one to train on, one to validate on). Label "
                           "another slice, or give --val-region and --train-region.")
    n_val = min(len(rows) - 1, max(1, int(round(len(rows) * val_fraction))))
    cut = int(rows[-n_val])
    rest = [(0, n) for n in lab.shape[1:]]
    train = [Part(0, ((0, cut), *rest))]
    val = [Part(0, ((cut, lab.shape[0]), *rest))]
    return Split(train, val, [], "slabs along axis 0", case_ids, [])


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


def _check(split: Split, labels, ignore) -> None:
    if not split.train or not split.val:
        raise DatasetError(f"The split has no {'training' if not split.train else 'validation'} part ({split.describe()}).")
    named = [(role, p) for role in ROLES for p in getattr(split, role)]
    for role, p in named:
        if p.size == 0:
            raise DatasetError(f"Empty {role} region ({split.describe()}).")
    for i, (ra, a) in enumerate(named):
        for rb, b in named[i + 1:]:
            if _overlap(a, b):
                raise DatasetError(f"The {ra} and {rb} parts overlap ({split.case_ids[a.case]} "
                                   f"[{format_box(a.box)}] and [{format_box(b.box)}]); they must be disjoint.")
    for role in ("train", "val"):
        if not any(_labelled(labels[p.case][p.slices], ignore).any() for p in getattr(split, role)):
            raise DatasetError(f"The {'training' if role == 'train' else 'validation'} part has no labelled voxels "
                               f"(everything there is 'ignore'): {split.describe()}.")
