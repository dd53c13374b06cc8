"""Triton causal depthwise conv over K directions with the SiLU fused: Mamba's conv before the scan.

    causal_conv1d_fwd(x, weight, bias, reverse, silu) -> u
    causal_conv1d_bwd(du, x, weight, bias, reverse, silu) -> (dx, dweight, dbias)
Semantics: kernels/causal_conv1d_reference.py. x (B, L, E), unit channel stride (an in_proj half is read in place);
weight (K, E, k), bias (K, E) contiguous. u (B, K, L, E) direction-major in x's dtype: u.transpose(2, 3) is the
channels-last view the scan reads fastest. fp32 accumulation.

A program owns a rows x channels tile; the k shifted loads overlap in L1/L2, so x comes from DRAM about once; a
reversed direction negates the shift. The backward writes g_i = du_i * act'(y_i) while summing dweight and dbias
(fp32 atomics: not bitwise reproducible), then gathers dx from g.
"""
from typing import Optional, Sequence, Tuple

import torch
import triton
import triton.language as tl

from ._common import _interpreting, _next_pow2, _out_like
from ._triton_common import _col_sum, _sigmoid

__all__ = ["causal_conv1d_fwd", "causal_conv1d_bwd", "pick_config"]


@triton.jit
def _load_rows(row_ptr, s_l, rows, cols, mask_e, L):
    """The [rows, cols] tile of a (L, E) matrix with unit channel stride, fp32, zero outside 0..L-1."""
    inside = (rows >= 0) & (rows < L)
    ptrs = row_ptr + rows[:, None] * s_l + cols[None, :]
    return tl.load(ptrs, mask=inside[:, None] & mask_e[None, :], other=0.0).to(tl.float32)


@triton.jit
def _bias(b_ptr, i, E, cols, mask_e, HAS_BIAS: tl.constexpr):
    if HAS_BIAS:
        c = tl.load(b_ptr + i * E + cols, mask=mask_e, other=0.0).to(tl.float32)
    else:
        c = tl.full(cols.shape, 0.0, tl.float32)
    return c


@triton.jit
def _tap(w_ptr, i, j, E, cols, mask_e, KW: tl.constexpr):
    # weight (K, E, k): a tap's channels are k apart; the whole tensor is a few KiB and stays in cache.
    return tl.load(w_ptr + (i * E + cols) * KW + j, mask=mask_e, other=0.0).to(tl.float32)


@triton.jit
def _conv_rows(x_row, s_xl, rows, cols, mask_e, L, E, w_ptr, i, c, sign,
               KW: tl.constexpr, BL: tl.constexpr, BE: tl.constexpr):
    """y_i at `rows`: c + sum_j w_i[j] x[rows + sign (j - (k-1))], fp32 [BL, BE] (sign 1 causal, -1 reversed)."""
    y = tl.full([BL, BE], 0.0, tl.float32) + c[None, :]
    for j in tl.static_range(KW):
        xs = _load_rows(x_row, s_xl, rows + sign * (j - (KW - 1)), cols, mask_e, L)
        y += _tap(w_ptr, i, j, E, cols, mask_e, KW)[None, :] * xs
    return y


