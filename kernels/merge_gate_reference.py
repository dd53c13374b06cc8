"""Plain-PyTorch direction merge and gate, the selective scan's merged output mode:

    merged = scale * sum_k y[:, k]          (scale 1/K for a mean)
    out = merged * silu(z)                  (out = merged when z is None)
    merge_gate_fwd(y, z, scale, save_merged) -> (out, merged or None)
    merge_gate_bwd(dout, z, merged, scale) -> (dy, dz or None)
y (b, K, d, L); the rest (b, d, L); dy is every direction's gradient. fp32 math (fp64 stays fp64), y's dtype out.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

__all__ = ["merge_gate_fwd", "merge_gate_bwd"]


def _wide(x: torch.Tensor) -> torch.Tensor:
    return x.double() if x.dtype == torch.float64 else x.float()


def merge_gate_fwd(y: torch.Tensor, z: Optional[torch.Tensor], scale: float,
                   save_merged: bool) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    merged = _wide(y).sum(1) * scale
    out = merged if z is None else merged * F.silu(_wide(z))
    return out.to(y.dtype), (merged.to(y.dtype) if save_merged else None)


def merge_gate_bwd(dout: torch.Tensor, z: Optional[torch.Tensor], merged: torch.Tensor,
                   scale: float) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    g = _wide(dout)
    if z is None:
        return (g * scale).to(dout.dtype), None
    zw = _wide(z)
    sig = torch.sigmoid(zw)
    dy = g * (zw * sig) * scale
    dz = g * _wide(merged) * sig * (1 + zw * (1 - sig))
    return dy.to(dout.dtype), dz.to(z.dtype)
