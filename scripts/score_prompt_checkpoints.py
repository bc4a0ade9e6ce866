"""Score promptable checkpoints (best.safetensors and the last weights in state.safetensors) with the
trainer's click validation on nuclei columns 200-255; writes the last weights as last.safetensors."""

import sys
from pathlib import Path

import numpy as np
import tifffile
from safetensors.torch import load_file

from napari_attnseg import load_model, save_model
from napari_attnseg.inference.normalize import apply_stats, compute_stats
from napari_attnseg.prompts.training import click_score

run, data = Path(sys.argv[1]), sys.argv[2]
best = load_model(run / "best.safetensors", device="cpu")
last = load_model(run / "best.safetensors", device="cpu")
state = {k[len("model."):]: v.float() for k, v in load_file(str(run / "state.safetensors")).items() if k.startswith("model.")}
last.load_state_dict(state)
save_model(last, run / "last.safetensors", best.card)
image = tifffile.imread(f"{data}/images/nuclei2d.tif").astype(np.float32)[None]
labels = tifffile.imread(f"{data}/labels/nuclei2d.tif")
img = apply_stats(image, compute_stats(image, best.card.normalization, True))
parts = [(img, labels[:, 200:256], (slice(None), slice(200, 256)))]
for name, m in (("best", best), ("last", last)):
    print(name, round(click_score(m, parts), 4), flush=True)
