"""Fine-tuning at the start model's spacing.

A model card may say at which voxel spacing the model learnt (``spacing``, array axis order: ``brain-mri-3d``
[2, 2, 2] mm; a 2D model its in-plane [0.57, 0.57]); inference resamples an image of another spacing to it and
the results back (:func:`..inference.resample.needs_resampling`, the same rule and tolerance here;
:func:`..inference.resample.zoom_image`, linear). Fine-tuning does the same with each case, after it was turned
to the start model's orientation (:mod:`.orientation`) and before anything else: the image linearly, the labels
by nearest neighbour, the 'ignore' value (unreviewed voxels) kept as a label value. Where a label voxel of the
coarser grid covers several stored voxels and the nearest is 'ignore', the nearest labelled one of them is taken,
so a reviewed slice between unreviewed ones is not dropped by a 1 mm -> 2 mm resampling. A 2D model over a volume
is resampled in-plane only (inference's ``slices`` mode). A case that inference would skull-strip (:mod:`.brainprep`)
is stripped at its stored spacing first and that image resampled the same way, as inference orders it: strip, then
resample. The card keeps the start's spacing, and the model's scale stays what it learnt. Training from scratch, a
start model without spacing or a dataset without one: as stored.

Slice numbers and regions the user gives (``--val-slices``, ``--train-region``..., a split file) are those of the
stored case: the split is built there (:func:`.orientation.split_given_in_stored`) and each box moved onto the
resampled grid by one edge mapping (stored edge ``x`` -> ``floor(x * n_new / n_old + 0.5)``), so the parts stay
disjoint; a held-out box that would vanish (one slice in a 2x coarser grid) keeps the one voxel that holds its
centre, taken from the training box beside it. Each part's labels are then resampled from that part's stored
labels only, so no validation label is learnt and the validation scores only the given slices' labels (the
image, interpolated linearly, mixes at most half a stored voxel across a boundary). Everything after the split
(held-out slices chosen by the run, ``trained_rows``, the image digest, the validation Dice) is on the resampled
grid, which the next round from the fine-tuned model (the same spacing) builds again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..inference.normalize import compute_stats
from ..inference.resample import needs_resampling, zoom_image


@dataclass(frozen=True)
class Resampling:
    """One case's resampling: stored (turned) grid -> the model's."""

    old_shape: tuple[int, ...]
    new_shape: tuple[int, ...]
    old_spacing: tuple[float, ...]
    new_spacing: tuple[float, ...]

    def edge(self, axis: int, x: int) -> int:
        """A voxel edge of the stored grid (0..n_old) on the resampled grid."""
        n_old, n_new = self.old_shape[axis], self.new_shape[axis]
        return min(n_new, max(0, math.floor(x * n_new / n_old + 0.5)))

    def box(self, box: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
        return tuple((self.edge(d, a), self.edge(d, b)) for d, (a, b) in enumerate(box))

    def describe(self) -> str:
        return f"from {_mm(self.old_spacing)} to {_mm(self.new_spacing)} mm"


def _mm(spacing) -> str:
    return "(" + ", ".join(f"{float(s):.3g}" for s in spacing) + ")"


def start_spacing(start_model: str | None) -> tuple[list[float], int] | None:
    """The spacing on the start model's card and the model's spatial dims, or None (from scratch, none on the
    card, or a card that cannot be read: loading the model reports that)."""
    if not start_model:
        return None
    from ..checkpoint import read_card, resolve_model_path

    try:
        card = read_card(resolve_model_path(start_model))
        return ([float(s) for s in card.spacing], card.spatial_dims) if card.spacing else None
    except Exception:  # noqa: BLE001 - said properly when the model itself is loaded
        return None


def resample_cases(case_ids: list[str], raw: list[tuple], target: tuple[list[float], int] | None,
                   ignore: int | None) -> tuple[list[tuple], list[Resampling | None], list[str]]:
    """Each case's (image (C, *spatial), labels, spacing) resampled to the start model's spacing when it differs
    (inference's rule); the resamplings (None: as stored) and the notes saying which were resampled."""
    if target is None:
        return raw, [None] * len(raw), []
    spacing_to, dims = target
    out, plans, said = [], [], {}
    for cid, (img, lab, spacing) in zip(case_ids, raw):
        factors = None
        if spacing and lab.ndim >= dims and len(spacing) == lab.ndim:
            factors = needs_resampling(spacing, spacing_to, "slices" if dims == 2 and lab.ndim == 3 else None)
        if factors is None:
            out.append((img, lab, spacing))
            plans.append(None)
            continue
        new_img = _zoom(img, factors)
        new_spacing = tuple(float(s) * f for s, f in zip(spacing, factors))  # = the model's on the resampled axes
        plan = Resampling(tuple(lab.shape), tuple(new_img.shape[1:]), tuple(float(s) for s in spacing), new_spacing)
        out.append((new_img, resample_labels(lab, plan, ignore), new_spacing))
        plans.append(plan)
        said.setdefault(plan.describe(), []).append(cid)
    notes = [f"case{'s' if len(ids) > 1 else ''} {', '.join(ids)} resampled {how}, the start model's spacing (as "
             "inference resamples them; image linear, labels nearest): slice numbers and regions given for the run "
             "are those of the stored case, the validation Dice is on the resampled grid" for how, ids in said.items()]
    return out, plans, notes


def _zoom(img: np.ndarray, factors) -> np.ndarray:
    """An image (C, *spatial) resampled linearly by ``factors`` (stored voxels per new one), not normalised."""
    return zoom_image(img, compute_stats(img, {"scheme": "none"}, True), factors, True)


def resample_image(img: np.ndarray, plan: Resampling) -> np.ndarray:
    """Another image (C, *stored grid) of a case, e.g. its skull-stripped one, resampled as :func:`resample_cases`
    resampled the case's (linear: ``zoom_image`` sizes the output by the factors, which these give exactly)."""
    return _zoom(img, [o / n for o, n in zip(plan.old_shape, plan.new_shape)])


def resample_mask(mask: np.ndarray, plan: Resampling) -> np.ndarray:
    """A boolean mask of the stored grid on the resampled grid as the labels are resampled (nearest neighbour):
    a voxel is in it when the stored voxel its label came from is."""
    return resample_labels(np.asarray(mask, np.uint8), plan, None) > 0


def resample_labels(lab: np.ndarray, plan: Resampling, ignore: int | None,
                    old_box=None, new_box=None) -> np.ndarray:
    """Labels (stored grid) on the resampled grid by nearest neighbour, or only ``new_box`` of it from the
    stored ``old_box`` alone. With an ``ignore`` value, a voxel whose nearest stored voxel is 'ignore' takes the
    nearest labelled stored voxel it covers (downsampling), so reviewed slices survive."""
    old_box = old_box or tuple((0, n) for n in lab.shape)
    new_box = new_box or tuple((0, n) for n in plan.new_shape)
    out = lab[tuple(slice(a, b) for a, b in old_box)]
    for axis, ((a, b), (lo, hi)) in enumerate(zip(old_box, new_box)):
        sources = _sources(plan.old_shape[axis], plan.new_shape[axis], a, b, lo, hi, ignore is not None)
        got = np.take(out, sources[0] - a, axis=axis)
        for more in sources[1:]:
            alt = np.take(out, more - a, axis=axis)
            fill = (got == ignore) & (alt != ignore)
            got[fill] = alt[fill]
        out = got
    return out


def _sources(n_old: int, n_new: int, a: int, b: int, lo: int, hi: int, fill: bool) -> list[np.ndarray]:
    """For new positions lo..hi-1 along an axis, the stored positions (within [a, b)) to take labels from: the
    nearest first, then (``fill``, downsampling) the others whose centres lie in the new voxel, nearest first."""
    r = n_old / n_new
    centre = (np.arange(lo, hi) + 0.5) * r  # in stored edge coordinates
    nearest = np.clip(np.floor(centre).astype(np.int64), a, b - 1)
    if not fill or r <= 1:
        return [nearest]
    reach = int(math.ceil(r))
    offsets = sorted(range(-reach, reach + 1), key=lambda d: (abs(d), d))[1:]
    out = [nearest]
    for d in offsets:
        j = nearest + d
        inside = (j + 0.5 >= centre - r / 2) & (j + 0.5 < centre + r / 2) & (j >= a) & (j < b)
        if inside.any():
            out.append(np.where(inside, j, nearest))
    return out


def fit_split(split, plans: list[Resampling | None], stored_labels: list[np.ndarray], labels: list[np.ndarray],
              ignore: int | None) -> list[np.ndarray]:
    """Moves the boxes of a split built on the stored (turned) grid onto the resampled one (see the module
    docstring: held-out boxes first and never empty, training boxes trimmed clear of them) and returns each
    case's labels with every part resampled from its own stored labels."""
    placed: list = []  # (role, old part, new part)
    for role in ("val", "test", "train"):
        kept = []
        for p in getattr(split, role):
            plan = plans[p.case]
            if plan is None:
                kept.append(p)
                continue
            new = [list(ab) for ab in plan.box(p.box)]
            if role != "train":  # a held-out box keeps at least the voxel holding its centre
                for d, (a, b) in enumerate(p.box):
                    if new[d][0] >= new[d][1] and b > a:
                        c = min(plan.new_shape[d] - 1, int((a + b) / 2 * plan.new_shape[d] / plan.old_shape[d]))
                        new[d] = [c, c + 1]
            for _, old_q, new_q in placed:
                if old_q.case == p.case and _overlaps(new, new_q.box):
                    d = next(d for d, ((a, b), (c, e)) in enumerate(zip(p.box, old_q.box)) if b <= c or e <= a)
                    if p.box[d][0] >= old_q.box[d][1]:  # after it along d: start after it
                        new[d][0] = max(new[d][0], new_q.box[d][1])
                    else:
                        new[d][1] = min(new[d][1], new_q.box[d][0])
            q = type(p)(p.case, tuple((a, max(a, b)) for a, b in new))
            if role == "train" and q.size == 0:
                continue  # a training box all taken by a held-out voxel
            placed.append((role, p, q))
            kept.append(q)
        setattr(split, role, kept)
    out = list(labels)
    for _, old_p, new_p in placed:
        plan = plans[old_p.case]
        if plan is not None:
            if out[old_p.case] is labels[old_p.case]:
                out[old_p.case] = labels[old_p.case].copy()
            out[old_p.case][new_p.slices] = resample_labels(stored_labels[old_p.case], plan, ignore,
                                                            old_p.box, new_p.box)
    split.shapes = [lab.shape for lab in out]
    return out


def _overlaps(a, b) -> bool:
    return all(max(x0, y0) < min(x1, y1) for (x0, x1), (y0, y1) in zip(a, b))


class ModelGrid:
    """The cases on the start model's grid, and the split onto it; a mixin of :class:`~.trainer.Trainer`."""

    def _to_model_spacing(self) -> None:
        """After the cases were turned and merged (``self.raw``): each resampled to the start model's spacing."""
        target = start_spacing(self.cfg.start_model)
        stored = self.raw
        self.raw, self._resamplings, said = resample_cases(self.case_ids, stored, target, self.ignore)
        # skull and scalp stripped at each case's own spacing, then resampled: inference's order (.brainprep)
        self._strip_as_inference(stored, self._resamplings)
        self._stored_labels = [lab for _, lab, _ in stored] if any(self._resamplings) else None
        self.notes.extend(said)
        self._model_spacing = target[0] if target and any(sp for _, _, sp in stored) else None

    def _split_for_model(self, make_split, given: bool, **kwargs):
        """:func:`.orientation.split_given_in_stored` on the model's grid: a split given in the stored case's
        numbers is built there and moved onto the resampled cases (:func:`fit_split`)."""
        from .orientation import split_given_in_stored
        from .split import _labelled
        from .split_checks import check_split

        labels = [lab for _, lab, _ in self.raw]
        plans = getattr(self, "_resamplings", None) or [None] * len(labels)
        if not any(plans):
            return split_given_in_stored(make_split, labels, self._turns, given, **kwargs)
        to = _mm(next(p.new_spacing for p in plans if p))
        if not given:  # chosen on the resampled arrays: its numbers are the model's grid's
            split = split_given_in_stored(make_split, labels, self._turns, False, **kwargs)
            if split.how != "by case":
                split.text = _with(split.text, f"{split.parts_text()} (of the case resampled to {to} mm for the model)", to)
                self._unshare_held_out(split, plans)
            return split
        split = split_given_in_stored(make_split, self._stored_labels, self._turns, True, **kwargs)
        text = split.parts_text()
        labels = fit_split(split, plans, self._stored_labels, labels, self.ignore)
        self.raw = [(img, lab, sp) for (img, _, sp), lab in zip(self.raw, labels)]
        self._stored_labels = None
        check_split(split, labels, self.ignore)
        fg = sum(int(((labels[p.case][p.slices] > 0) & _labelled(labels[p.case][p.slices], self.ignore)).sum())
                 for p in split.val)
        if not fg and split.criterion == "val_dice":
            split.criterion = "train_loss"
            split.warnings.append("the validation holds no labelled foreground once resampled to the start model's "
                                  "spacing; the checkpoint is chosen by the training loss instead")
        split.text = _with(split.text, f"{text} (of the stored case; resampled to {to} mm for the model)", to)
        return split


    def _unshare_held_out(self, split, plans: list[Resampling | None]) -> None:
        """A split the run chose on the resampled grid (one case, cut along axis 0): a training row whose labels
        came from a stored slice that a held-out row's labels came from too (brain1's reviewed slice 17, 6.5 mm,
        is rows 55-57 of the 2 mm grid: the slab put row 55 in training, 56-57 in validation) is set to 'ignore',
        so no held-out reviewed slice is trained on; the validation text names the stored slices it holds."""
        from .split import _labelled, _ranges
        from .split_checks import check_split, describe_validation

        case = split.val[0].case if split.val else None
        plan = None if case is None else plans[case]
        if plan is None or self.ignore is None or self._stored_labels is None or \
                any(p.case != case for p in split.train + split.val + split.test):
            return
        n_old, n_new = plan.old_shape[0], plan.new_shape[0]
        stored = _labelled(self._stored_labels[case], self.ignore).reshape(n_old, -1).any(1)
        img, lab, sp = self.raw[case]
        labelled = _labelled(lab, self.ignore).reshape(n_new, -1).any(1)
        sources = [{int(s[i]) for s in _sources(n_old, n_new, 0, n_old, 0, n_new, True)} & set(np.flatnonzero(stored))
                   for i in range(n_new)]
        held = {s for p in split.val + split.test for i in range(*p.box[0]) if labelled[i] for s in sources[i]}
        shared = [i for p in split.train for i in range(*p.box[0]) if labelled[i] and sources[i] & held]
        if shared:
            lab = lab.copy()
            lab[shared] = self.ignore
            self.raw[case] = (img, lab, sp)
            check_split(split, [lab for _, lab, _ in self.raw], self.ignore)
            split.warnings = [w for w in split.warnings if not w.startswith("the validation holds")]
            describe_validation(split, [lab for _, lab, _ in self.raw], self.ignore)
        stored_lab = self._stored_labels[case]
        fg = {s for s in held if ((stored_lab[s] > 0) & (stored_lab[s] != self.ignore)).any()}
        if len(fg) == 1 and not any(w.startswith("the validation holds") for w in split.warnings):
            split.warnings.append("the validation holds foreground on one reviewed slice only (rows of the model's "
                                  "grid resampled from it): its Dice is a weak guide")
        turn = (getattr(self, "_turns", None) or [None] * len(plans))[case]
        if held and (turn is None or turn.perm[0] == 0):  # the stored file's slice numbers (axis 0 may be reversed)
            named = sorted(n_old - 1 - s if turn is not None and turn.flip[0] else s for s in held)
            unit = "slice" if len(named) == 1 else "slices"
            split.validation = (f"reviewed {unit} {_ranges(named)} of the stored case; on the "
                                f"{_mm(plan.new_spacing)} mm grid {split.validation}")


def _with(turned: str, text: str, to: str) -> str:
    """The split text saying the case was resampled for the model (``text``), or turned and resampled."""
    if turned.endswith(" for the model)"):  # "(of the ... case; turned X for the model)"
        return f"{turned[:-len(' for the model)')]} and resampled to {to} mm for the model)"
    return text
