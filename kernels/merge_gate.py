"""Triton direction merge and gate: the scan's merged output mode in one pass (y, z read once, out written once).

    merge_gate_fwd(y, z, scale, save_merged) -> (out, merged)
    merge_gate_bwd(dout, z, merged, scale) -> (dy, dz)
Semantics: kernels/merge_gate_reference.py. y (b, K, d, L), z (b, d, L) or None, any strides; out, merged, dout,
dy, dz (b, d, L) in y's layout without its K axis. fp32 arithmetic; `merged` is saved for dz.
"""
from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

from . import _common
from ._triton_common import _sigmoid

__all__ = ["merge_gate_fwd", "merge_gate_bwd"]

_BT, _BC, _WARPS = 32, 64, 4


@triton.jit
def _tile(pid_t, pid_c, L, D, BT: tl.constexpr, BC: tl.constexpr):
    offs_t = pid_t * BT + tl.arange(0, BT)
    offs_c = pid_c * BC + tl.arange(0, BC)
    mask = (offs_t[:, None] < L) & (offs_c[None, :] < D)
    return offs_t[:, None], offs_c[None, :], mask


@triton.jit
def _fwd_kernel(y_ptr, z_ptr, out_ptr, m_ptr, K, L, D, scale,
                s_yb, s_yk, s_yc, s_yt, s_zb, s_zc, s_zt, s_ob, s_oc, s_ot, s_mb, s_mc, s_mt,
                HAS_Z: tl.constexpr, SAVE: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr):
    pid_t, pid_c, b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    t, c, mask = _tile(pid_t, pid_c, L, D, BT, BC)
    y_ptrs = y_ptr + b.to(tl.int64) * s_yb + c * s_yc + t * s_yt
    acc = tl.load(y_ptrs, mask=mask, other=0.0).to(tl.float32)
    for k in range(1, K):
        acc += tl.load(y_ptrs + k * s_yk, mask=mask, other=0.0).to(tl.float32)
    merged = acc * scale
    out = merged
    if HAS_Z:
        zv = tl.load(z_ptr + b.to(tl.int64) * s_zb + c * s_zc + t * s_zt, mask=mask, other=0.0).to(tl.float32)
        out = merged * zv * _sigmoid(zv, False)
    tl.store(out_ptr + b.to(tl.int64) * s_ob + c * s_oc + t * s_ot, out.to(out_ptr.dtype.element_ty), mask=mask)
    if SAVE:
        tl.store(m_ptr + b.to(tl.int64) * s_mb + c * s_mc + t * s_mt, merged.to(m_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _bwd_kernel(do_ptr, z_ptr, m_ptr, dy_ptr, dz_ptr, L, D, scale,
                s_ob, s_oc, s_ot, s_zb, s_zc, s_zt, s_mb, s_mc, s_mt, s_yb, s_yc, s_yt, s_db, s_dc, s_dt,
                BT: tl.constexpr, BC: tl.constexpr):
    pid_t, pid_c, b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    t, c, mask = _tile(pid_t, pid_c, L, D, BT, BC)
    b64 = b.to(tl.int64)
    do = tl.load(do_ptr + b64 * s_ob + c * s_oc + t * s_ot, mask=mask, other=0.0).to(tl.float32)
    zv = tl.load(z_ptr + b64 * s_zb + c * s_zc + t * s_zt, mask=mask, other=0.0).to(tl.float32)
    m = tl.load(m_ptr + b64 * s_mb + c * s_mc + t * s_mt, mask=mask, other=0.0).to(tl.float32)
    sig = _sigmoid(zv, False)
    tl.store(dy_ptr + b64 * s_yb + c * s_yc + t * s_yt, (do * zv * sig * scale).to(dy_ptr.dtype.element_ty),
             mask=mask)
    dz = do * m * sig * (1.0 + zv * (1.0 - sig))
    tl.store(dz_ptr + b64 * s_db + c * s_dc + t * s_dt, dz.to(dz_ptr.dtype.element_ty), mask=mask)


def _like(x: torch.Tensor) -> torch.Tensor:
    """A dense tensor with x's shape and dimension order (x may be a strided slice, e.g. y[:, 0])."""
    dims = sorted(range(x.dim()), key=lambda i: (x.stride(i), -i), reverse=True)
    out = torch.empty([x.shape[i] for i in dims], device=x.device, dtype=x.dtype).permute(
        [dims.index(i) for i in range(x.dim())])
    if _common._POISON:
        out.fill_(float("nan"))
    return out


def _grid(b: int, d: int, L: int):
    return triton.cdiv(L, _BT), triton.cdiv(d, _BC), b


def merge_gate_fwd(y: torch.Tensor, z: Optional[torch.Tensor], scale: float,
                   save_merged: bool) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    b, K, d, L = y.shape
    out = _like(y[:, 0])
    merged = _like(out) if save_merged and z is not None else None
    zz, mm = (out if z is None else z), (out if merged is None else merged)
    _fwd_kernel[_grid(b, d, L)](
        y, zz, out, mm, K, L, d, float(scale), *y.stride(), *zz.stride(), *out.stride(), *mm.stride(),
        HAS_Z=z is not None, SAVE=merged is not None, BT=_BT, BC=_BC, num_warps=_WARPS)
    return out, (out if save_merged and z is None else merged)


def merge_gate_bwd(dout: torch.Tensor, z: Optional[torch.Tensor], merged: torch.Tensor,
                   scale: float) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    if z is None:
        return dout * scale, None
    b, d, L = dout.shape
    dy, dz = _like(merged), _like(z)
    _bwd_kernel[_grid(b, d, L)](
        dout, z, merged, dy, dz, L, d, float(scale), *dout.stride(), *z.stride(), *merged.stride(),
        *dy.stride(), *dz.stride(), BT=_BT, BC=_BC, num_warps=_WARPS)
    return dy, dz
