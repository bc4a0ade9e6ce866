"""Checkpoints that are safe by construction: safetensors weights plus a JSON model card.

``save_model(model, "x.safetensors", card)`` writes the weights with the card embedded in the
safetensors metadata, and ``x.json`` beside them for people to read. ``load_model`` never unpickles:
it reads the card, checks the weights' sha256 against it, rebuilds the architecture from the card and
loads the tensors strictly. Every failure is a ``CheckpointError`` naming the file and the problem.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from ._files import atomic_write
from ._version import __version__
from .checkpoint_checks import folder_message, foreign_file_message, unlisted_user_model
from .devices import resolve_device
from .errors import CheckpointError, InputError
from .model_card import (  # noqa: F401 (re-exported: the card's names have always been imported from here)
    FORMAT_VERSION,
    PROMPT_INITS,
    ModelCard,
    _check_fields,
    _check_use,
    default_card,
)

log = logging.getLogger(__name__)
_META_KEY = "card"  # docs/ARCHITECTURE.md: the card JSON lives in the safetensors metadata under "card"
_LEGACY_META_KEYS = ("napari_attnseg_card",)  # files written before the key followed the contract
# card fields that change how a model is built or used: the sibling .json must agree on them
_CHECKED_KEYS = ("arch", "config", "weights_sha256", "weights_dtype", "classes", "normalization",
                 "spacing", "object_diameter", "brain_extraction", "prompt_init", "tile", "overlap")


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """A digest of names, dtypes, shapes and bytes, in sorted-name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        for part in (name, str(t.dtype), str(tuple(t.shape))):
            h.update(part.encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_model(
    model: torch.nn.Module, path: str | os.PathLike, card: ModelCard | dict | None = None, dtype: str = "float32"
) -> ModelCard:
    """Save ``model`` to ``path`` (``.safetensors``) with its card, and the card to ``path.json``.

    Args:
        card: a :class:`ModelCard`; or a dict of card fields, which change those of the model's own card (a
            loaded model's: how it is run is kept, not its metrics and training record) or of a new one; None: its own.
        dtype: ``float32`` or ``float16`` (halves the file; floating tensors only).
    Returns the card as written (with the weights' sha256 filled in).
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise InputError(f"Model files end in .safetensors; got {path}.")
    if dtype not in ("float32", "float16"):
        raise InputError(f"dtype must be float32 or float16, got {dtype!r}")
    if not isinstance(model, torch.nn.Module) or not isinstance(getattr(model, "arch", None), str) \
            or not isinstance(getattr(model, "config", None), dict):
        raise InputError(f"save_model saves napari-attnseg models (from load_model, create_model or training), which "
                         f"carry .arch and .config to rebuild them; got {type(model).__name__}. Wrap the network in "
                         "a model from napari_attnseg.create_model.")
    if card is None:
        card = getattr(model, "card", None) or default_card(model)
    elif isinstance(card, dict):
        known = {f.name for f in dataclasses.fields(ModelCard)}
        if unknown := sorted(set(card) - known):
            raise InputError(f"Unknown model card key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(sorted(known))}.")
        own = getattr(model, "card", None)  # a loaded model keeps how it is run, not its old weights' metrics/training
        base = {k: v for k, v in own.to_dict().items() if k not in ("metrics", "training")} if own else {}
        try:
            card = ModelCard.from_dict({**base, "arch": model.arch, "config": dict(model.config), **card})
        except (ValueError, TypeError) as exc:
            raise InputError(f"Invalid model card: {exc}.") from None
    elif not isinstance(card, ModelCard):
        raise InputError(f"card must be a ModelCard, a dict of card fields or None; got {type(card).__name__}.")
    n_out = int(getattr(model, "out_channels", model.config.get("out_channels", 2)))
    if not isinstance(card.classes, (list, tuple)) or not all(isinstance(c, str) for c in card.classes):
        raise InputError(f"The card's classes must be a list of names, background first; got {card.classes!r}.")
    if len(card.classes) not in (n_out, max(n_out, 2)):  # one output: its name, or background + it
        raise InputError(f"The card lists {len(card.classes)} classes ({card.classes}) but the model has {n_out} "
                         "outputs (background first); give one class name per output.")
    _check_use(card, int(model.config.get("spatial_dims", 2)))
    card = dataclasses.replace(card, arch=model.arch, config=dict(model.config), weights_dtype=dtype,
                               code_version=__version__, format_version=FORMAT_VERSION)
    target = torch.float16 if dtype == "float16" else torch.float32
    tensors = {
        k: (v.detach().to("cpu", target) if v.is_floating_point() else v.detach().cpu()).contiguous()
        for k, v in model.state_dict().items()
    }
    card.weights_sha256 = tensors_sha256(tensors)
    card_json = json.dumps(card.to_dict(), indent=2, sort_keys=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the old card beside goes first: a save stopped between the two files (killed, power lost) leaves the new weights
    # without one (their card inside is read), not with the old weights' card, refused as 'edited' (a run's best lost)
    path.with_suffix(".json").unlink(missing_ok=True)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={_META_KEY: card_json}))
    atomic_write(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(card_json + "\n"))
    return card


def resolve_model_path(name_or_path: str | os.PathLike) -> Path:
    """A bundled model name (see ``attnseg models``), a path to a ``.safetensors`` file, a folder that
    train/finetune wrote (its ``best.safetensors``), or the name of a model in the user models folder. A bare bundled name is the bundled model even when a
    folder of that name is here (``./name`` is the folder)."""
    from ._paths import models_dir

    text = str(_given(name_or_path))
    candidate = Path(text).expanduser()
    try:
        bundled = models_dir() / f"{text}.safetensors"
    except FileNotFoundError:
        bundled = None
    bundled = bundled if bundled is not None and os.sep not in text and bundled.exists() else None
    if bundled is not None and candidate.is_dir():  # a bare bundled name means the bundled model: "./name" the folder
        log.warning("Using the bundled model %r, not the folder %s here (pass ./%s for that one).", text, text, text)
        return bundled
    if (mine := _user_model_over_local(text, candidate)) is not None:
        return mine
    if candidate.is_dir():  # the folder train/finetune wrote: its best.safetensors
        best = candidate / "best.safetensors"
        if best.is_file():
            return best
        raise CheckpointError(folder_message(candidate))  # (a MONAI bundle, a wrapper folder: what to pass instead)
    if candidate.suffix == ".safetensors" or candidate.exists() or os.sep in text:
        if not candidate.exists():
            raise CheckpointError(f"Model file {candidate} does not exist.")
        return candidate
    if bundled is not None:
        return bundled
    import difflib

    from .models.registry import bundled_models, user_models, user_models_dir

    user = user_models()[0]  # the user models folder's checkpoints, by file or folder name
    if text in user:
        return user[text]
    if (found := unlisted_user_model(text, user_models_dir())) is not None:  # damaged: loading it says why
        return found
    names = ", ".join(bundled_models()) or "none installed"
    close = difflib.get_close_matches(text, [*bundled_models(), *user], n=1, cutoff=0.6)
    hint = f"Did you mean {close[0]!r}? " if close else ""
    raise CheckpointError(f"No bundled model named {text!r} (bundled: {names}) and no model of that name in your models "
                          f"folder {user_models_dir()} ({', '.join(user) or 'none there'}). {hint}Or pass a path to a "
                          ".safetensors file.")


def _user_model_over_local(text: str, candidate: Path) -> Path | None:
    """A bare name (no folder separator, not starting with '.') of a model in the user models folder means that model,
    as a bundled name does, even when a file or folder of that name is here (was: ``./ct-model``, taken silently; after
    a later run into it with --overwrite, ``--model ct-model`` meant other weights). None otherwise."""
    if not candidate.exists() or text.startswith((".", "~")) or any(s and s in text for s in (os.sep, os.altsep)):
        return None
    from .models.registry import user_models, user_models_dir

    found = user_models()[0].get(text)
    if found is None or os.path.realpath(found).startswith(os.path.realpath(candidate) + os.sep) \
            or os.path.realpath(found) == os.path.realpath(candidate):  # (it is that folder: the models folder is here)
        return None
    what = "folder" if candidate.is_dir() else "file"
    log.warning("Using your saved model %r (your models folder %s), not the %s %s here (pass ./%s for that one).",
                text, user_models_dir(), what, text, text)
    return found


def _given(name_or_path: str | os.PathLike | None) -> str | os.PathLike:
    """``name_or_path`` unless it names no model (None, or an empty name that ``Path`` reads as the current folder)."""
    if name_or_path is None or not str(name_or_path).strip():
        raise CheckpointError(f"No model given ({name_or_path!r}): pass a bundled model name (see `attnseg models`) or "
                              "a path to a .safetensors file (a training or fine-tuning run that learned nothing saved "
                              "no model: its result's checkpoint is None).")
    return name_or_path


def read_card(path: str | os.PathLike) -> ModelCard:
    """Read and validate the card of a checkpoint without loading its tensors."""
    from safetensors import safe_open

    path = Path(_given(path))
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises several types for corrupt headers
        if (foreign := foreign_file_message(path)) is not None:  # a pickle, TorchScript, a MONAI bundle: never loaded
            raise CheckpointError(foreign) from None
        hint = ("; it is an image, not a model (a model is a .safetensors file, e.g. a run folder's best.safetensors): "
                "segment the image with attnseg predict IMAGE --model NAME (`attnseg models` lists the names)"
                if path.name.lower().endswith((".tif", ".tiff", ".nii", ".nii.gz", ".dcm")) else
                "; it may be truncated or corrupt")
        raise CheckpointError(f"{path} is not a readable safetensors file ({exc}){hint}.") from None
    key = next((k for k in (_META_KEY, *_LEGACY_META_KEYS) if k in meta), None)
    if key is None:
        from .models.registry import cardless_hint

        with safe_open(str(path), framework="pt") as f:
            names = list(f.keys())
        raise CheckpointError(f"{path} has no napari-attnseg model card in its metadata; {cardless_hint(names)}")
    try:
        card = ModelCard.from_dict(json.loads(meta[key]))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"The model card inside {path} is invalid: {exc}. The file was edited or damaged: use "
                              "the original file, or save the model again with napari_attnseg.save_model.") from None
    sibling = path.with_suffix(".json")
    if sibling.exists():
        try:
            side = json.loads(sibling.read_text())
        except ValueError as exc:
            raise CheckpointError(f"The card {sibling} is not valid JSON ({exc}).") from None
        inside = card.to_dict()
        differ = [k for k in _CHECKED_KEYS if side.get(k) != inside.get(k)] if isinstance(side, dict) else ["everything"]
        if differ:
            raise CheckpointError(f"The card {sibling} disagrees with the one inside {path.name} on "
                                  f"{', '.join(map(repr, differ))}; the card was edited or belongs to another model. "
                                  "Restore it or delete it.")
    return card


def model_identity(source) -> dict[str, Any]:
    """The model as a dataset manifest records it: ``{"model": name, "weights_sha256": digest}``.

    ``weights_sha256`` is the digest of the weights (:func:`tensors_sha256`: names, dtypes, shapes
    and bytes of the tensors), the one in the model card that ``load_model`` verifies; it does not
    change when the card is edited or the file is copied, and the CLI and the napari panel record
    the same value for the same model. ``source``: a loaded model, a bundled model name or a
    ``.safetensors`` path (only its card is read), or a layer's provenance dict
    (:func:`napari_attnseg.layers.provenance`, which keeps the digest as ``checkpoint_sha256``).
    """
    if isinstance(source, dict):
        from .data.volume import model_info_of

        info = model_info_of(source) or {}
        return {"model": info.get("model"), "weights_sha256": info.get("weights_sha256")}
    if isinstance(source, torch.nn.Module):
        card = getattr(source, "card", None)
        digest = getattr(card, "weights_sha256", "") or tensors_sha256(source.state_dict())
        return {"model": getattr(card, "name", "") or getattr(source, "arch", None), "weights_sha256": digest}
    path = resolve_model_path(source)
    card = read_card(path)
    digest = card.weights_sha256
    if not digest:  # a card written without it: hash the tensors as save_model would
        from safetensors.torch import load_file

        digest = tensors_sha256(load_file(str(path)))
    text = str(source)
    name = text if path.stem == text else (card.name or path.name)
    return {"model": name, "weights_sha256": digest}


def load_model(name_or_path: str | os.PathLike, device: str | torch.device = "auto") -> torch.nn.Module:
    """Load a bundled model by name or a ``.safetensors`` checkpoint; eval mode, ``model.card`` set."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .models.registry import arch_hint, create_model, explain_mismatch

    path = resolve_model_path(name_or_path)
    card = read_card(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"Could not read the weights in {path} ({exc}); the file may be truncated or corrupt.") from None
    digest = tensors_sha256(tensors)
    if card.weights_sha256 and digest != card.weights_sha256:
        raise CheckpointError(
            f"The weights in {path} do not match the sha256 recorded in its card; the file was modified. "
            "Use the original file."
        )
    try:
        model = create_model(card.arch, **card.config)
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot build architecture {card.arch!r} from its card ({exc}){arch_hint(card.arch, tensors)}.") from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError:
        raise CheckpointError(f"The weights in {path} do not fit architecture {card.arch!r} with the card's config: "
                              f"{explain_mismatch(model, state)}. The file or its card was edited, or they belong to "
                              "different models: use the original file.") from None
    n_out = int(card.config.get("out_channels", 2))
    if len(card.classes) not in (n_out, max(n_out, 2)):
        raise CheckpointError(f"The card of {path} names {len(card.classes)} classes ({', '.join(card.classes)}) but the "
                              f"model has {n_out} outputs; the card was edited: use the original file.")
    model.card = card
    model.checkpoint_path = str(path)
    return model.to(resolve_device(device)).eval()


def rewrite_card(path: str | os.PathLike, edit) -> ModelCard:
    """Change the card of the checkpoint at ``path`` with ``edit(card)`` (in the safetensors metadata
    and the sibling ``.json``) and write the tensors back unchanged, so ``weights_sha256`` still holds."""
    from safetensors.torch import load_file, save_file

    path = Path(path)
    card = read_card(path)
    tensors = load_file(str(path))
    if tensors_sha256(tensors) != card.weights_sha256:
        raise CheckpointError(f"{path}: the weights do not match the card's sha256; not rewriting it.")
    edit(card)
    text = json.dumps(card.to_dict(), indent=2, sort_keys=True)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={_META_KEY: text}))
    atomic_write(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(text + "\n"))
    return card
