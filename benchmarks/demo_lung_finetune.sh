#!/usr/bin/env bash
# The correction loop, measured on real data (../shared/data/radiomics/lung1: chest CT with a lung
# tumour on axial slices 32-34). A "clinician" corrects three slices (the reference labels on
# slices 20, 32 and 34 stand in for their corrections), the rest is exported as `ignore`, the model
# is fine-tuned for a few CPU minutes, and Dice is measured on the slices that were NOT corrected.
# Usage: bash benchmarks/demo_lung_finetune.sh [SHARED_DATA] [WORK] [MINUTES]
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${1:-../shared/data}
WORK=${2:-/tmp/attnseg-lung}
MINUTES=${3:-4}
IMAGE="$SHARED/radiomics/lung1_image.nii.gz"
REF="$SHARED/radiomics/lung1_labels.nii.gz"
rm -rf "$WORK" && mkdir -p "$WORK"

# 1. the starting model's prediction (slice by slice: nuclei-2d is a 2D model)
attnseg predict "$IMAGE" --model nuclei-2d --out "$WORK/before" --precision fp32
# 2. export: the corrected slices 20, 32, 34 (reference labels there), everything else `ignore`
attnseg export --image "$IMAGE" --labels "$REF" --prediction "$WORK/before/lung1_image_mask.nii.gz" \
  --dataset "$WORK/ds" --format nnunet --reviewed-slices 20,32,34 --case-id lung1 --label-names background,tumour
# 3. fine-tune: train on slices 0-33 (corrected 20 and 32), validate on slice 34
attnseg finetune "$WORK/ds" --model nuclei-2d --out "$WORK/finetuned" --minutes "$MINUTES" \
  --train-region 0:34 --val-region 34:35 --normalization '{"scheme": "ct", "window": [-1000, 400]}' \
  --patch 128,128 --lr 1e-3 --patience 1000
attnseg predict "$IMAGE" --model "$WORK/finetuned/best.safetensors" --out "$WORK/after" --precision fp32
# 4. Dice on the slices that were not corrected
python - "$REF" "$WORK" <<'PY'
import sys
import numpy as np
from scipy import ndimage
from napari_attnseg.correct import keep_component_at, keep_largest_component
from napari_attnseg.data import read_image
ref = read_image(sys.argv[1]).data > 0
work = sys.argv[2]
keep = np.ones(ref.shape[0], bool)
keep[[20, 32, 34]] = False
masks = {name: np.asarray(read_image(f"{work}/{name}/lung1_image_mask.nii.gz").data) for name in ("before", "after")}
# the panel's "Largest component" helper, one click on the fine-tuned model's mask
masks["after + largest component"] = keep_largest_component(masks["after"])
# the panel's "Keep the object under the cursor" (K), the cursor on the tumour the clinician sees on
# slice 33 (the centre of the reference there), when the mask has an object at that point
click = (33, *np.round(ndimage.center_of_mass(ref[33])).astype(int))
if masks["after"][click]:
    masks["after + keep the object at the tumour (K)"] = keep_component_at(masks["after"], click)
for name, mask in masks.items():
    pred = mask > 0
    p, r = pred[keep], ref[keep]
    dice = 2 * (p & r).sum() / max(p.sum() + r.sum(), 1)
    on33 = 2 * (pred[33] & ref[33]).sum() / max(pred[33].sum() + ref[33].sum(), 1)
    print(f"{name}: Dice on the 45 uncorrected slices {dice:.4f} (tumour slice 33: {on33:.4f}); "
          f"predicted voxels {int(p.sum())}, reference voxels {int(r.sum())}")
PY
