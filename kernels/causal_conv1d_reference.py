"""Plain-PyTorch causal depthwise conv over K directions: the ground truth for kernels/causal_conv1d.py.

    causal_conv1d_fwd(x, weight, bias, reverse, silu) -> u
    causal_conv1d_bwd(du, x, weight, bias, reverse, silu) -> (dx, dweight, dbias)
x (B, L, E), unit channel stride; weight (K, E, k); bias (K, E) or None; reverse K bools. u (B, K, L, E)
direction-major in x's dtype, u[:, i] = act(y_i) (SiLU when `silu`), with w = weight[i, e], c = bias[i, e], x = 0
outside 0..L-1:
    causal:      y[l, e] = c + sum_j w[j] * x[l + j - (k-1), e]
    reverse[i]:  y[l, e] = c + sum_j w[k-1-j] * x[l + j, e]   (the flipped sequence's conv, flipped back)
fp32 math (fp64 stays fp64, for gradcheck); an fp32 forward without autograd runs F.conv1d (`conv_forward`).
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

__all__ = ["causal_conv1d_fwd", "causal_conv1d_bwd", "conv_forward"]


def _compute_dtype(*tensors) -> torch.dtype:
    wide = any(t is not None and t.dtype == torch.float64 for t in tensors)
    return torch.float64 if wide else torch.float32


def _direction(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], reverse: bool) -> torch.Tensor:
    """y (B, L, E) of one direction: x (B, L, E), weight (E, k), bias (E,) or None, all in the compute dtype."""
    k, length = weight.shape[-1], x.shape[1]
    padded = F.pad(x, (0, 0, 0, k - 1) if reverse else (0, 0, k - 1, 0))
    taps = weight.flip(-1) if reverse else weight
    y = sum(taps[:, j] * padded[:, j:j + length] for j in range(k))
    return y if bias is None else y + bias


def conv_forward(x, weight, bias, reverse: Sequence[bool], silu: bool) -> torch.Tensor:
    """The conv as one depthwise F.conv1d per direction: faster on CPU than the tap sum, and an ONNX `Conv`."""
    dtype = _compute_dtype(x, weight, bias)
    channels, k = x.shape[-1], weight.shape[-1]
    xt = x.to(dtype).transpose(1, 2)
    outs = []
    for i, rev in enumerate(reverse):
        w = weight[i].to(dtype)
        padded = F.pad(xt, (0, k - 1) if rev else (k - 1, 0))
        outs.append(F.conv1d(padded, (w.flip(-1) if rev else w)[:, None],
                             None if bias is None else bias[i].to(dtype), groups=channels))
    y = torch.stack(outs, 1).transpose(2, 3)
    return F.silu(y) if silu else y


def _forward(x, weight, bias, reverse: Sequence[bool], silu: bool) -> torch.Tensor:
    dtype = _compute_dtype(x, weight, bias)
    if dtype == torch.float32 and not torch.is_grad_enabled():
        return conv_forward(x, weight, bias, reverse, silu)
    x, weight = x.to(dtype), weight.to(dtype)
    bias = None if bias is None else bias.to(dtype)
    y = torch.stack([_direction(x, weight[i], None if bias is None else bias[i], bool(rev))
                     for i, rev in enumerate(reverse)], 1)
    return F.silu(y) if silu else y


def causal_conv1d_fwd(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                      reverse: Sequence[bool], silu: bool) -> torch.Tensor:
    return _forward(x, weight, bias, reverse, silu).to(x.dtype).transpose(0, 1).contiguous().transpose(0, 1)


def causal_conv1d_bwd(du: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                      reverse: Sequence[bool], silu: bool
                      ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """Gradients of sum(du * u) w.r.t. (x, weight, bias) in their dtypes (dbias None without bias), by autograd."""
    with torch.enable_grad():
        leaves = [None if t is None else t.detach().requires_grad_(True) for t in (x, weight, bias)]
        u = _forward(*leaves, reverse, silu)
        present = [t for t in leaves if t is not None]
        grads = list(torch.autograd.grad(u, present, du.to(u.dtype)))
    dx, dweight = grads[0].to(x.dtype), grads[1].to(weight.dtype)
    dbias = None if bias is None else grads[2].to(bias.dtype)
    return dx, dweight, dbias
