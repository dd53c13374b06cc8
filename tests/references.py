"""Plain-PyTorch references that only the tests use: the depthwise conv MambaMixer ran before the causal-conv op,
and the sequence positions of the plain families' extra tokens."""
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F

from vimamba.layers.tokens import TOKEN_LAYOUTS


def causal_depthwise_conv1d(x: torch.Tensor, conv: nn.Conv1d, reverse: bool = False) -> torch.Tensor:
    """Depthwise conv over (B, C, L) that sees only the current and earlier steps of the scan.

    `reverse`: the scan runs L-1 .. 0, so "earlier" means later tokens; convolving with the time-flipped kernel
    and keeping the last L outputs equals flipping, convolving causally and flipping back.

    The output keeps the input's memory layout: a channels-last x (`x.stride(1) == 1`, e.g. the transpose of a
    (B, L, C) tensor) gives a channels-last result without a copy, as a (1, k) conv2d over the channels_last
    4-D view (B, C, 1, L); a contiguous x gives a contiguous result.
    """
    k = conv.kernel_size[0]
    weight = conv.weight.flip(-1) if reverse else conv.weight
    y = F.conv2d(x.unsqueeze(2), weight.unsqueeze(2), conv.bias, padding=(0, k - 1), groups=conv.groups).squeeze(2)
    return y[..., k - 1:] if reverse else y[..., :x.shape[-1]]


def _check_layout(layout: str, num_tokens: int) -> None:
    if layout not in TOKEN_LAYOUTS:
        raise ValueError(f"layout: unknown token layout {layout!r}; accepted: {TOKEN_LAYOUTS}")
    if (layout == 'none') != (num_tokens == 0):
        raise ValueError(f"num_tokens: layout {layout!r} needs {'0' if layout == 'none' else '>= 1'} tokens, "
                         f"got {num_tokens}")


def token_positions(layout: str, num_patches: int, num_tokens: int) -> List[int]:
    """Sequence positions of the extra tokens for `num_patches` patches."""
    _check_layout(layout, num_tokens)
    if layout == 'none':
        return []
    if layout == 'head':
        return list(range(num_tokens))
    if layout == 'middle':
        return list(range(num_patches // 2, num_patches // 2 + num_tokens))
    group = num_patches // (num_tokens + 1)
    return [i * (group + 1) + group for i in range(num_tokens)]
