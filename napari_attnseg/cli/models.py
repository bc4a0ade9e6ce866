"""`attnseg models`: the architectures, the bundled models and your own (the user models folder); `--add`
copies a checkpoint there, `--show` prints a model's card."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

NAME = "models"
HELP = ("List the architectures, the bundled models and your own models (the user models folder; "
        "$ATTNSEG_MODELS_DIR sets it); --add a checkpoint to your models, --show a model's card.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--add", metavar="CHECKPOINT", help="copy a .safetensors checkpoint (with its card), or the "
                        "folder train/finetune wrote, into your models folder; it is then listed here and in napari, "
                        "and --model NAME loads it")
    parser.add_argument("--name", help="the name it gets there (default: the card's name; when that is only the "
                        "architecture, as attnseg train names a run without --name: the run folder's or the file's "
                        "name); letters, digits, - _ .")
    parser.add_argument("--show", metavar="NAME_OR_PATH", help="print a model's card (what it segments, classes, "
                        "channels, spacing, training)")


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..models.registry import list_models

    if args.name and not args.add:
        raise InputError("--name goes with --add CHECKPOINT.")
    if args.add:
        return _add(args.add, args.name)
    if args.show:
        return _show(args.show)
    listing = list_models()
    width = max([16, *(len(m["name"]) + 1 for m in listing["bundled"] + listing["user"])])
    print("Architectures (attnseg train --arch NAME):")
    for a in listing["architectures"]:  # (the dimensions once: "2D/3D  U-Net baseline (Ronneberger 2015), 2D/3D")
        print(f"  {a['name']:<16} {a['dims']:<6} {a['description'].removesuffix(', ' + a['dims'])}")
    print("Bundled models (--model NAME):")
    for m in listing["bundled"] or [{"name": "(none installed)", "dims": "", "description": ""}]:
        print(f"  {m['name']:<{width}} {m['dims']:<6} {m['description']}")
    print(f"Your models (--model NAME), in {listing['user_folder']}:")
    for m in listing["user"]:
        about = f"; {m['description']}" if m["description"] else ""
        print(f"  {m['name']:<{width}} {m['dims']:<6} {m['arch']}, classes {m['classes']}{about}")
    if not listing["user"]:
        print("  (none; add one with: attnseg models --add CHECKPOINT [--name NAME])")
    for line in listing["user_problems"]:
        print(f"  warning: {line}", file=sys.stderr)
    return 0


def _add(source: str, name: str | None) -> int:
    """Copy a checkpoint, verified by loading it, into the user models folder; nothing there is replaced."""
    from .._files import atomic_write
    from ..checkpoint import load_model
    from ..errors import InputError
    from ..models.registry import bundled_models, model_name_of, user_models, user_models_dir

    path = Path(source).expanduser()
    if not (path.is_file() or path.is_dir()):
        raise InputError(f"{source} does not exist; give a .safetensors file or a folder that attnseg train/finetune "
                         "wrote.")
    model = load_model(str(path.resolve()), device="cpu")  # refuses damaged files; a folder: its best.safetensors
    card, checkpoint = model.card, Path(model.checkpoint_path)
    # a card named after its architecture (attnseg train without --name) names no model: the run folder's name does
    own = card.name if card.name and card.name != card.arch else ""
    name = name or own or (checkpoint.parent.name if checkpoint.stem == "best" else checkpoint.stem)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise InputError(f"{name!r} cannot be a model name: use the letters A-Z and a-z (no accents or spaces), digits, "
                         f"'-', '_' and '.', starting with a letter or digit, e.g. --name {model_name_of(name)}.")
    name = name.removesuffix(".safetensors")
    folder = user_models_dir()
    if folder.exists() and not folder.is_dir():
        raise InputError(f"Your models folder {folder} is a file; set ATTNSEG_MODELS_DIR to a folder (or move the file).")
    target = folder / f"{name}.safetensors"
    if name in bundled_models():
        raise InputError(f"{name!r} is a bundled model's name; give this one another with --name NAME.")
    taken = user_models()[0].get(name)
    if taken is None and (folder / name).is_dir() and not target.exists():  # (a run writing its model there)
        raise InputError(f"Your models folder already has a folder {folder / name} (a training run writes its model "
                         "there); nothing was added. Give this one another name with --name NAME.")
    if taken is not None or target.exists() or target.with_suffix(".json").exists() or (folder / name).exists():
        raise InputError(f"Your models folder already has {name!r} ({taken or target}); nothing was replaced. Give "
                         "this one another name with --name NAME, or delete the old one first.")
    sibling = checkpoint.with_suffix(".json")
    text = sibling.read_text() if sibling.is_file() else json.dumps(card.to_dict(), indent=2, sort_keys=True) + "\n"
    try:
        atomic_write(target, lambda tmp: shutil.copyfile(checkpoint, tmp))
        atomic_write(target.with_suffix(".json"), lambda tmp: Path(tmp).write_text(text))
        if card.name != name:  # the copy's card carries its name too: warnings, napari's list and records use it
            from ..checkpoint import rewrite_card

            rewrite_card(target, lambda c: setattr(c, "name", name))
    except OSError as exc:  # a read-only share, a full disk: nothing half-added stays behind
        for written in (target, target.with_suffix(".json")):
            try:
                written.unlink(missing_ok=True)
            except OSError:
                pass
        raise InputError(f"Cannot write {name!r} into your models folder {folder} ({exc.strerror or exc}); nothing was "
                         "added. Set ATTNSEG_MODELS_DIR to a folder you can write (a read-only shared folder of "
                         "models can still be used: --model PATH/NAME.safetensors, or napari's Load checkpoint...).") \
            from None
    print(f"added {checkpoint} as {name!r}: {target} ({card.arch}, {model.spatial_dims}D, classes "
          f"{', '.join(card.classes)}). attnseg predict ... --model {name}; napari lists it in the Segment tab.")
    return 0


def _show(name_or_path: str) -> int:
    from ..checkpoint import read_card, resolve_model_path

    path = resolve_model_path(name_or_path)
    card = read_card(path)
    config = card.config
    print(f"{card.name or path.stem}: {card.description}")
    print(f"  file           {path}")
    print(f"  architecture   {card.arch}, {config.get('spatial_dims', 2)}D, input channels "
          f"{config.get('in_channels', 1)}")
    print(f"  classes        {', '.join(card.classes)}")
    print(f"  normalisation  {json.dumps(card.normalization)}")
    print(f"  spacing        {card.spacing if card.spacing else 'none (works in pixels)'}; tile {card.tile}")
    from .._paths import models_dir

    bundled = path.parent.resolve() == models_dir().resolve()
    for key, label in (("dataset", "trained on"), ("start_model", "start model"), ("reproduce", "command")):
        if card.training.get(key):
            print(f"  {label:<14} {card.training[key]}")
    data = str(card.training.get("dataset") or "")
    if bundled and data:  # the paths are those of the machine that trained it
        print("  (paths of the machine that trained it; scripts/train_default_models.sh in the source repository "
              "rebuilds the bundled models from the sample data)")
    elif data and not Path(data).exists():
        print(f"  ({data} is not on this machine: the card records the paths of the machine that trained it)")
    if card.metrics:
        print(f"  metrics        {json.dumps(card.metrics)[:300]}")
    return 0
