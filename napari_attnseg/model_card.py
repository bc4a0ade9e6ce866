"""The model card: everything needed to rebuild and use a model, and where it came from (:class:`ModelCard`),
with the checks that refuse a card of the wrong shape (a hand-edited one) when it is read, or one ``predict``
could not use when it is saved. Reading and writing checkpoints is :mod:`.checkpoint`, which re-exports these
names."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import InputError

if TYPE_CHECKING:
    import torch

FORMAT_VERSION = 1
PROMPT_INITS = (None, "threshold")  # the values of ModelCard.prompt_init


@dataclass
class ModelCard:
    """Everything needed to rebuild and use a model, and where it came from."""

    arch: str
    config: dict[str, Any]
    name: str = ""
    description: str = ""
    classes: list[str] = field(default_factory=lambda: ["background", "foreground"])
    normalization: dict[str, Any] = field(default_factory=lambda: {"scheme": "percentile", "lower": 1.0, "upper": 99.0})
    spacing: list[float] | None = None
    object_diameter: float | None = None  # typical object diameter in pixels of the training data (microscopy)
    brain_extraction: str | None = None  # "auto": strip skull and scalp first unless the input is stripped (3D brain MRI)
    # the orientation letters of the training volumes' array axes (e.g. ["S", "A", "R"]): volumes stored
    # otherwise are turned to it for inference (inference/orient.py); None: as stored (microscopy)
    orientation: list[str] | None = None
    # promptable models: the previous mask of a new object when none is given; "threshold": the Otsu
    # component under the clicks (prompts/initial.py), None: empty (issue 18)
    prompt_init: str | None = None
    tile: list[int] | None = None
    overlap: float = 0.25
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str = ""
    weights_dtype: str = "float32"
    code_version: str = __version__
    format_version: int = FORMAT_VERSION

    @property
    def spatial_dims(self) -> int:
        return int(self.config.get("spatial_dims", 2))

    @property
    def in_channels(self) -> int:
        return int(self.config.get("in_channels", 1))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        if not isinstance(data, dict):
            raise ValueError(f"a card is a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        missing = {"arch", "config"} - set(data)
        if missing:
            raise ValueError(f"card lacks {', '.join(sorted(missing))}")
        if data.get("prompt_init") not in PROMPT_INITS:
            raise ValueError(f"prompt_init is one of {PROMPT_INITS}, got {data.get('prompt_init')!r}")
        _check_fields(data)
        return cls(**{k: v for k, v in data.items() if k in known})


def _check_fields(data: dict[str, Any]) -> None:
    """Refuse a card field of the wrong type (a hand-edited card) with the field, what it should be and its value."""
    def num(v, low=0.0):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and low <= v < float("inf")

    rules = {str: ("arch", "name", "description", "weights_sha256", "weights_dtype", "code_version"),
             dict: ("config", "normalization", "training", "metrics")}
    wrong = [(k, 'text' if kind is str else 'a JSON object') for kind, keys in rules.items() for k in keys
             if k in data and not isinstance(data[k], kind)]
    lists = {"classes": (lambda v: isinstance(v, str), "class names, background first", False),
             "spacing": (lambda v: num(v) and v > 0, "voxel sizes > 0", True),
             "tile": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0, "whole numbers > 0", True),
             "orientation": (lambda v: isinstance(v, str), "axis letters", True)}
    for k, (ok, what, nullable) in lists.items():
        v = data.get(k)
        if k in data and not (v is None and nullable) and not (isinstance(v, list) and v and all(map(ok, v))):
            wrong.append((k, f"{'null or ' if nullable else ''}a list of {what}"))
    if "overlap" in data and not (num(data["overlap"]) and data["overlap"] < 1):
        wrong.append(("overlap", "a number from 0 to below 1"))
    if data.get("object_diameter") is not None and not (num(data["object_diameter"]) and data["object_diameter"] > 0):
        wrong.append(("object_diameter", "null or a number > 0"))
    if isinstance(data.get("normalization"), dict) and not isinstance(data["normalization"].get("scheme"), str):
        wrong.append(("normalization", 'a JSON object with a "scheme"'))
    if wrong:
        k, what = wrong[0]
        raise ValueError(f"its {k!r} should be {what}, not {json.dumps(data[k])[:80]}")
    if not isinstance(data.get("format_version", FORMAT_VERSION), int) or data.get("format_version", 1) > FORMAT_VERSION:
        raise ValueError(f"it is of format {data.get('format_version')!r}, newer than this napari-attnseg {__version__} "
                         f"reads ({FORMAT_VERSION}); update napari-attnseg")


def _check_use(card: ModelCard, dims: int) -> None:
    """Refuse card fields that ``predict`` could not use with this model, at save time rather than at every run."""
    from .inference.normalize import SCHEMES

    norm, nums = card.normalization or {}, (int, float)
    lo, hi, window = (norm.get(k, d) for k, d in (("lower", 1.0), ("upper", 99.0), ("window", [0, 1])))
    problems = [f"'{k}' has {len(v)} values for a {dims}D model; give {dims} (one per model axis)"
                for k, v in (("spacing", card.spacing), ("tile", card.tile)) if v is not None and len(v) != dims]
    problems += [what for bad, what in (
        (card.brain_extraction not in (None, "auto"), f"'brain_extraction' is null or 'auto', not {card.brain_extraction!r}"),
        (norm.get("scheme") not in SCHEMES, f"the normalization scheme is one of {', '.join(SCHEMES)}, not {norm.get('scheme')!r}"),
        (not (isinstance(window, (list, tuple)) and len(window) == 2 and all(isinstance(v, nums) for v in window)
              and window[0] < window[1]), f"the normalization window is [low, high] (e.g. [-160, 240]), not {window!r}"),
        (not (isinstance(lo, nums) and isinstance(hi, nums) and 0 <= lo < hi <= 100),
         f"the normalization percentiles need 0 <= lower < upper <= 100, not {lo!r} and {hi!r}")) if bad]
    if problems:
        raise InputError(f"Invalid model card: {'; '.join(problems)}.")


def default_card(model: torch.nn.Module) -> ModelCard:
    """The card of a model saved without one: its arch and config, and a class name per output."""
    out = int(getattr(model, "out_channels", 2))
    classes = ["background", "foreground"] if out == 2 else ["background"] + [f"class {i}" for i in range(1, out)]
    return ModelCard(arch=model.arch, config=dict(model.config), classes=classes)


def fit_line(card: ModelCard | dict[str, Any] | None) -> str:
    """``"validation Dice 0.003 -> 0.313 (2026-12-06)"``: how a trained or fine-tuned model did on its run's
    validation, from its card (the Segment tab's model description and ``attnseg models`` show it, so round 1's
    and round 2's models can be told apart); ``""`` when the card records none, or chose by the training loss."""
    training = (card.training if isinstance(card, ModelCard) else (card or {}).get("training")) or {}
    before, after = training.get("val_dice_before"), training.get("val_dice_after")
    if training.get("selection", "val_dice") != "val_dice" or not isinstance(after, (int, float)):
        return ""
    text = f"validation Dice {before:.3f} -> {after:.3f}" if isinstance(before, (int, float)) else \
        f"validation Dice {after:.3f}"
    if isinstance(before, (int, float)) and training.get("best_epoch") == 0:
        text += ", the start model's weights kept"
    when = str(training.get("finished_at") or "")[:10]
    return f"{text} ({when})" if when else text
