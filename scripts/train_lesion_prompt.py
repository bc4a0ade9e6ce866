"""Train ``lesion-3d-prompt`` (issue 18): a small 3D Attention U-Net, promptable from the start, trained
from scratch by simulated clicks (the one trainer, ``TrainConfig.prompts``) on the dataset that
``scripts/build_lesion_dataset.py`` writes (one class, "object": the model learns to segment the
object under the clicks, whatever it is).

On top of the trainer's augmentation (flips, 90-degree turns, small rotation/scaling, contrast,
brightness, gamma, noise - asked for here at higher rates than the defaults) every patch gets, with
probability ``--lut-aug``, a random intensity remapping: a piecewise-linear transfer function through
6 random control points over the patch's 0.5-99.5 % range (monotone 70 % of the time, else not, so
contrasts invert and tissues swap brightness), and with probability 0.3 a wider contrast (x0.6-1.6)
and brightness (+-0.25) change. The model must then rely on the object's difference from its
surroundings, not on an intensity, so it can be used on a CT or MRI lesion it never saw.

    OMP_NUM_THREADS=1 python scripts/train_lesion_prompt.py /tmp/lesion_ds --out /tmp/lesion_run --minutes 40
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from napari_attnseg.cli._train_common import run_training  # noqa: E402
from napari_attnseg.training import TrainConfig  # noqa: E402
from napari_attnseg.training import setup as setup_module  # noqa: E402
from napari_attnseg.training import trainer as trainer_module  # noqa: E402
from napari_attnseg.training.sampling import PatchSampler  # noqa: E402

DESCRIPTION = ("Click to segment any object in a 3D image (CT or MRI lesion, class-agnostic): small promptable "
               "3D Attention U-Net (click channels + SMCA gate priors) trained from scratch by simulated clicks")


def lut_augment(x: torch.Tensor, gen: torch.Generator, p_lut: float, p_wide: float = 0.3) -> torch.Tensor:
    """Random intensity transfer functions per patch (image channels only); see the module docstring."""
    x = x.clone()
    b = x.shape[0]
    for i in range(b):
        for c in range(x.shape[1]):
            v = x[i, c]
            if torch.rand(1, generator=gen).item() < p_lut:
                flat = v.flatten()
                sub = flat[:: max(1, flat.numel() // 20000)]
                lo, hi = torch.quantile(sub, 0.005).item(), torch.quantile(sub, 0.995).item()
                if hi - lo > 1e-6:
                    ys = torch.rand(6, generator=gen).numpy()
                    if torch.rand(1, generator=gen).item() < 0.7:
                        ys = np.sort(ys)
                        if torch.rand(1, generator=gen).item() < 0.3:
                            ys = ys[::-1]  # inverted contrast
                    if np.ptp(ys) > 0.2:
                        ys = (ys - ys.min()) / np.ptp(ys)
                        t = ((v - lo) / (hi - lo)).numpy()
                        mapped = np.interp(t, np.linspace(0, 1, 6), ys)
                        # keep what lies beyond the range (e.g. bone above the 99.5 %) beyond it
                        mapped = mapped + np.where(t > 1, t - 1, 0) + np.where(t < 0, t, 0)
                        v = torch.from_numpy((lo + mapped * (hi - lo)).astype(np.float32))
            if torch.rand(1, generator=gen).item() < p_wide:
                scale = float(np.exp(np.log(0.6) + torch.rand(1, generator=gen).item() * np.log(1.6 / 0.6)))
                shift = (torch.rand(1, generator=gen).item() * 2 - 1) * 0.25
                v = v * scale + shift
            x[i, c] = v
    return x


class ObjectSampler(PatchSampler):
    """Foreground patches centred on a uniformly drawn object (connected component of >= 10 voxels), not
    on a uniformly drawn foreground voxel (which favours the large lesions); the volume drawn in
    proportion to its number of objects."""

    def __init__(self, images, labels, patch, rng, **kw):
        super().__init__(images, labels, patch, rng, **kw)
        counts = []
        for i, lab in enumerate(labels):
            fg = lab > 0
            if self.ignore is not None and self.ignore >= 0:
                fg &= lab != self.ignore
            cc, n = ndi.label(fg)
            pts = []
            for k, sl in enumerate(ndi.find_objects(cc)):
                idx = np.argwhere(cc[sl] == k + 1) + np.array([s.start for s in sl])
                if len(idx) >= 10:
                    pts.append(idx[rng.choice(len(idx), 64)])
            if pts:
                self.fg[i] = np.concatenate(pts)
            counts.append(max(len(pts), 1))
        self.weights = np.array(counts, float) / sum(counts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("--out", required=True)
    budget = ap.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, default=None)
    budget.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--features", default="4,8,16,32,64")
    ap.add_argument("--norm", default="instance")
    ap.add_argument("--patch", default="32,64,64")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--iters-per-epoch", type=int, default=20)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--radius", type=float, default=3.0, help="click ball radius in voxels")
    ap.add_argument("--residual", type=float, default=0.0,
                    help="> 0: the previous mask goes straight onto the output with this starting gain (prompt option "
                         "'residual'): the network learns corrections of the guess / the last mask")
    ap.add_argument("--lut-aug", type=float, default=0.5)
    ap.add_argument("--fg-fraction", type=float, default=0.8)
    ap.add_argument("--prompt-threshold", type=float, default=0.0,
                    help="share of simulated sessions whose previous mask is the threshold guess under the first click "
                         "(the card then says prompt_init 'threshold': segment_with_prompts starts new objects from it)")
    ap.add_argument("--uniform-objects", action="store_true",
                    help="centre foreground patches on uniformly drawn objects (not voxels: small lesions as often as large)")
    ap.add_argument("--start", default=None, help="continue from this checkpoint (a promptable 3D model; its "
                    "architecture wins over --features/--norm/--radius; no fine-tuning pulls: l2sp 0, no hard negatives)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="lesion-3d-prompt")
    args = ap.parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    cfg = TrainConfig(
        dataset=args.dataset, out=args.out, arch="attention_unet", spatial_dims=3,
        model_config={"features": [int(f) for f in args.features.split(",")], "norm": args.norm,
                      "prompts": {"radius": args.radius, "residual": args.residual}},
        epochs=args.epochs or 30, minutes=args.minutes, iters_per_epoch=args.iters_per_epoch,
        batch_size=args.batch, patch=[int(p) for p in args.patch.split(",")], lr=args.lr, patience=1000,
        split=str(Path(args.dataset) / "split.json"), fg_fraction=args.fg_fraction,
        intensity_aug=0.5, gamma_aug=0.5, noise_aug=0.5, affine_aug=0.3,
        normalization={"scheme": "percentile", "lower": 1.0, "upper": 99.0}, ct_window=None,
        start_model=args.start, l2sp=0.0, hard_negatives=0.0, freeze_bn=False, refit=0.0,
        prompts=True, prompt_threshold=args.prompt_threshold, seed=args.seed, name=args.name, description=DESCRIPTION,
        command="python scripts/train_lesion_prompt.py " + " ".join(shlex.quote(a) for a in argv),
    )
    base = trainer_module.augment
    gen = torch.Generator().manual_seed(args.seed + 17)

    def augment(x, y, g, *a, **k):  # the trainer's augmentation, then the random transfer functions
        x, y = base(x, y, g, *a, **k)
        return lut_augment(x, gen, args.lut_aug), y

    trainer_module.augment = augment
    if args.uniform_objects:
        setup_module.PatchSampler = ObjectSampler
    print(json.dumps({"model_config": cfg.model_config, "patch": cfg.patch, "batch": cfg.batch_size,
                      "lut_aug": args.lut_aug, "prompt_threshold": args.prompt_threshold,
                      "uniform_objects": args.uniform_objects}), flush=True)
    return run_training(cfg)


if __name__ == "__main__":
    raise SystemExit(main())
