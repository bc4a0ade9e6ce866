"""Numeric precision, memory layout and the inference copy of a model: the engine's fast paths."""

from __future__ import annotations

import contextlib
import copy
import functools
import sys

import torch
from torch import nn

from ..errors import Cancelled, InputError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True when this CPU does bf16 arithmetic natively (AVX-512 BF16 or AMX), not by emulation.

    oneDNN also runs bf16 on plain AVX-512 by converting to fp32, which is slower than fp32, so on
    Linux the CPU flags decide; elsewhere oneDNN's own check is used.
    """
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("flags"):
                        flags = set(line.split(":", 1)[1].split())
                        return bool({"avx512_bf16", "amx_bf16"} & flags)
        except OSError:
            pass
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


_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def fold_batch_norms(model: nn.Module) -> int:
    """Fold every eval-mode BatchNorm that directly follows a convolution in an ``nn.Sequential``
    into that convolution's weights (exact up to rounding); returns how many were folded."""
    folded = 0
    for seq in model.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        items = list(seq._modules.items())
        for (name_a, a), (name_b, b) in zip(items, items[1:]):
            if (isinstance(a, _CONVS) and isinstance(b, _BATCH_NORMS) and b.track_running_stats
                    and b.running_mean is not None and a.padding_mode == "zeros"):
                seq._modules[name_a] = torch.nn.utils.fusion.fuse_conv_bn_eval(a, b)
                seq._modules[name_b] = nn.Identity()
                folded += 1
    return folded


def inference_copy(model: nn.Module, device: torch.device, cancel=None) -> nn.Module:
    """A private eval-mode copy of ``model`` for the engine: batch norms folded into convolutions,
    channels-last layout, on ``device``. The caller's model is left untouched (another thread,
    e.g. the UI, may use it meanwhile). With a ``cancel`` token, every sub-module checks it before
    running, so cancelling interrupts even a long forward pass."""
    net = copy.deepcopy(model).eval()
    with torch.no_grad():
        fold_batch_norms(net)
    fmt = torch.channels_last_3d if getattr(model, "spatial_dims", 2) == 3 else torch.channels_last
    net.to(device=device, memory_format=fmt)
    for p in net.parameters():
        p.requires_grad_(False)
    if cancel is not None:
        def check(_module, _inputs):
            if cancel.cancelled:
                raise Cancelled("Prediction cancelled; no output was written.")

        for child in net.modules():
            if child is not net:
                child.register_forward_pre_hook(check)
    return net
