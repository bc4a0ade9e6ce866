"""Architectures by name, and the bundled models found in ``resources/models``."""

from __future__ import annotations

import json
from typing import Any

from ..errors import InputError
from .base import SegmentationModel

# name -> (module, class, one-line description); imported on first use so listing stays cheap
ARCHITECTURES: dict[str, tuple[str, str, str]] = {
    "unet": ("unet", "UNet", "U-Net baseline (Ronneberger 2015), 2D/3D"),
    "attention_unet": ("attention_unet", "AttentionUNet", "Attention U-Net with grid attention gates (Oktay 2018), 2D/3D"),
    "msga": ("msga", "MultiScaleGuidedAttention", "Multi-scale self-guided attention (Sinha & Dolz 2020), 2D"),
    "transfuse": ("transfuse", "TransFuse", "TransFuse: CNN + ViT with BiFusion (Zhang 2021), 2D"),
}


def architecture_class(arch: str) -> type[SegmentationModel]:
    """The class registered under ``arch``; unknown names raise an error listing the valid ones."""
    import importlib

    try:
        module, cls, _ = ARCHITECTURES[arch]
    except KeyError:
        raise InputError(
            f"Unknown architecture {arch!r}; valid architectures: {', '.join(ARCHITECTURES)}."
        ) from None
    return getattr(importlib.import_module(f".{module}", __package__), cls)


def create_model(arch: str, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 2, **config: Any) -> SegmentationModel:
    """Build an untrained model: ``create_model("attention_unet", spatial_dims=3, out_channels=3)``."""
    cls = architecture_class(arch)
    if spatial_dims not in cls.supported_dims:
        raise InputError(
            f"{arch} supports spatial_dims {', '.join(map(str, cls.supported_dims))}, not {spatial_dims}."
        )
    prompt_options = config.pop("prompts", None)  # a promptable model (issue 18): rebuilt, then converted
    try:
        model = cls(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, **config)
    except InputError:
        raise
    except (TypeError, ValueError) as exc:  # unknown keyword, or a value the constructor refused
        raise InputError(f"Invalid configuration for {arch}: {exc}") from None
    if prompt_options is not None:
        from ..prompts.convert import make_promptable

        model = make_promptable(model, **prompt_options)
    return model


def bundled_models() -> dict[str, dict[str, Any]]:
    """Bundled model name -> its card (as a dict), read from ``resources/models/*.json``."""
    from .._paths import models_dir

    found: dict[str, dict[str, Any]] = {}
    try:
        folder = models_dir()
    except FileNotFoundError:
        return found
    for card_path in sorted(folder.glob("*.json")):
        if not card_path.with_suffix(".safetensors").exists():
            continue
        try:
            card = json.loads(card_path.read_text())
        except (OSError, ValueError):
            continue
        found[card_path.stem] = card
    return found


def list_models() -> dict[str, list[dict[str, str]]]:
    """Architectures and bundled models, each with a one-line description.

    Returns ``{"architectures": [{"name", "description", "dims"}], "bundled": [{"name", "description",
    "arch", "dims", "classes"}]}``.
    """
    archs = [
        {"name": name, "description": desc, "dims": "2D/3D" if name in ("unet", "attention_unet") else "2D"}
        for name, (_, _, desc) in ARCHITECTURES.items()
    ]
    bundled = [
        {
            "name": name,
            "description": card.get("description", ""),
            "arch": card.get("arch", ""),
            "dims": f"{card.get('config', {}).get('spatial_dims', '?')}D",
            "classes": ", ".join(card.get("classes", [])),
        }
        for name, card in bundled_models().items()
    ]
    return {"architectures": archs, "bundled": bundled}
