"""The plain U-Net baseline (Ronneberger et al. 2015), 2D and 3D."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from .base import SegmentationModel
from .blocks import DoubleConv, UpConcat, check_features, conv_nd, max_pool_nd


class UNet(SegmentationModel):
    """Double conv (conv, norm, ReLU) x2 per level, max-pool down, upsample + concat + double conv up.

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: image channels and classes (incl. background).
        features: channels per level, finest first.
        norm: ``batch`` or ``instance``.
        upsample: ``interp`` (bilinear/trilinear) or ``transpose`` (transposed conv).
    """

    arch = "unet"
    supported_dims = (2, 3)

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 2,
        features: Sequence[int] = (16, 32, 64, 128, 256),
        norm: str = "batch",
        upsample: str = "interp",
    ):
        feats = check_features(features)
        super().__init__(spatial_dims, in_channels, out_channels, features=list(feats), norm=norm, upsample=upsample)
        d = spatial_dims
        self.encoder = nn.ModuleList(
            DoubleConv(d, cin, cout, norm) for cin, cout in zip((in_channels, *feats[:-1]), feats)
        )
        self.pool = max_pool_nd(d)(2)
        self.decoder = nn.ModuleList(
            UpConcat(d, feats[i + 1], feats[i], norm, upsample) for i in reversed(range(len(feats) - 1))
        )
        self.head = conv_nd(d)(feats[0], out_channels, 1)
        self.size_divisor = 2 ** (len(feats) - 1)
        self.encoder_prefixes = ("encoder.",)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        x, spatial = self._pad_to_divisor(x)
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up in self.decoder:
            x = up(skips.pop(), x)
        logits = self._crop(self.head(x), spatial)
        return (logits, OrderedDict()) if return_attention else logits
