"""Where a fine-tuned model may be written against its dataset: the one rule ``attnseg finetune --out`` and the napari
Fine-tune tab share. The dataset folder itself and its layout's folders (``imagesTr/``, ``labels/``, ...) are refused:
the model's files would go among the dataset's. A folder of its own inside the dataset (``DS/model``) is fine: exports
and the dataset readers look only at the layout's folders (the Fine-tune tab had refused it while the CLI took it)."""

from __future__ import annotations

from pathlib import Path

from .dataset import SUB_FOLDERS


def dataset_root(dataset: Path) -> Path:
    """The dataset's folder (a datalist or ``dataset.json`` given: the folder holding it), resolved."""
    return (dataset.parent if dataset.is_file() else dataset).resolve()


def dataset_part(out: Path, dataset: Path) -> str | None:
    """Which part of the dataset ``out`` is: ``""`` for the dataset folder itself, the name of its layout's folder
    (``imagesTr``, ``labels``, ...) for that folder or one in it; None where the model may be written (outside the
    dataset, or a folder of its own inside it)."""
    root, where = dataset_root(dataset), out.expanduser().resolve()
    if where != root and root not in where.parents:
        return None
    inside = where.relative_to(root).parts
    if not inside:
        return ""
    return inside[0] if inside[0] in SUB_FOLDERS else None


def beside_dataset(dataset: Path) -> Path:
    """A folder for the model beside the dataset: ``DS-model`` (as given, unresolved, when it has a name)."""
    given = dataset.parent if dataset.is_file() else dataset
    root = dataset_root(dataset)
    return given.with_name(f"{given.name}-model") if given.name else root.parent / f"{root.name}-model"
