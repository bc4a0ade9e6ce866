"""One image exported more than once: a clinician's second round of corrections added to the same dataset as
a new case (the export warns, and keeps both: nothing the user made is replaced). Trained as two cases, a
by-case split would validate on a copy of a training image and skip the held-out slices that make one
case's validation fair. So the trainer takes every export of one image as one case: the newest export's
labels, and an older one's only on the slices (voxels) the newest leaves as 'ignore' (unreviewed)."""

from __future__ import annotations

import numpy as np

Raw = tuple[np.ndarray, np.ndarray, tuple[float, ...]]  # (image (C, *spatial), labels, spacing)


def _key(image: np.ndarray, spacing: tuple[float, ...]) -> tuple:
    from ..data.export import array_sha256

    return array_sha256(image), tuple(round(float(s), 6) for s in spacing)


def merge_repeated_images(case_ids: list[str], raw: list[Raw], ignore: int | None
                          ) -> tuple[list[str], list[Raw], list[str]]:
    """Cases in export order (the manifest's: a replaced case moves to the end). Return the case ids and
    data with every repeated image merged into its newest case, and one note per merge for the summary."""
    groups: dict[tuple, list[int]] = {}
    for i, (img, _lab, spacing) in enumerate(raw):
        groups.setdefault(_key(img, spacing), []).append(i)
    if all(len(g) == 1 for g in groups.values()):
        return case_ids, raw, []
    merged: dict[int, Raw] = {}
    notes: list[str] = []
    for members in groups.values():
        if len(members) == 1:
            merged[members[0]] = raw[members[0]]
            continue
        newest = members[-1]
        img, lab, spacing = raw[newest]
        lab = lab.copy()
        used = []
        for older in reversed(members[:-1]):
            old = raw[older][1]
            if ignore is None or old.shape != lab.shape:
                continue
            fill = (lab == ignore) & (old != ignore)
            if fill.any():
                lab[fill] = old[fill]
                used.append(case_ids[older])
        merged[newest] = (img, lab, spacing)
        others = ", ".join(case_ids[i] for i in members[:-1])
        how = (f"its labels, plus those of {', '.join(used)} on the slices only they reviewed" if used else
               "its labels only (the older export reviews nothing the newest leaves out)")
        notes.append(f"cases {others} and {case_ids[newest]} hold the same image (exported more than once, e.g. a "
                     f"second round of corrections): trained as one case, {case_ids[newest]}, with {how}, so "
                     "validation never scores a copy of a training image.")
    keep = sorted(merged)
    return [case_ids[i] for i in keep], [merged[i] for i in keep], notes
