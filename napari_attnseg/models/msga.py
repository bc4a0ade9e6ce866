"""Multi-scale self-guided attention (Sinha & Dolz 2020, IEEE JBHI), 2D.

A ResNet-style backbone (written here, no torchvision) gives features at 1/4, 1/8, 1/16 and 1/32;
each is reduced to a common width and upsampled to 1/4, and their concatenation is fused into a
multi-scale map F_MS. Per scale s, a guided attention module (DANet position attention + channel
attention, summed, times the output of an encoder-decoder "semantic" module) runs twice: step 1 on
cat(F_s, F_MS), step 2 on cat(F_s, A_s * F_MS). Per-scale heads are averaged at inference.
Auxiliary losses: the guided loss (MSE between the two steps' latent vectors, per sample) and the
reconstruction loss of the semantic modules, weighted 0.25 and 0.1 as in the paper.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import SegmentationModel, TrainOutput
from .blocks import resize_to

GUIDED_WEIGHT = 0.25
RECONSTRUCTION_WEIGHT = 0.1


def cbr(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    """conv -> BatchNorm -> PReLU, the unit the paper wraps its modules in."""
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.PReLU(cout))


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs with an identity or projected shortcut)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.short(x))


class ResNetBackbone(nn.Module):
    """Stem to 1/4, then four stages at 1/4, 1/8, 1/16, 1/32 (one or more basic blocks each)."""

    def __init__(self, in_channels: int, width: int, blocks: tuple[int, ...] = (1, 1, 1, 1)):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
        )
        chans = [width * m for m in (1, 2, 4, 8)]
        self.stages = nn.ModuleList()
        cin = width
        for i, (c, n) in enumerate(zip(chans, blocks)):
            layers = [BasicBlock(cin, c, 1 if i == 0 else 2)] + [BasicBlock(c, c) for _ in range(n - 1)]
            self.stages.append(nn.Sequential(*layers))
            cin = c
        self.channels = chans

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class PositionAttention(nn.Module):
    """DANet position attention: out = gamma * V softmax(Q^T K)^T + x, gamma starting at 0."""

    # see forward; False gives the unpadded maths (used by benchmarks/model_table.py to count FLOPs)
    pad_for_fused_kernel: bool = True

    def __init__(self, channels: int):
        super().__init__()
        inner = max(channels // 8, 1)
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.prompt_bias: nn.Module | None = None  # set by prompts.make_promptable: SMCA log-prior on the keys

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # (B, HW, C')
        k = self.key(x).flatten(2).transpose(1, 2)
        v = self.value(x).flatten(2).transpose(1, 2).contiguous()  # (B, HW, C)
        prior = self.prompt_bias((h, w), b, x.device, q.dtype) if self.prompt_bias is not None else None
        if prior is not None:  # a per-key bias folded into q.k (one more column), so the fused kernel stays
            q = torch.cat([q, torch.ones_like(q[..., :1])], -1)
            k = torch.cat([k, prior[:, 0, 0, :, None]], -1)
        # SDPA takes its fused (flash) kernel, which never holds the HW x HW matrix, only when q, k and
        # v have the same head size and are contiguous in it; otherwise it silently builds the matrix.
        # Zero-padding q and k to v's width leaves q.k unchanged. Measured for one PAM at a 512x512
        # input (HW = 16384, 64 channels, 2 cores): 2.3 GB and 4.1 s unpadded, 32 MB and 1.4 s padded.
        # No 1/sqrt(d) scaling in DANet, hence scale=1.
        extra = v.shape[-1] - q.shape[-1]
        if extra > 0 and self.pad_for_fused_kernel:
            q, k = F.pad(q, (0, extra)), F.pad(k, (0, extra))
        out = F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1), scale=1.0)
        return self.gamma * out.squeeze(1).transpose(1, 2).reshape(b, c, h, w) + x

    def row(self, x: torch.Tensor, index: int) -> torch.Tensor:
        """Softmax attention of query pixel ``index`` (flattened) over all pixels, (B, H*W)."""
        q = self.query(x).flatten(2)[:, :, index]  # (B, C')
        k = self.key(x).flatten(2)  # (B, C', HW)
        logits = torch.einsum("bc,bcn->bn", q, k)
        prior = self.prompt_bias(x.shape[2:], x.shape[0], x.device, q.dtype) if self.prompt_bias is not None else None
        return torch.softmax(logits if prior is None else logits + prior[:, 0, 0], dim=-1)


class ChannelAttention(nn.Module):
    """DANet channel attention: softmax(max(XX^T) - XX^T) X, scaled by gamma (from 0), plus x."""

    def __init__(self):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        flat = x.flatten(2)
        energy = flat @ flat.transpose(1, 2)
        energy = energy.amax(-1, keepdim=True).expand_as(energy) - energy
        out = torch.softmax(energy, dim=-1) @ flat
        return self.gamma * out.reshape(b, c, h, w) + x


class SemanticModule(nn.Module):
    """Small encoder-decoder: returns its latent vector (per sample) and its reconstruction."""

    def __init__(self, channels: int, latent: int):
        super().__init__()
        self.enc1 = cbr(channels, channels)
        self.enc2 = cbr(channels, latent)
        self.dec2 = cbr(latent, channels)
        self.dec1 = cbr(channels, channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e1 = F.max_pool2d(self.enc1(x), 2)
        z = F.max_pool2d(self.enc2(e1), 2)
        d = self.dec2(F.interpolate(z, size=e1.shape[2:], mode="bilinear", align_corners=False))
        recon = self.dec1(F.interpolate(d, size=x.shape[2:], mode="bilinear", align_corners=False))
        return z, recon


class GuidedAttention(nn.Module):
    """(PAM + CAM) of the input, times the semantic module's reconstruction, then a 1x1 conv."""

    def __init__(self, channels: int, out_channels: int, latent: int):
        super().__init__()
        self.pam_in, self.pam, self.pam_out = cbr(channels, channels), PositionAttention(channels), cbr(channels, channels)
        self.cam_in, self.cam, self.cam_out = cbr(channels, channels), ChannelAttention(), cbr(channels, channels)
        self.semantic = SemanticModule(channels, latent)
        self.project = nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor):
        latent, recon = self.semantic(x)
        attended = self.pam_out(self.pam(self.pam_in(x))) + self.cam_out(self.cam(self.cam_in(x)))
        return self.project(attended * recon), latent, recon


