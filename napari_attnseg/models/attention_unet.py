"""Attention U-Net (Oktay et al. 2018, "Attention U-Net: learning where to look for the pancreas").

True to the original grid-attention gate: the skip features x are subsampled by a strided conv
(theta, kernel = stride = 2, no bias), the coarser gating signal g goes through a 1x1 conv (phi) and
is resized to theta's grid, f = ReLU(theta + phi), psi is a 1x1 conv to one channel, sigmoid gives
the coefficients alpha on the coarse grid, which are resampled to the skip's size and multiplied into
x; the output is W(alpha * x) with W = 1x1 conv + norm. Gates sit on the skips of levels 2..4 (not the
full-resolution one), fed by a gating block on the bottom and then by the decoder features.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .base import SegmentationModel, TrainOutput
from .blocks import (
    ConvNormAct,
    DoubleConv,
    UpConcat,
    check_features,
    conv_nd,
    max_pool_nd,
    norm_nd,
    resize_to,
)


class GridAttentionGate(nn.Module):
    """Additive grid attention gate; returns ``(W(alpha * x), alpha)`` with alpha at x's size."""

    def __init__(self, dims: int, x_channels: int, g_channels: int, inter_channels: int, norm: str = "batch"):
        super().__init__()
        conv = conv_nd(dims)
        self.theta = conv(x_channels, inter_channels, kernel_size=2, stride=2, bias=False)
        self.phi = conv(g_channels, inter_channels, kernel_size=1, bias=True)
        self.psi = conv(inter_channels, 1, kernel_size=1, bias=True)
        self.W = nn.Sequential(conv(x_channels, x_channels, kernel_size=1), norm_nd(norm, dims, x_channels))
        self.prompt_bias: nn.Module | None = None  # set by prompts.make_promptable: click bumps on psi

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        theta = self.theta(x)
        phi = resize_to(self.phi(g), theta.shape[2:])
        psi = self.psi(F.relu(theta + phi))
        if self.prompt_bias is not None:
            psi = self.prompt_bias(psi)
        alpha = torch.sigmoid(psi)
        alpha = resize_to(alpha, x.shape[2:])
        return self.W(alpha * x), alpha


class MultiAttentionBlock(nn.Module):
    """One gate, or two gates whose outputs are concatenated and mixed (the paper's multi-gate)."""

    def __init__(self, dims: int, x_channels: int, g_channels: int, norm: str, n_gates: int):
        super().__init__()
        self.gates = nn.ModuleList(
            GridAttentionGate(dims, x_channels, g_channels, x_channels, norm) for _ in range(n_gates)
        )
        self.combine = ConvNormAct(dims, x_channels * n_gates, x_channels, 1, norm) if n_gates > 1 else None

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outs, alphas = zip(*(gate(x, g) for gate in self.gates))
        y = self.combine(torch.cat(outs, 1)) if self.combine is not None else outs[0]
        return y, torch.cat(alphas, 1)


class AttentionUNet(SegmentationModel):
    """Attention U-Net, 2D or 3D.

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: image channels and classes (incl. background).
        features: channels per level, finest first (paper: 16, 32, 64, 128, 256).
        norm: ``batch`` (paper) or ``instance``.
        upsample: ``interp`` (bilinear/trilinear, paper) or ``transpose``.
        multi_gate: two gates per level (the paper's multi-attention), coefficients as 2 heads.
        deep_supervision: 1x1 heads on every decoder level, upsampled and fused by a 1x1 conv.
    """

    arch = "attention_unet"
    supported_dims = (2, 3)

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 2,
        features: Sequence[int] = (16, 32, 64, 128, 256),
        norm: str = "batch",
        upsample: str = "interp",
        multi_gate: bool = False,
        deep_supervision: bool = False,
    ):
        feats = check_features(features, min_levels=3)
        super().__init__(
            spatial_dims, in_channels, out_channels, features=list(feats), norm=norm, upsample=upsample,
            multi_gate=bool(multi_gate), deep_supervision=bool(deep_supervision),
        )
        d, n = spatial_dims, len(feats)
        self.encoder = nn.ModuleList(
            DoubleConv(d, cin, cout, norm) for cin, cout in zip((in_channels, *feats[:-1]), feats)
        )
        self.pool = max_pool_nd(d)(2)
        self.gating = ConvNormAct(d, feats[-1], feats[-1], 1, norm)
        # decoder step i (coarsest first) joins skip level n-2-i with the coarser feature below it
        levels = list(reversed(range(n - 1)))
        self.gates = nn.ModuleDict()
        for lv in levels:
            if lv == 0:
                continue  # no gate on the full-resolution skip, as in the original
            self.gates[f"level{lv + 1}"] = MultiAttentionBlock(d, feats[lv], feats[lv + 1], norm, 2 if multi_gate else 1)
        self.decoder = nn.ModuleList(UpConcat(d, feats[lv + 1], feats[lv], norm, upsample) for lv in levels)
        conv = conv_nd(d)
        if deep_supervision:
            self.dsv = nn.ModuleList(conv(feats[lv], out_channels, 1) for lv in levels)
            self.head = conv(out_channels * len(levels), out_channels, 1)
        else:
            self.dsv = None
            self.head = conv(feats[0], out_channels, 1)
        self.size_divisor = 2 ** (n - 1)
        self.attention_strides = OrderedDict(
            (f"level{lv + 1}", (2**lv,) * d) for lv in range(1, n - 1)
        )
        self.encoder_prefixes = ("encoder.",)

    def _run(self, x: torch.Tensor):
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        g = self.gating(x)
        maps: dict[str, torch.Tensor] = {}
        decoded = []
        for up in self.decoder:
            skip = skips.pop()
            lv = len(skips)  # 0-based level of this skip
            if lv > 0:
                skip, maps[f"level{lv + 1}"] = self.gates[f"level{lv + 1}"](skip, g)
            x = up(skip, x)
            g = x  # the next (finer) gate is driven by this decoder feature
            decoded.append(x)
        return x, decoded, maps

    def _outputs(self, x: torch.Tensor):
        x, spatial = self._pad_to_divisor(x)
        out, decoded, maps = self._run(x)
        heads = []
        if self.dsv is not None:
            heads = [resize_to(dsv(f), out.shape[2:]) for dsv, f in zip(self.dsv, decoded)]
            logits = self.head(torch.cat(heads, 1))
        else:
            logits = self.head(out)
        ordered = OrderedDict((name, maps[name]) for name in self.attention_strides)
        heads = [self._crop(h, spatial) for h in heads]
        return self._crop(logits, spatial), heads, self._crop_maps(ordered, spatial)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        logits, _, maps = self._outputs(x)
        return (logits, maps) if return_attention else logits

    def forward_train(self, x: torch.Tensor) -> TrainOutput:
        logits, heads, _ = self._outputs(x)
        weight = 0.5 / len(heads) if heads else 0.0
        return TrainOutput(logits=logits, heads=[(weight, h) for h in heads])
