"""Accuracy table in the style of the papers: every architecture trained under the same budget on
the same split, tested on held-out data.

    python benchmarks/bench_accuracy.py [--minutes 4] [--work /tmp/attnseg-acc]

Nuclei (2D): train on x < 200 of nuclei2d/image.tif, validate on 200 <= x < 256, test on the right
half (x >= 256). Each model trains with `attnseg train` for the same wall-clock budget, then the
best checkpoint is scored on the test half (Dice, IoU) and timed on the whole 512x512 image.
Writes benchmarks/results/accuracy.{json,md}.

With ``--brain``: the 3D architectures (unet, attention_unet; features 8-128) on the brain split of
the bundled model (MNI152 T1 at 2 mm, axial slabs: train k 0-27 and 54-93, validation 44-53, test
28-43), same budget each; Dice per class (grey, white matter) on the test slab, segmented inside the
volume. Writes benchmarks/results/accuracy_3d.{json,md}.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_out_option, machine, median_time, results_dir, write  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ARCHS = ("unet", "attention_unet", "msga", "transfuse")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=4.0)
    ap.add_argument("--work", default="/tmp/attnseg-acc")
    ap.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--brain", action="store_true", help="the 3D table on the brain split instead")
    add_out_option(ap)
    args = ap.parse_args()
    results_dir(args.out)
    work = Path(args.work)
    shared = Path(args.shared)
    subprocess.run([sys.executable, str(REPO / "scripts" / "prepare_training_data.py"), str(shared), str(work)], check=True)
    if args.brain:
        return brain_table(work, args.minutes)
    ds = work / "ds_nuclei"
    if not ds.exists():
        subprocess.run(["attnseg", "export", "--image", str(shared / "nuclei2d" / "image.tif"), "--labels",
                        str(work / "nuclei_mask.tif"), "--dataset", str(ds), "--format", "tiff", "--case-id", "nuclei2d",
                        "--label-names", "background,nucleus"], check=True)
    from napari_attnseg import load_model, predict
    from napari_attnseg.data import read_image

    image = read_image(shared / "nuclei2d" / "image.tif").data
    ref = read_image(work / "nuclei_mask.tif").data
    rows = []
    for arch in args.archs.split(","):
        out = work / arch
        subprocess.run(["attnseg", "train", str(ds), "--arch", arch, "--out", str(out), "--minutes", str(args.minutes),
                        "--patience", "1000", "--train-region", "0:512,0:200", "--val-region", "0:512,200:256",
                        "--test-region", "0:512,256:512", "--seed", "0"], check=True)
        model = load_model(out / "best.safetensors", device="cpu")
        t, pred = median_time(lambda m=model: predict(m, image, precision="fp32", return_probabilities=False), 3)
        p, r = np.asarray(pred.labels)[:, 256:] > 0, ref[:, 256:] > 0
        inter, union = (p & r).sum(), (p | r).sum()
        rows.append({
            "architecture": arch, "parameters (M)": f"{sum(x.numel() for x in model.parameters()) / 1e6:.2f}",
            "test Dice": f"{2 * inter / (p.sum() + r.sum()):.4f}", "test IoU": f"{inter / union:.4f}",
            "best val Dice": f"{model.card.metrics['val_dice']:.4f}", "epochs": model.card.training["epochs"],
            "training (min)": f"{model.card.training['seconds'] / 60:.1f}",
            "inference 512x512 (s)": f"{t:.2f}",
        })
    write("accuracy", rows, f"### Nuclei 2D, same budget ({args.minutes:g} min of CPU training each); test = right half of the image",
          {"machine": machine(), "minutes": args.minutes, "split": "train x<200, val 200<=x<256, test x>=256"})


def brain_table(work: Path, minutes: float) -> None:
    from napari_attnseg import load_model

    ds = work / "ds_brain"
    if not ds.exists():
        subprocess.run(["attnseg", "export", "--image", str(work / "mni152_2mm_t1.nii.gz"), "--labels",
                        str(work / "mni152_2mm_labels.nii.gz"), "--dataset", str(ds), "--format", "nnunet",
                        "--case-id", "mni152", "--label-names", "background,grey matter,white matter"], check=True)
    rows = []
    for arch in ("unet", "attention_unet"):
        out = work / f"{arch}_3d"
        subprocess.run(["attnseg", "train", str(ds), "--arch", arch, "--dims", "3", "--config",
                        '{"features": [8, 16, 32, 64, 128]}', "--out", str(out), "--minutes", str(minutes),
                        "--iters-per-epoch", "40", "--patience", "1000", "--patch", "32,64,64", "--batch", "4",
                        "--train-region", "0:28;54:94", "--val-region", "44:54", "--test-region", "28:44",
                        "--seed", "0"], check=True)
        model = load_model(out / "best.safetensors", device="cpu")
        gm, wm = model.card.metrics["test_dice_per_class"]
        rows.append({
            "architecture": f"{arch} 3D", "parameters (M)": f"{sum(x.numel() for x in model.parameters()) / 1e6:.2f}",
            "test Dice GM": f"{gm:.4f}", "test Dice WM": f"{wm:.4f}",
            "best val Dice (mean)": f"{model.card.metrics['val_dice']:.4f}", "epochs": model.card.training["epochs"],
            "training (min)": f"{model.card.training['seconds'] / 60:.1f}",
        })
    write("accuracy_3d", rows, f"### Brain MRI 3D (2 mm), same budget ({minutes:g} min of CPU training each); test = axial slab k 28-43",
          {"machine": machine(), "minutes": minutes, "split": "axial slabs: train 0-27 and 54-93, val 44-53, test 28-43"})


if __name__ == "__main__":
    main()
