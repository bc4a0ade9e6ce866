"""Copy the trained lesion-3d-prompt checkpoint into resources/models as fp16, with the 3D click
benchmark's figures (benchmarks/results/prompts_lesion3d.json) in its card (issue 18).

    python scripts/ship_lesion_prompt_model.py /tmp/lesion_run/best.safetensors \
        benchmarks/results/prompts_lesion3d.json '{"notes": [...], "training": {...}}'

The card's spacing is cleared: the model works in the image's own voxels (it was trained on volumes of
0.6-6.5 mm voxels without resampling, clicks as balls of ``radius`` voxels), so napari's layer scale must
not rescale the click balls.
"""

import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from napari_attnseg import load_model, save_model  # noqa: E402
from napari_attnseg._paths import models_dir  # noqa: E402
from napari_attnseg.prompts.convert import prior_scales  # noqa: E402

NAME = "lesion-3d-prompt"
src, results = sys.argv[1:3]
extra = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
model = load_model(src, device="cpu")
data = json.loads(Path(results).read_text())
metrics = dict(model.card.metrics)
metrics["clicks_lung1"] = {"rows": data["rows"], **{k: v for k, v in data["meta"].items() if k != "anchors"}}
metrics["prior_scales"] = prior_scales(model)
metrics.update(extra.get("metrics", {}))
training = dict(model.card.training)
training["how"] = (
    "trained from scratch (small 3D Attention U-Net, features 4-64, instance norm, promptable from the start) by "
    "simulated clicks with scripts/train_lesion_prompt.py on the dataset of scripts/build_lesion_dataset.py: the MNI152 "
    "T1 resampled to 7 spacings/orientations (0.6-1.2 mm in-plane, 1-6.5 mm slices) and radiomics brain1 (its real "
    "tumour), with synthetic lesions pasted in (deformed ellipsoids 5-40 mm, brighter or darker, soft edges, texture), "
    "one class 'object'; strong intensity augmentation (random transfer functions per patch, contrast, gamma, noise)")
training["held_out"] = "radiomics lung1 (chest CT, the tumour of the click benchmark): never read in training"
training.update(extra.get("training", {}))
training["notes"] = list(training.get("notes", [])) + list(extra.get("notes", []))
card = dataclasses.replace(model.card, name=NAME, spacing=None, metrics=metrics, training=training)
out = models_dir() / f"{NAME}.safetensors"
save_model(model, out, card, dtype="float16")
print(out, out.stat().st_size)
