"""Numeric precision and memory layout per device: the fast paths of the engine."""

from __future__ import annotations

import contextlib
import functools

import torch

from ..errors import InputError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True when this CPU runs bf16 matrix work natively (AVX-512 BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # older builds
        return False


def choose_precision(device: torch.device, precision: str = "auto") -> str:
    """``auto``: bf16 (fp16 where bf16 is missing) on CUDA, bf16 on CPUs with native bf16, else fp32."""
    precision = (precision or "auto").lower()
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}.")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and cpu_has_fast_bf16():
        return "bf16"
    return "fp32"


def autocast_context(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def prepare_model(model: torch.nn.Module, device: torch.device, precision: str) -> torch.nn.Module:
    """Eval mode on ``device`` in channels-last layout; remembers how to restore the model's state."""
    was_training = model.training
    fmt = torch.channels_last if model.spatial_dims == 2 else torch.channels_last_3d
    model.eval().to(device=device, memory_format=fmt)

    def restore() -> None:
        model.to(memory_format=torch.contiguous_format)
        model.train(was_training)

    model._attnseg_restore = restore
    return model
