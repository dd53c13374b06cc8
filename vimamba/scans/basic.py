"""Whole-image scans: raster, raster both ways (Vim, MobileMamba) and VMamba's four-way cross scan."""
from dataclasses import dataclass

import torch

from .base import ScanPattern, from_transposed, register_pattern


@register_pattern
@dataclass(frozen=True)
class RasterScan(ScanPattern):
    """Tokens in raster order, one direction; `reverse` scans them last to first."""
    reverse: bool = False

    name = "raster"
    num_directions = 1

    def __post_init__(self):
        if not isinstance(self.reverse, bool):
            raise ValueError(f"{type(self).__name__}: reverse must be a bool, got {self.reverse!r}")

    def _index(self, h, w):
        raster = torch.arange(h * w)
        return (raster.flip(0) if self.reverse else raster)[None]


@register_pattern
@dataclass(frozen=True)
class BidirectionalScan(ScanPattern):
    """Raster order and its reverse (Vim's bimamba, MobileMamba's 2-direction SS2D); merge `y0 + y1`."""
    name = "bidirectional"
    num_directions = 2

    def _index(self, h, w):
        raster = torch.arange(h * w)
        return torch.stack([raster, raster.flip(0)])


@register_pattern
@dataclass(frozen=True)
class CrossScan(ScanPattern):
    """VMamba's cross2d: raster, column-major, then the reverses of both (the order its weights are trained with)."""
    name = "cross"
    num_directions = 4

    def _index(self, h, w):
        raster = torch.arange(h * w)
        column_major = from_transposed(raster, h, w)
        return torch.stack([raster, column_major, raster.flip(0), column_major.flip(0)])
