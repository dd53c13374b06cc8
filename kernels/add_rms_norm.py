"""Triton residual add + RMSNorm: MambaBlock's add, fp32 residual and norm in one pass over the rows.

    add_rms_norm_fwd(hidden, residual, weight, eps, residual_dtype, out_dtype) -> (normed, residual_out)
    add_rms_norm_bwd(dnormed, dresidual_out, residual_out, weight, eps, hidden_dtype, residual_in_dtype)
        -> (dhidden, dresidual, dweight)
Semantics: kernels/add_rms_norm_reference.py. hidden, residual (..., D) contiguous, weight (D,); fp32 math.

A program owns BM rows, the whole last dim in registers. The norm reads the stored (rounded) residual, so the
backward, which recomputes rstd from residual_out, sees the same numbers. With xhat = x rstd, gw = dnormed weight:
dx = dresidual_out + rstd (gw - xhat mean(gw xhat)); dweight goes per program into a (programs, D) buffer that
the host sums (deterministic, unlike atomics).
"""
from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

from ._common import _interpreting, _next_pow2, _out_like
from ._triton_common import _col_sum

__all__ = ["add_rms_norm_fwd", "add_rms_norm_bwd", "pick_config", "MAX_DIM"]

# A row lives in registers: past this the backward would spill (NotImplementedError; "auto" falls back).
MAX_DIM = 8192


@triton.jit
def _row_sum(x):
    return tl.reduce(x, 1, tl.standard._sum_combine)


@triton.jit
def _rstd(x, D, eps):
    """rsqrt(mean(x^2) + eps) per row of a [rows, cols] tile whose padding columns are zero."""
    return 1.0 / tl.sqrt(_row_sum(x * x) / D + eps)


@triton.jit
def _tile(r0, M, D, BM: tl.constexpr, BD: tl.constexpr):
    """int32 offsets from row r0 (its 64-bit offset goes into the base pointers), mask, column mask, columns."""
    rows = tl.arange(0, BM)
    cols = tl.arange(0, BD)
    mask_d = cols < D
    mask = (rows < tl.minimum(M - r0, BM).to(tl.int32))[:, None] & mask_d[None, :]
    return rows[:, None] * D + cols[None, :], mask, mask_d, cols


@triton.jit
def _fwd_kernel(h_ptr, r_ptr, w_ptr, y_ptr, res_ptr, M, D, eps,
                HAS_RES: tl.constexpr, ACC: tl.constexpr, BM: tl.constexpr, BD: tl.constexpr):
    """normed and residual_out for rows pid * BM .. + BM; grid (cdiv(M, BM),)."""
    r0 = tl.program_id(0).to(tl.int64) * BM
    offs, mask, mask_d, cols = _tile(r0, M, D, BM, BD)
    h_ptr += r0 * D
    r_ptr += r0 * D
    y_ptr += r0 * D
    res_ptr += r0 * D
    x = tl.load(h_ptr + offs, mask=mask, other=0.0).to(ACC)
    if HAS_RES:
        x += tl.load(r_ptr + offs, mask=mask, other=0.0).to(ACC)
    x = x.to(res_ptr.dtype.element_ty)
    tl.store(res_ptr + offs, x, mask=mask)
    x = x.to(ACC)  # the norm reads the stored value (a no-op for an fp32 residual)
    w = tl.load(w_ptr + cols, mask=mask_d, other=0.0).to(ACC)
    y = x * _rstd(x, D, eps)[:, None] * w[None, :]
    tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _bwd_kernel(dy_ptr, dres_ptr, x_ptr, w_ptr, dh_ptr, dr_ptr, dw_ptr, M, D, eps, rows_per_program,
                HAS_DRES: tl.constexpr, HAS_DR: tl.constexpr, ACC: tl.constexpr, BM: tl.constexpr,
                BD: tl.constexpr):
    """dhidden (and dresidual) for `rows_per_program` rows, and their dweight in row pid of dw."""
    pid = tl.program_id(0)
    cols = tl.arange(0, BD)
    mask_d = cols < D
    w = tl.load(w_ptr + cols, mask=mask_d, other=0.0).to(ACC)
    dw_acc = tl.full([BM, BD], 0.0, ACC)
    row_start = pid.to(tl.int64) * rows_per_program
    row_end = tl.minimum(row_start + rows_per_program, M)
    for r0 in range(row_start, row_end, BM):
        offs, mask, mask_d, cols = _tile(r0, M, D, BM, BD)
        base = r0 * D  # the tile's 64-bit start, added to each base pointer once
        x = tl.load(x_ptr + base + offs, mask=mask, other=0.0).to(ACC)
        g = tl.load(dy_ptr + base + offs, mask=mask, other=0.0).to(ACC)
        rstd = _rstd(x, D, eps)[:, None]
        xhat = x * rstd
        gw = g * w[None, :]
        dx = rstd * (gw - xhat * (_row_sum(gw * xhat) / D)[:, None])
        if HAS_DRES:
            dx += tl.load(dres_ptr + base + offs, mask=mask, other=0.0).to(ACC)
        tl.store(dh_ptr + base + offs, dx.to(dh_ptr.dtype.element_ty), mask=mask)
        if HAS_DR:
            tl.store(dr_ptr + base + offs, dx.to(dr_ptr.dtype.element_ty), mask=mask)
        dw_acc += g * xhat
    tl.store(dw_ptr + pid.to(tl.int64) * D + cols, _col_sum(dw_acc), mask=mask_d)


