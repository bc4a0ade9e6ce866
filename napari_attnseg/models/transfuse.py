"""TransFuse (Zhang, Liu & Hu, MICCAI 2021), a small 2D configuration that trains on a CPU.

Two branches run in parallel: a ResNet-style CNN (features at 1/4, 1/8, 1/16) and a ViT (patch 16)
whose tokens are reshaped to 1/16 and decoded by two upsampling convs to 1/8 and 1/4. At each scale
a BiFusion module joins them: squeeze-excitation channel attention on the transformer features,
CBAM-style spatial attention on the CNN features, a Hadamard-product branch, and a residual block
over their concatenation. Attention-gated upsampling merges the fused scales; three heads (final,
transformer, 1/16) are trained with weights 0.5 / 0.3 / 0.2.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from .base import SegmentationModel, TrainOutput
from .blocks import resize_to
from .msga import BasicBlock

HEAD_WEIGHTS = (0.5, 0.3, 0.2)  # final, transformer, 1/16


def conv_bn_relu(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, 1, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TransformerBlock(nn.Module):
    """Pre-norm multi-head self-attention + MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(), nn.Linear(int(dim * mlp_ratio), dim))
        self.prompt_bias: nn.Module | None = None  # set by prompts.make_promptable: SMCA log-prior per head

    def _prior(self, q: torch.Tensor) -> torch.Tensor | None:
        return self.prompt_bias((), q.shape[0], q.device, q.dtype) if self.prompt_bias is not None else None

    def _qkv(self, x: torch.Tensor):
        b, n, d = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._qkv(x)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=self._prior(q))
        x = x + self.proj(out.transpose(1, 2).flatten(2))
        return x + self.mlp(self.norm2(x))

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The softmax attention matrix, (B, heads, N, N), computed explicitly (for display only)."""
        q, k, _ = self._qkv(x)
        logits = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5
        prior = self._prior(q)
        return torch.softmax(logits if prior is None else logits + prior, dim=-1)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.fc = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.sigmoid(self.fc(x.mean((2, 3))))
        return x * w[:, :, None, None]


class SpatialAttention(nn.Module):
    """CBAM spatial attention: [max, mean] over channels -> 7x7 conv -> sigmoid."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=3, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = torch.sigmoid(self.conv(torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], 1)))
        return x * a, a


