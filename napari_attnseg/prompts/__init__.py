"""Point prompts (issue 18): promptable models, click encoding and simulation, segment_with_prompts.

Torch-free to import; the submodules load torch when used.
"""

from __future__ import annotations

import importlib
from typing import Any

_API = {
    "make_promptable": "convert", "is_promptable": "convert", "set_prompts": "convert", "prompts": "convert",
    "prior_scales": "convert", "PROMPT_CHANNELS": "convert",
    "click_channels": "encode",
    "segment_with_prompts": "segment", "PromptResult": "segment", "object_at": "segment", "edit_for": "segment",
    "ClickSimulator": "simulate", "next_click": "simulate", "first_click": "simulate",
    "robot_session": "simulate", "PromptTraining": "training", "PromptSession": "session", "PromptState": "session",
}
__all__ = list(_API)


def __getattr__(name: str) -> Any:
    try:
        module = _API[name]
    except KeyError:
        raise AttributeError(f"module 'napari_attnseg.prompts' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