# Tile elements and warps per program; the backward keeps more tiles live, so half the tile with twice the warps.
# The interpreter's tiny tiles make the tests' short shapes span several blocks.
_CFG = dict(elems_fwd=4096, warps_fwd=4, elems_bwd=2048, warps_bwd=8, programs_bwd=1024)
_CFG_INTERPRETER = dict(elems_fwd=32, warps_fwd=1, elems_bwd=32, warps_bwd=1, programs_bwd=3)


def pick_config(M: int, D: int, backward: bool, device_type: str = "cuda") -> Tuple[int, int, int, int]:
    """(rows per block BM, padded dim BD, row blocks per program, num_warps) for M rows of D."""
    cfg = _CFG if device_type == "cuda" and not _interpreting() else _CFG_INTERPRETER
    which = "bwd" if backward else "fwd"
    BD = _next_pow2(D)
    BM = max(1, min(cfg["elems_" + which] // BD, _next_pow2(M)))
    warps = cfg["warps_" + which]
    if BD >= 4096 and device_type == "cuda":
        warps = max(warps, 8 if not backward else 16)
    per_program = 1
    if backward:
        blocks = triton.cdiv(M, BM)
        per_program = triton.cdiv(blocks, min(blocks, cfg["programs_bwd"]))
    return BM, BD, per_program, warps


def _acc(*dtypes) -> tl.dtype:
    return tl.float64 if any(d == torch.float64 for d in dtypes) else tl.float32


def _check(*tensors):
    for t in tensors:
        if t is not None and not t.is_contiguous():
            raise ValueError("triton add_rms_norm: inputs must be contiguous")
    D = tensors[-1].shape[-1]
    if D > MAX_DIM:
        raise NotImplementedError(f"triton add_rms_norm keeps a row in registers: D = {D} > {MAX_DIM}")


def add_rms_norm_fwd(hidden: torch.Tensor, residual: Optional[torch.Tensor], weight: torch.Tensor, eps: float,
                     residual_dtype: torch.dtype, out_dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor]:
    """(normed in out_dtype, residual_out in residual_dtype), both contiguous in hidden's shape."""
    _check(hidden, residual, weight)
    D = weight.shape[0]
    M = hidden.numel() // max(D, 1)
    normed, residual_out = _out_like(hidden, out_dtype), _out_like(hidden, residual_dtype)
    if hidden.numel() == 0:
        return normed, residual_out
    BM, BD, _, nw = pick_config(M, D, False, hidden.device.type)
    acc = _acc(hidden.dtype, None if residual is None else residual.dtype, residual_dtype)
    _fwd_kernel[(triton.cdiv(M, BM),)](
        hidden, hidden if residual is None else residual, weight, normed, residual_out, M, D, float(eps),
        HAS_RES=residual is not None, ACC=acc, BM=BM, BD=BD, num_warps=nw)
    return normed, residual_out


def add_rms_norm_bwd(dnormed: torch.Tensor, dresidual_out: Optional[torch.Tensor], residual_out: torch.Tensor,
                     weight: torch.Tensor, eps: float, hidden_dtype: torch.dtype,
                     residual_in_dtype: Optional[torch.dtype]
                     ) -> Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
    """(dhidden in hidden_dtype, dresidual in residual_in_dtype or None, dweight in weight's dtype)."""
    dnormed = dnormed.contiguous()
    dresidual_out = None if dresidual_out is None else dresidual_out.contiguous()
    _check(dnormed, dresidual_out, residual_out, weight)
    D = weight.shape[0]
    M = residual_out.numel() // max(D, 1)
    dhidden = _out_like(residual_out, hidden_dtype)
    write_dr = residual_in_dtype is not None and residual_in_dtype != hidden_dtype
    dresidual = _out_like(residual_out, residual_in_dtype) if write_dr else None
    acc = _acc(residual_out.dtype, hidden_dtype, residual_in_dtype)
    acc_dtype = torch.float64 if acc == tl.float64 else torch.float32
    if M == 0:
        return dhidden, dresidual, torch.zeros_like(weight)
    BM, BD, per_program, nw = pick_config(M, D, True, residual_out.device.type)
    rows_per_program = BM * per_program
    programs = triton.cdiv(M, rows_per_program)
    dw = torch.empty((programs, D), device=weight.device, dtype=acc_dtype)
    _bwd_kernel[(programs,)](
        dnormed, dnormed if dresidual_out is None else dresidual_out, residual_out, weight, dhidden,
        dhidden if dresidual is None else dresidual, dw, M, D, float(eps), rows_per_program,
        HAS_DRES=dresidual_out is not None, HAS_DR=write_dr, ACC=acc, BM=BM, BD=BD, num_warps=nw)
    return dhidden, dresidual, dw.sum(0).to(weight.dtype)
