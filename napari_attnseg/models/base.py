"""The interface every architecture implements (see docs/ARCHITECTURE.md)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

# ``model(x, return_attention=RAW_ATTENTION)``: the maps named in ``model.relative_attention`` come back unscaled
RAW_ATTENTION = "raw"
RELATIVE_SCALINGS = ("minmax", "max")


def scale_relative(m: torch.Tensor, how: str) -> torch.Tensor:
    """Scale each sample of a map batch (B, ...) to [0, 1] over all its values: ``"minmax"`` (the weakest
    value -> 0, the strongest -> 1) or ``"max"`` (divided by the strongest; the map is >= 0). A constant
    map (or an all-zero one, for ``"max"``) becomes 0."""
    flat = m.flatten(1)
    shape = (-1,) + (1,) * (m.dim() - 1)
    hi = flat.amax(1).view(shape)
    if how == "max":
        return m / hi.clamp_min(1e-30)
    if how != "minmax":
        raise ValueError(f"unknown attention scaling {how!r}; one of {RELATIVE_SCALINGS}")
    lo = flat.amin(1).view(shape)
    return (m - lo) / (hi - lo).clamp_min(1e-12)


@dataclass
class TrainOutput:
    """What `forward_train` returns to the trainer.

    Attributes:
        logits: main output, (B, out_channels, *spatial) at the input's size.
        heads: extra ``(weight, logits)`` pairs at the input's size (deep supervision, TransFuse's
            heads); the trainer applies its segmentation loss to each with that weight.
        aux_loss: a scalar, already weighted, added to the loss as is (msga's auxiliary losses).
        main_weight: weight of the segmentation loss on ``logits`` (0 when the heads already
            cover it, as for msga whose output is the mean of its supervised heads).
    """

    logits: torch.Tensor
    heads: list[tuple[float, torch.Tensor]] = field(default_factory=list)
    aux_loss: torch.Tensor | float = 0.0
    main_weight: float = 1.0


class SegmentationModel(nn.Module):
    """Base class: a segmentation network that can also return its attention coefficients."""

    arch: ClassVar[str] = ""
    supported_dims: ClassVar[tuple[int, ...]] = (2, 3)

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, **config: Any):
        super().__init__()
        if spatial_dims not in self.supported_dims:
            raise ValueError(
                f"{self.arch} supports spatial_dims in {self.supported_dims}, got {spatial_dims}."
            )
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"in_channels and out_channels must be >= 1, got {in_channels}, {out_channels}.")
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.config: dict[str, Any] = {
            "spatial_dims": spatial_dims,
            "in_channels": in_channels,
            "out_channels": out_channels,
            **config,
        }
        self.size_divisor: int = 1
        self.attention_strides: dict[str, tuple[int, ...]] = OrderedDict()
        # where pixel 0 of a map is centred on the input, per axis, when not ``(stride - 1) / 2``: see
        # ``attention_centre``
        self.attention_offsets: dict[str, tuple[float, ...]] = {}
        # maps whose values only mean something relative to each other (name -> one of RELATIVE_SCALINGS);
        # the others are already absolute, in [0, 1] (sigmoid gates). See ``scale_attention``.
        self.relative_attention: dict[str, str] = {}
        self.encoder_prefixes: tuple[str, ...] = ()

    # -- helpers for subclasses -------------------------------------------------------------
    def _pad_to_divisor(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        """Pad the spatial dims at their end up to multiples of ``size_divisor`` (replicate)."""
        spatial = tuple(x.shape[2:])
        d = self.size_divisor
        pads = [(-s) % d for s in spatial]
        if not any(pads):
            return x, spatial
        pad_arg: list[int] = []
        for p in reversed(pads):  # F.pad wants the last dim first
            pad_arg += [0, p]
        mode = "replicate" if all(p < s for p, s in zip(pads, spatial)) else "constant"
        return F.pad(x, pad_arg, mode=mode), spatial

    @staticmethod
    def _crop(t: torch.Tensor, spatial: tuple[int, ...]) -> torch.Tensor:
        return t[(..., *(slice(0, s) for s in spatial))]

    def _crop_maps(self, maps: OrderedDict[str, torch.Tensor], spatial: tuple[int, ...]):
        """Crop each attention map to the part covering the unpadded input (ceil of size/stride)."""
        out = OrderedDict()
        for name, m in maps.items():
            stride = self.attention_strides.get(name, (1,) * len(spatial))
            size = tuple(-(-s // st) for s, st in zip(spatial, stride))
            out[name] = self._crop(m, size)
        return out

    def attention_centre(self, name: str) -> tuple[float, ...]:
        """The input pixel (per axis, in input pixels) that pixel 0 of map ``name`` is centred on; pixel ``i``
        is centred on ``attention_centre(name) + i * stride``. A grid made by 2x2 pooling (or kernel-2,
        stride-2 convolutions) covers blocks of ``stride`` input pixels: ``(stride - 1) / 2``, the default.
        A 3x3 convolution of stride 2 and padding 1 centres its pixel ``i`` on input pixel ``2 * i`` instead
        (msga's backbone, TransFuse's CNN below 1/4): such maps are listed in ``attention_offsets``."""
        stride = self.attention_strides[name]
        return tuple(float(o) for o in self.attention_offsets.get(name, tuple((s - 1) / 2 for s in stride)))

    def scale_attention(self, maps: OrderedDict[str, torch.Tensor], return_attention) -> OrderedDict[str, torch.Tensor]:
        """What ``forward(x, return_attention)`` returns as maps: the relative ones scaled to [0, 1] per sample
        of this call (``return_attention=True``), or left raw (``RAW_ATTENTION``): the inference engine asks
        for raw maps, blends the tiles of an image and scales each map once over the whole image, so the
        tile grid does not show (scaled per tile, every tile reached 0 and 1)."""
        if return_attention == RAW_ATTENTION:
            return maps
        rel = self.relative_attention
        return OrderedDict((k, scale_relative(m, rel[k]) if k in rel else m) for k, m in maps.items())

    # -- interface --------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, return_attention: bool = False):  # pragma: no cover
        raise NotImplementedError

    def forward_train(self, x: torch.Tensor) -> TrainOutput:
        return TrainOutput(logits=self.forward(x))

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, spatial_dims={self.spatial_dims}"
