"""Triton selective scan: forward and backward, K directions in one launch, tokens read in scan order.

    selective_scan_fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus, index, local_window) -> (y, last_state)
    selective_scan_bwd(dy, u, delta, A, B, C, D, z, delta_bias, delta_softplus, index, local_window)
        -> (du, ddelta, dA, dB, dC, dD, dz, ddelta_bias)
Semantics: kernels/selective_scan_reference.py. u, delta, z (b, K, d, L), B, C (b, K, N, L) in token order, any
strides (loads coalesce when stride(-2) == 1); A (K, d, N), D, delta_bias (K, d) fp32 and index (K, L) int64 or
None, contiguous. Outputs and gradients take their input's layout.

A program is one warp of 32 channels, a channel's N states in one thread's registers, one token per step, fp32
accumulation, parameter gradients by atomics. The local window (W > 1) is one more recurrence per sweep in the
same kernels. Long sequences with few rows are cut into segments scanned in parallel. Design: docs/kernels.md.
"""
import math
from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

from ._common import _interpreting, _next_pow2, _out_like
from ._triton_common import _exp2, _sigmoid

__all__ = ["selective_scan_fwd", "selective_scan_bwd", "pick_step_config"]

_LOG2E = 1.4426950408889634


@triton.jit
def _softplus(x, FAST: tl.constexpr):
    # softplus(x) = max(x, 0) + log1p(e), e = exp(-|x|) in (0, 1]
    e = _exp2(tl.abs(x) * -1.4426950408889634, FAST)
    if FAST:
        # e < 0.1: series to e^8 (rel. error < 1.2e-9), else MUFU.LG2 (abs. error ~1e-7): half an accurate log's cost
        p = e * (1.0 + e * (-0.5 + e * (0.3333333333 + e * (-0.25 + e * (0.2 + e * (-0.1666666667 + e * (
            0.1428571429 + e * -0.125)))))))
        lg = tl.inline_asm_elementwise("lg2.approx.ftz.f32 $0, $1;", "=r,r", [1.0 + e], dtype=tl.float32,
                                       is_pure=True, pack=1) * 0.6931471805599453
        lp = tl.where(e < 0.1, p, lg)
    else:
        # log1p(e) = log(1 + e) * e / ((1 + e) - 1)  (exact e where 1 + e rounds to 1)
        w = 1.0 + e
        den = w - 1.0
        lp = tl.where(den == 0.0, e, tl.log(w) * (e / tl.where(den == 0.0, 1.0, den)))
    return tl.maximum(x, 0.0) + lp


@triton.jit
def _sum_ax(x, axis: tl.constexpr):
    return tl.reduce(x, axis, tl.standard._sum_combine, keep_dims=True)


@triton.jit
def _rows(ptr, b, k, offs, s_b, s_k, s_c):
    return ptr + b.to(tl.int64) * s_b + k * s_k + offs * s_c


