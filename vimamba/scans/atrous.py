"""Atrous-window scan for AtrousMamba's AWVSS block (a proposal, docs/families.md#atrousmamba)."""
from dataclasses import dataclass

import torch

from .base import ScanPattern, check_int, from_transposed, register_pattern


def atrous_window_order(h: int, w: int, window: int, rate: int) -> torch.Tensor:
    """Raster indices of an h x w grid in atrous-window order, shape (h*w,).

    The grid is cut into blocks of span = rate*window rows and columns (blocks in raster order). Inside a block
    the rate x rate dilation phases (p, q) come in raster order, and each phase is one atrous window: the
    window x window tokens (p + rate*a, q + rate*b), a and b in raster order, so consecutive tokens are `rate`
    apart. Blocks cut by the grid border are clipped, not padded, so every grid is covered exactly once.
    """
    span = rate * window
    i = torch.arange(h)[:, None]
    j = torch.arange(w)[None, :]
    block_i, phase_i, step_i = i // span, (i % span) % rate, (i % span) // rate
    block_j, phase_j, step_j = j // span, (j % span) % rate, (j % span) // rate
    blocks_per_row = -(-w // span)
    # Lexicographic key (block_i, block_j, phase_i, phase_j, step_i, step_j): one distinct integer per token.
    key = block_i * blocks_per_row + block_j
    key = (key * rate + phase_i) * rate + phase_j
    key = (key * window + step_i) * window + step_j
    return torch.argsort(key.flatten())


@register_pattern
@dataclass(frozen=True)
class AtrousWindowScan(ScanPattern):
    """Four atrous-window directions in VMamba's cross2d order: windows row-major, windows column-major, then the
    reverse of each.

    `window` (w, default 8: divides the 64/32/16/8 grids of 256-px crops) and `rate` (r, default 1: plain
    LocalMamba-style windows). Every grid fits: partial blocks at the border are clipped, so the model, not the
    pattern, decides whether a rate is worth using on a small grid (AtrousMamba clips r*w <= max(H, W)).

    Directions in cross2d order, [k, k^T, reverse(k), reverse(k^T)], because AWVSS loads VMamba checkpoints
    whose per-direction parameters were trained for that order. With r = 1 and w >= max(H, W) it equals `cross`.
    """
    window: int = 8
    rate: int = 1

    name = "atrous_window"
    num_directions = 4

    def __post_init__(self):
        object.__setattr__(self, "window", check_int(type(self).__name__, "window", self.window, 1))
        object.__setattr__(self, "rate", check_int(type(self).__name__, "rate", self.rate, 1))

    def _index(self, h, w):
        rows_first = atrous_window_order(h, w, self.window, self.rate)
        columns_first = from_transposed(atrous_window_order(w, h, self.window, self.rate), h, w)
        return torch.stack([rows_first, columns_first, rows_first.flip(0), columns_first.flip(0)])
