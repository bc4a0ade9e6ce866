"""Turn any segmentation model into a promptable one (issue 18), without breaking checkpoints.

Two mechanisms, both starting out as the identity so a converted model first behaves exactly as
the automatic one:

* **Prompt channels.** The convolutions that read the image (found by a dummy forward: every conv
  whose input *is* the model's input; TransFuse has two) are replaced by a :class:`PromptInputConv`
  with three more input channels - previous mask, positive clicks, negative clicks - whose new
  weights are zero. The parameter names do not change, only the shapes of those weights. Given the
  image alone (``in_channels`` channels) the conv uses its image weights only, so ``predict`` and any
  caller that knows nothing of prompts still work, and give the automatic output bit for bit.
* **Spatial modulation (SMCA).** A :class:`PromptContext` holds the clicks of the current forward
  (set with :func:`set_prompts` / :func:`prompts`). Modules that own a ``prompt_bias`` slot read it:

  - Attention U-Net grid gates: ``psi' = psi + a_pos * G_pos - a_neg * G_neg`` on the pre-sigmoid
    logits, ``G = max over clicks exp(-|p - c|^2 / (beta s^2))`` on the gate's own grid (s = its
    stride in input pixels), ``a = softplus(.)`` learned, starting at 0.01. A plain ``log G`` as in
    SMCA would be ``-inf``-like far from the click and close every gate there; a bounded signed bump
    opens gates near positive clicks and closes them near negative ones and leaves the rest alone.
  - msga position attention and the TransFuse ViT: SMCA's own form, ``lambda_h * log(eps + G)``
    added to the softmax logits over the keys (eps = 0.05 damps far keys, never cuts them), one
    learned scale per head and per click kind (positive and negative each have their own prior and
    scale; never a sign flip of the other), and the second half of the ViT heads without the prior.

* **Residual previous mask** (option ``residual``, off by default): the previous-mask channel also goes
  straight onto the output, ``logit_background -= gain * (2 * previous - 1)`` where the previous mask is
  not empty (``gain = softplus`` of a learned parameter starting at ``residual``). The network then
  learns corrections of the previous mask (a first guess, or the mask of the last click) instead of
  learning to copy it through a freshly initialised first layer; a network that has learned nothing
  gives the previous mask back.

``model.config["prompts"]`` records the conversion, so ``create_model(arch, **config)`` (and thus
``load_model``) rebuilds the promptable model from its card.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError

PROMPT_CHANNELS = ("previous mask", "positive clicks", "negative clicks")
DEFAULTS: dict[str, Any] = {"channels": True, "prior": True, "beta": 2.0, "eps": 0.05, "radius": 5.0,
                            "scale_init": 0.01, "residual": 0.0}
_GAIN = 100.0  # scales are softplus(_GAIN * raw): Adam moves raw by ~lr per step, so the pre-softplus value
# moves ~100 lr: at lr 1e-3 a scale starting at 0.01 can reach ~1 in ~50 consistent steps (with a gain of 10 it
# stayed at 0.012 after 60 steps of the first nuclei-2d-prompt run)


def _raw_for(value: float) -> float:
    """The raw parameter whose softplus(_GAIN * raw) is ``value``."""
    return math.log(math.expm1(value)) / _GAIN


def _softplus(raw: torch.Tensor) -> torch.Tensor:
    return F.softplus(_GAIN * raw)


class PromptContext:
    """The clicks of the next forward passes of one model (shared by its prompt modules).

    ``points[b]`` is an (N, ndim) float array of input-pixel coordinates of batch element b and
    ``labels[b]`` its (N,) 1 = positive / 0 = negative. ``input_shape`` is the spatial shape the
    input convolution last saw (already padded by the model), from which grids' strides follow.
    """

    def __init__(self, beta: float, eps: float):
        self.beta, self.eps = float(beta), float(eps)
        self.points: list[np.ndarray] | None = None
        self.labels: list[np.ndarray] | None = None
        self.input_shape: tuple[int, ...] | None = None
        self._cache: dict = {}

    def set(self, points: Sequence[np.ndarray] | None, labels: Sequence[np.ndarray] | None) -> None:
        self._cache = {}
        if points is None:
            self.points = self.labels = None
            return
        self.points = [np.asarray(p, np.float64).reshape(len(p), -1) for p in points]
        self.labels = [np.asarray(lab).astype(int).reshape(-1) for lab in labels]

    def clear(self) -> None:
        self.set(None, None)

    @property
    def active(self) -> bool:
        return self.points is not None and any(len(p) for p in self.points)

    def bumps(self, grid: Sequence[int], stride: Sequence[float] | None, batch: int, device, dtype,
              origin: Sequence[float] | None = None):
        """``(G_pos, G_neg)``, each (B, *grid) in [0, 1] on a grid of the given stride (input pixels
        per grid pixel; default: input shape / grid) whose pixel 0 is centred on input pixel ``origin``
        (default: mid-block, ``(stride - 1) / 2``); ``None`` without clicks."""
        if not self.active:
            return None
        grid = tuple(int(g) for g in grid)
        if stride is None:
            if self.input_shape is None or len(self.input_shape) != len(grid):
                return None
            stride = tuple(s / g for s, g in zip(self.input_shape, grid))
        stride = tuple(float(s) for s in stride)
        origin = tuple((s - 1) / 2 for s in stride) if origin is None else tuple(float(o) for o in origin)
        key = (grid, stride, origin, batch, str(device), dtype)
        if key in self._cache:
            return self._cache[key]
        if len(self.points) not in (1, batch):
            raise InputError(f"Clicks were set for {len(self.points)} images but the batch holds {batch}.")
        sigma2 = self.beta * float(np.mean(stride)) ** 2
        axes = [o + np.arange(g) * s for g, s, o in zip(grid, stride, origin)]  # centres in input pixels
        out = np.zeros((2, batch, *grid), np.float32)
        for b in range(batch):
            pts = self.points[b if len(self.points) > 1 else 0]
            labs = self.labels[b if len(self.labels) > 1 else 0]
            for kind, sign in ((0, 1), (1, 0)):
                sel = pts[labs == sign]
                for c in sel:
                    g = np.ones((1,) * len(grid), np.float64)
                    for d, ax in enumerate(axes):
                        shape = [1] * len(grid)
                        shape[d] = len(ax)
                        g = g * np.exp(-((ax - c[d]) ** 2) / sigma2).reshape(shape)
                    np.maximum(out[kind, b], g, out=out[kind, b])
        t = torch.from_numpy(out).to(device=device, dtype=dtype)
        self._cache[key] = (t[0], t[1])
        return self._cache[key]


class PromptInputConv:
    """Mixin for the convolutions that read the input; see the module docstring."""

    image_channels: int
    use_clicks: bool
    prompt_context: PromptContext

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        self.prompt_context.input_shape = tuple(int(s) for s in x.shape[2:])
        c = x.shape[1]
        if c == self.image_channels:  # no prompts given: the automatic model, exactly
            return self._conv_forward(x, self.weight[:, :c], self.bias)
        if c != self.in_channels:
            raise InputError(f"A promptable model takes {self.image_channels} image channel(s), optionally followed "
                             f"by {len(PROMPT_CHANNELS)} prompt channels ({', '.join(PROMPT_CHANNELS)}); got {c}.")
        if not self.use_clicks:  # "prior only": the clicks reach the model through the attention prior alone
            x = torch.cat([x[:, : self.image_channels + 1], torch.zeros_like(x[:, self.image_channels + 1:])], 1)
        return self._conv_forward(x, self.weight, self.bias)


_INPUT_CONVS = {cls: type(f"Prompt{cls.__name__}", (PromptInputConv, cls), {})
                for cls in (nn.Conv1d, nn.Conv2d, nn.Conv3d)}


class GateBias(nn.Module):
    """``psi + a_pos * G_pos - a_neg * G_neg`` for one grid attention gate."""

    def __init__(self, context: PromptContext, init: float):
        super().__init__()
        self.prompt_context = context
        self.pos = nn.Parameter(torch.tensor(_raw_for(init)))
        self.neg = nn.Parameter(torch.tensor(_raw_for(init)))

    @property
    def scales(self) -> tuple[float, float]:
        return float(_softplus(self.pos)), float(_softplus(self.neg))

    def forward(self, psi: torch.Tensor) -> torch.Tensor:
        g = self.prompt_context.bumps(psi.shape[2:], None, psi.shape[0], psi.device, psi.dtype)
        if g is None:
            return psi
        gp, gn = g
        return psi + _softplus(self.pos) * gp.unsqueeze(1) - _softplus(self.neg) * gn.unsqueeze(1)


class KeyPrior(nn.Module):
    """SMCA's ``lambda_h * log(eps + G)`` over the keys, per head, positive and negative each own."""

    def __init__(self, context: PromptContext, heads: int, with_prior: int, init: float,
                 stride: Sequence[int] | None = None, origin: Sequence[float] | None = None):
        super().__init__()
        self.prompt_context = context
        self.stride = tuple(stride) if stride is not None else None
        self.origin = tuple(origin) if origin is not None else None  # None: the grid's pixels centred on blocks
        self.heads = heads
        self.pos = nn.Parameter(torch.full((heads,), _raw_for(init)))
        self.neg = nn.Parameter(torch.full((heads,), _raw_for(init)))
        self.register_buffer("mask", (torch.arange(heads) < with_prior).float(), persistent=False)

    def forward(self, grid: Sequence[int], batch: int, device, dtype) -> torch.Tensor | None:
        """(B, heads, 1, N) additive logits over the N = prod(grid) keys, or None without clicks."""
        stride = self.stride
        if stride is not None and self.prompt_context.input_shape is not None and not grid:
            grid = tuple(s // st for s, st in zip(self.prompt_context.input_shape, stride))
        g = self.prompt_context.bumps(grid, stride, batch, device, torch.float32, self.origin)
        if g is None:
            return None
        eps = self.prompt_context.eps
        lp = torch.log(eps + g[0]).flatten(1)  # (B, N)
        ln = torch.log(eps + g[1]).flatten(1)
        lam_p = (_softplus(self.pos) * self.mask).view(1, -1, 1, 1)
        lam_n = (_softplus(self.neg) * self.mask).view(1, -1, 1, 1)
        return (lam_p * lp[:, None, None] + lam_n * ln[:, None, None]).to(dtype)


def _grid_origin(model: nn.Module) -> tuple[float, ...] | None:
    """The input pixel that pixel 0 of the model's attention maps is centred on (msga: 0, its 1/4 grid is made by
    stride-2 3x3 convolutions, not blocks), so a click's prior peaks where the click is; None without maps."""
    strides = getattr(model, "attention_strides", None)
    if not strides:
        return None
    from ..inference.forward import map_centre

    return map_centre(model, next(iter(strides)))


class PromptResidual(nn.Module):
    """``logits[:, 0] - gain * (2 * previous - 1)`` for batch elements whose previous mask is not empty."""

    def __init__(self, image_channels: int, gain: float):
        super().__init__()
        self.image_channels = image_channels
        self.raw = nn.Parameter(torch.tensor(math.log(math.expm1(gain))))

    @property
    def gain(self) -> float:
        return float(F.softplus(self.raw.detach()))

    def forward(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        k = self.image_channels
        if x.shape[1] != k + len(PROMPT_CHANNELS):
            return logits  # the image alone: the automatic model
        prev = x[:, k].to(logits.dtype)
        on = (prev.flatten(1).amax(1) > 0.5).to(logits.dtype).view(-1, *([1] * (prev.ndim - 1)))
        shift = F.softplus(self.raw).to(logits.dtype) * (2 * prev - 1) * on
        return torch.cat([logits[:, :1] - shift.unsqueeze(1), logits[:, 1:]], 1)


class ResidualOutput:
    """Mixin (set as the model's class by :func:`make_promptable`) adding :class:`PromptResidual` to
    ``forward`` and ``forward_train`` (every head, so deep supervision sees the same output)."""

    prompt_residual: PromptResidual

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        out = super().forward(x, return_attention)
        if return_attention:
            return self.prompt_residual(x, out[0]), out[1]
        return self.prompt_residual(x, out)

    def forward_train(self, x: torch.Tensor):
        out = super().forward_train(x)
        r = self.prompt_residual
        return replace(out, logits=r(x, out.logits), heads=[(w, r(x, h)) for w, h in out.heads])


_RESIDUAL_CLASSES: dict[type, type] = {}


def _add_residual(model: nn.Module, gain: float) -> None:
    cls = type(model)
    if cls not in _RESIDUAL_CLASSES:
        _RESIDUAL_CLASSES[cls] = type(f"Residual{cls.__name__}", (ResidualOutput, cls), {})
    model.prompt_residual = PromptResidual(int(model.in_channels), gain).to(next(model.parameters()).device)
    model.__class__ = _RESIDUAL_CLASSES[cls]


# -- conversion ------------------------------------------------------------------------------------
def is_promptable(model: nn.Module) -> bool:
    return isinstance(getattr(model, "prompt_context", None), PromptContext)


def _input_convs(model: nn.Module) -> list[str]:
    """Names of the convolutions applied to the model's input itself (found by a dummy forward)."""
    dims = int(model.spatial_dims)
    size = max(int(getattr(model, "size_divisor", 1)) * 2, 32)
    x = torch.zeros(1, int(model.in_channels), *(size,) * dims)
    names = {id(m): n for n, m in model.named_modules()}
    found: list[str] = []

    def hook(module, inputs):
        if inputs and inputs[0] is x and names[id(module)] not in found:
            found.append(names[id(module)])

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, tuple(_INPUT_CONVS))]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return found