@triton.jit
def _token_states(row, s_n, offs_n, N: tl.constexpr, PAIRS: tl.constexpr):
    """One token's N values of B or C as an fp32 [1, N] tile every thread holds whole. Scalar loads, so the tile
    takes the channel tiles' layout (no per-step conversion); PAIRS: two bf16 states per 32-bit load."""
    v = tl.full([1, N], 0.0, tl.float32)
    if PAIRS:
        row32 = row.to(tl.pointer_type(tl.int32))
        for j in tl.static_range(N // 2):
            w = tl.load(row32 + j)
            v = tl.where(offs_n == 2 * j, (w << 16).to(tl.float32, bitcast=True), v)
            v = tl.where(offs_n == 2 * j + 1, (w & -65536).to(tl.float32, bitcast=True), v)
    else:
        for n in tl.static_range(N):
            v = tl.where(offs_n == n, tl.load(row + n * s_n).to(tl.float32), v)
    return v


@triton.jit
def _bc_fp32_kernel(B_ptr, C_ptr, out_ptr, K, L, sB_b, sB_k, sB_n, sB_l, sC_b, sC_k, sC_n, sC_l,
                    N: tl.constexpr, BL: tl.constexpr):
    """out[b * K + k, t] = (B[b, k, :, t], C[b, k, :, t]) in fp32: 2N contiguous values per token."""
    bk = tl.program_id(1)
    b = bk // K
    k = bk % K
    offs_t = tl.program_id(0) * BL + tl.reshape(tl.arange(0, BL), [BL, 1])
    offs_n = tl.reshape(tl.arange(0, N), [1, N])
    m = (offs_t < L) & (offs_n >= 0)
    Bv = tl.load(B_ptr + b.to(tl.int64) * sB_b + k * sB_k + offs_n * sB_n + offs_t * sB_l, mask=m)
    Cv = tl.load(C_ptr + b.to(tl.int64) * sC_b + k * sC_k + offs_n * sC_n + offs_t * sC_l, mask=m)
    out = out_ptr + (bk.to(tl.int64) * L + offs_t) * (2 * N) + offs_n
    tl.store(out, Bv.to(tl.float32), mask=m)
    tl.store(out + N, Cv.to(tl.float32), mask=m)


@triton.jit
def _st4(ptr, a, b, c, d, FAST: tl.constexpr):
    """ptr[0:4] = (a, b, c, d): one 16-byte store on the GPU (ptr 16-byte aligned) where Triton would issue four."""
    if FAST:
        tl.inline_asm_elementwise("st.global.v4.b32 [$1], {$2, $3, $4, $5};\n\tmov.u32 $0, 0;", "=r,l,r,r,r,r",
                                  [ptr.to(tl.int64, bitcast=True), a.to(tl.int32, bitcast=True),
                                   b.to(tl.int32, bitcast=True), c.to(tl.int32, bitcast=True),
                                   d.to(tl.int32, bitcast=True)], dtype=tl.int32, is_pure=False, pack=1)
    else:
        tl.store(ptr, a)
        tl.store(ptr + 1, b)
        tl.store(ptr + 2, c)
        tl.store(ptr + 3, d)


@triton.jit
def _ld4(ptr, FAST: tl.constexpr, READ_ONLY: tl.constexpr = False):
    """ptr[0:4] in fp32, one 16-byte load on the GPU; ordered after `_st4`, or READ_ONLY (non-coherent cache)."""
    if FAST:
        if READ_ONLY:
            return tl.inline_asm_elementwise("ld.global.nc.v4.b32 {$0, $1, $2, $3}, [$4];", "=r,=r,=r,=r,l",
                                             [ptr.to(tl.int64, bitcast=True)],
                                             dtype=(tl.float32, tl.float32, tl.float32, tl.float32), is_pure=True,
                                             pack=1)
        else:
            return tl.inline_asm_elementwise("ld.global.v4.b32 {$0, $1, $2, $3}, [$4];", "=r,=r,=r,=r,l",
                                             [ptr.to(tl.int64, bitcast=True)],
                                             dtype=(tl.float32, tl.float32, tl.float32, tl.float32), is_pure=False,
                                             pack=1)
    else:
        return tl.load(ptr), tl.load(ptr + 1), tl.load(ptr + 2), tl.load(ptr + 3)


@triton.jit
def _prefetch_l1(ptr):
    tl.inline_asm_elementwise("prefetch.global.L1 [$1];\n\tmov.u32 $0, 0;", "=r,l", [ptr.to(tl.int64, bitcast=True)],
                              dtype=tl.int32, is_pure=False, pack=1)


@triton.jit
def _kept_states(ptr, offs_n, N: tl.constexpr, FAST: tl.constexpr):
    """`_token_states` from the fp32 copy (`_bc_fp32_kernel`): four states per 16-byte load, no unpacking."""
    v = tl.full([1, N], 0.0, tl.float32)
    if N >= 4:
        for j in tl.static_range(N // 4):
            a, b, c, d = _ld4(ptr + 4 * j, FAST, True)
            v = tl.where(offs_n == 4 * j, a, v)
            v = tl.where(offs_n == 4 * j + 1, b, v)
            v = tl.where(offs_n == 4 * j + 2, c, v)
            v = tl.where(offs_n == 4 * j + 3, d, v)
    else:
        for n in tl.static_range(N):
            v = tl.where(offs_n == n, tl.load(ptr + n), v)
    return v


@triton.jit
def _states(B_row, sB_n, sB_l, C_row, sC_n, sC_l, bc_row, tok, offs_n, N: tl.constexpr, PAIRS: tl.constexpr,
            BC32: tl.constexpr, FAST: tl.constexpr):
    """(B, C) of token tok as [1, N] fp32 tiles, from the fp32 copy (BC32) or from B and C."""
    if BC32:
        Bv = _kept_states(bc_row + tok * (2 * N), offs_n, N, FAST)
        Cv = _kept_states(bc_row + tok * (2 * N) + N, offs_n, N, FAST)
    else:
        Bv = _token_states(B_row + tok.to(tl.int64) * sB_l, sB_n, offs_n, N, PAIRS)
        Cv = _token_states(C_row + tok.to(tl.int64) * sC_l, sC_n, offs_n, N, PAIRS)
    return Bv, Cv


@triton.jit
def _step_setup(A_ptr, D_ptr, bias_ptr, K, D, N: tl.constexpr, BD: tl.constexpr, HAS_D: tl.constexpr,
                HAS_BIAS: tl.constexpr):
    """The program's channels [BD, 1] (past D: clamped to D - 1, masked by md), A * log2(e) [BD, N], D, delta_bias."""
    bk = tl.program_id(1)
    b = bk // K
    k = bk % K
    offs_d = tl.program_id(0) * BD + tl.reshape(tl.arange(0, BD), [BD, 1])
    offs_n = tl.reshape(tl.arange(0, N), [1, N])
    md = offs_d < D
    d_c = tl.minimum(offs_d, D - 1)
    A2 = tl.load(A_ptr + (k * D + d_c) * N + offs_n) * 1.4426950408889634
    Dv = 0.0
    if HAS_D:
        Dv = tl.load(D_ptr + k * D + d_c)
    bias = 0.0
    if HAS_BIAS:
        bias = tl.load(bias_ptr + k * D + d_c)
    return bk, b, k, offs_n, md, d_c, A2, Dv, bias


@triton.jit
def _window_step(idx_row, win_row, step, t0, D, B_row, sB_n, sB_l, C_row, sC_n, sC_l, bc_row, offs_n,
                 N: tl.constexpr, PAIRS: tl.constexpr, BC32: tl.constexpr, FAST: tl.constexpr):
    """What the window's reverse sweep reads for scanned `step` (window start t0): its token, the scratch row
    (y, delta, delta u, gate) and the token's B, C."""
    tok = tl.load(idx_row + step).to(tl.int32)
    yw, dtw, dtuw, gw = _ld4(win_row + (step - t0) * 4 * D, FAST)
    Bw, Cw = _states(B_row, sB_n, sB_l, C_row, sC_n, sC_l, bc_row, tok, offs_n, N, PAIRS, BC32, FAST)
    return tok, yw, dtw, dtuw, gw, Bw, Cw


@triton.jit
def _fwd_step_kernel(u_ptr, dl_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, idx_ptr,
                     y_ptr, last_ptr, hseg_ptr, pseg_ptr, win_ptr, bc_ptr, K, D, L, SEG, NSEG, WB,
                     su_b, su_k, su_d, su_l, sdl_b, sdl_k, sdl_d, sdl_l, sz_b, sz_k, sz_d, sz_l,
                     sy_b, sy_k, sy_d, sy_l, sB_b, sB_k, sB_n, sB_l, sC_b, sC_k, sC_n, sC_l,
                     N: tl.constexpr, BD: tl.constexpr, W: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
                     HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, FAST: tl.constexpr, PASS: tl.constexpr,
                     PAIRS: tl.constexpr, BC32: tl.constexpr):
    """Forward over [BD, N] tiles (channels x states), one token per step; loads and stores in the loops are [BD, 1]
    channel rows, so all tiles share one layout (B and C come in as scalars). PASS 0: the whole sequence. Segments
    (grid axis 2, NSEG of SEG steps): PASS 1 scans each from zero and writes its end state and decay (hseg, pseg),
    `_combine_kernel` turns them into entering states, PASS 2 rescans from those and writes y.
    Window W > 1: each step's C h + D u, delta, delta u and gate go to a scratch row (win_ptr, (b * K * NSEG, WB,
    D, 4)); at the window's last step (q = 0) a loop walks back, r_t = a_t r_(t+1) + delta_t u_t B_t, adding
    C_t a_t r_(t+1) to y_t. It reads B, C from their fp32 copy (BC32: bc_ptr, (b * K, L, 2N)) and recomputes
    exp(delta A): holding W x N values per thread would cost occupancy."""
    bk, b, k, offs_n, md, d_c, A2, Dv, bias = _step_setup(A_ptr, D_ptr, bias_ptr, K, D, N, BD, HAS_D, HAS_BIAS)
    WIN: tl.constexpr = W > 1 and PASS != 1
    seg = tl.program_id(2)
    t_start = seg * SEG
    t_end = tl.minimum(t_start + SEG, L)
    offA = (k * D + d_c) * N + offs_n
    mA = md & (offs_n >= 0)
    seg_off = (bk.to(tl.int64) * NSEG + seg) * D * N + (offA - k * D * N)
    u_row = _rows(u_ptr, b, k, d_c, su_b, su_k, su_d)
    dl_row = _rows(dl_ptr, b, k, d_c, sdl_b, sdl_k, sdl_d)
    z_row = _rows(z_ptr, b, k, d_c, sz_b, sz_k, sz_d)
    y_row = _rows(y_ptr, b, k, d_c, sy_b, sy_k, sy_d)
    B_row = B_ptr + b.to(tl.int64) * sB_b + k * sB_k
    C_row = C_ptr + b.to(tl.int64) * sC_b + k * sC_k
    idx_row = idx_ptr + k * L
    win_row = win_ptr + (bk.to(tl.int64) * NSEG + seg) * WB * 4 * D + d_c * 4
    bc_row = bc_ptr + bk.to(tl.int64) * L * 2 * N
    if PASS == 2:
        # unmasked (offsets clamped): lanes past D repeat channel D - 1 exactly, so their scratch writes agree
        h = tl.load(hseg_ptr + seg_off)
    else:
        h = tl.full([BD, N], 0.0, tl.float32)
    dt_sum = tl.full([BD, 1], 0.0, tl.float32)
    # the next step's inputs load while a step computes, the token index after that one step earlier
    tok = tl.load(idx_row + t_start).to(tl.int32)
    n_u = tl.load(u_row + tok * su_l)
    n_dl = tl.load(dl_row + tok * sdl_l)
    if HAS_Z:
        n_z = tl.load(z_row + tok * sz_l)
    # with a window, the forward sweep reads bf16 pairs where it can (fewer instructions at its register count)
    BC32_FWD: tl.constexpr = BC32 and not (PAIRS and WIN)
    n_B, n_C = _states(B_row, sB_n, sB_l, C_row, sC_n, sC_l, bc_row, tok, offs_n, N, PAIRS, BC32_FWD, FAST)
    n_tok = tl.load(idx_row + tl.minimum(t_start + 1, L - 1)).to(tl.int32)
    for t in range(t_start, t_end):
        u = n_u.to(tl.float32)
        dt = n_dl.to(tl.float32)
        if HAS_Z:
            zv = n_z.to(tl.float32)
        Bv = n_B
        Cv = n_C
        y_tok = tok
        tok = n_tok
        n_u = tl.load(u_row + tok * su_l)
        n_dl = tl.load(dl_row + tok * sdl_l)
        if HAS_Z:
            n_z = tl.load(z_row + tok * sz_l)
        n_B, n_C = _states(B_row, sB_n, sB_l, C_row, sC_n, sC_l, bc_row, tok, offs_n, N, PAIRS, BC32_FWD, FAST)
        if WIN and BC32 and not BC32_FWD and FAST:
            _prefetch_l1(bc_row + tok * (2 * N))             # the reverse sweep reads it from L1
        n_tok = tl.load(idx_row + tl.minimum(t + 2, L - 1)).to(tl.int32)
        if HAS_BIAS:
            dt = dt + bias
        if SOFTPLUS:
            dt = _softplus(dt, FAST)
        dtu = dt * u
        h = _exp2(dt * A2, FAST) * h + dtu * Bv
        if PASS == 1:
            dt_sum += dt
        else:
            y = _sum_ax(Cv * h, 1)
            if HAS_D:
                y += Dv * u
            if HAS_Z:
                gate = zv * _sigmoid(zv, FAST)
            if WIN:
                j = (t - t_start) % W                       # segments start at window starts
                if HAS_Z:
                    _st4(win_row + j * 4 * D, y, dt, dtu, gate, FAST)
                else:
                    _st4(win_row + j * 4 * D, y, dt, dtu, dtu, FAST)
                if (j == W - 1) | (t == t_end - 1):
                    # the window's reverse recurrence: its last step (q = 0) from the registers, then back to its first
                    if HAS_Z:
                        tl.store(y_row + y_tok * sy_l, (y * gate).to(y_ptr.dtype.element_ty), mask=md)
                    else:
                        tl.store(y_row + y_tok * sy_l, y.to(y_ptr.dtype.element_ty), mask=md)
                    r = dtu * Bv
                    t0 = t - j                                  # the window's first step
                    for jj in range(1, j + 1):
                        r_tok, yw, dtw, dtuw, gw, Bw, Cw = _window_step(
                            idx_row, win_row, t - jj, t0, D, B_row, sB_n, sB_l, C_row, sC_n, sC_l, bc_row, offs_n,
                            N, PAIRS, BC32, FAST)
                        q = _exp2(dtw * A2, FAST) * r
                        yw += _sum_ax(Cw * q, 1)
                        if HAS_Z:
                            yw = yw * gw
                        tl.store(y_row + r_tok * sy_l, yw.to(y_ptr.dtype.element_ty), mask=md)
                        r = q + dtuw * Bw
            else:
                if HAS_Z:
                    y = y * gate
                tl.store(y_row + y_tok * sy_l, y.to(y_ptr.dtype.element_ty), mask=md)
    if PASS == 1:
        tl.store(hseg_ptr + seg_off, h, mask=mA)
        tl.store(pseg_ptr + seg_off, _exp2(dt_sum * A2, FAST), mask=mA)
    else:
        tl.store(last_ptr + bk.to(tl.int64) * D * N + offA - k * D * N, h, mask=mA & (seg == NSEG - 1))


@triton.jit
def _shfl_xor(x, MASK: tl.constexpr):
    """x from lane (lane id ^ MASK) of the warp (SHFL.BFLY), for tiles whose rows are the warp's lanes."""
    if MASK == 16:
        return tl.inline_asm_elementwise("shfl.sync.bfly.b32 $0, $1, 16, 31, -1;", "=r,r", [x], dtype=tl.float32,
                                         is_pure=True, pack=1)
    elif MASK == 8:
        return tl.inline_asm_elementwise("shfl.sync.bfly.b32 $0, $1, 8, 31, -1;", "=r,r", [x], dtype=tl.float32,
                                         is_pure=True, pack=1)
    elif MASK == 4:
        return tl.inline_asm_elementwise("shfl.sync.bfly.b32 $0, $1, 4, 31, -1;", "=r,r", [x], dtype=tl.float32,
                                         is_pure=True, pack=1)
    elif MASK == 2:
        return tl.inline_asm_elementwise("shfl.sync.bfly.b32 $0, $1, 2, 31, -1;", "=r,r", [x], dtype=tl.float32,
                                         is_pure=True, pack=1)
    else:
        return tl.inline_asm_elementwise("shfl.sync.bfly.b32 $0, $1, 1, 31, -1;", "=r,r", [x], dtype=tl.float32,
                                         is_pure=True, pack=1)


@triton.jit
def _halve(v, lane, BIT: tl.constexpr, HALF: tl.constexpr):
    # keep the even or the odd columns (by lane bit BIT), add the partner lane's copy of them
    lo, hi = tl.split(tl.reshape(v, [32, HALF, 2]))
    bit = ((lane >> BIT) & 1) == 1
    return tl.where(bit, hi, lo) + _shfl_xor(tl.where(bit, lo, hi), 1 << BIT)


@triton.jit
def _lane_sum_scatter(x, lane):
    """Column sums of a [32, 16] tile (row = lane) by recursive halving, 16 shuffles where tl.sum takes 80.
    Returns [32, 1]: lanes l and l ^ 1 hold the sum of column `_scatter_column(l)`."""
    v = _halve(_halve(_halve(_halve(x, lane, 4, 8), lane, 3, 4), lane, 2, 2), lane, 1, 1)
    return v + _shfl_xor(v, 1)


@triton.jit
def _scatter_column(lane):
    # level i kept the odd columns where lane bit 4 - i is set: those bits are the column's digits, lowest first
    return ((lane >> 4) & 1) + ((lane >> 3) & 1) * 2 + ((lane >> 2) & 1) * 4 + ((lane >> 1) & 1) * 8


@triton.jit
def _gated_dy(tok, valid, dy_row, sdy, z_row, sz, HAS_Z: tl.constexpr, FAST: tl.constexpr):
    dy = tl.where(valid, tl.load(dy_row + tok * sdy).to(tl.float32), 0.0)
    if HAS_Z:
        zv = tl.load(z_row + tok * sz).to(tl.float32)
        dy = dy * zv * _sigmoid(zv, FAST)
    return dy


@triton.jit
def _bwd_token(h_prev, carry, sig, r, t, dA_acc, dD_acc, dbias_acc, tok, valid, md, offs_n,
               u_row, su, dl_row, sdl, z_row, sz, dy_row, sdy, du_row, sdu, ddl_row, sddl, dz_row, sdz,
               B_row, sB_n, sB_l, C_row, sC_n, sC_l, bc_row, dB_row, sdB_n, sdB_l, dC_row, sdC_n, sdC_l,
               A2, Dv, bias, N: tl.constexpr, W: tl.constexpr, ODD: tl.constexpr, HAS_D: tl.constexpr,
               HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, FAST: tl.constexpr,
               PAIRS: tl.constexpr, BC32: tl.constexpr, SCATTER: tl.constexpr):
    """Backward of scan step t: h_prev is the state before it, carry = a_(t+1) lambda_(t+1). Writes du, ddelta, dz,
    adds into dB, dC; returns (a_t lambda_t, r_t, the dA, dD, ddelta_bias accumulators).
    Window W > 1: r = r_(t+1) (0 past the window's end), sig = a_(t-1) rho_(t-1) (rho_t = g_t + sig_t, 0 at the
    window's start); y_t = C_t (h_t + q_t), q_t = a_t r_(t+1); b_t = delta_t u_t B_t gets lambda_t + sig_t, a_t gets
    (lambda_t a_t h_(t-1) + rho_t q_t) / a_t. ODD: t is a chunk's second step (never a window start for even W)."""
    WIN: tl.constexpr = W > 1
    tok64 = tok.to(tl.int64)
    u = tl.load(u_row + tok * su).to(tl.float32)
    dt = tl.load(dl_row + tok * sdl).to(tl.float32)
    dy = tl.where(valid, tl.load(dy_row + tok * sdy).to(tl.float32), 0.0)
    Bv, Cv = _states(B_row, sB_n, sB_l, C_row, sC_n, sC_l, bc_row, tok, offs_n, N, PAIRS, BC32, FAST)
    if HAS_BIAS:
        dt = dt + bias
    dt_raw = dt
    if SOFTPLUS:
        dt = _softplus(dt, FAST)
    dt = tl.where(valid, dt, 0.0)
    a = _exp2(dt * A2, FAST)
    ah = a * h_prev
    dtu = dt * u
    if WIN:
        bb = dtu * Bv
        q = a * r
        H = ah + bb + q                                                         # h_t + q_t
    else:
        H = ah + dtu * Bv
    if HAS_Z:
        zv = tl.load(z_row + tok * sz).to(tl.float32)
        sg = _sigmoid(zv, FAST)
        yss = _sum_ax(Cv * H, 1)
        if HAS_D:
            yss += Dv * u
        tl.store(dz_row + tok * sdz, (dy * yss * sg * (1.0 + zv * (1.0 - sg))).to(dz_row.dtype.element_ty),
                 mask=md & valid)
        dys = dy * zv * sg
    else:
        dys = dy
    g = dys * Cv
    lam = g + carry
    if WIN:
        dbb = lam + sig
        S = lam * ah + (g + sig) * q
    else:
        dbb = lam
        S = lam * ah
    lamB = _sum_ax(dbb * Bv, 1)
    du = lamB * dt
    ddt = lamB * u + _sum_ax(S * A2, 1) * 0.6931471805599453
    if HAS_D:
        du += Dv * dys
        dD_acc += dys * u
    if SOFTPLUS:
        ddt = ddt * _sigmoid(dt_raw, FAST)
    ddt = tl.where(valid, ddt, 0.0)
    dbias_acc += ddt
    dA_acc += S * dt
    tl.store(du_row + tok * sdu, du.to(du_row.dtype.element_ty), mask=md & valid)
    tl.store(ddl_row + tok * sddl, ddt.to(ddl_row.dtype.element_ty), mask=md & valid)
    if SCATTER:
        # one warp of 32 channels and 16 states: lane l ends with one state's sum; every other lane adds it
        lane = tl.reshape(tl.arange(0, 32), [32, 1])
        col = _scatter_column(lane)
        first = (lane & 1) == 0
        tl.atomic_add(dB_row + tok64 * sdB_l + col * sdB_n, _lane_sum_scatter(tl.where(md, dbb * dtu, 0.0), lane),
                      mask=valid & first, sem="relaxed")
        tl.atomic_add(dC_row + tok64 * sdC_l + col * sdC_n, _lane_sum_scatter(tl.where(md, H * dys, 0.0), lane),
                      mask=valid & first, sem="relaxed")
    else:
        mn = valid & (offs_n >= 0)
        tl.atomic_add(dB_row + tok64 * sdB_l + offs_n * sdB_n, _sum_ax(tl.where(md, dbb * dtu, 0.0), 0), mask=mn,
                      sem="relaxed")
        tl.atomic_add(dC_row + tok64 * sdC_l + offs_n * sdC_n, _sum_ax(tl.where(md, H * dys, 0.0), 0), mask=mn,
                      sem="relaxed")
    if WIN:
        r = q + bb
        if ODD and W % 2 == 0:
            pass
        else:
            r = tl.where(t % W == 0, 0.0, r)                # step t - 1 ends a window
    return a * lam, r, dA_acc, dD_acc, dbias_acc


@triton.jit
def _adjoint_token(carry, tok, valid, A2, bias, dl_row, sdl, z_row, sz, dy_row, sdy, C_row, sC_n, sC_l, bc_row,
                   offs_n, N: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
                   FAST: tl.constexpr, PAIRS: tl.constexpr, BC32: tl.constexpr):
    """a_t (g_t + carry): the adjoint alone through one token (PASS 3; no window enters it)."""
    dt = tl.load(dl_row + tok * sdl).to(tl.float32)
    if HAS_BIAS:
        dt = dt + bias
    if SOFTPLUS:
        dt = _softplus(dt, FAST)
    dt = tl.where(valid, dt, 0.0)
    dy = _gated_dy(tok, valid, dy_row, sdy, z_row, sz, HAS_Z, FAST)
    if BC32:
        Cv = _kept_states(bc_row + tok * (2 * N) + N, offs_n, N, FAST)
    else:
        Cv = _token_states(C_row + tok.to(tl.int64) * sC_l, sC_n, offs_n, N, PAIRS)
    return _exp2(dt * A2, FAST) * (dy * Cv + carry)


@triton.jit
def _bwd_step_kernel(dy_ptr, u_ptr, dl_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, idx_ptr,
                     states_ptr, sig_ptr, bc_ptr, du_ptr, ddl_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dz_ptr, dbias_ptr,
                     hseg_ptr, cseg_ptr, K, D, L, NCHUNK, SEGC, NSEG,
                     su_b, su_k, su_d, su_l, sdl_b, sdl_k, sdl_d, sdl_l, sz_b, sz_k, sz_d, sz_l,
                     sdy_b, sdy_k, sdy_d, sdy_l, sB_b, sB_k, sB_n, sB_l, sC_b, sC_k, sC_n, sC_l,
                     sdu_b, sdu_k, sdu_d, sdu_l, sddl_b, sddl_k, sddl_d, sddl_l, sdz_b, sdz_k, sdz_d, sdz_l,
                     sdB_b, sdB_k, sdB_n, sdB_l, sdC_b, sdC_k, sdC_n, sdC_l,
                     N: tl.constexpr, BD: tl.constexpr, W: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
                     HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, FAST: tl.constexpr, PAIRS: tl.constexpr,
                     SCATTER: tl.constexpr, PASS: tl.constexpr, BC32: tl.constexpr):
    """Backward in `_fwd_step_kernel`'s layout. Pass one stores the state entering each chunk of two tokens
    (states: (b * K, chunks, N, d) fp32); pass two, last chunk first, rebuilds the chunk's middle state and runs
    `_bwd_token` on its two tokens right to left.
    Window W > 1: pass one also carries the window's left adjoint sig_t = a_(t-1) (g_(t-1) + sig_(t-1)) (g = gated
    C dy, 0 at a window start) and stores it per chunk (sig_ptr); pass two rebuilds it at the middle step and
    carries the reverse state r with the global adjoint. Segments are multiples of W and 2 steps: none cuts a window.
    Segments (grid axis 2, SEGC chunks each): PASS 3 runs the adjoint alone from a zero carry and writes the carry
    it passes left (cseg); PASS 4 is the full backward from the entering state (hseg) and carry (cseg); PASS 0 is
    the whole sequence."""
    WIN: tl.constexpr = W > 1
    bk, b, k, offs_n, md, d_c, A2, Dv, bias = _step_setup(A_ptr, D_ptr, bias_ptr, K, D, N, BD, HAS_D, HAS_BIAS)
    seg = tl.program_id(2)
    c_lo = seg * SEGC
    c_hi = tl.minimum(c_lo + SEGC, NCHUNK)
    u_row = _rows(u_ptr, b, k, d_c, su_b, su_k, su_d)
    dl_row = _rows(dl_ptr, b, k, d_c, sdl_b, sdl_k, sdl_d)
    z_row = _rows(z_ptr, b, k, d_c, sz_b, sz_k, sz_d)
    dy_row = _rows(dy_ptr, b, k, d_c, sdy_b, sdy_k, sdy_d)
    du_row = _rows(du_ptr, b, k, d_c, sdu_b, sdu_k, sdu_d)
    ddl_row = _rows(ddl_ptr, b, k, d_c, sddl_b, sddl_k, sddl_d)
    dz_row = _rows(dz_ptr, b, k, d_c, sdz_b, sdz_k, sdz_d)
    B_row = B_ptr + b.to(tl.int64) * sB_b + k * sB_k
    C_row = C_ptr + b.to(tl.int64) * sC_b + k * sC_k
    dB_row = dB_ptr + b.to(tl.int64) * sdB_b + k * sdB_k
    dC_row = dC_ptr + b.to(tl.int64) * sdC_b + k * sdC_k
    idx_row = idx_ptr + k * L
    bc_row = bc_ptr + bk.to(tl.int64) * L * 2 * N
    # states[bk, c, n, d]: channels contiguous, like every other tile's loads and stores
    st_row = states_ptr + bk.to(tl.int64) * NCHUNK * N * D
    sig_row = sig_ptr + bk.to(tl.int64) * NCHUNK * N * D
    st_off = offs_n * D + d_c                           # int32 offsets: half the registers of pointers
    mst = md & (offs_n >= 0)
    seg_off = (bk.to(tl.int64) * NSEG + seg) * D * N + d_c * N + offs_n        # hseg, cseg: (b * K, NSEG, d, N)

    if PASS == 3:
        carry = tl.full([BD, N], 0.0, tl.float32)
        for cc in range(0, c_hi - c_lo):
            t0 = 2 * (c_hi - 1 - cc)
            tok1 = tl.load(idx_row + tl.minimum(t0 + 1, L - 1)).to(tl.int32)
            tok0 = tl.load(idx_row + t0).to(tl.int32)
            carry = _adjoint_token(carry, tok1, t0 + 1 < L, A2, bias, dl_row, sdl_l, z_row, sz_l, dy_row, sdy_l,
                                   C_row, sC_n, sC_l, bc_row, offs_n, N, HAS_Z, HAS_BIAS, SOFTPLUS, FAST, PAIRS, BC32)
            carry = _adjoint_token(carry, tok0, t0 < L, A2, bias, dl_row, sdl_l, z_row, sz_l, dy_row, sdy_l,
                                   C_row, sC_n, sC_l, bc_row, offs_n, N, HAS_Z, HAS_BIAS, SOFTPLUS, FAST, PAIRS, BC32)
        tl.store(cseg_ptr + seg_off, carry, mask=mst)
        return

    if PASS == 4:
        h = tl.load(hseg_ptr + seg_off, mask=mst, other=0.0)
        tl.store(st_row + c_lo * N * D + st_off, h, mask=mst & (c_lo > 0))
    else:
        h = tl.full([BD, N], 0.0, tl.float32)
    sig = tl.full([BD, N], 0.0, tl.float32)             # a segment starts a window
    for c in range(c_lo, c_hi - 1):
        for s in tl.static_range(2):
            tok = tl.load(idx_row + 2 * c + s).to(tl.int32)                      # 2c + 1 < L here
            u = tl.load(u_row + tok * su_l).to(tl.float32)
            dt = tl.load(dl_row + tok * sdl_l).to(tl.float32)
            if HAS_BIAS:
                dt = dt + bias
            if SOFTPLUS:
                dt = _softplus(dt, FAST)
            Bv, Cv = _states(B_row, sB_n, sB_l, C_row, sC_n, sC_l, bc_row, tok, offs_n, N, PAIRS, BC32, FAST)
            a = _exp2(dt * A2, FAST)
            h = a * h + (dt * u) * Bv
            if WIN:
                sig = a * (_gated_dy(tok, True, dy_row, sdy_l, z_row, sz_l, HAS_Z, FAST) * Cv + sig)
                if s == 1 or W % 2 == 1:
                    sig = tl.where((2 * c + s + 1) % W == 0, 0.0, sig)
        tl.store(st_row + (c + 1) * N * D + st_off, h, mask=mst)
        if WIN:
            tl.store(sig_row + (c + 1) * N * D + st_off, sig, mask=mst & ((2 * c + 2) % W != 0))
    tl.debug_barrier()

    if PASS == 4:
        carry = tl.load(cseg_ptr + seg_off, mask=mst, other=0.0)
    else:
        carry = tl.full([BD, N], 0.0, tl.float32)
    r = tl.full([BD, N], 0.0, tl.float32)               # a segment ends a window
    sig_in = sig
    sig_mid = sig
    dA_acc = tl.full([BD, N], 0.0, tl.float32)
    dD_acc = tl.full([BD, 1], 0.0, tl.float32)
    dbias_acc = tl.full([BD, 1], 0.0, tl.float32)
    for cc in range(0, c_hi - c_lo):
        c = c_hi - 1 - cc
        h_in = tl.load(st_row + c * N * D + st_off, mask=mst & (c > 0), other=0.0)
        t0 = 2 * c
        tok0 = tl.load(idx_row + t0).to(tl.int32)
        valid1 = t0 + 1 < L
        tok1 = tl.load(idx_row + tl.minimum(t0 + 1, L - 1)).to(tl.int32)
        u0 = tl.load(u_row + tok0 * su_l).to(tl.float32)
        dt0 = tl.load(dl_row + tok0 * sdl_l).to(tl.float32)
        if HAS_BIAS:
            dt0 = dt0 + bias
        if SOFTPLUS:
            dt0 = _softplus(dt0, FAST)
        B0, C0 = _states(B_row, sB_n, sB_l, C_row, sC_n, sC_l, bc_row, tok0, offs_n, N, PAIRS, BC32, FAST)
        a0 = _exp2(dt0 * A2, FAST)
        h_mid = a0 * h_in + (dt0 * u0) * B0
        if WIN:
            sig_in = tl.load(sig_row + c * N * D + st_off, mask=mst & (c > 0) & (t0 % W != 0), other=0.0)
            sig_mid = a0 * (_gated_dy(tok0, True, dy_row, sdy_l, z_row, sz_l, HAS_Z, FAST) * C0 + sig_in)
            if W % 2 == 1:
                sig_mid = tl.where((t0 + 1) % W == 0, 0.0, sig_mid)
        carry, r, dA_acc, dD_acc, dbias_acc = _bwd_token(
            h_mid, carry, sig_mid, r, t0 + 1, dA_acc, dD_acc, dbias_acc, tok1, valid1, md, offs_n,
            u_row, su_l, dl_row, sdl_l, z_row, sz_l, dy_row, sdy_l, du_row, sdu_l, ddl_row, sddl_l, dz_row, sdz_l,
            B_row, sB_n, sB_l, C_row, sC_n, sC_l, bc_row, dB_row, sdB_n, sdB_l, dC_row, sdC_n, sdC_l,
            A2, Dv, bias, N, W, True, HAS_D, HAS_Z, HAS_BIAS, SOFTPLUS, FAST, PAIRS, BC32, SCATTER)
        carry, r, dA_acc, dD_acc, dbias_acc = _bwd_token(
            h_in, carry, sig_in, r, t0, dA_acc, dD_acc, dbias_acc, tok0, t0 < L, md, offs_n,
            u_row, su_l, dl_row, sdl_l, z_row, sz_l, dy_row, sdy_l, du_row, sdu_l, ddl_row, sddl_l, dz_row, sdz_l,
            B_row, sB_n, sB_l, C_row, sC_n, sC_l, bc_row, dB_row, sdB_n, sdB_l, dC_row, sdC_n, sdC_l,
            A2, Dv, bias, N, W, False, HAS_D, HAS_Z, HAS_BIAS, SOFTPLUS, FAST, PAIRS, BC32, SCATTER)
    offA = (k * D + d_c) * N + offs_n
    tl.atomic_add(dA_ptr + offA, dA_acc, mask=mst, sem="relaxed")
    if HAS_D:
        tl.atomic_add(dD_ptr + k * D + d_c, dD_acc, mask=md, sem="relaxed")
    if HAS_BIAS:
        tl.atomic_add(dbias_ptr + k * D + d_c, dbias_acc, mask=md, sem="relaxed")


@triton.jit
def _combine_kernel(hseg_ptr, pseg_ptr, NSEG, DN, BLOCK: tl.constexpr, REVERSE: tl.constexpr):
    """hseg[s] <- the value entering segment s: h = 0, then h <- pseg[s] * h + hseg[s] (segment s's result from a
    zero start, pseg[s] its decay). Left to right for the state, right to left (REVERSE) for the adjoint carry."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < DN
    base = hseg_ptr + tl.program_id(1).to(tl.int64) * NSEG * DN + offs
    pbase = pseg_ptr + tl.program_id(1).to(tl.int64) * NSEG * DN + offs
    h = tl.full([BLOCK], 0.0, tl.float32)
    s0 = NSEG - 1 if REVERSE else 0
    n_end = tl.load(base + s0 * DN, mask=m, other=0.0)
    n_p = tl.load(pbase + s0 * DN, mask=m, other=0.0)
    for i in range(NSEG):
        s = NSEG - 1 - i if REVERSE else i
        sn = s - 1 if REVERSE else s + 1
        h_end = n_end
        p = n_p
        # the next segment's loads come before this one's store, so they overlap the chain
        n_end = tl.load(base + sn * DN, mask=m & (i + 1 < NSEG), other=0.0)
        n_p = tl.load(pbase + sn * DN, mask=m & (i + 1 < NSEG), other=0.0)
        tl.store(base + s * DN, h, mask=m)
        h = p * h + h_end


# Cut a sequence when fewer than _SEG_BELOW warps would walk it serially, into about _SEG_TARGET warps' worth of
# segments of at least _SEG_MIN steps; never below _SEG_SHORT steps (the second pass costs more). Counted in warps
# so that programs of any size fill the 132 SMs alike. Timings: docs/kernels.md (Segments).
_SEG_BELOW = 8 * 132
_SEG_TARGET = 24 * 132
_SEG_MIN = 64
_SEG_SHORT = 512


def pick_segments(L: int, T: int, warps: int) -> Tuple[int, int]:
    """(number of segments, steps per segment, a multiple of T), for `warps` warps walking the whole sequence."""
    if warps >= _SEG_BELOW or L < max(2 * _SEG_MIN, _SEG_SHORT):
        return 1, L
    nseg = max(1, min(L // _SEG_MIN, -(-_SEG_TARGET // warps)))
    seg = -(-(-(-L // nseg)) // T) * T
    return -(-L // seg), seg


# Tunables (tools/bench_kernels.py --sweep; docs/kernels.md). Register caps (maxnreg) let a forward wave hold a
# whole Vim-T grid. No run-time autotuning: one compile per (dtype, flags, W) specialisation.
_CFG = dict(step_regs_fwd=1, step_warps_fwd=1, maxnreg_step=80, maxnreg_step_win=0,
            step_regs_bwd=1, step_warps_bwd=1, maxnreg_step_bwd=168, maxnreg_step_bwd_win=168, scatter_bwd=True,
            bc_fp32=False)


def _launch_opts(nw: int, which: str, device_type: str) -> dict:
    """num_warps, and a register cap (0: none) when one lets more programs run at once on an SM."""
    cap = _CFG["maxnreg_" + which] if device_type == "cuda" and not _interpreting() else 0
    return dict(num_warps=nw, maxnreg=cap) if cap else dict(num_warps=nw)


_IDENTITY = {}


def _identity_index(K: int, L: int, device) -> torch.Tensor:
    key = (K, L, str(device))
    idx = _IDENTITY.get(key)
    if idx is None:
        idx = torch.arange(L, device=device, dtype=torch.int64).expand(K, L).contiguous()
        _IDENTITY[key] = idx
    return idx


def _strides(x, n=4):
    """The four strides of a (b, K, rows, L) operand; zeros for an absent one (its loads are compiled out)."""
    return tuple(x.stride()) if x is not None else (0,) * n


def _check(A, D, delta_bias, index):
    N = A.shape[-1]
    if N & (N - 1):
        raise NotImplementedError(f"triton selective scan needs d_state a power of two, got {N}")
    for name, t in (("A", A), ("D", D), ("delta_bias", delta_bias), ("index", index)):
        if t is not None and not t.is_contiguous():
            raise ValueError(f"triton selective scan: {name} must be contiguous")


def _window(local_window) -> int:
    """The kernels' W: 0 for no window; a window of one step is the plain scan (r_t = delta_t u_t B_t)."""
    W = int(local_window or 0)
    if W < 0:
        raise ValueError(f"triton selective scan: local_window must be >= 0, got {W}")
    return W if W > 1 else 0


def _fwd_launcher(u, delta, A, B, C, D, z, delta_bias, delta_softplus, index, y, last, staged=None):
    """(warps per row block, launch(seg, nseg, hseg, pseg, PASS, has_z, W)) of `_fwd_step_kernel`; `staged`
    caches the fp32 B, C copy across launches."""
    b, K, d, L = u.shape
    N = A.shape[-1]
    args = (u, delta, A, B, C,
            D if D is not None else A, z if z is not None else A, delta_bias if delta_bias is not None else A,
            index, y, last)
    strides = (*_strides(u), *_strides(delta), *_strides(z), *_strides(y), *_strides(B), *_strides(C))
    R, nw = pick_step_config(b * K * d, u.device.type)
    BD = R * 32 * nw
    meta = dict(N=N, BD=BD, HAS_D=D is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(delta_softplus),
                FAST=u.is_cuda and not _interpreting(), PAIRS=_pairs_ok(B) and _pairs_ok(C))

    def launch(seg, nseg, hseg, pseg, PASS, has_z, W=0):
        W = W if PASS != 1 else 0                      # the segments' end states are the plain scan's
        win, wb = A, 0
        grid = (triton.cdiv(d, BD), b * K, nseg)
        if W:
            wb = min(W, seg)
            win = torch.empty((b * K * nseg, wb, d, 4), device=u.device, dtype=torch.float32)
        bc32 = _bc32_for(B, C, W, staged)
        _fwd_step_kernel[grid](*args, hseg, pseg, win, A if bc32 is None else bc32, K, d, L, seg, nseg, wb, *strides,
                               W=W, HAS_Z=has_z, PASS=PASS, BC32=bc32 is not None, **meta,
                               **_launch_opts(nw, "step_win" if W else "step", u.device.type))
    return (triton.cdiv(d, BD) * nw), launch


def _bc32_for(B, C, W: int, staged) -> Optional[torch.Tensor]:
    """The fp32 B, C copy, made once per call (`staged`) with a window or `_CFG["bc_fp32"]`; else None."""
    if not (W or _CFG["bc_fp32"]):
        return None
    if staged is None:
        return _bc_fp32(B, C)
    if not staged:
        staged.append(_bc_fp32(B, C))
    return staged[0]


def _bc_fp32(B, C) -> torch.Tensor:
    """B and C as (b * K, L, 2N) fp32, a token's states contiguous (`_bc_fp32_kernel`)."""
    b, K, N, L = B.shape
    out = torch.empty((b * K, L, 2 * N), device=B.device, dtype=torch.float32)
    BL = max(1, min(128, 2048 // N, _next_pow2(L)))
    _bc_fp32_kernel[(triton.cdiv(L, BL), b * K)](B, C, out, K, L, *B.stride(), *C.stride(), N=N, BL=BL, num_warps=4)
    return out


def pick_step_config(rows: int, device_type: str = "cuda", which: str = "fwd") -> Tuple[int, int]:
    """(channels per thread, warps) for b * K * d rows: the `_CFG` tile, halved while under two programs per SM."""
    if device_type != "cuda" or _interpreting():
        return 1, 1
    R, nw = _CFG[f"step_regs_{which}"], _CFG[f"step_warps_{which}"]
    while rows // (R * 32 * nw) < 2 * 132 and (R > 1 or nw > 1):
        if R > 1:
            R //= 2
        else:
            nw //= 2
    return R, nw


def _pairs_ok(x) -> bool:
    """bf16 B or C whose states can be read two per 32-bit word: unit state stride, even offsets."""
    return (x.dtype == torch.bfloat16 and x.stride(2) == 1 and x.shape[2] % 2 == 0 and x.data_ptr() % 4 == 0
            and x.stride(0) % 2 == 0 and x.stride(1) % 2 == 0 and x.stride(3) % 2 == 0)


def _combine(hseg, pseg, reverse):
    bk, nseg, d, N = hseg.shape
    block = min(1024, _next_pow2(d * N))
    _combine_kernel[(triton.cdiv(d * N, block), bk)](hseg, pseg, nseg, d * N, BLOCK=block, REVERSE=reverse,
                                                      num_warps=4)


def _segment_states(launch, shape, seg, nseg, device):
    """(hseg, pseg): the forward state entering each of nseg segments of seg steps, and each one's decay."""
    hseg = torch.empty((shape[0] * shape[1], nseg, shape[2], shape[3]), device=device, dtype=torch.float32)
    pseg = torch.empty_like(hseg)
    launch(seg, nseg, hseg, pseg, 1, False)
    _combine(hseg, pseg, reverse=False)
    return hseg, pseg


def selective_scan_fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus: bool,
                       index: Optional[torch.Tensor], local_window: int) -> Tuple[torch.Tensor, torch.Tensor]:
    _check(A, D, delta_bias, index)
    b, K, d, L = u.shape
    N = A.shape[-1]
    W = _window(local_window)
    y = _out_like(u)
    last = _out_like(u, torch.float32, (b, K, d, N))
    if L == 0:
        last.zero_()
        return y, last
    if index is None:
        index = _identity_index(K, L, u.device)
    warps, launch = _fwd_launcher(u, delta, A, B, C, D, z, delta_bias, delta_softplus, index, y, last, [])
    # segments hold whole windows (windows start at multiples of W scanned steps)
    nseg, seg = pick_segments(L, max(W, 1), b * K * warps)
    if nseg == 1:
        launch(L, 1, A, A, 0, z is not None, W)
    else:
        hseg, pseg = _segment_states(launch, (b, K, d, N), seg, nseg, u.device)
        launch(seg, nseg, hseg, pseg, 2, z is not None, W)
    return y, last


def selective_scan_bwd(dy, u, delta, A, B, C, D, z, delta_bias, delta_softplus: bool,
                       index: Optional[torch.Tensor], local_window: int):
    _check(A, D, delta_bias, index)
    b, K, d, L = u.shape
    W = _window(local_window)
    du = _out_like(u)
    ddelta = _out_like(delta)
    dz = _out_like(z) if z is not None else None
    dA = torch.zeros_like(A, dtype=torch.float32)
    dB32 = torch.zeros_like(B, dtype=torch.float32)
    dC32 = torch.zeros_like(C, dtype=torch.float32)
    dD = torch.zeros((K, d), device=u.device, dtype=torch.float32) if D is not None else None
    dbias = torch.zeros((K, d), device=u.device, dtype=torch.float32) if delta_bias is not None else None
    if L > 0:
        if index is None:
            index = _identity_index(K, L, u.device)
        _bwd_step(dy, u, delta, A, B, C, D, z, delta_bias, delta_softplus, index, W,
                  du, ddelta, dA, dB32, dC32, dD, dz, dbias)
    else:
        du.zero_(); ddelta.zero_()
        if dz is not None:
            dz.zero_()
    return _bwd_outputs(B, C, A, D, delta_bias, du, ddelta, dA, dB32, dC32, dD, dz, dbias)


def _bwd_outputs(B, C, A, D, delta_bias, du, ddelta, dA, dB32, dC32, dD, dz, dbias):
    dB = dB32.to(B.dtype)
    dC = dC32.to(C.dtype)
    dA = dA.to(A.dtype)
    if dD is not None:
        dD = dD.to(D.dtype)
    if dbias is not None:
        dbias = dbias.to(delta_bias.dtype)
    return du, ddelta, dA, dB, dC, dD, dz, dbias


def _bwd_step(dy, u, delta, A, B, C, D, z, delta_bias, delta_softplus, index, W,
              du, ddelta, dA, dB32, dC32, dD, dz, dbias):
    """`_bwd_step_kernel` in one pass, or in segments of whole two-step chunks and whole windows."""
    b, K, d, L = u.shape
    N = A.shape[-1]
    R, nw = pick_step_config(b * K * d, u.device.type, "bwd")
    nseg, seg = pick_segments(L, math.lcm(2, W) if W else 2, b * K * triton.cdiv(d, R * 32 * nw) * nw)
    nchunk = triton.cdiv(L, 2)
    states = torch.empty((b * K, nchunk, N, d) if nchunk > 1 else (1,), device=u.device, dtype=torch.float32)
    sig = torch.empty_like(states) if W else states
    staged = []
    bc32 = _bc32_for(B, C, W, staged)
    dummy = A
    fast = u.is_cuda and not _interpreting()
    strides = (*_strides(u), *_strides(delta), *_strides(z), *_strides(dy), *_strides(B), *_strides(C),
               *_strides(du), *_strides(ddelta), *_strides(dz), *_strides(dB32), *_strides(dC32))
    args = (dy, u, delta, A, B, C, D if D is not None else dummy, z if z is not None else dummy,
            delta_bias if delta_bias is not None else dummy, index, states, sig, dummy if bc32 is None else bc32,
            du, ddelta, dA, dB32, dC32,
            dD if dD is not None else dummy, dz if dz is not None else dummy, dbias if dbias is not None else dummy)
    meta = dict(N=N, BD=R * 32 * nw, W=W, HAS_D=D is not None, HAS_Z=z is not None,
                HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(delta_softplus), FAST=fast,
                PAIRS=_pairs_ok(B) and _pairs_ok(C), SCATTER=fast and R * nw == 1 and N == 16 and _CFG["scatter_bwd"],
                BC32=bc32 is not None,
                **_launch_opts(nw, "step_bwd_win" if W else "step_bwd", u.device.type))
    grid = (triton.cdiv(d, R * 32 * nw), b * K, nseg)
    if nseg == 1:
        _bwd_step_kernel[grid](*args, dummy, dummy, K, d, L, nchunk, nchunk, 1, *strides, PASS=0, **meta)
        return
    # each segment's entering state, then its adjoint carry from a zero start (PASS 3) chained right to left with
    # the segments' decays; du, dA stand in for y, last_state (the segment pass writes neither)
    _, launch = _fwd_launcher(u, delta, A, B, C, D, z, delta_bias, delta_softplus, index, du, dA, staged)
    hseg, pseg = _segment_states(launch, (b, K, d, N), seg, nseg, u.device)
    cseg = torch.empty_like(hseg)
    pass3 = dict(meta, W=0)
    _bwd_step_kernel[grid](*args, hseg, cseg, K, d, L, nchunk, seg // 2, nseg, *strides, PASS=3, **pass3)
    _combine(cseg, pseg, reverse=True)
    _bwd_step_kernel[grid](*args, hseg, cseg, K, d, L, nchunk, seg // 2, nseg, *strides, PASS=4, **meta)
