"""MaIR's Nested S-shaped Scan (NSS, docs/families.md#mair): S-shaped paths inside stripes of `scan_len` columns."""
from dataclasses import dataclass

import torch

from .base import ScanPattern, check_int, from_transposed, register_pattern


def nested_s_order(h: int, w: int, scan_len: int, shift: int) -> torch.Tensor:
    """Raster indices (h*w,) in NSS order: stripes [0, shift), then scan_len wide, clipped at w; even stripes
    walk down, odd ones up, rows alternating inside (as MaIR: stripe joins not always adjacent)."""
    if 0 < shift and w < shift:
        # MaIR's generator degenerates to raster here, and its checkpoints were trained so.
        return torch.arange(h * w)
    col = torch.arange(w)
    if shift > 0:
        in_head = col < shift
        stripe = torch.where(in_head, 0, 1 + (col - shift) // scan_len)
        start = torch.where(in_head, 0, shift + (col - shift) // scan_len * scan_len)
        stop = torch.where(in_head, shift, torch.clamp(start + scan_len, max=w))
    else:
        stripe = col // scan_len
        start = stripe * scan_len
        stop = torch.clamp(start + scan_len, max=w)
    width = stop - start
    row = torch.arange(h)[:, None]
    row_step = torch.where(stripe % 2 == 0, row, h - 1 - row)              # (h, w)
    offset = torch.where(row_step % 2 == 0, col - start, stop - 1 - col)
    position = h * start + row_step * width + offset
    order = torch.empty(h * w, dtype=torch.long)
    order[position.flatten()] = torch.arange(h * w)
    return order


@register_pattern
@dataclass(frozen=True)
class NestedSScan(ScanPattern):
    """MaIR's four NSS directions: vertical stripes, rotated 180 degrees, horizontal bands, rotated.
    `scan_len`: stripe width; `shift`: stripe offset < scan_len (MaIR's odd blocks: scan_len // 2).
    k1 and k3 are `L-1-k` (the rotated image's scan), NOT the reversed sequences of k0 and k2."""
    scan_len: int = 8
    shift: int = 0

    name = "nested_s"
    num_directions = 4

    def __post_init__(self):
        owner = type(self).__name__
        object.__setattr__(self, "scan_len", check_int(owner, "scan_len", self.scan_len, 1))
        shift = check_int(owner, "shift", self.shift, 0)
        if shift >= self.scan_len:
            raise ValueError(f"{owner}: shift must be an int with 0 <= shift < scan_len={self.scan_len}, "
                             f"got {self.shift!r}")
        object.__setattr__(self, "shift", shift)

    def _index(self, h, w):
        last = h * w - 1
        stripes = nested_s_order(h, w, self.scan_len, self.shift)
        bands = from_transposed(nested_s_order(w, h, self.scan_len, self.shift), h, w)
        return torch.stack([stripes, last - stripes, bands, last - bands])