def make_promptable(model: nn.Module, **options: Any) -> nn.Module:
    """Convert ``model`` in place (and return it): prompt channels with zero weights, attention priors.

    Options (recorded in ``model.config["prompts"]``): ``channels`` (feed the click channels; False
    gives the "attention prior only" variant), ``prior`` (add the SMCA priors), ``beta`` (bump width:
    sigma^2 = beta * stride^2), ``eps`` (log-prior floor), ``radius`` (click disk radius in pixels
    at the model's spacing), ``scale_init`` (starting value of every learned prior scale), ``residual``
    (> 0: the previous mask added to the output with this starting gain; see the module docstring).
    """
    if is_promptable(model):
        return model
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise InputError(f"Unknown prompt option(s) {', '.join(sorted(unknown))}; valid: {', '.join(DEFAULTS)}.")
    opts = {**DEFAULTS, **options}
    context = PromptContext(opts["beta"], opts["eps"])
    targets = _input_convs(model)
    if not targets:
        raise InputError(f"Cannot make {getattr(model, 'arch', type(model).__name__)} promptable: no convolution "
                         "reads its input directly.")
    for name in targets:
        old = model.get_submodule(name)
        cls = _INPUT_CONVS[next(c for c in _INPUT_CONVS if isinstance(old, c))]
        new = cls(old.in_channels + len(PROMPT_CHANNELS), old.out_channels, old.kernel_size, old.stride,
                  old.padding, old.dilation, old.groups, old.bias is not None, old.padding_mode)
        if old.groups != 1:
            raise InputError(f"Cannot add prompt channels to the grouped input convolution {name}.")
        with torch.no_grad():
            new.weight.zero_()
            new.weight[:, : old.in_channels].copy_(old.weight)
            if old.bias is not None:
                new.bias.copy_(old.bias)
        new.to(old.weight.device)
        new.image_channels, new.use_clicks, new.prompt_context = old.in_channels, bool(opts["channels"]), context
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, new)
    priors = 0
    if opts["prior"]:
        from ..models.attention_unet import GridAttentionGate
        from ..models.msga import PositionAttention
        from ..models.transfuse import TransformerBlock

        strides = getattr(model, "attention_strides", {})
        for m in model.modules():
            if isinstance(m, GridAttentionGate):
                m.prompt_bias = GateBias(context, opts["scale_init"])
            elif isinstance(m, PositionAttention):  # on msga's 1/4 grid, whose pixel i is centred on input pixel 4i
                m.prompt_bias = KeyPrior(context, 1, 1, opts["scale_init"], origin=_grid_origin(model))
            elif isinstance(m, TransformerBlock):
                m.prompt_bias = KeyPrior(context, m.heads, (m.heads + 1) // 2, opts["scale_init"],
                                         stride=strides.get("vit tokens", (16, 16)))
            else:
                continue
            priors += 1
        opts["prior"] = priors > 0  # e.g. a plain U-Net has no attention to modulate
    if float(opts["residual"]) > 0:
        _add_residual(model, float(opts["residual"]))
    model.to(next(model.parameters()).device)
    model.prompt_context = context
    model.prompt_channels = len(PROMPT_CHANNELS)
    model.prompt_options = opts
    model.config = {**model.config, "prompts": opts}
    return model


