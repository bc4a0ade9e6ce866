"""`attnseg predict`'s options checked once, before any input is read: ``--overlap`` as argparse reads it, ``--tile``
and ``--diameter`` against the model's card (a folder of N images had N identical failures, each input read first,
and a cohort summary of them)."""

from __future__ import annotations

import argparse
import math


def overlap_share(text: str) -> float:
    """``--overlap``: a share of a tile in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < 1:  # (NaN too)
        raise argparse.ArgumentTypeError(f"takes a share of a tile from 0 to below 1, e.g. 0.25; got {text!r}")
    return value


def check_against_card(args: argparse.Namespace) -> None:
    """Refuse a ``--tile`` of the wrong length or a ``--diameter`` the model's card cannot use, reading only the card.
    A model that cannot be read is left to the run, which says what is wrong with it as before."""
    if args.tile is None and args.diameter is None:
        return
    from types import SimpleNamespace

    from ..checkpoint import read_card, resolve_model_path
    from ..errors import InputError
    from ..inference.diameter import card_diameter

    try:
        card = read_card(resolve_model_path(args.model))
    except Exception:  # noqa: BLE001 - (the run loads the model and says why it cannot)
        return
    dims, name = card.spatial_dims, card.name or args.model
    if isinstance(args.tile, list) and len(args.tile) != dims:
        raise InputError(f"--tile {','.join(map(str, args.tile))} gives {len(args.tile)} sizes; {name} is a {dims}D "
                         f"model: give one size (e.g. 256) or {dims}. Nothing was run.")
    if args.diameter is not None:
        card_diameter(SimpleNamespace(card=card))
