"""Parameters and GFLOPs of every architecture's default configuration (the README's model table).

    python benchmarks/model_table.py

GFLOPs are counted by torch's FlopCounterMode on one forward pass (2 FLOPs per multiply-add). Its
registry misses the CPU flash-attention kernel that scaled_dot_product_attention runs on CPU, so that
kernel is counted here with torch's own SDPA formula; without it the attention of msga and TransFuse
would silently count as zero.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_out_option, machine, results_dir, write  # noqa: E402

from napari_attnseg import create_model  # noqa: E402
from napari_attnseg.models.msga import PositionAttention  # noqa: E402

ROWS = [
    ("unet", 2, "Ronneberger et al. 2015 (baseline)", "none (no attention)"),
    ("unet", 3, "Ronneberger et al. 2015 / Cicek et al. 2016", "none (no attention)"),
    ("attention_unet", 2, "Oktay et al. 2018", "grid-attention gate coefficients on the skips of levels 2-4 (strides 2, 4, 8)"),
    ("attention_unet", 3, "Oktay et al. 2018", "grid-attention gate coefficients on the skips of levels 2-4 (strides 2, 4, 8)"),
    ("msga", 2, "Sinha & Dolz 2020", "guided attention per scale (4) and refinement step (2), stride 4; per-pixel PAM row on click"),
    ("transfuse", 2, "Zhang, Liu & Hu 2021", "BiFusion spatial attention (1/4, 1/8, 1/16), attention-gate coefficients (1/4, 1/8), ViT token attention (1/16)"),
]


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


CUSTOM = {}
if hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):
    CUSTOM[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_sdpa_flops


def gflops(model: torch.nn.Module, x: torch.Tensor) -> float:
    with torch.inference_mode(), FlopCounterMode(display=False, custom_mapping=CUSTOM) as fc:
        model(x)
    return fc.get_total_flops() / 1e9


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_out_option(ap)
    results = results_dir(ap.parse_args(argv).out)
    rows, notes = [], []
    for arch, dims, paper, maps in ROWS:
        model = create_model(arch, spatial_dims=dims).eval()
        x = torch.randn(1, 1, *((256, 256) if dims == 2 else (96, 96, 96)))
        total = gflops(model, x)
        if arch == "msga":  # the PAM's q and k are zero-padded so the fused kernel runs; count both
            PositionAttention.pad_for_fused_kernel = False
            plain = gflops(model, x)
            PositionAttention.pad_for_fused_kernel = True
            notes.append(
                f"msga: {total:.1f} GFLOPs as executed, of which {total - plain:.1f} are products with the "
                f"zero padding of the position attention's query/key (8 -> 64 channels) that let the fused "
                f"attention kernel run without the 4096 x 4096 matrix; the architecture itself needs {plain:.1f}."
            )
        rows.append({
            "architecture": f"`{arch}`", "dims": f"{dims}D", "paper": paper,
            "parameters": f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M",
            "GFLOPs / input": f"{total:.1f} ({'256x256' if dims == 2 else '96^3'})",
            "attention maps": maps,
        })
    text = write("model_table", rows, "### Architectures (default configurations)",
                 {"machine": machine(), "notes": notes})
    if notes:
        (results / "model_table.md").write_text(text + "\n" + "\n".join(notes) + "\n")
        print("\n".join(notes))


if __name__ == "__main__":
    main()
