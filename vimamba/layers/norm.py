"""Norms that compute in at least fp32 and return the input's dtype.
Unlike timm's `RmsNormFp32` / `LayerNormFp32`, fp64 stays fp64 (for gradient checks)."""
from typing import Type, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import RmsNormFp32 as TimmRmsNormFp32

__all__ = ['MambaRmsNorm', 'MambaLayerNorm', 'get_fp32_norm_layer', 'at_least_fp32', 'fuses_add_rms_norm']


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """x in fp32, or as is when it is already fp32 or wider (fp64 stays fp64 for gradient checks)."""
    if isinstance(x, torch.Tensor) and x.dtype in (torch.float32, torch.float64):
        return x
    return x.to(torch.promote_types(x.dtype, torch.float32))


class MambaRmsNorm(nn.Module):
    """RMSNorm over the last dim, weight only. Keep in step with `vimamba.ops.add_rms_norm`, its fused twin."""

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
    """Whether `norm` on `dtype` computes exactly `ops.add_rms_norm`'s norm (exact types: subclasses may differ)."""
    if type(norm) is MambaRmsNorm:
        return True
    if type(norm) is TimmRmsNormFp32:
        return norm.weight is not None and len(norm.normalized_shape) == 1 and dtype != torch.float64
    return False
