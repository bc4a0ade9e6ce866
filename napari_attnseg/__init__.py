"""napari-attnseg: attention segmentation models you can see into, correct and fine-tune.

The public API lives here. Importing this package is cheap and never imports Qt, napari or
torch; each name is resolved from its core module on first use.

    >>> import napari_attnseg as ag
    >>> ag.list_models()                      # architectures and bundled models
    >>> model = ag.load_model("nuclei-2d")    # bundled, or a path to a .safetensors file
    >>> pred = ag.predict(model, image, attention=True)
    >>> pred.labels, pred.probabilities, pred.attention
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

# public name -> "module:attribute" (modules relative to this package)
_API = {
    "list_models": "models.registry:list_models",
    "create_model": "models.registry:create_model",
    "load_model": "checkpoint:load_model",
    "save_model": "checkpoint:save_model",
    "ModelCard": "checkpoint:ModelCard",
    "predict": "inference:predict",
    "iter_predict": "inference:iter_predict",
    "predict_cohort": "cohort:predict_cohort",
    "InputError": "errors:InputError",
    "Prediction": "inference:Prediction",
    "AttentionMap": "inference:AttentionMap",
    "CancelToken": "inference:CancelToken",  # predict(..., cancel=token): help(ag.predict) names it
    "MODES": "options:MODES",
    "PRECISIONS": "options:PRECISIONS",
    "DEVICES": "options:DEVICES",
    "segment_with_prompts": "prompts.segment:segment_with_prompts",
    "PromptResult": "prompts.segment:PromptResult",
    "make_promptable": "prompts.convert:make_promptable",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    try:
        target = _API[name]
    except KeyError:
        raise AttributeError(f"module 'napari_attnseg' has no attribute {name!r}") from None
    module_name, attr = target.split(":")
    value = getattr(importlib.import_module(f".{module_name}", __name__), attr)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .checkpoint import ModelCard, load_model, save_model  # noqa: F401
    from .cohort import predict_cohort  # noqa: F401
    from .errors import InputError  # noqa: F401
    from .inference import AttentionMap, CancelToken, Prediction, iter_predict, predict  # noqa: F401
    from .models.registry import create_model, list_models  # noqa: F401
    from .options import DEVICES, MODES, PRECISIONS  # noqa: F401
    from .prompts.convert import make_promptable  # noqa: F401
    from .prompts.segment import PromptResult, segment_with_prompts  # noqa: F401
