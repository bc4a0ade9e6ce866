"""Which model of the Segment tab's list suits an image layer, known from the cards (no model is loaded): a
3D model cannot segment a 2D image, a brain MRI gets a model trained on scans rather than a microscopy one,
and the model last shown for a layer comes back with it."""

from __future__ import annotations

from pathlib import Path


def card_dict(entry) -> dict | None:
    """The card (as a dict) of a model-list entry: a loaded model, a bundled name or a checkpoint path; None
    when it cannot be read (its own error comes when it is used)."""
    card = getattr(entry, "card", None)
    if card is not None:
        found = card.to_dict()
        return {**found, "config": {**(found.get("config") or {}), "spatial_dims": getattr(entry, "spatial_dims", None)}}
    if not isinstance(entry, (str, Path)):
        return None
    from ..models.registry import card_of

    return card_of(entry)  # a bundled model or one of the user models folder by name, else a checkpoint path


def model_dims(entry) -> int | None:
    """The spatial dims of a model-list entry: a loaded model, a bundled name or a checkpoint path."""
    dims = getattr(entry, "spatial_dims", None)
    if dims is not None:
        return int(dims)
    dims = ((card_dict(entry) or {}).get("config") or {}).get("spatial_dims")
    return None if dims is None else int(dims)


def model_kind(entry) -> str | None:
    """"ct" for a model trained on CT in Hounsfield units, "scan" for one trained on other scans placed in
    the body (its card has a voxel spacing or an orientation), None for the rest (microscopy)."""
    card = card_dict(entry) or {}
    if (card.get("normalization") or {}).get("scheme") == "ct":
        return "ct"
    return "scan" if card.get("spacing") or card.get("orientation") else None


def layer_kind(layer) -> str | None:
    """"ct" for a CT in Hounsfield units, "scan" for another volume placed in the body (a NIfTI or DICOM with
    geometry), None otherwise (a TIFF, a 2D image, an array added from Python)."""
    from ..data.orientation import metadata_codes
    from ..display import is_hounsfield

    if getattr(layer, "rgb", False) or layer.ndim != 3:
        return None
    from ._common import preview_array

    if is_hounsfield(preview_array(layer)):  # (a pyramid cannot be sliced whole; a lazy volume is not read whole)
        return "ct"
    return "scan" if metadata_codes(layer.metadata, 3) is not None else None


def is_prompt_entry(entry) -> bool:
    if hasattr(entry, "prompt_options"):
        return True
    card = card_dict(entry) if isinstance(entry, (str, Path)) else None
    return bool(card and "prompts" in (card.get("config") or {}))


def user_model_entries(taken) -> dict[str, str]:
    """The user models folder's models for a panel's list: label -> name (what ``load_model`` takes). A model
    whose checkpoint the list already holds (``taken``: its entries) is left out, so loading a file of the folder
    with *Load checkpoint...* does not list it twice."""
    from ..models.registry import user_models

    held = {str(getattr(e, "checkpoint_path", e)) for e in taken}
    return {name: name for name, path in user_models()[0].items() if str(path) not in held}


def card_summary(card: dict | None) -> str:
    """One line on what a model is, from its card: architecture, dims, channels, classes, spacing."""
    if not card:
        return ""
    config = card.get("config") or {}
    spacing = card.get("spacing")
    where = f"; trained on {card['training']['dataset']}" if (card.get("training") or {}).get("dataset") else ""
    return (f"{card.get('arch', '?')} {config.get('spatial_dims', 2)}D, {config.get('in_channels', 1)} input "
            f"channel(s), classes: {', '.join(map(str, card.get('classes') or []))}; "
            f"{'spacing ' + ' x '.join(f'{v:g}' for v in spacing) if spacing else 'works in pixels'}{where}")


def with_fit(text: str, card) -> str:
    """A model's description with how it did on its run's validation (:func:`~..model_card.fit_line`): round 1's
    and round 2's fine-tuned models read alike ('nuclei-2d fine-tuned on ds') in the model list's description."""
    from ..model_card import fit_line

    fit = fit_line(card)
    return f"{text}; {fit}" if text and fit else text or fit


