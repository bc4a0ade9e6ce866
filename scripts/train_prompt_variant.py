"""Train one ablation variant of nuclei-2d-prompt (issue 18): the same run as the shipped model with
``prompts`` options, e.g. ``channels=False`` (attention prior only) or ``prior=False`` (click channels only).

    python scripts/train_prompt_variant.py DATASET OUT MINUTES channels=false
    python scripts/train_prompt_variant.py DATASET OUT MINUTES radius=3 seed=1   (click disks of 3 px, seed 1)
"""

import sys

from napari_attnseg.training import TrainConfig, train

dataset, out, minutes, *opts = sys.argv[1:]
def value(v: str):
    return v.lower() == "true" if v.lower() in ("true", "false") else float(v)


options = {k: value(v) for k, v in (o.split("=") for o in opts)}
seed = int(options.pop("seed", 0))  # seed=N: the run's seed (default 0, as the shipped model)
cfg = TrainConfig(dataset=dataset, out=out, start_model="nuclei-2d", prompts=True, minutes=float(minutes),
                  patience=100, patch=[64, 64], iters_per_epoch=20, train_region="0:512,0:200",
                  val_region="0:512,200:256", lr=1e-3, seed=seed, model_config={"prompts": options},
                  name="nuclei-2d-prompt-" + "-".join(opts), command=" ".join(["python", *sys.argv]))
r = train(cfg, progress=lambda i: print(f"epoch {i['epoch']}/{i['epochs']} loss {i['loss']:.4f} val {i['val_dice']:.4f}",
                                         flush=True))
print(r.checkpoint, r.val_dice_after)