class BiFusion(nn.Module):
    """Fuse transformer features t and CNN features g of one scale; returns (fused, spatial map)."""

    def __init__(self, t_channels: int, g_channels: int, inner: int, out_channels: int, dropout: float = 0.1):
        super().__init__()
        self.channel_att = SqueezeExcite(t_channels)
        self.spatial_att = SpatialAttention()
        self.w_t = nn.Conv2d(t_channels, inner, 1)
        self.w_g = nn.Conv2d(g_channels, inner, 1)
        self.hadamard = conv_bn_relu(inner, inner)
        cat = t_channels + g_channels + inner
        self.residual = BasicBlock(cat, out_channels)
        self.dropout = nn.Dropout2d(dropout)

    def forward(self, t: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t_hat = self.channel_att(t)
        g_hat, amap = self.spatial_att(g)
        b_hat = self.hadamard(self.w_t(t) * self.w_g(g))
        return self.dropout(self.residual(torch.cat([b_hat, t_hat, g_hat], 1))), amap


class GatedUp(nn.Module):
    """Attention-gated upsampling: the coarse fused map gates the finer one, then both are merged."""

    def __init__(self, coarse: int, fine: int, out_channels: int):
        super().__init__()
        inter = max(fine // 2, 4)
        self.w_g = nn.Conv2d(coarse, inter, 1)
        self.w_x = nn.Conv2d(fine, inter, 1)
        self.psi = nn.Conv2d(inter, 1, 1)
        self.conv = nn.Sequential(conv_bn_relu(coarse + fine, out_channels), conv_bn_relu(out_channels, out_channels))

    def forward(self, coarse: torch.Tensor, fine: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        up = resize_to(coarse, fine.shape[2:])
        alpha = torch.sigmoid(self.psi(F.relu(self.w_g(up) + self.w_x(fine))))
        return self.conv(torch.cat([up, fine * alpha], 1)), alpha


class TransFuse(SegmentationModel):
    """TransFuse, small configuration.

    Args:
        width: CNN channels at 1/4 (then x2 at 1/8, x4 at 1/16).
        embed_dim, depth, heads: the ViT branch (patch 16).
        base_grid: the token grid the position embedding is learned for (resized for other sizes).
    """

    arch = "transfuse"
    supported_dims = (2,)

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 2, width: int = 16,
                 embed_dim: int = 96, depth: int = 4, heads: int = 4, base_grid: int = 16, dropout: float = 0.1):
        for arg, value in (("width", width), ("embed_dim", embed_dim), ("depth", depth), ("heads", heads),
                           ("base_grid", base_grid)):
            if int(value) != value or value < 1:
                raise ValueError(f"transfuse needs {arg} to be an integer >= 1, got {value!r}")
        if embed_dim % heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by heads ({heads})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        super().__init__(spatial_dims, in_channels, out_channels, width=width, embed_dim=embed_dim, depth=depth,
                         heads=heads, base_grid=base_grid, dropout=dropout)
        w = width
        # CNN branch
        self.stem = nn.Sequential(conv_bn_relu(in_channels, w), nn.MaxPool2d(2), conv_bn_relu(w, w), nn.MaxPool2d(2))
        self.cnn = nn.ModuleList([BasicBlock(w, w), BasicBlock(w, 2 * w, 2), BasicBlock(2 * w, 4 * w, 2)])
        # transformer branch
        self.patch = nn.Conv2d(in_channels, embed_dim, 16, 16)
        self.pos = nn.Parameter(torch.zeros(1, embed_dim, base_grid, base_grid))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList(TransformerBlock(embed_dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim)
        self.t_up1 = conv_bn_relu(embed_dim, 2 * w)  # 1/16 -> 1/8
        self.t_up2 = conv_bn_relu(2 * w, w)  # 1/8 -> 1/4
        # fusion and decoder
        self.fuse16 = BiFusion(embed_dim, 4 * w, 4 * w, 4 * w, dropout)
        self.fuse8 = BiFusion(2 * w, 2 * w, 2 * w, 2 * w, dropout)
        self.fuse4 = BiFusion(w, w, w, w, dropout)
        self.up8 = GatedUp(4 * w, 2 * w, 2 * w)
        self.up4 = GatedUp(2 * w, w, w)
        self.head_final = nn.Sequential(conv_bn_relu(w, w), nn.Conv2d(w, out_channels, 1))
        self.head_trans = nn.Sequential(conv_bn_relu(w, w), nn.Conv2d(w, out_channels, 1))
        self.head_16 = nn.Sequential(conv_bn_relu(4 * w, w), nn.Conv2d(w, out_channels, 1))
        self.size_divisor = 16
        self.attention_strides = OrderedDict([
            ("bifusion 1/4", (4, 4)), ("gate 1/4", (4, 4)), ("bifusion 1/8", (8, 8)),
            ("gate 1/8", (8, 8)), ("bifusion 1/16", (16, 16)), ("vit tokens", (16, 16)),
        ])
        # the CNN's 1/4 grid comes from 2x2 max-pooling (pixel i centred on input pixel 4 * i + 1.5, the default);
        # its 1/8 and 1/16 grids from 3x3 stride-2 convolutions, which keep that first centre (8 * i + 1.5,
        # 16 * i + 1.5); the gates at 1/8 gate those CNN-grid features. The ViT's tokens are 16-pixel blocks.
        self.attention_offsets = {name: (1.5, 1.5) for name in ("bifusion 1/8", "gate 1/8", "bifusion 1/16")}
        self.relative_attention = {"vit tokens": "max"}  # the others are sigmoid gates, in [0, 1] as they are
        self.encoder_prefixes = ("stem.", "cnn.", "patch.", "pos", "blocks.", "norm.")

    def _tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Patch embedding + position embedding + all blocks but the last; (B, N, D) and the grid."""
        t = self.patch(x)
        h, w = t.shape[2:]
        t = t + resize_to(self.pos, (h, w))
        seq = t.flatten(2).transpose(1, 2)
        for block in self.blocks[:-1]:
            seq = block(seq)
        return seq, (int(h), int(w))

    def _run(self, x: torch.Tensor, want_maps: bool):
        x, spatial = self._pad_to_divisor(x)
        g4 = self.cnn[0](self.stem(x))
        g8 = self.cnn[1](g4)
        g16 = self.cnn[2](g8)
        seq, (h, w) = self._tokens(x)
        last = self.blocks[-1]
        token_map = None
        if want_maps:  # explicit weights for display; the output still goes through the fused kernel
            attn = last.attention_weights(seq).mean(1)  # (B, N, N), averaged over heads
            # how much each token is attended to (no CLS token), in units of the uniform share 1/N: the raw map
            # does not depend on the tile size; forward divides it by its maximum (relative_attention)
            token_map = attn.mean(1).view(-1, 1, h, w) * float(h * w)
        seq = self.norm(last(seq))
        t16 = seq.transpose(1, 2).reshape(x.shape[0], -1, h, w)
        t8 = self.t_up1(resize_to(t16, g8.shape[2:]))
        t4 = self.t_up2(resize_to(t8, g4.shape[2:]))
        f16, a16 = self.fuse16(t16, g16)
        f8, a8 = self.fuse8(t8, g8)
        f4, a4 = self.fuse4(t4, g4)
        d8, gate8 = self.up8(f16, f8)
        d4, gate4 = self.up4(d8, f4)

        def full(t):
            return self._crop(resize_to(t, x.shape[2:]), spatial)

        outputs = (full(self.head_final(d4)), full(self.head_trans(t4)), full(self.head_16(f16)))
        maps = OrderedDict()
        if want_maps:
            maps = self._crop_maps(OrderedDict([
                ("bifusion 1/4", a4), ("gate 1/4", gate4), ("bifusion 1/8", a8),
                ("gate 1/8", gate8), ("bifusion 1/16", a16), ("vit tokens", token_map),
            ]), spatial)
        return outputs, maps

    def forward(self, x: torch.Tensor, return_attention: bool | str = False):
        """Logits; with ``return_attention`` also the maps, "vit tokens" divided by its maximum per sample of
        this call, or raw with ``return_attention="raw"`` (see ``SegmentationModel.scale_attention``)."""
        (final, _, _), maps = self._run(x, bool(return_attention))
        return (final, self.scale_attention(maps, return_attention)) if return_attention else final

    def forward_train(self, x: torch.Tensor) -> TrainOutput:
        (final, trans, f16), _ = self._run(x, False)
        w_final, w_trans, w_16 = HEAD_WEIGHTS
        return TrainOutput(logits=final, heads=[(w_trans, trans), (w_16, f16)], main_weight=w_final)
