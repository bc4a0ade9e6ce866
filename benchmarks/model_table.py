"""Parameters and GFLOPs of every architecture's default configuration (the README's model table).

    python benchmarks/model_table.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, write  # noqa: E402

from napari_attnseg import create_model  # noqa: E402

ROWS = [
    ("unet", 2, "Ronneberger et al. 2015 (baseline)", "none (no attention)"),
    ("unet", 3, "Ronneberger et al. 2015 / Cicek et al. 2016", "none (no attention)"),
    ("attention_unet", 2, "Oktay et al. 2018", "grid-attention gate coefficients on the skips of levels 2-4 (strides 2, 4, 8)"),
    ("attention_unet", 3, "Oktay et al. 2018", "grid-attention gate coefficients on the skips of levels 2-4 (strides 2, 4, 8)"),
    ("msga", 2, "Sinha & Dolz 2020", "guided attention per scale (4) and refinement step (2), stride 4; per-pixel PAM row on click"),
    ("transfuse", 2, "Zhang, Liu & Hu 2021", "BiFusion spatial attention (1/4, 1/8, 1/16), attention-gate coefficients (1/4, 1/8), ViT token attention (1/16)"),
]


def main() -> None:
    rows = []
    for arch, dims, paper, maps in ROWS:
        model = create_model(arch, spatial_dims=dims).eval()
        x = torch.randn(1, 1, *((256, 256) if dims == 2 else (96, 96, 96)))
        with torch.inference_mode(), FlopCounterMode(display=False) as fc:
            model(x)
        rows.append({
            "architecture": f"`{arch}`", "dims": f"{dims}D", "paper": paper,
            "parameters": f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M",
            "GFLOPs / input": f"{fc.get_total_flops() / 1e9:.1f} ({'256x256' if dims == 2 else '96^3'})",
            "attention maps": maps,
        })
    write("model_table", rows, "### Architectures (default configurations)", {"machine": machine()})


if __name__ == "__main__":
    main()
