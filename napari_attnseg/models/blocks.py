"""Building blocks shared by the architectures, for 2D and 3D alike."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("batch", "instance")


def conv_nd(dims: int) -> type[nn.Module]:
    return {2: nn.Conv2d, 3: nn.Conv3d}[dims]


def conv_transpose_nd(dims: int) -> type[nn.Module]:
    return {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[dims]


def max_pool_nd(dims: int) -> type[nn.Module]:
    return {2: nn.MaxPool2d, 3: nn.MaxPool3d}[dims]


def norm_nd(kind: str, dims: int, channels: int) -> nn.Module:
    if kind == "batch":
        return {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[dims](channels)
    if kind == "instance":
        return {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}[dims](channels, affine=True)
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


def interp_mode(dims: int) -> str:
    return "bilinear" if dims == 2 else "trilinear"


def resize_to(x: torch.Tensor, size: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """Linear resize of the spatial dims to ``size`` (no-op when equal)."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode=interp_mode(x.dim() - 2), align_corners=False)


class ConvNormAct(nn.Sequential):
    """conv (k x k) -> norm -> ReLU."""

    def __init__(self, dims: int, cin: int, cout: int, kernel: int = 3, norm: str = "batch", stride: int = 1):
        super().__init__(
            conv_nd(dims)(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
            norm_nd(norm, dims, cout),
            nn.ReLU(inplace=True),
        )


class DoubleConv(nn.Sequential):
    """The U-Net unit: (conv 3, norm, ReLU) twice."""

    def __init__(self, dims: int, cin: int, cout: int, norm: str = "batch"):
        super().__init__(ConvNormAct(dims, cin, cout, 3, norm), ConvNormAct(dims, cout, cout, 3, norm))


class Upsample(nn.Module):
    """x2 upsampling, by linear interpolation (``interp``) or a transposed convolution."""

    def __init__(self, dims: int, channels: int, mode: str = "interp"):
        super().__init__()
        if mode not in ("interp", "transpose"):
            raise ValueError(f"upsample must be 'interp' or 'transpose', got {mode!r}")
        self.mode = mode
        self.up = conv_transpose_nd(dims)(channels, channels, 2, stride=2) if mode == "transpose" else None

    def forward(self, x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
        if self.up is not None:
            return resize_to(self.up(x), size)
        return resize_to(x, size)


class UpConcat(nn.Module):
    """Decoder step: upsample the coarse feature to the skip's size, concatenate, double conv."""

    def __init__(self, dims: int, coarse: int, skip: int, norm: str, upsample: str):
        super().__init__()
        self.up = Upsample(dims, coarse, upsample)
        self.conv = DoubleConv(dims, coarse + skip, skip, norm)

    def forward(self, skip: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(coarse, skip.shape[2:])], dim=1))


def check_features(features, min_levels: int = 2) -> tuple[int, ...]:
    feats = tuple(int(f) for f in features)
    if len(feats) < min_levels or any(f < 1 for f in feats):
        raise ValueError(f"features must be >= {min_levels} positive channel counts, got {features!r}")
    return feats
