"""Plain-PyTorch residual add + RMSNorm: the ground truth for kernels/add_rms_norm.py, on any device.

    add_rms_norm_fwd(hidden, residual, weight, eps, residual_dtype, out_dtype) -> (normed, residual_out)
    add_rms_norm_bwd(dnormed, dresidual_out, residual_out, weight, eps, hidden_dtype, residual_in_dtype)
        -> (dhidden, dresidual, dweight)
hidden (..., D), residual (same shape or None) contiguous, weight (D,); fp32 math (fp64 stays fp64).
residual_out = hidden + residual in residual_dtype; normed = residual_out * rsqrt(mean(residual_out^2) + eps) *
weight in out_dtype. dhidden = dresidual = dresidual_out (0 if None) + the norm's gradient; dresidual is None when
residual_in_dtype is None or hidden's dtype (dhidden is then its gradient too).
"""
from typing import Optional, Tuple

import torch

__all__ = ["add_rms_norm_fwd", "add_rms_norm_bwd"]


def _compute_dtype(*dtypes) -> torch.dtype:
    return torch.float64 if any(d == torch.float64 for d in dtypes) else torch.float32


def _norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight.to(x.dtype)


def add_rms_norm_fwd(hidden: torch.Tensor, residual: Optional[torch.Tensor], weight: torch.Tensor, eps: float,
                     residual_dtype: torch.dtype, out_dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor]:
    """(normed in out_dtype, residual_out in residual_dtype), both contiguous in hidden's shape."""
    dtype = _compute_dtype(hidden.dtype, None if residual is None else residual.dtype, residual_dtype)
    x = hidden.to(dtype, copy=residual is None)  # residual_out must not alias hidden (a custom op's output)
    if residual is not None:
        x = x + residual.to(dtype)
    residual_out = x.to(residual_dtype).contiguous()
    normed = _norm(residual_out.to(dtype), weight, eps).to(out_dtype).contiguous()
    return normed, residual_out


def add_rms_norm_bwd(dnormed: torch.Tensor, dresidual_out: Optional[torch.Tensor], residual_out: torch.Tensor,
                     weight: torch.Tensor, eps: float, hidden_dtype: torch.dtype,
                     residual_in_dtype: Optional[torch.dtype]
                     ) -> Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
    dtype = _compute_dtype(residual_out.dtype, hidden_dtype, residual_in_dtype)
    with torch.enable_grad():
        x = residual_out.detach().to(dtype).requires_grad_(True)
        w = weight.detach().requires_grad_(True)
        normed = _norm(x, w, eps)
        dx, dweight = torch.autograd.grad(normed, (x, w), dnormed.to(dtype))
    if dresidual_out is not None:
        dx = dx + dresidual_out.to(dtype)
    dhidden = dx.to(hidden_dtype).contiguous()
    dresidual = None
    if residual_in_dtype is not None and residual_in_dtype != hidden_dtype:
        dresidual = dx.to(residual_in_dtype).contiguous()
    return dhidden, dresidual, dweight.to(weight.dtype)
