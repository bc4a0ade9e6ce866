"""Data augmentation on batches of patches (torch, 2D and 3D): flips, 90-degree rotations, small
scaling/rotation, intensity scale/shift/gamma and Gaussian noise. Labels follow every spatial change."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def augment(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator, ignore_index: int | None = None):
    """x (B, C, *S) float, y (B, *S) long -> augmented copies."""
    nd = x.dim() - 2
    axes = list(range(2, 2 + nd))
    for a in axes:
        if torch.rand(1, generator=gen).item() < 0.5:
            x, y = x.flip(a), y.flip(a - 1)
    if x.shape[-1] == x.shape[-2] and torch.rand(1, generator=gen).item() < 0.5:
        k = int(torch.randint(1, 4, (1,), generator=gen))
        x, y = torch.rot90(x, k, (nd, nd + 1)), torch.rot90(y, k, (nd - 1, nd))
    if torch.rand(1, generator=gen).item() < 0.3:
        x, y = _affine(x, y, gen, ignore_index)
    # intensity
    b = x.shape[0]
    shape = (b, 1) + (1,) * nd
    scale = 1 + 0.2 * (torch.rand(shape, generator=gen) * 2 - 1)
    shift = 0.1 * (torch.rand(shape, generator=gen) * 2 - 1)
    x = x * scale + shift
    if torch.rand(1, generator=gen).item() < 0.3:
        gamma = math.exp(0.3 * (torch.rand(1, generator=gen).item() * 2 - 1))
        lo = x.amin(dim=tuple(range(1, x.dim())), keepdim=True)
        hi = x.amax(dim=tuple(range(1, x.dim())), keepdim=True)
        rng = (hi - lo).clamp_min(1e-6)
        x = ((x - lo) / rng).clamp_min(0) ** gamma * rng + lo
    if torch.rand(1, generator=gen).item() < 0.3:
        x = x + 0.05 * torch.randn(x.shape, generator=gen)
    return x.contiguous(), y.contiguous()


def _affine(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator, ignore_index: int | None):
    """Small in-plane rotation (+-15 degrees) and scaling (0.85-1.15), same for image and labels."""
    nd = x.dim() - 2
    b = x.shape[0]
    angle = math.radians(15) * (torch.rand(1, generator=gen).item() * 2 - 1)
    s = 1 + 0.15 * (torch.rand(1, generator=gen).item() * 2 - 1)
    c, si = math.cos(angle) / s, math.sin(angle) / s
    if nd == 2:
        theta = torch.tensor([[c, -si, 0.0], [si, c, 0.0]])
    else:
        theta = torch.tensor([[c, -si, 0.0, 0.0], [si, c, 0.0, 0.0], [0.0, 0.0, 1.0 / s, 0.0]])
    theta = theta.unsqueeze(0).expand(b, -1, -1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    yf = F.grid_sample(y.unsqueeze(1).float(), grid, mode="nearest", padding_mode="border", align_corners=False)
    return x, yf.squeeze(1).long()