def model_for_layer(models: dict, current: str | None, layer, chosen: dict | None = None) -> str | None:
    """The model to choose for an image ``layer``: None to keep ``current``, else a label of ``models``
    (label -> entry). The model last shown for this layer (``chosen``: layer ``unique_id`` -> label) comes back when it
    can run; else ``current`` stays when it can run and suits the layer's kind; else the first model that can
    run, those of the layer's kind (:func:`layer_kind`: a brain MRI gets the brain model, not a microscopy
    one) and automatic models first (None when none can run)."""
    if layer is None:
        return None
    layer_dims = layer.ndim  # (napari's ndim leaves out an RGB layer's colour axis)

    def runs(label) -> bool:
        return label in models and (model_dims(models[label]) or 0) <= layer_dims

    remembered = (chosen or {}).get(layer.unique_id)
    if runs(remembered):
        return None if remembered == current else remembered
    kind = layer_kind(layer)
    fits = [label for label, entry in models.items() if (model_dims(entry) or 99) <= layer_dims]
    fits.sort(key=lambda label: (_rank(models[label], kind), is_prompt_entry(models[label])))
    if runs(current) and (not fits or _rank(models[current], kind) <= _rank(models[fits[0]], kind)):
        return None
    return fits[0] if fits else None


def _rank(entry, kind: str | None) -> int:
    """How well a model suits a layer of ``kind`` (0 best). A CT with no CT model gets a 2D microscopy model
    before a model of another kind of scan: brain-mri-3d called 63 % of a chest CT grey or white matter, and
    nuclei-2d is the start the fine-tuning walkthrough uses on CT (docs/finetuning.md). A volume that is not a
    scan (a TIFF z-stack or time-lapse, an array from Python) gets a microscopy model first: brain-mri-3d, first
    in the list, took a nuclei z-stack (Dice 0.27-0.61 per plane against nuclei-2d's 0.94, with skull warnings)."""
    if kind is None:
        return 0 if model_kind(entry) is None else 1
    if model_kind(entry) == kind:
        return 0
    return 1 if kind == "ct" and model_kind(entry) is None and model_dims(entry) == 2 else 2


NUCLEAR_STAINS = {"dapi", "hoechst", "draq5", "draq7", "h2b", "sytox", "pi", "topro3", "to-pro-3", "dna", "nuclei",
                  "nucleus", "nuclear", "nucblue", "redot1"}


def channel_hint(layer, model) -> str | None:
    """A named channel of a multi-channel file (OME-TIFF: '<name> [actin]') that is no nuclear stain, given to a
    model of nuclei: the Segment tab chose the file's first channel, and nuclei in another one were segmented as
    noise ("objects about 3 px wide", with a size remedy). None otherwise, and for unnamed channels (c0, c1...)."""
    import re

    channel = str((getattr(layer, "metadata", None) or {}).get("channel") or "")
    card = getattr(model, "card", None)
    classes = " ".join(str(c).lower() for c in (getattr(card, "classes", None) or []))
    low = channel.lower()  # (DAPI-T1, SiR-DNA, Hoechst33342: split at hyphens too, stains read as prefixes)
    words = set(re.split(r"[^a-z0-9-]+", low)) | set(re.split(r"[^a-z0-9]+", low))
    unnamed = re.fullmatch(r"(c|ch|channel)?[\s:_-]*\d+([:_ ]\d+)*", low)  # c0, Channel:0:0 (Bio-Formats), 1, 405
    if not channel or unnamed or "nucle" not in classes or words & NUCLEAR_STAINS \
            or any(w.startswith(("hoechst", "dapi", "draq", "sytox", "nucspot", "nucblue", "redot")) for w in words):
        return None
    source = Path(str(layer.metadata.get("source_path") or layer.name)).name
    return (f"{layer.name!r} is the {channel!r} channel of {source}, and {getattr(card, 'name', '') or 'this model'} "
            "segments nuclei: if they are in another channel (DAPI, Hoechst), choose that channel's layer as the "
            "Image.")
