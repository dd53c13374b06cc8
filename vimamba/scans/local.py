"""LBMamba's locally bi-directional scan: one raster direction plus a reverse scan inside each window."""
from dataclasses import dataclass
from typing import Optional

import torch

from .base import ScanPattern, check_int, register_pattern


def lbmamba_window(length: int) -> int:
    """LBMamba's window for `length` scanned tokens: its kernel's per-thread item count, which grows with L."""
    if length <= 128:
        return 4
    if length <= 256:
        return 8
    return 16


@register_pattern
@dataclass(frozen=True)
class LocallyBidirectionalScan(ScanPattern):
    """Raster order plus a reverse recurrence inside each `window` (None: `lbmamba_window(h*w)`) steps.
    `reverse`: the reversed raster order (LBVim's odd layers; windows align to the scanned order)."""
    window: Optional[int] = None
    reverse: bool = False

    name = "locally_bidirectional"
    num_directions = 1

    def __post_init__(self):
        if self.window is not None:
            object.__setattr__(self, "window", check_int(type(self).__name__, "window", self.window, 1))
        if not isinstance(self.reverse, bool):
            raise ValueError(f"{type(self).__name__}: reverse must be a bool, got {self.reverse!r}")

    def _index(self, h, w):
        raster = torch.arange(h * w)
        return (raster.flip(0) if self.reverse else raster)[None]

    def _local_window(self, h, w):
        return lbmamba_window(h * w) if self.window is None else int(self.window)
