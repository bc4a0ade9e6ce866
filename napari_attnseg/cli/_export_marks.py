"""Marks of a mask that `attnseg export` takes from elsewhere: the reviewed slices, class names and 'ignore' value of a
label file an export wrote (from its dataset's manifest), and the class names of the model saved with a mask. (Moved
out of :mod:`.export`, which re-exports them.)"""

from __future__ import annotations


def _marks_from_dataset(path, labels) -> None:
    """A label file an export wrote (``<dataset>/labelsTr/x.nii.gz``, ``labels/x.tif``) holds the 'ignore' value on
    the slices nobody reviewed and no marks of its own: its reviewed slices and class names come from the dataset's
    manifest (exported again, 'ignore' became a class, 'class 2', and every slice counted as reviewed). Saved again
    from napari (File > Save) the file carries its 'ignore' value itself (``meta['ignore_value']``)."""
    import sys

    import numpy as np

    from ..correct import format_slice_ranges
    from ..data.manifest import exported_case_of

    if labels.meta.get("ignore_value") is not None:  # saved with it (napari's File > Save of a reopened export)
        labels.meta["dataset_ignore"] = int(labels.meta["ignore_value"])
    found = exported_case_of(path)
    if found is None or list(found[1].get("shape") or []) != list(np.shape(labels.data)):
        return
    manifest, case = found
    said = []
    if case.get("reviewed_slices") is not None and labels.meta.get("reviewed_slices") is None:
        labels.meta["reviewed_slices"] = [int(z) for z in case["reviewed_slices"]]
        said.append(f"reviewed slices {format_slice_ranges(labels.meta['reviewed_slices'])}")
    names = case.get("label_names") or manifest.get("label_names")
    if names and not labels.meta.get("class_names"):
        labels.meta["class_names"] = [str(n) for n in names]
        said.append(f"classes {', '.join(labels.meta['class_names'])}")
    if case.get("ignore_label") is not None:
        labels.meta["dataset_ignore"] = int(case["ignore_label"])
    if said:
        print(f"{path} is case {case.get('case_id')} of an exported dataset: its {' and '.join(said)} are taken from "
              "the dataset's manifest.json (the other slices hold its 'ignore' value)", file=sys.stderr)


def saved_model_classes(mask_path, info: dict) -> list[str]:
    """The class names of the model that made a mask (``info``: the model saved with it): from the run's
    ``<stem>_predict.json`` beside the mask, else from that model's card when its checkpoint or name is found
    and its weights are the ones recorded; [] when neither is there."""
    import json
    from pathlib import Path

    from ..checkpoint import read_card, resolve_model_path
    from ..errors import AttnSegError

    mask_path = Path(mask_path)
    for record in sorted(mask_path.parent.glob("*_predict.json")):
        try:
            data = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("mask") == mask_path.name and isinstance(data.get("classes"), list):
            if data.get("model_weights_sha256") in (None, info.get("weights_sha256")):
                return [str(c) for c in data["classes"]]
    for source in (info.get("checkpoint"), info.get("model")):
        try:
            card = read_card(resolve_model_path(source)) if source else None
        except (AttnSegError, OSError):  # a moved checkpoint, an unknown name: no names from it
            continue
        if card is not None and (not info.get("weights_sha256") or card.weights_sha256 == info["weights_sha256"]):
            return [str(c) for c in (card.classes or [])]
    return []
