"""Set one field of a model's card (inside the safetensors metadata and in the sibling .json), weights untouched.

    python scripts/set_card_field.py resources/models/brain-mri-3d.safetensors brain_extraction '"auto"'

The value is JSON. The tensors are written back as they were, so ``weights_sha256`` still holds (checked).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from safetensors.torch import load_file, save_file

from napari_attnseg._files import atomic_write
from napari_attnseg.checkpoint import _META_KEY, ModelCard, read_card, tensors_sha256


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("field", choices=sorted(f for f in ModelCard.__dataclass_fields__ if f not in ("arch", "config")))
    ap.add_argument("value", help="JSON, e.g. '\"auto\"' or 25.1 or null")
    args = ap.parse_args()
    path = Path(args.model)
    card = read_card(path)
    tensors = load_file(str(path))
    assert tensors_sha256(tensors) == card.weights_sha256
    setattr(card, args.field, json.loads(args.value))
    card_json = json.dumps(card.to_dict(), indent=2, sort_keys=True)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={_META_KEY: card_json}))
    atomic_write(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(card_json + "\n"))
    assert tensors_sha256(load_file(str(path))) == card.weights_sha256
    print(f"{path.name}: {args.field} = {getattr(card, args.field)!r}")


if __name__ == "__main__":
    main()
