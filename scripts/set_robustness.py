"""Copy the measured robustness rows into the bundled cards (``metrics["robustness"]``), weights untouched:
nuclei-2d <- benchmarks/results/scale.json (rescaled images, diameter none/given/auto), brain-mri-3d <-
benchmarks/results/robustness_skull.json (the MNI T1 in synthetic skull and scalp, extraction off/auto).

    python scripts/set_robustness.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from napari_attnseg.checkpoint import rewrite_card  # noqa: E402

SOURCES = {"nuclei-2d": "scale.json", "brain-mri-3d": "robustness_skull.json"}


def main() -> None:
    for name, source in SOURCES.items():
        data = json.loads((REPO / "benchmarks" / "results" / source).read_text())

        def edit(card, data=data, source=source):
            card.metrics["robustness"] = {"source": f"benchmarks/results/{source}", "machine": data["meta"]["machine"],
                                          "rows": data["rows"]}

        rewrite_card(REPO / "resources" / "models" / f"{name}.safetensors", edit)
        print(name, len(data["rows"]), "rows")


if __name__ == "__main__":
    main()