class MultiScaleGuidedAttention(SegmentationModel):
    """Multi-scale self-guided attention network (2D).

    Args:
        width: channels of the backbone's first stage (stages: width x 1, 2, 4, 8).
        channels: common width the four scales are reduced to (paper: 64).
        latent: channels of the semantic modules' latent code.
        blocks: basic blocks per backbone stage.
    """

    arch = "msga"
    supported_dims = (2,)

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 2,
                 width: int = 16, channels: int = 32, latent: int = 16, blocks=(1, 1, 1, 1)):
        if width < 1 or channels < 8 or latent < 1:
            raise ValueError("msga needs width >= 1, channels >= 8 and latent >= 1")
        blocks = tuple(int(b) for b in blocks)
        if len(blocks) != 4 or min(blocks) < 1:
            raise ValueError(f"blocks must be four counts >= 1, got {blocks}")
        super().__init__(spatial_dims, in_channels, out_channels, width=width, channels=channels,
                         latent=latent, blocks=list(blocks))
        c = channels
        self.backbone = ResNetBackbone(in_channels, width, blocks)
        self.reduce = nn.ModuleList(cbr(ch, c, 1) for ch in self.backbone.channels)
        self.fuse = cbr(4 * c, c)
        self.step1 = nn.ModuleList(GuidedAttention(2 * c, c, latent) for _ in range(4))
        self.step2 = nn.ModuleList(GuidedAttention(2 * c, c, latent) for _ in range(4))
        self.heads1 = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for _ in range(4))
        self.heads2 = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for _ in range(4))
        self.size_divisor = 32
        self.attention_strides = OrderedDict(
            (f"scale{s + 1} step{k}", (4, 4)) for s in range(4) for k in (1, 2)
        )
        # the 1/4 grid comes from two 3x3 stride-2 convolutions (padding 1): its pixel i is centred on input
        # pixel 4 * i, not on the middle of a 4-pixel block (4 * i + 1.5)
        self.attention_offsets = {name: (0.0, 0.0) for name in self.attention_strides}
        # mean |guided attention output|: no fixed range, shown min-max scaled (per call, or per image by the engine)
        self.relative_attention = {name: "minmax" for name in self.attention_strides}
        self.encoder_prefixes = ("backbone.",)

    def _features(self, x: torch.Tensor):
        feats = self.backbone(x)
        size = feats[0].shape[2:]
        scales = [resize_to(r(f), size) for r, f in zip(self.reduce, feats)]
        return scales, self.fuse(torch.cat(scales, 1))

    def _run(self, x: torch.Tensor):
        x, spatial = self._pad_to_divisor(x)
        scales, fused = self._features(x)
        logits1, logits2, maps, guided, recon = [], [], OrderedDict(), [], []
        for s, f in enumerate(scales):
            inp1 = torch.cat([f, fused], 1)
            a1, z1, r1 = self.step1[s](inp1)
            inp2 = torch.cat([f, a1 * fused], 1)
            a2, z2, r2 = self.step2[s](inp2)
            # the guided attention output reduced over channels (raw: forward scales it, see relative_attention)
            maps[f"scale{s + 1} step1"] = a1.abs().mean(1, keepdim=True)
            maps[f"scale{s + 1} step2"] = a2.abs().mean(1, keepdim=True)
            logits1.append(self.heads1[s](a1))
            logits2.append(self.heads2[s](a2))
            guided.append((z1 - z2).square().flatten(1).mean(1))  # per sample
            recon.append((r1 - inp1).square().flatten(1).mean(1) + (r2 - inp2).square().flatten(1).mean(1))

        def up(t):
            return self._crop(resize_to(t, x.shape[2:]), spatial)

        aux = GUIDED_WEIGHT * torch.stack(guided, 1).sum(1).mean() + RECONSTRUCTION_WEIGHT * torch.stack(recon, 1).sum(1).mean()
        maps = self._crop_maps(maps, spatial)  # (the padding cropped off before any scaling)
        return [up(t) for t in logits1], [up(t) for t in logits2], maps, aux

    def forward(self, x: torch.Tensor, return_attention: bool | str = False):
        """Logits; with ``return_attention`` also the maps, min-max scaled per sample of this call, or raw
        with ``return_attention="raw"`` (see ``SegmentationModel.scale_attention``)."""
        _, refined, maps, _ = self._run(x)
        logits = torch.stack(refined, 0).mean(0)
        return (logits, self.scale_attention(maps, return_attention)) if return_attention else logits

    def forward_train(self, x: torch.Tensor) -> TrainOutput:
        first, refined, _, aux = self._run(x)
        logits = torch.stack(refined, 0).mean(0)
        heads = [(1.0, t) for t in first + refined]  # CE on every head, as in the paper
        return TrainOutput(logits=logits, heads=heads, aux_loss=aux, main_weight=0.0)

    @torch.no_grad()
    def pixel_attention(self, x: torch.Tensor, point: tuple[int, int], scale: int = 1, step: int = 2) -> torch.Tensor:
        """Where pixel ``point`` (row, col in input pixels) looks: the position-attention row of
        that pixel at ``scale`` (1..4) and ``step`` (1 or 2), as (B, 1, H/4, W/4) scaled to [0, 1]."""
        if scale not in (1, 2, 3, 4) or step not in (1, 2):
            raise ValueError(f"scale must be 1..4 and step 1 or 2, got scale={scale!r}, step={step!r}")
        x, spatial = self._pad_to_divisor(x)
        scales, fused = self._features(x)
        s = scale - 1
        module = self.step1[s]
        inp = torch.cat([scales[s], fused], 1)
        if step == 2:
            a1, _, _ = self.step1[s](inp)
            inp = torch.cat([scales[s], a1 * fused], 1)
            module = self.step2[s]
        h, w = inp.shape[2:]
        centre = self.attention_centre(f"scale{scale} step{step}")  # the map pixel centred nearest the point (ties: the first)
        r = min(max(int(np.ceil((point[0] - centre[0]) / 4 - 0.5)), 0), h - 1)
        c = min(max(int(np.ceil((point[1] - centre[1]) / 4 - 0.5)), 0), w - 1)
        row = module.pam.row(module.pam_in(inp), r * w + c).view(-1, 1, h, w)
        row = self._crop(row, tuple(-(-n // 4) for n in spatial))  # the part over the real image
        return row / row.flatten(1).amax(1).clamp_min(1e-30).view(-1, 1, 1, 1)
