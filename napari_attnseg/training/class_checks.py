"""Checks of a dataset's class table against the start model before fine-tuning (the CLI prints them before the
run, the napari Fine-tune tab shows them from its worker): classes named under other values than the model's, and
classes without a labelled voxel."""

from __future__ import annotations

from pathlib import Path

from ..data.label_values import class_key


def class_table_warning(start_model: str, dataset: str | Path) -> str | None:
    """A warning when the dataset's label table names the start model's classes under other values (exported with
    ``--label-names`` in another order than the model's card): fine-tuning learns by value, so the new model would
    call the start's grey matter 'white matter', or unlearn what it knew. None when the names agree or cannot be read."""
    from ..checkpoint import read_card, resolve_model_path
    from ..data.dataset import read_dataset
    from ..data.manifest import MANIFEST, read_manifest
    from ..errors import AttnSegError

    try:
        classes = [str(c) for c in read_card(resolve_model_path(start_model)).classes or []]
        manifest = read_manifest(Path(dataset))
        names = [str(n) for n in (manifest.get("label_names") or [] if manifest else read_dataset(dataset).label_names)]
    except (AttnSegError, OSError, ValueError):
        return None  # (a model or dataset that does not load is refused by the trainer, with its own message)
    key = {class_key(c): i for i, c in enumerate(classes)}
    moved = [(v, n, key[k]) for v, n in enumerate(names)
             if v and (k := class_key(n)) in key and key[k] != v]
    if not moved:
        return None
    said = ", ".join(f"value {v} '{n}'" for v, n, _ in moved)
    model = ", ".join(f"'{n}' is {c}" for _, n, c in moved)
    order = ",".join(classes + [n for n in names[1:] if class_key(n) not in key])
    where = Path(dataset) / MANIFEST if manifest else f"the label table of {dataset}"
    again = (f"export them again into a new folder with the names in the model's order (--label-names '{order}'; napari: Class names in Correct and export)"
             if manifest else f"give the label table the model's order ({order}) and renumber the masks' values with it")
    return (f"warning: {where} names {said}; the start model {start_model} predicts them under "
            f"other values ({model}). The new model takes the dataset's names (its output rows start from the model's class "
            f"of the same name when the number of classes differs, from the same value otherwise). If the masks were "
            f"made by this model (their values are its classes), {again}; if you relabelled the values on purpose"
            f"{', the rows follow the names' if len(names) != len(classes) else ', the model has to unlearn its classes: give it more time'}.")


def empty_classes_warning(dataset: str | Path) -> str | None:
    """A warning when a class of the dataset's label table has no labelled voxel in any case (``--label-names`` with
    more names than the mask has values): the model would learn never to predict it, and the card would list it.
    None when every class is labelled or the dataset cannot be read (the trainer refuses that with its message)."""
    import numpy as np

    from ..data.dataset import read_dataset
    from ..errors import AttnSegError

    try:
        ds = read_dataset(dataset)
        counts = np.zeros(ds.num_classes, np.int64)
        for case in ds.cases:
            lab = case.load_labels()
            lab = lab[(lab >= 0) & (lab < ds.num_classes)]  # (the 'ignore' value is the table's length)
            counts += np.bincount(lab.ravel(), minlength=ds.num_classes)[:ds.num_classes]
    except (AttnSegError, OSError, ValueError):
        return None
    empty = [(v, n) for v, n in enumerate(ds.label_names) if v and not counts[v]]
    if not empty or len(empty) == ds.num_classes - 1:  # (no foreground at all: the trainer says so)
        return None
    said = ", ".join(f"'{n}' (value {v})" for v, n in empty)
    one = len(empty) == 1
    return (f"warning: {said} of the label table of {ds.root} {'has' if one else 'have'} no labelled voxel in any "
            f"case: the model learns never to predict {'it' if one else 'them'}, yet its card lists "
            f"{'it' if one else 'them'}. If the table names more classes than the masks have (extra --label-names or napari Class names, or "
            "mask values that skip one, e.g. 0, 1, 3), export them again into a new folder with one name per value, "
            "the values numbered without a gap; else paint some of it on a reviewed slice.")


def class_warnings(start_model: str, dataset: str | Path) -> list[str]:
    """Both checks' warnings (each starts with ``warning:``), for ``start_model`` fine-tuned on ``dataset``."""
    return [w for w in (class_table_warning(start_model, dataset), empty_classes_warning(dataset)) if w]


def label_table_hint(root: Path, format: str, top: int) -> str:
    """What to do when a label file holds value ``top`` beyond the dataset's label table: the file that holds the
    table and its form, or the export that writes one."""
    from ..data.layouts import index_file
    from ..data.manifest import MANIFEST
    from ..errors import DatasetError

    names = ",".join(["background", *(f"class{v}" for v in range(1, top + 1))])
    export = (f"`attnseg export --image IMAGE --labels LABELS --dataset NEW --label-names {names}` (your class names, "
              "background first) writes a dataset with that table")
    if (root / MANIFEST).exists():
        return (f" {root / MANIFEST} (label_names) was written by attnseg export; add the cases to a new dataset with "
                f"all {top + 1} classes: {export}.")
    try:
        index = index_file(root) if format != "tiff" else None
    except DatasetError:
        index = None
    if index is not None and format == "nnunet":
        return (f" Name every value in the \"labels\" table of {index} ({{\"background\": 0, \"NAME\": 1, ..., "
                f"\"NAME\": {top}}}), or {export}.")
    if index is not None:
        return (f" Name every value in the \"labels\" table of {index} ({{\"0\": \"background\", \"1\": \"NAME\", ..., "
                f"\"{top}\": \"NAME\"}}), or {export}.")
    return (" A TIFF folder (images/ with labels/) has no label table: its values are 0 background and 1 foreground. "
            f"For more classes, put a datalist.json beside images/ naming the pairs and the classes ({{\"training\": "
            f"[{{\"image\": \"images/NAME.tif\", \"label\": \"labels/NAME.tif\"}}, ...], \"labels\": {{\"0\": "
            f"\"background\", \"1\": \"NAME\", ..., \"{top}\": \"NAME\"}}}}), or {export}.")
