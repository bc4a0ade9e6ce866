"""Which model of the Segment tab's list can run on an image layer, known from the cards (no model is
loaded): a 3D model cannot segment a 2D image, so the tab moves to the first model that can."""

from __future__ import annotations

from pathlib import Path


def model_dims(entry) -> int | None:
    """The spatial dims of a model-list entry: a loaded model, a bundled name or a checkpoint path."""
    dims = getattr(entry, "spatial_dims", None)
    if dims is not None:
        return int(dims)
    if not isinstance(entry, (str, Path)):
        return None
    from ..models.registry import bundled_models

    card = bundled_models().get(str(entry))
    try:
        if card is None:
            from ..checkpoint import read_card

            card = {"config": read_card(entry).config}
        dims = (card.get("config") or {}).get("spatial_dims")
    except Exception:  # noqa: BLE001 - an unreadable entry says so when it is chosen
        return None
    return None if dims is None else int(dims)


def is_prompt_entry(entry) -> bool:
    from ..models.registry import bundled_models

    if hasattr(entry, "prompt_options"):
        return True
    card = bundled_models().get(str(entry)) if isinstance(entry, (str, Path)) else None
    return bool(card and "prompts" in (card.get("config") or {}))


def model_for_layer(models: dict, current: str | None, layer) -> str | None:
    """The model to choose for an image ``layer``: None to keep ``current`` (it can run on the layer, its
    dims are unknown, or there is no layer), else the first model of ``models`` (label -> entry) that can,
    automatic models before click models (None when none can)."""
    if layer is None:
        return None
    layer_dims = layer.ndim - bool(getattr(layer, "rgb", False))
    if current in models and (model_dims(models[current]) or 0) <= layer_dims:
        return None
    fits = [label for label, entry in models.items() if (model_dims(entry) or 99) <= layer_dims]
    fits.sort(key=lambda label: is_prompt_entry(models[label]))
    return fits[0] if fits else None
