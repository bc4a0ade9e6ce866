"""The checks every split passes (parts non-empty, disjoint, validation labelled) and the description of
its validation, with the warnings and the fallback criterion when the validation cannot measure."""

from __future__ import annotations

from pathlib import Path

from scipy import ndimage

from ..errors import DatasetError
from .split import ROLES, Split, _labelled, _labelled_rows, _overlap, _ranges, format_box
from .split_movies import time_lapse


def check_given_slices(split: Split, lab, held: list[int], ignore, slices: bool) -> None:
    """Validation slices given by hand that are not reviewed (every voxel 'ignore') validate nothing. A 2D model
    on a volume (``slices``) validates slice by slice, and a validation left without labelled foreground cannot
    measure: both are refused, naming them and the reviewed slices to pick from (as the napari Fine-tune tab
    does); a 3D model keeps them as context of its validation slab, which the warnings say. Slices of which none
    is reviewed are left to :func:`check_split`."""
    if ignore is None:
        return
    rows = _labelled_rows(lab, ignore).tolist()
    unreviewed = sorted(z for z in set(held) if z not in set(rows))
    measured = sorted(z for z in set(held) if z in set(rows))
    if not unreviewed or not measured:
        return
    fg = ((lab > 0) & _labelled(lab, ignore)).reshape(lab.shape[0], -1).any(1)
    unit = "slices" if lab.ndim == 3 else "rows"
    one = len(unreviewed) == 1
    what = (f"{unit[:-1] if one else unit} {_ranges(unreviewed)} of case {split.case_ids[split.val[0].case]} "
            f"{'is' if one else 'are'} not reviewed (exported as 'ignore')")
    if slices or not fg[measured].any():
        why = ("" if fg[measured].any() else f"; the other{'' if len(measured) == 1 else 's'} ({_ranges(measured)}) "
               f"hold{'s' if len(measured) == 1 else ''} no labelled foreground, so the validation Dice could not "
               "measure the segmentation")
        raise DatasetError(f"Validation {what} and validate{'s' if one else ''} nothing{why}. The reviewed {unit} are {_ranges(rows)} "
                           f"(with foreground: {_ranges([z for z in rows if fg[z]]) or 'none'}); pick the validation "
                           f"{unit} among them, or leave them to be chosen automatically.")
    split.warnings.append(f"validation {what}: {'it is' if one else 'they are'} context for the model, but the validation Dice measures "
                          f"the reviewed {unit} {_ranges(measured)} only")


def check_dataset(path: str, held: list[int] | None, case: str | None) -> None:
    """Before a run loads anything: a dataset that does not exist is said so (it read "is not a folder"), and
    validation slices (``held``) past the case's end are refused by :func:`check_slices_inside`."""
    from ..data.dataset import read_dataset
    from ..data.manifest import read_manifest

    if not Path(path).exists():
        raise DatasetError(f"Dataset {path} does not exist (not a folder or file here: check the path); give the "
                           "folder `attnseg export` wrote (its --dataset), or a dataset made elsewhere (nnU-Net, MONAI "
                           "datalist, images/ with labels/: docs/training.md).")
    if not held:
        return
    dataset = read_dataset(path)
    ids = [c.case_id for c in dataset.cases]
    one = dataset.cases[ids.index(case)] if case in ids else dataset.cases[0] if len(ids) == 1 else None
    if one is None:  # (which case is meant is the split's to say)
        return
    shapes = {c.get("case_id"): c.get("shape") for c in (read_manifest(dataset.root) or {}).get("cases", [])}
    shape = shapes.get(one.case_id)  # an exported case's shape from its manifest: no second read of its labels
    if not shape or max(held) >= int(shape[0]):
        check_slices_inside(one.case_id, one.load_labels(), held, dataset.ignore_label)


def check_slices_inside(case_id: str, lab, held: list[int], ignore) -> None:
    """Validation slices past the case's end, refused naming the reviewed slices to pick from (and those with
    foreground), as :func:`check_given_slices` names them."""
    n = lab.shape[0]
    bad = sorted({z for z in held if not 0 <= z < n})
    if not bad:
        return
    rows = _labelled_rows(lab, ignore).tolist()
    fg = ((lab > 0) & _labelled(lab, ignore)).reshape(n, -1).any(1)
    unit, one = ("slices" if lab.ndim == 3 else "rows"), len(bad) == 1
    raise DatasetError(f"Validation {unit[:-1] if one else unit} {_ranges(bad)} {'is' if one else 'are'} outside case "
                       f"{case_id} ({unit} 0-{n - 1}). The {'labelled' if ignore is None else 'reviewed'} {unit} are "
                       f"{_ranges(rows) or 'none'} (with foreground: {_ranges([z for z in rows if fg[z]]) or 'none'}); "
                       f"pick the validation {unit} among them, or leave them to be chosen automatically.")


def describe_validation(split: Split, labels, ignore) -> None:
    """Fill ``split.validation`` and, where the validation cannot measure the foreground, the warnings
    and the fallback criterion."""
    n_slices = n_fg_slices = fg_vox = n_objects = 0
    for p in split.val:
        lab = labels[p.case][p.slices]
        labelled = _labelled(lab, ignore)
        fg = (lab > 0) & labelled
        if lab.ndim == 3:
            n_slices += int(labelled.reshape(lab.shape[0], -1).any(1).sum())
            n_fg_slices += int(fg.reshape(lab.shape[0], -1).any(1).sum())
        else:
            n_slices += 1
            n_fg_slices += int(fg.any())
            n_objects += int(ndimage.label(fg)[1])
        fg_vox += int(fg.sum())
    volumes = labels[0].ndim == 3
    unit = "frame" if split.val and all(time_lapse(split.case_ids, p.case) for p in split.val) else "slice"
    split.validation = (f"{n_slices} labelled {unit}{'' if n_slices == 1 else 's'}, {n_fg_slices} with foreground "
                        f"({fg_vox} foreground voxels)"
                        if volumes else f"{n_slices} part(s) of 2D images, {n_objects} object(s) ({fg_vox} foreground pixels)")
    if fg_vox == 0:
        split.criterion = "train_loss"
        split.warnings.append("the validation holds no labelled foreground, so its Dice cannot measure the "
                              "segmentation; the checkpoint is chosen by the training loss instead (label "
                              "foreground on more slices, or give a validation region that holds some)")
    elif volumes and n_fg_slices == 1:
        split.warnings.append(f"the validation holds foreground on one {unit} only: its Dice is a weak guide")
    elif not volumes and n_objects < 3:
        split.warnings.append(f"the validation holds {n_objects} object(s) only: its Dice is a weak guide "
                              "(label more objects, or give a validation region that holds more)")


def check_split(split: Split, labels, ignore) -> None:
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
            where = "; ".join(f"{split.case_ids[c]} {_ranges(_labelled_rows(labels[c], ignore)) or 'none'}"
                              for c in sorted({p.case for p in getattr(split, role)}))  # where to pick instead
            raise DatasetError(f"The {'training' if role == 'train' else 'validation'} part has no labelled voxels "
                               f"(everything there is 'ignore'): {split.describe()}. The labelled (reviewed) "
                               f"positions along the first axis are: {where}; choose the parts among them.")