def set_prompts(model: nn.Module, points, labels) -> None:
    """Set the clicks of the next forwards: one (N, ndim) array and (N,) labels, or a list per batch
    element; coordinates in input pixels (of the tensor given to ``forward``). ``None`` clears."""
    if not is_promptable(model):
        raise InputError("This model is not promptable; convert it with make_promptable and fine-tune it with "
                         "`attnseg finetune DATASET --model M --prompts`.")
    if points is None:
        model.prompt_context.clear()
        return
    if isinstance(points, np.ndarray) and points.ndim == 2:
        points, labels = [points], [labels]
    model.prompt_context.set(points, labels)


@contextmanager
def prompts(model: nn.Module, points, labels):
    """``with prompts(model, pts, labels): model(x)`` - the clicks hold inside the block only."""
    set_prompts(model, points, labels)
    try:
        yield model
    finally:
        model.prompt_context.clear()


def prior_scales(model: nn.Module) -> dict[str, dict[str, list[float]]]:
    """The learned prior scales by module name: ``{"gates.level2.gates.0": {"pos": [...], "neg": [...]}}``."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, (GateBias, KeyPrior)):
            out[name.removesuffix(".prompt_bias")] = {
                "pos": [round(float(v), 4) for v in _softplus(m.pos.detach()).reshape(-1)],
                "neg": [round(float(v), 4) for v in _softplus(m.neg.detach()).reshape(-1)]}
    return out
