"""Copy a trained promptable checkpoint into resources/models as fp16, with the benchmark's click
metrics in its card (issue 18).

    python scripts/ship_prompt_model.py /tmp/i18/both/best.safetensors nuclei-2d-prompt \
        benchmarks/results/prompts_nuclei.json "both"
"""

import dataclasses
import json
import sys
from pathlib import Path

from napari_attnseg import load_model, save_model
from napari_attnseg._paths import models_dir
from napari_attnseg.prompts.convert import prior_scales

src, name, results, variant = sys.argv[1:5]
extra = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}  # {"metrics": {...}, "notes": [...]}
model = load_model(src, device="cpu")
rows = json.loads(Path(results).read_text())
row = next(r for r in rows["rows"] if r["variant"].startswith(variant))
auto = next(r for r in rows["rows"] if r["variant"].startswith("automatic"))
metrics = dict(model.card.metrics)
metrics["clicks_right_half"] = {"model": {k: v for k, v in row.items() if k != "variant"},
                                "automatic_nuclei_2d": {k: v for k, v in auto.items() if k != "variant"},
                                "protocol": rows["meta"]["protocol"], "machine": rows["meta"]["machine"]}
metrics["prior_scales"] = prior_scales(model)
training = dict(model.card.training)
training["how"] = ("fine-tuned from nuclei-2d with `attnseg finetune --prompts` on nuclei2d columns 0-199 (validation "
                   "200-255; the right half 256-511 is held out for the click benchmark), labels with a one-pixel gap "
                   "between touching nuclei (scripts/make_nuclei_instance_dataset.py) so each nucleus is an object")
metrics.update(extra.get("metrics", {}))
training["notes"] = list(training.get("notes", [])) + list(extra.get("notes", []))
card = dataclasses.replace(model.card, name=name, metrics=metrics, training=training)
out = models_dir() / f"{name}.safetensors"
save_model(model, out, card, dtype="float16")
print(out, out.stat().st_size)
