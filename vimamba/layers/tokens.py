"""Where the plain families put extra tokens in the (order-sensitive) sequence, and a matching pos-embed resize.
Layouts: 'none' (LBVim); 'head' (ShuffleMamba); 'middle', after M // 2 of M patches (Vim); 'interleaved'
(Mamba-Reg: n groups of [M // (n + 1) patches, 1 register], then the remaining patches)."""
from typing import Optional, Tuple

import torch
from timm.layers import resample_abs_pos_embed

__all__ = ['TOKEN_LAYOUTS', 'insert_tokens', 'split_tokens', 'resample_pos_embed']

TOKEN_LAYOUTS = ('none', 'head', 'middle', 'interleaved')


def insert_tokens(x: torch.Tensor, tokens: Optional[torch.Tensor], layout: str) -> torch.Tensor:
    """Patches `x` (B, M, C) and `tokens` (B, n, C) -> the sequence (B, M + n, C) of `layout`."""
    if layout == 'none' or tokens is None:
        return x
    if layout == 'head':
        return torch.cat([tokens, x], dim=1)
    if layout == 'middle':
        half = x.shape[1] // 2
        return torch.cat([x[:, :half], tokens, x[:, half:]], dim=1)
    if layout == 'interleaved':
        batch, num_patches, chans = x.shape
        n = tokens.shape[1]
        group = num_patches // (n + 1)
        grouped = torch.cat([x[:, :n * group].reshape(batch, n, group, chans), tokens[:, :, None]], dim=2)
        return torch.cat([grouped.reshape(batch, n * (group + 1), chans), x[:, n * group:]], dim=1)
    raise ValueError(f"layout: unknown token layout {layout!r}; accepted: {TOKEN_LAYOUTS}")


def split_tokens(x: torch.Tensor, layout: str, num_tokens: int) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The sequence (B, M + n, C) -> (patches (B, M, C) in raster order, tokens (B, n, C) or None)."""
    if layout == 'none' or num_tokens == 0:
        return x, None
    n = num_tokens
    if layout == 'head':
        return x[:, n:], x[:, :n]
    if layout == 'middle':
        half = (x.shape[1] - n) // 2
        return torch.cat([x[:, :half], x[:, half + n:]], dim=1), x[:, half:half + n]
    if layout == 'interleaved':
        batch, length, chans = x.shape
        group = (length - n) // (n + 1)
        grouped = x[:, :n * (group + 1)].reshape(batch, n, group + 1, chans)
        patches = torch.cat([grouped[:, :, :group].reshape(batch, n * group, chans), x[:, n * (group + 1):]], dim=1)
        return patches, grouped[:, :, group]
    raise ValueError(f"layout: unknown token layout {layout!r}; accepted: {TOKEN_LAYOUTS}")


def resample_pos_embed(
        posemb: torch.Tensor,
        new_size: Tuple[int, int],
        old_size: Optional[Tuple[int, int]] = None,
        layout: str = 'none',
        num_tokens: int = 0,
        interpolation: str = 'bicubic',
        antialias: bool = True,
) -> torch.Tensor:
    """Resize a position embedding (1, M + n, C) with token slots placed by `layout`; `old_size` defaults to square.
    Difference from the official Vim resize: that treats index 0 as the cls slot, wrong for its middle cls token."""
    patches, tokens = split_tokens(posemb, layout, num_tokens)
    if old_size is None:
        side = int(round(patches.shape[1] ** 0.5))
        if side * side != patches.shape[1]:
            raise ValueError(f"old_size: a position embedding of {patches.shape[1]} patch slots is not square; "
                             f"pass old_size")
        old_size = (side, side)
    if tuple(old_size) == tuple(new_size):
        return posemb
    patches = resample_abs_pos_embed(
        patches, new_size=list(new_size), old_size=list(old_size), num_prefix_tokens=0,
        interpolation=interpolation, antialias=antialias)
    return insert_tokens(patches, tokens, layout)
