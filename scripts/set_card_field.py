"""Set one field of a model's card (inside the safetensors metadata and in the sibling .json), weights untouched.

    python scripts/set_card_field.py resources/models/brain-mri-3d.safetensors brain_extraction '"auto"'

The value is JSON. The tensors are written back as they were, so ``weights_sha256`` still holds (checked).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from napari_attnseg.checkpoint import ModelCard, rewrite_card


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("field", choices=sorted(f for f in ModelCard.__dataclass_fields__ if f not in ("arch", "config")))
    ap.add_argument("value", help="JSON, e.g. '\"auto\"' or 25.1 or null")
    args = ap.parse_args()
    card = rewrite_card(args.model, lambda c: setattr(c, args.field, json.loads(args.value)))
    print(f"{Path(args.model).name}: {args.field} = {getattr(card, args.field)!r}")

if __name__ == "__main__":
    main()
