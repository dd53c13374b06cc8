"""Norms that compute in fp32 and return the input's dtype.

The Vim-family blocks keep the residual stream in fp32 (`residual_in_fp32`) and normalise it with Triton's fused
add-norm, which accumulates in fp32 whatever the parameter dtype. These modules do the same in plain PyTorch, so a
model cast to bf16 (or run under autocast) normalises its fp32 residual without a dtype clash and without bf16
accumulation. Parameter names (`weight`, `bias`) match `nn.LayerNorm` and mamba-ssm's RMSNorm.

timm's `RmsNormFp32` / `LayerNormFp32` compute in exactly fp32 (an fp64 input is rounded to fp32); these compute
in at least fp32, so fp64 gradient checks stay in fp64. Hence their own names.
"""
from typing import Type, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import RmsNormFp32 as TimmRmsNormFp32

__all__ = ['MambaRmsNorm', 'MambaLayerNorm', 'get_fp32_norm_layer', 'at_least_fp32', 'fuses_add_rms_norm']


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """x in fp32, or as is when it is already fp32 or wider (fp64 stays fp64 for gradient checks)."""
    if isinstance(x, torch.Tensor) and x.dtype in (torch.float32, torch.float64):
        return x  # no op dispatched: the common case in every forward
    return x.to(torch.promote_types(x.dtype, torch.float32))


class MambaRmsNorm(nn.Module):
    """RMSNorm `x * rsqrt(mean(x^2) + eps) * weight` over the last dim, weight only (no bias).

    MambaBlock runs the residual add and this norm as one op, `vimamba.ops.add_rms_norm`, which computes the same
    (the module's `weight` and `eps` are its arguments); keep the two in step when changing the math here.
    """

    def __init__(self, dim: int, eps: float = 1e-5, device=None, dtype=None):
        super().__init__()
        self.dim = dim
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, device=device, dtype=dtype))

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = at_least_fp32(x)
        y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight.to(x32.dtype)
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return f'{self.dim}, eps={self.eps}'


class MambaLayerNorm(nn.Module):
    """LayerNorm over the last dim with weight and bias, computed in fp32."""

    def __init__(self, dim: int, eps: float = 1e-5, device=None, dtype=None):
        super().__init__()
        self.dim = dim
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(dim, device=device, dtype=dtype))

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = at_least_fp32(x)
        y = F.layer_norm(x32, (self.dim,), self.weight.to(x32.dtype), self.bias.to(x32.dtype), self.eps)
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return f'{self.dim}, eps={self.eps}'


_NORMS = {'rmsnorm': MambaRmsNorm, 'layernorm': MambaLayerNorm}


def get_fp32_norm_layer(norm_layer: Union[str, Type[nn.Module]]) -> Type[nn.Module]:
    """'rmsnorm' or 'layernorm' (or a class, returned as is)."""
    if not isinstance(norm_layer, str):
        return norm_layer
    if norm_layer not in _NORMS:
        raise ValueError(f"norm_layer: unknown norm {norm_layer!r}; accepted: {sorted(_NORMS)} or a module class")
    return _NORMS[norm_layer]


def fuses_add_rms_norm(norm: nn.Module, dtype: torch.dtype) -> bool:
    """Whether `norm` applied to a (..., D) stream of `dtype` computes exactly the norm half of
    `vimamba.ops.add_rms_norm(..., norm.weight, norm.eps)`: `x * rsqrt(mean(x^2, -1) + eps) * weight` in fp32
    (fp64 for an fp64 stream), returned in the stream's dtype.

    The set is explicit and by exact type, since a subclass may change the math:
    - `MambaRmsNorm`: every dtype;
    - timm's `RmsNormFp32` with a weight (`affine=True`) over the last dim only: every dtype but fp64, which it
      rounds to fp32.
    """
    if type(norm) is MambaRmsNorm:
        return True
    if type(norm) is TimmRmsNormFp32:
        return norm.weight is not None and len(norm.normalized_shape) == 1 and dtype != torch.float64
    return False
