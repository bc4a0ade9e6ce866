"""Numeric precision, memory layout and the inference copy of a model: the engine's fast paths."""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import sys
import threading
import weakref
from collections.abc import Iterator

import torch
from torch import nn

from ..errors import Cancelled, InputError
from ..options import PRECISIONS


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


class _Token:
    """The cancel token of the prediction currently using an inference copy."""

    cancel = None


def build_inference_copy(model: nn.Module, device: torch.device) -> nn.Module:
    """An uncached inference copy (what the engine runs), for benchmarks and tests."""
    return _build_copy(model, device)[0]


def _build_copy(model: nn.Module, device: torch.device) -> tuple[nn.Module, _Token]:
    net = copy.deepcopy(model).eval()
    with torch.no_grad():
        fold_batch_norms(net)
    fmt = torch.channels_last_3d if getattr(model, "spatial_dims", 2) == 3 else torch.channels_last
    net.to(device=device, memory_format=fmt)
    for p in net.parameters():
        p.requires_grad_(False)
    token = _Token()

    def check(_module, _inputs):
        if token.cancel is not None and token.cancel.cancelled:
            raise Cancelled("Prediction cancelled; no output was written.")

    for child in net.modules():
        if child is not net:
            child.register_forward_pre_hook(check)
    return net, token


def _state_key(model: nn.Module, device: torch.device) -> tuple:
    """Changes whenever a weight or buffer of ``model`` changes (in-place updates bump ``_version``,
    replaced tensors change the pointer), so a stale copy is never used."""
    tensors = [*model.named_parameters(), *model.named_buffers()]
    return (str(device),) + tuple((n, t.data_ptr(), t._version, t.dtype, t.device) for n, t in tensors)


class _Entry:
    def __init__(self, key: tuple, net: nn.Module, token: _Token):
        self.key, self.net, self.token = key, net, token
        self.lock = threading.Lock()


_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_COPIES_LOCK = threading.Lock()


@contextlib.contextmanager
def inference_copy(model: nn.Module, device: torch.device, cancel=None) -> Iterator[nn.Module]:
    """A private eval-mode copy of ``model`` for the engine: batch norms folded into convolutions,
    channels-last layout, on ``device``. The caller's model is left untouched (another thread,
    e.g. the UI, may use it meanwhile). With a ``cancel`` token, every sub-module checks it before
    running, so cancelling interrupts even a long forward pass.

    The copy is kept (one per model, dropped with the model) and reused while the model's weights
    are unchanged, so repeated predictions do not pay for copying and folding again (0.2 s of a
    0.7 s 1024x1024 prediction on 2 CPU cores). A prediction that finds the copy in use by another
    thread gets a fresh one of its own."""
    key = _state_key(model, device)
    with _COPIES_LOCK:
        entry = _COPIES.get(model)
        if entry is None or entry.key != key:
            entry = _Entry(key, *_build_copy(model, device))
            _COPIES[model] = entry
    if not entry.lock.acquire(blocking=False):
        net, token = _build_copy(model, device)
        token.cancel = cancel
        yield net
        return
    try:
        entry.token.cancel = cancel
        yield entry.net
    finally:
        entry.token.cancel = None
        entry.lock.release()


COMPILE_ENV = "ATTNSEG_COMPILE"  # "1": torch.compile the inference copy on CUDA; "reduce-overhead": with CUDA graphs
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # inference copy -> its compiled twin


def compiled_twin(net: nn.Module, device: torch.device, backend: str = "inductor") -> nn.Module:
    """``net`` itself, or on CUDA with ``ATTNSEG_COMPILE`` set, a ``torch.compile``d twin of it, kept
    as long as ``net`` (tiles have fixed shapes: one graph per batch size). The twin has no cancel
    hooks (they would be guarded on and recompiled for every prediction); on a GPU a batch is short
    and the engine checks the cancel token between passes. Off by default: no GPU figures yet."""
    mode = os.environ.get(COMPILE_ENV, "")
    if device.type != "cuda" or mode in ("", "0"):
        return net
    twin = _COMPILED.get(net)
    if twin is None:
        plain = copy.deepcopy(net)
        for m in plain.modules():
            m._forward_pre_hooks.clear()
        twin = torch.compile(plain, backend=backend, dynamic=False, mode=None if mode == "1" else mode)
        _COMPILED[net] = twin
    return twin