@triton.jit
def _fwd_kernel(x_ptr, w_ptr, b_ptr, u_ptr, L, E, s_xb, s_xl, s_ub, s_uk,
                K: tl.constexpr, KW: tl.constexpr, REV: tl.constexpr, HAS_BIAS: tl.constexpr,
                SILU: tl.constexpr, BL: tl.constexpr, BE: tl.constexpr):
    """u[b, i, rows, cols] for every direction i; grid (B, L blocks, E blocks). REV bit i: direction i reversed."""
    b = tl.program_id(0).to(tl.int64)
    rows = tl.program_id(1) * BL + tl.arange(0, BL)
    cols = tl.program_id(2) * BE + tl.arange(0, BE)
    mask_e = cols < E
    mask = (rows < L)[:, None] & mask_e[None, :]
    x_row = x_ptr + b * s_xb
    for i in tl.static_range(K):
        sign = 1 - 2 * ((REV >> i) & 1)  # 1 causal, -1 reversed (a constexpr here)
        c = _bias(b_ptr, i, E, cols, mask_e, HAS_BIAS)
        y = _conv_rows(x_row, s_xl, rows, cols, mask_e, L, E, w_ptr, i, c, sign, KW, BL, BE)
        if SILU:
            y = y * _sigmoid(y, False)
        u_row = u_ptr + b * s_ub + i * s_uk
        tl.store(u_row + rows[:, None] * E + cols[None, :], y.to(u_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _tap_or_zero(w_ptr, i, j: tl.constexpr, E, cols, mask_e, KW: tl.constexpr):
    """w_i[j] as a [1, BE] row (zero for j >= k: never used then)."""
    if j < KW:
        w = _tap(w_ptr, i, j, E, cols, mask_e, KW)[None, :]
    else:
        w = tl.full(cols.shape, 0.0, tl.float32)[None, :]
    return w


@triton.jit
def _tap_term(x_row, s_xl, rows, cols, mask_e, L, sign, w, y, j: tl.constexpr, KW: tl.constexpr):
    """Tap j at `rows`: (shifted x, y + w * shifted x); for j >= k, (y, y), never used."""
    if j < KW:
        xs = _load_rows(x_row, s_xl, rows + sign * (j - (KW - 1)), cols, mask_e, L)
        y_out = y + w * xs
    else:
        xs = y
        y_out = y
    return xs, y_out


@triton.jit
def _acc_tap(acc, g, xs, j: tl.constexpr, KW: tl.constexpr):
    if j < KW:
        acc += g * xs
    return acc


@triton.jit
def _store_tap_sum(dw_ptr, i, E, cols, mask_e, acc, j: tl.constexpr, KW: tl.constexpr):
    if j < KW:
        tl.atomic_add(dw_ptr + (i * E + cols) * KW + j, _col_sum(acc), mask=mask_e, sem="relaxed")


@triton.jit
def _bwd_grad_kernel(du_ptr, x_ptr, w_ptr, b_ptr, g_ptr, dw_ptr, db_ptr, L, E, s_xb, s_xl, s_gb, s_gk, s_gl,
                     rows_per_program,
                     K: tl.constexpr, KW: tl.constexpr, REV: tl.constexpr, HAS_BIAS: tl.constexpr,
                     SILU: tl.constexpr, BL: tl.constexpr, BE: tl.constexpr):
    """g_i = du_i * act'(y_i) into the buffer g, and this row stretch's dweight[i], dbias[i]; grid (B * K, row
    stretches, E blocks). The k tap sums are separate variables (k <= 8), reduced over the rows once at the end."""
    pid = tl.program_id(0)
    b = (pid // K).to(tl.int64)
    i = pid % K
    sign = 1 - 2 * ((REV >> i) & 1)
    cols = tl.program_id(2) * BE + tl.arange(0, BE)
    mask_e = cols < E
    x_row = x_ptr + b * s_xb
    du_row = du_ptr + b * s_gb + i * s_gk
    g_row = g_ptr + (b * K + i) * L * E
    c = _bias(b_ptr, i, E, cols, mask_e, HAS_BIAS)[None, :]
    w0 = _tap_or_zero(w_ptr, i, 0, E, cols, mask_e, KW)
    w1 = _tap_or_zero(w_ptr, i, 1, E, cols, mask_e, KW)
    w2 = _tap_or_zero(w_ptr, i, 2, E, cols, mask_e, KW)
    w3 = _tap_or_zero(w_ptr, i, 3, E, cols, mask_e, KW)
    w4 = _tap_or_zero(w_ptr, i, 4, E, cols, mask_e, KW)
    w5 = _tap_or_zero(w_ptr, i, 5, E, cols, mask_e, KW)
    w6 = _tap_or_zero(w_ptr, i, 6, E, cols, mask_e, KW)
    w7 = _tap_or_zero(w_ptr, i, 7, E, cols, mask_e, KW)
    a0 = tl.full([BL, BE], 0.0, tl.float32)
    a1 = tl.full([BL, BE], 0.0, tl.float32)
    a2 = tl.full([BL, BE], 0.0, tl.float32)
    a3 = tl.full([BL, BE], 0.0, tl.float32)
    a4 = tl.full([BL, BE], 0.0, tl.float32)
    a5 = tl.full([BL, BE], 0.0, tl.float32)
    a6 = tl.full([BL, BE], 0.0, tl.float32)
    a7 = tl.full([BL, BE], 0.0, tl.float32)
    ab = tl.full([BL, BE], 0.0, tl.float32)
    row_start = tl.program_id(1) * rows_per_program
    row_end = tl.minimum(row_start + rows_per_program, L)
    for r0 in range(row_start, row_end, BL):
        rows = r0 + tl.arange(0, BL)
        y = tl.full([BL, BE], 0.0, tl.float32) + c
        x0, y = _tap_term(x_row, s_xl, rows, cols, mask_e, L, sign, w0, y, 0, KW)
        x1, y = _tap_term(x_row, s_xl, rows, cols, mask_e, L, sign, w1, y, 1, KW)
        x2, y = _tap_term(x_row, s_xl, rows, cols, mask_e, L, sign, w2, y, 2, KW)
        x3, y = _tap_term(x_row, s_xl, rows, cols, mask_e, L, sign, w3, y, 3, KW)
        x4, y = _tap_term(x_row, s_xl, rows, cols, mask_e, L, sign, w4, y, 4, KW)
        x5, y = _tap_term(x_row, s_xl, rows, cols, mask_e, L, sign, w5, y, 5, KW)
        x6, y = _tap_term(x_row, s_xl, rows, cols, mask_e, L, sign, w6, y, 6, KW)
        x7, y = _tap_term(x_row, s_xl, rows, cols, mask_e, L, sign, w7, y, 7, KW)
        g = _load_rows(du_row, s_gl, rows, cols, mask_e, L)  # zero past L: adds nothing below
        if SILU:
            s = _sigmoid(y, False)
            g = g * (s * (1.0 + y * (1.0 - s)))
        tl.store(g_row + rows[:, None] * E + cols[None, :], g.to(g_ptr.dtype.element_ty),
                 mask=(rows < L)[:, None] & mask_e[None, :])
        ab += g
        a0 = _acc_tap(a0, g, x0, 0, KW)
        a1 = _acc_tap(a1, g, x1, 1, KW)
        a2 = _acc_tap(a2, g, x2, 2, KW)
        a3 = _acc_tap(a3, g, x3, 3, KW)
        a4 = _acc_tap(a4, g, x4, 4, KW)
        a5 = _acc_tap(a5, g, x5, 5, KW)
        a6 = _acc_tap(a6, g, x6, 6, KW)
        a7 = _acc_tap(a7, g, x7, 7, KW)
    _store_tap_sum(dw_ptr, i, E, cols, mask_e, a0, 0, KW)
    _store_tap_sum(dw_ptr, i, E, cols, mask_e, a1, 1, KW)
    _store_tap_sum(dw_ptr, i, E, cols, mask_e, a2, 2, KW)
    _store_tap_sum(dw_ptr, i, E, cols, mask_e, a3, 3, KW)
    _store_tap_sum(dw_ptr, i, E, cols, mask_e, a4, 4, KW)
    _store_tap_sum(dw_ptr, i, E, cols, mask_e, a5, 5, KW)
    _store_tap_sum(dw_ptr, i, E, cols, mask_e, a6, 6, KW)
    _store_tap_sum(dw_ptr, i, E, cols, mask_e, a7, 7, KW)
    if HAS_BIAS:
        tl.atomic_add(db_ptr + i * E + cols, _col_sum(ab), mask=mask_e, sem="relaxed")


@triton.jit
def _bwd_dx_kernel(g_ptr, w_ptr, dx_ptr, L, E,
                   K: tl.constexpr, KW: tl.constexpr, REV: tl.constexpr, BL: tl.constexpr, BE: tl.constexpr):
    """dx[b, rows, cols] = sum_i sum_j w_i[j] g_i[rows - sign_i (j - (k-1))]; grid (B, L blocks, E blocks)."""
    b = tl.program_id(0).to(tl.int64)
    rows = tl.program_id(1) * BL + tl.arange(0, BL)
    cols = tl.program_id(2) * BE + tl.arange(0, BE)
    mask_e = cols < E
    dx = tl.full([BL, BE], 0.0, tl.float32)
    for i in tl.static_range(K):
        sign = 1 - 2 * ((REV >> i) & 1)
        g_row = g_ptr + (b * K + i) * L * E
        for j in tl.static_range(KW):
            g = _load_rows(g_row, E, rows - sign * (j - (KW - 1)), cols, mask_e, L)
            dx += _tap(w_ptr, i, j, E, cols, mask_e, KW)[None, :] * g
    mask = (rows < L)[:, None] & mask_e[None, :]
    tl.store(dx_ptr + b * L * E + rows[:, None] * E + cols[None, :], dx.to(dx_ptr.dtype.element_ty), mask=mask)


# Backward tiles 8 x 64 whatever the dtype: bf16 loads and fp32 g stores then share a layout (docs/kernels.md).
# `programs_bwd` caps the grid so fewer atomics hit each dweight/dbias address. Interpreter: small tiles.
_CFG = dict(rows_fwd=16, row_bytes_fwd=256, warps_fwd=4, rows_bwd=8, channels_bwd=64, warps_bwd=4,
            programs_bwd=1024, g_fp32=True, rows_dx=8, channels_dx=64, warps_dx=4)
_CFG_INTERPRETER = dict(rows_fwd=8, row_bytes_fwd=64, warps_fwd=1, rows_bwd=8, channels_bwd=16, warps_bwd=1,
                        programs_bwd=4, g_fp32=True, rows_dx=8, channels_dx=16, warps_dx=1)


def _cfg(device_type: str) -> dict:
    return _CFG if device_type == "cuda" and not _interpreting() else _CFG_INTERPRETER


def pick_config(B: int, L: int, E: int, itemsize: int, backward: bool, device_type: str = "cuda"
                ) -> Tuple[int, int, int, int]:
    """(rows per block, channels per block, row blocks per program, num_warps) of the forward or grad kernel."""
    cfg = _cfg(device_type)
    which = "bwd" if backward else "fwd"
    rows = min(cfg["rows_" + which], _next_pow2(L))
    channels = cfg["channels_bwd"] if backward else max(1, cfg["row_bytes_fwd"] // itemsize)
    channels = min(channels, _next_pow2(E))
    blocks = triton.cdiv(L, rows)
    per_program = 1
    if backward:
        row_programs = min(blocks, max(1, triton.cdiv(cfg["programs_bwd"], B * triton.cdiv(E, channels))))
        per_program = triton.cdiv(blocks, row_programs)
    return rows, channels, per_program, cfg["warps_" + which]


def _dx_config(L: int, E: int, device_type: str) -> Tuple[int, int, int]:
    cfg = _cfg(device_type)
    return min(cfg["rows_dx"], _next_pow2(L)), min(cfg["channels_dx"], _next_pow2(E)), cfg["warps_dx"]


def _reverse_bits(reverse: Sequence[bool]) -> int:
    return sum(1 << i for i, r in enumerate(reverse) if r)


def _check(x, weight, bias, reverse):
    K, E, k = weight.shape
    if x.stride(-1) != 1:
        raise ValueError("triton causal_conv1d: x must have unit channel stride")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and not t.is_contiguous():
            raise ValueError(f"triton causal_conv1d: {name} must be contiguous")
    if len(reverse) != K:
        raise ValueError(f"triton causal_conv1d: reverse has {len(reverse)} entries for K = {K} directions")
    if not 1 <= k <= 8:
        raise ValueError(f"triton causal_conv1d: kernel size k = {k}, expected 1 to 8")


def causal_conv1d_fwd(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                      reverse: Sequence[bool], silu: bool) -> torch.Tensor:
    """u (B, K, L, E) direction-major in x's dtype."""
    _check(x, weight, bias, reverse)
    B, L, E = x.shape
    K, _, k = weight.shape
    u = _out_like(x, shape=(K, B, L, E)).transpose(0, 1)
    if u.numel() == 0:
        return u
    BL, BE, _, nw = pick_config(B, L, E, x.element_size(), False, x.device.type)
    grid = (B, triton.cdiv(L, BL), triton.cdiv(E, BE))
    _fwd_kernel[grid](x, weight, weight if bias is None else bias, u, L, E, x.stride(0), x.stride(1),
                      u.stride(0), u.stride(1),
                      K=K, KW=k, REV=_reverse_bits(reverse), HAS_BIAS=bias is not None, SILU=bool(silu),
                      BL=BL, BE=BE, num_warps=nw)
    return u


def causal_conv1d_bwd(du: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                      reverse: Sequence[bool], silu: bool
                      ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """(dx (B, L, E) contiguous in x's dtype, dweight, dbias or None in the parameters' dtypes)."""
    _check(x, weight, bias, reverse)
    B, L, E = x.shape
    K, _, k = weight.shape
    if du.stride(-1) != 1:
        du = du.contiguous()
    dx = _out_like(x, shape=(B, L, E))
    dw = torch.zeros((K, E, k), device=x.device, dtype=torch.float32)
    db = None if bias is None else torch.zeros((K, E), device=x.device, dtype=torch.float32)
    if x.numel() > 0:
        # fp32 g: dx sums K * k products of it
        g_dtype = torch.float32 if _cfg(x.device.type)["g_fp32"] else x.dtype
        g = _out_like(x, g_dtype, (B, K, L, E))
        BL, BE, per_program, nw = pick_config(B, L, E, x.element_size(), True, x.device.type)
        rows_per_program = BL * per_program
        grid = (B * K, triton.cdiv(L, rows_per_program), triton.cdiv(E, BE))
        _bwd_grad_kernel[grid](du, x, weight, weight if bias is None else bias, g, dw, dw if db is None else db,
                               L, E, x.stride(0), x.stride(1), du.stride(0), du.stride(1), du.stride(2),
                               rows_per_program, K=K, KW=k, REV=_reverse_bits(reverse),
                               HAS_BIAS=bias is not None, SILU=bool(silu), BL=BL, BE=BE, num_warps=nw)
        BL, BE, nw = _dx_config(L, E, x.device.type)
        grid = (B, triton.cdiv(L, BL), triton.cdiv(E, BE))
        _bwd_dx_kernel[grid](g, weight, dx, L, E, K=K, KW=k, REV=_reverse_bits(reverse), BL=BL, BE=BE,
                             num_warps=nw)
    return dx, dw.to(weight.dtype), None if db is None else db.to(bias.dtype)
