"""ShuffleMamba's stochastic layer-wise shuffle (docs/families.md#shufflemamba) as a scan order."""
from dataclasses import dataclass
from typing import Optional

import torch

from .base import DeviceLike, ScanOrder, ScanPattern, _normalise_device, check_grid, register_pattern


@register_pattern
@dataclass(frozen=True)
class ShuffleScan(ScanPattern):
    """A fresh random permutation of the L tokens on every training call, raster order in eval."""
    name = "shuffle"
    num_directions = 1

    def order(self, h: int, w: int, device: DeviceLike = None, *, training: bool = False,
              generator: Optional[torch.Generator] = None) -> ScanOrder:
        if not training:
            return super().order(h, w, device)
        h, w = check_grid(type(self).__name__ + ".order", h, w)
        device = _normalise_device(device)
        # randperm must run where the generator lives; the permutation then moves to `device`.
        gen_device = generator.device if generator is not None else device
        perm = torch.randperm(h * w, generator=generator, device=gen_device).to(device)
        return ScanOrder._from_permutation(perm[None])

    def _index(self, h, w):
        return torch.arange(h * w)[None]
