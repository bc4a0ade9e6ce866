"""Architectures by name, the bundled models found in ``resources/models``, and the user's own models: the
checkpoints in the user models folder (:func:`user_models_dir`), listed by ``attnseg models`` and loaded by name."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..model_card import fit_line
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
    except (KeyError, TypeError):
        import difflib

        close = difflib.get_close_matches(str(arch).lower().replace("-", "_").replace(" ", "_"), ARCHITECTURES, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise InputError(
            f"Unknown architecture {arch!r}; valid architectures: {', '.join(ARCHITECTURES)}.{hint}"
        ) from None
    return getattr(importlib.import_module(f".{module}", __package__), cls)


def create_model(arch: str, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 2, **config: Any) -> SegmentationModel:
    """Build an untrained model: ``create_model("attention_unet", spatial_dims=3, out_channels=3)``."""
    cls = architecture_class(arch)
    for key, value in (("spatial_dims", spatial_dims), ("in_channels", in_channels), ("out_channels", out_channels)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InputError(f"{key} must be a whole number >= 1 (e.g. {key}=2); got {value!r}.")
    if spatial_dims not in cls.supported_dims:
        both = [a for a in ARCHITECTURES if spatial_dims in architecture_class(a).supported_dims]
        raise InputError(
            f"{arch} supports spatial_dims {', '.join(map(str, cls.supported_dims))}, not {spatial_dims}"
            + (f": it is a 2D architecture. For volumes, train {' or '.join(both)} in 3D (--dims 3), or {arch} in 2D "
               f"(--dims 2) on the volumes' slices (a 2D model segments a volume slice by slice)."
               if cls.supported_dims == (2,) else ".")
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


def user_models_dir() -> Path:
    """The folder whose checkpoints are the user's own models: ``$ATTNSEG_MODELS_DIR``, else the user data
    folder: ``~/.local/share/napari-attnseg/models`` on Linux (``$XDG_DATA_HOME``), ``~/Library/Application Support/
    napari-attnseg/models`` on macOS, ``%APPDATA%\\napari-attnseg\\models`` on Windows. It need not exist."""
    if os.environ.get("ATTNSEG_MODELS_DIR"):
        return Path(os.environ["ATTNSEG_MODELS_DIR"]).expanduser()
    import sys

    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "napari-attnseg" / "models"


def model_name_of(text: str) -> str:
    """``text`` as a model name of the user models folder (letters, digits, '-', '_' and '.'; other runs of
    characters become '-'): the name a file or folder there is listed by."""
    import re
    import unicodedata

    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()  # modèle -> modele
    return re.sub(r"[^A-Za-z0-9._-]+", "-", plain).strip("-._") or "model"


def user_models() -> tuple[dict[str, Path], list[str]]:
    """The user's models: name -> checkpoint, and a line per file that is not listed and why. A model is a
    ``NAME.safetensors`` in the folder (its card ``NAME.json`` beside it), or a folder ``NAME/`` that
    ``attnseg train``/``finetune`` wrote (its ``best.safetensors``). Names are the file or folder names, so two
    models with the same card name stay apart; a bundled model's name stays the bundled model's."""
    folder = user_models_dir()
    found: dict[str, Path] = {}
    problems: list[str] = []
    if not folder.is_dir() or not os.access(folder, os.R_OK | os.X_OK):
        if folder.exists():  # (a file, or a folder this user cannot read: not an empty list without a word)
            problems.append(f"{folder} is not a folder you can read; set ATTNSEG_MODELS_DIR to one for your models.")
        return found, problems
    bundled = bundled_models()
    candidates = [(p.stem, p) for p in sorted(folder.glob("*.safetensors"))]
    candidates += [(p.parent.name, p) for p in sorted(folder.glob("*/best.safetensors"))]
    problems += _misplaced(folder)
    for name, path in candidates:
        if name.startswith("."):  # a file being written (atomic_write's temporary)
            continue
        if name in bundled:
            problems.append(f"{path}: not listed: {name!r} is a bundled model's name; rename the file or folder.")
        elif name in found:
            problems.append(f"{path}: not listed: {found[name]} has the name {name!r} too; rename one of them.")
        else:
            problem = _card_problem(path)
            if problem:  # (the reason names the file already when it comes from read_card)
                problems.append(f"not listed: {problem}" if str(path) in problem else f"{path}: not listed: {problem}")
            else:
                found[name] = path
    from ..checkpoint_checks import remember_listed

    remember_listed(folder, found)  # (a model deleted later is then called gone, not unknown)
    return found, problems


def unlisted_run(out: str | os.PathLike) -> str | None:
    """Why a model that train/finetune writes to ``out`` (``<models folder>/NAME``) would not be listed by NAME: a
    bundled model or another model of the folder (``NAME.safetensors``) has the name, and ``--model NAME`` would load
    that one (a finetune run there ended with no word, its model hidden: audit); None elsewhere or when it would be."""
    out = Path(out).expanduser()
    try:
        if out.resolve().parent != user_models_dir().expanduser().resolve():
            return None
    except OSError:
        return None
    name, taken = out.name, user_models()[0].get(out.name)
    if name in bundled_models():
        return f"{name!r} is a bundled model's name"
    if taken is not None and taken.resolve() != (out / "best.safetensors").resolve():
        return f"your models folder already has a model named {name!r} ({taken})"
    return None


def _misplaced(folder: Path) -> list[str]:
    """A line per checkpoint of a sub-folder that is not listed because it is not ``NAME/best.safetensors``: a zip
    unpacked with its wrapper folder (``NAME/run/best.safetensors``), renamed files (``NAME/model.safetensors``)."""
    lines = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if (sub / "best.safetensors").is_file():
            continue
        files = sorted([*sub.glob("*.safetensors"), *sub.glob("*/best.safetensors")])
        files = [f for f in files if f.name != "state.safetensors" and not f.name.startswith(".")]
        if files:
            lines.append(f"{sub}: not listed: a model here is NAME.safetensors, or a folder NAME/ holding best."
                         f"safetensors; this folder holds {', '.join(str(f.relative_to(sub)) for f in files[:3])}. Move "
                         f"the model up, or add it with: attnseg models --add {shlex.quote(str(files[0]))} --name NAME.")
    return lines


_CARDS: dict[tuple, dict | str] = {}  # (path, its and its card's mtime and size) -> card dict, or why it is unreadable


def _read_user_card(path: Path) -> dict | str:
    """The card of a user model as a dict, or the reason it cannot be read; read once per file version (the
    napari panels ask for cards at every layer change)."""
    from ..checkpoint import read_card

    stats = tuple((p.stat().st_mtime_ns, p.stat().st_size) if p.exists() else None
                  for p in (path, path.with_suffix(".json")))
    key = (str(path), stats)
    if key not in _CARDS:
        try:
            _CARDS[key] = {**read_card(path).to_dict(), "path": str(path)}
        except Exception as exc:  # noqa: BLE001 - a damaged file is reported, never a crash of the listing
            _CARDS[key] = str(exc)
    return _CARDS[key]


def _card_problem(path: Path) -> str | None:
    found = _read_user_card(path)
    return found if isinstance(found, str) else None


def available_models() -> dict[str, dict[str, Any]]:
    """Every model a name loads: the bundled ones, then the user's (:func:`user_models`); name -> card dict
    (a user model's with ``"path"``, its checkpoint)."""
    found = dict(bundled_models())
    for name, path in user_models()[0].items():
        card = _read_user_card(path)
        if isinstance(card, dict):
            found[name] = card
    return found


def card_of(name_or_path: str | Path) -> dict[str, Any] | None:
    """The card (a dict) of a model by name (bundled, or in the user's models folder) or of a checkpoint path; None
    when it cannot be read (its own error comes when the model is loaded). Shared by the napari model list and the
    fine-tuning summaries."""
    found = available_models().get(str(name_or_path))
    if found is not None:
        return found
    try:
        from ..checkpoint import read_card

        return read_card(name_or_path).to_dict()
    except Exception:  # noqa: BLE001 - an unreadable checkpoint says so when it is loaded
        return None


def list_models() -> dict[str, Any]:
    """Architectures, bundled models and the user's models, each with a one-line description.

    Returns ``{"architectures": [{"name", "description", "dims"}], "bundled": [{"name", "description",
    "arch", "dims", "classes"}], "user": [the same, and "path"], "user_folder": str, "user_problems": [str]}``.
    """
    archs = [
        {"name": name, "description": desc, "dims": "2D/3D" if name in ("unet", "attention_unet") else "2D"}
        for name, (_, _, desc) in ARCHITECTURES.items()
    ]

    def row(name: str, card: dict) -> dict[str, str]:
        classes = card.get("classes", [])
        return {"name": name, "description": str(card.get("description", "")), "arch": str(card.get("arch", "")),
                "dims": f"{(card.get('config') or {}).get('spatial_dims', '?')}D",
                "classes": ", ".join(map(str, classes)) if isinstance(classes, list) else str(classes)}

    def user_row(name: str, card: dict) -> dict[str, str]:
        out = row(name, card)
        if fit := fit_line(card):  # (round 1's and round 2's models told apart)
            out["description"] = f"{out['description']}; {fit}" if out["description"] else fit
        return {**out, "path": str(user[name])}

    bundled = bundled_models()
    user, problems = user_models()  # (listed only with a readable card, cached by _read_user_card)
    return {"architectures": archs, "bundled": [row(n, c) for n, c in bundled.items()],
            "user": [user_row(n, _read_user_card(p)) for n, p in user.items()],
            "user_folder": str(user_models_dir()), "user_problems": problems}


def arch_hint(arch: str, names) -> str:
    """``"; its tensors are those of a napari-attnseg 'unet'..."`` when the tensor ``names`` are another
    architecture's than the card's ``arch`` (a card edited by hand, or copied from another model), else ``""``."""
    guess = guess_architecture(names)
    if guess is None or guess == arch:
        return ""
    return (f"; its tensors are those of a napari-attnseg {guess!r}, not {arch!r}: the card's 'arch' was edited, or the "
            "card belongs to another model")


def explain_mismatch(model, tensors: dict) -> str:
    """Why ``tensors`` do not load into ``model`` (built from a card): another architecture's tensors, the input
    channels or outputs the card gets wrong, then the missing, unexpected and misshaped tensors, a few of each named."""
    if hint := arch_hint(getattr(model, "arch", ""), tensors):
        return hint[2:]
    expected = model.state_dict()
    missing = [k for k in expected if k not in tensors]
    extra = [k for k in tensors if k not in expected]
    shaped = [k for k in expected if k in tensors and tuple(tensors[k].shape) != tuple(expected[k].shape)]
    if expected and tensors and not set(expected) & set(tensors):
        return (f"none of its {len(tensors)} tensors has a name of this architecture (e.g. {next(iter(tensors))!r}): "
                "they are not the weights of a napari-attnseg model")
    ins, outs = model.config.get("in_channels", 1), model.config.get("out_channels", 2)
    parts = []
    for k in shaped:
        want, got = tuple(expected[k].shape), tuple(tensors[k].shape)
        if len(want) == len(got) >= 3 and want[1] == ins != got[1] and want[0] == got[0] and not parts:
            parts.append(f"the weights take {got[1]} input channel(s) ({k}) but the card's config says in_channels {ins}")
        elif len(want) == len(got) >= 3 and want[0] == outs != got[0] and want[1:] == got[1:] and len(parts) < 2:
            parts.append(f"the weights have {got[0]} outputs ({k}) but the card's config says out_channels {outs}")
    for what, keys in (("missing", missing), ("unexpected", extra), ("of another shape", shaped)):
        if keys:
            shapes = [f"{k} {tuple(tensors[k].shape)} (card: {tuple(expected[k].shape)})" for k in keys[:3]] \
                if what == "of another shape" else keys[:3]
            more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
            parts.append(f"{len(keys)} tensor(s) {what}: {', '.join(shapes)}{more}")
    return "; ".join(parts)


def guess_architecture(names) -> str | None:
    """The architecture whose tensor names ``names`` (of a file without a card) mostly are, or None."""
    names, best, score = set(names), None, 0.5
    for arch in ARCHITECTURES:  # the closest set of names (a plain U-Net's are most of an Attention U-Net's)
        try:
            keys = set(create_model(arch).state_dict())
        except Exception:  # noqa: BLE001 - a guess only
            continue
        if names and len(names & keys) / len(names | keys) > score:
            best, score = arch, len(names & keys) / len(names | keys)
    return best


def cardless_hint(names) -> str:
    """What to do with a safetensors file without a card, from its tensor ``names``: add a card to a
    napari-attnseg model's weights; another tool's weights (MONAI, ...) do not run here."""
    names = list(names)
    if any(n.startswith("model.") for n in names) and any(n.startswith(("opt.", "rng.")) for n in names):
        return ("it is the training state that attnseg train/finetune keep to --resume a run (state.safetensors: "
                "weights, optimizer and random state), not a model. The model is best.safetensors beside it: pass "
                "that file, or the run folder.")
    arch = guess_architecture(names)
    if arch is not None:
        return (f"its tensors are those of a napari-attnseg {arch!r}. Add a card once in Python: net = napari_attnseg."
                f"create_model({arch!r}, spatial_dims=..., out_channels=..., ...) as it was trained; net.load_state_dict("
                "safetensors.torch.load_file(PATH)); napari_attnseg.save_model(net, 'model.safetensors', "
                "card={'classes': [...]}).")
    example = f" (e.g. {names[0]!r})" if names else ""
    return (f"its tensors{example} are not those of any napari-attnseg architecture ({', '.join(ARCHITECTURES)}): it "
            "holds another tool's network (MONAI, nnU-Net, ...), which napari-attnseg cannot run. Train or fine-tune "
            "one of its own models on your data instead (attnseg train / attnseg finetune).")
