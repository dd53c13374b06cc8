"""Triton causal depthwise conv over K directions with the SiLU fused: Mamba's conv before the scan.

Backend interface (same as kernels/causal_conv1d_reference.py, which states the exact semantics):

    causal_conv1d_fwd(x, weight, bias, reverse, silu) -> u
    causal_conv1d_bwd(du, x, weight, bias, reverse, silu) -> (dx, dweight, dbias)

x (B, L, E) with unit channel stride (other strides free: the in_proj half of a (B, L, 2E) tensor is read
in place); weight (K, E, k) and bias (K, E) contiguous, any float dtype; reverse K bools. u (B, K, L, E)
contiguous in x's dtype, so u.transpose(2, 3) is the channels-last view the scan kernels read fastest.
fp32 accumulation throughout.

Why a kernel: the conv is 4 taps per element, so it should cost what reading x and writing u costs. As a
(1, k) conv2d per direction, then a stack and a SiLU, it was half of Vim-T's training step on an H100.

How it works. A program owns a tile of rows x channels of one batch element; a token's channels are
contiguous, so every load and store coalesces. For each direction and tap it loads the tile shifted by the
tap's offset (masked to zero outside 0..L-1): the k shifted loads overlap and hit L1/L2, so x comes from
DRAM about once. The reversed direction is the same loop with the shift negated (a sign per direction),
so both directions run in one launch from one read of x.

The backward recomputes the forward. With g_i = du_i * act'(y_i) (SiLU' = s (1 + y (1 - s)),
s = sigmoid(y)), x[m] feeds y_i[m - sign_i (j - (k-1))] through tap j, so

    dx[m] = sum_i sum_j w_i[j] * g_i[m - sign_i (j - (k-1))]

is gathered: each program recomputes g at the k shifted row sets of its own tile (from x and du, through
L1/L2) instead of scattering into dx with atomics. dweight[i, :, j] = sum g_i[l] x[l + sign_i (j - (k-1))]
and dbias[i] = sum g_i[l] are summed in registers over the rows a program walks (several row blocks when
the grid has programs to spare, so fewer atomics land on the same address), then added with fp32 atomics
into fp32 buffers: their rounding depends on the order the atomics land in, so they are not bitwise
reproducible from run to run.

Block sizes: `_CFG` (sized by register counts, not yet timed on a GPU); no autotuning at run time.
"""
from typing import Optional, Sequence, Tuple

import torch
import triton
import triton.language as tl

__all__ = ["causal_conv1d_fwd", "causal_conv1d_bwd", "pick_config"]

_POISON = False  # tests: fill outputs with NaN before the kernels run, so unwritten elements show


# Only tl builtins in the kernels (tl.full, tl.reduce, tl.exp): the tl.standard helpers (tl.zeros, tl.sum,
# tl.sigmoid) are themselves @triton.jit functions, which Triton's interpreter cannot call when triton was
# imported before TRITON_INTERPRET was set (a test session).
@triton.jit
def _sigmoid(y):
    return 1.0 / (1.0 + tl.exp(-y))


@triton.jit
def _col_sum(x):
    """Sum over the rows of a [rows, cols] tile -> [cols]."""
    return tl.reduce(x, 0, tl.standard._sum_combine)


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
def _fwd_kernel(x_ptr, w_ptr, b_ptr, u_ptr, L, E, s_xb, s_xl,
                K: tl.constexpr, KW: tl.constexpr, REV: tl.constexpr, HAS_BIAS: tl.constexpr,
                SILU: tl.constexpr, BL: tl.constexpr, BE: tl.constexpr):
    """u[b, i, rows, cols] for every direction i; grid (B, L blocks, E blocks). REV: bit i set when
    direction i is reversed."""
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
            y = y * _sigmoid(y)
        u_row = u_ptr + (b * K + i) * L * E
        tl.store(u_row + rows[:, None] * E + cols[None, :], y.to(u_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _pre_act_grad(du_row, s_gl, x_row, s_xl, rows, cols, mask_e, L, E, w_ptr, i, c, sign,
                  KW: tl.constexpr, SILU: tl.constexpr, BL: tl.constexpr, BE: tl.constexpr):
    """g_i = du_i * act'(y_i) at `rows`, fp32, zero outside 0..L-1 (du reads as 0 there)."""
    g = _load_rows(du_row, s_gl, rows, cols, mask_e, L)
    if SILU:
        y = _conv_rows(x_row, s_xl, rows, cols, mask_e, L, E, w_ptr, i, c, sign, KW, BL, BE)
        s = _sigmoid(y)
        g = g * (s * (1.0 + y * (1.0 - s)))
    return g


@triton.jit
def _bwd_kernel(du_ptr, x_ptr, w_ptr, b_ptr, dx_ptr, dw_ptr, db_ptr, L, E, s_xb, s_xl, s_gb, s_gk, s_gl,
                rows_per_program,
                K: tl.constexpr, KW: tl.constexpr, REV: tl.constexpr, HAS_BIAS: tl.constexpr,
                SILU: tl.constexpr, BL: tl.constexpr, BE: tl.constexpr, KP: tl.constexpr,
                SLOTS: tl.constexpr):
    """dx for `rows_per_program` rows (a multiple of BL) of one batch element, and that stretch's share of
    dweight, dbias; grid (B, row stretches, E blocks). The parameter sums are carried over the stretch in
    [SLOTS, BE] (slot i * k + j: direction i, tap j; SLOTS = k * K to a power of two) and [KP, BE] tiles."""
    b = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(2) * BE + tl.arange(0, BE)
    mask_e = cols < E
    x_row = x_ptr + b * s_xb
    du_b = du_ptr + b * s_gb
    slots = tl.arange(0, SLOTS)
    dirs = tl.arange(0, KP)
    dw_acc = tl.full([SLOTS, BE], 0.0, tl.float32)
    db_acc = tl.full([KP, BE], 0.0, tl.float32)
    row_start = tl.program_id(1) * rows_per_program
    row_end = tl.minimum(row_start + rows_per_program, L)
    for r0 in range(row_start, row_end, BL):
        rows = r0 + tl.arange(0, BL)
        dx = tl.full([BL, BE], 0.0, tl.float32)
        # Loops over directions and shifted taps that the compiler keeps rolled (the sign a run-time value):
        # unrolled, it hoists every recompute's loads at once and runs out of registers.
        for i in range(K):
            sign = 1 - 2 * ((REV >> i) & 1)  # 1 causal, -1 reversed
            c = _bias(b_ptr, i, E, cols, mask_e, HAS_BIAS)
            du_row = du_b + i * s_gk
            # the last tap has no shift: its g is also the one the parameter gradients need
            g0 = _pre_act_grad(du_row, s_gl, x_row, s_xl, rows, cols, mask_e, L, E, w_ptr, i, c, sign,
                               KW, SILU, BL, BE)
            dx += _tap(w_ptr, i, KW - 1, E, cols, mask_e, KW)[None, :] * g0
            db_acc += tl.where(dirs[:, None] == i, _col_sum(g0)[None, :], 0.0)
            for j in tl.static_range(KW):
                xs = _load_rows(x_row, s_xl, rows + sign * (j - (KW - 1)), cols, mask_e, L)
                dw_acc += tl.where(slots[:, None] == i * KW + j, _col_sum(g0 * xs)[None, :], 0.0)
            for j in range(KW - 1):
                g = _pre_act_grad(du_row, s_gl, x_row, s_xl, rows - sign * (j - (KW - 1)), cols, mask_e, L, E,
                                  w_ptr, i, c, sign, KW, SILU, BL, BE)
                dx += _tap(w_ptr, i, j, E, cols, mask_e, KW)[None, :] * g
        mask = (rows < L)[:, None] & mask_e[None, :]
        tl.store(dx_ptr + b * L * E + rows[:, None] * E + cols[None, :], dx.to(dx_ptr.dtype.element_ty),
                 mask=mask)
    # dweight (K, E, k) and dbias (K, E), fp32, contiguous
    slot_dir = slots // KW
    tl.atomic_add(dw_ptr + (slot_dir[:, None] * E + cols[None, :]) * KW + (slots % KW)[:, None], dw_acc,
                  mask=(slot_dir < K)[:, None] & mask_e[None, :], sem="relaxed")
    if HAS_BIAS:
        tl.atomic_add(db_ptr + dirs[:, None] * E + cols[None, :], db_acc,
                      mask=(dirs < K)[:, None] & mask_e[None, :], sem="relaxed")


# ----------------------------------------------------------------------------------------------
# host side
# ----------------------------------------------------------------------------------------------
def _interpreting() -> bool:
    import os
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _next_pow2(x: int) -> int:
    return 1 << max(0, (int(x) - 1).bit_length())


# Tiles: rows x channels per block and num_warps; the forward's channels are 256 bytes of a row (64 fp32 or
# 128 bf16), the backward's 64 whatever the dtype: it recomputes the conv at k shifted row sets per direction
# and must hold fewer values per thread. The backward walks several row blocks per program until the grid
# would drop below `programs_bwd` programs. Sized from an offline sm_90 compile (no spills; forward 56-80
# registers, backward about 120 at K = 2, k = 4), not yet timed on a GPU. The interpreter takes small tiles
# so that the tests' short shapes still span several blocks.
_CFG = dict(rows_fwd=16, row_bytes_fwd=256, warps_fwd=4, rows_bwd=8, channels_bwd=64, warps_bwd=4,
            programs_bwd=2048)
_CFG_INTERPRETER = dict(rows_fwd=8, row_bytes_fwd=64, warps_fwd=1, rows_bwd=8, channels_bwd=16, warps_bwd=1,
                        programs_bwd=4)


def pick_config(B: int, L: int, E: int, itemsize: int, backward: bool, device_type: str = "cuda"
                ) -> Tuple[int, int, int, int]:
    """(rows per block, channels per block, row blocks per program, num_warps) for x (B, L, E) with
    elements of `itemsize` bytes."""
    cfg = _CFG if device_type == "cuda" and not _interpreting() else _CFG_INTERPRETER
    which = "bwd" if backward else "fwd"
    rows = min(cfg["rows_" + which], _next_pow2(L))
    channels = cfg["channels_bwd"] if backward else max(1, cfg["row_bytes_fwd"] // itemsize)
    channels = min(channels, _next_pow2(E))
    blocks = triton.cdiv(L, rows)
    per_program = 1
    if backward:
        # Enough programs along the rows to reach the target, each walking an equal share of the blocks.
        row_programs = min(blocks, max(1, triton.cdiv(cfg["programs_bwd"], B * triton.cdiv(E, channels))))
        per_program = triton.cdiv(blocks, row_programs)
    return rows, channels, per_program, cfg["warps_" + which]


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


def _output(shape, like):
    out = torch.empty(shape, device=like.device, dtype=like.dtype)
    if _POISON:
        out.fill_(float("nan"))
    return out


def causal_conv1d_fwd(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                      reverse: Sequence[bool], silu: bool) -> torch.Tensor:
    """u (B, K, L, E) contiguous in x's dtype."""
    _check(x, weight, bias, reverse)
    B, L, E = x.shape
    K, _, k = weight.shape
    u = _output((B, K, L, E), x)
    if u.numel() == 0:
        return u
    BL, BE, _, nw = pick_config(B, L, E, x.element_size(), False, x.device.type)
    grid = (B, triton.cdiv(L, BL), triton.cdiv(E, BE))
    _fwd_kernel[grid](x, weight, weight if bias is None else bias, u, L, E, x.stride(0), x.stride(1),
                      K=K, KW=k, REV=_reverse_bits(reverse), HAS_BIAS=bias is not None, SILU=bool(silu),
                      BL=BL, BE=BE, num_warps=nw)
    return u


def causal_conv1d_bwd(du: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                      reverse: Sequence[bool], silu: bool
                      ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """(dx (B, L, E) contiguous in x's dtype, dweight, dbias in the parameters' dtypes; dbias None without
    bias)."""
    _check(x, weight, bias, reverse)
    B, L, E = x.shape
    K, _, k = weight.shape
    if du.stride(-1) != 1:
        du = du.contiguous()
    dx = _output((B, L, E), x)
    dw = torch.zeros((K, E, k), device=x.device, dtype=torch.float32)
    db = None if bias is None else torch.zeros((K, E), device=x.device, dtype=torch.float32)
    if x.numel() > 0:
        BL, BE, per_program, nw = pick_config(B, L, E, x.element_size(), True, x.device.type)
        rows_per_program = BL * per_program
        grid = (B, triton.cdiv(L, rows_per_program), triton.cdiv(E, BE))
        _bwd_kernel[grid](du, x, weight, weight if bias is None else bias, dx, dw, dw if db is None else db,
                          L, E, x.stride(0), x.stride(1), du.stride(0), du.stride(1), du.stride(2),
                          rows_per_program, K=K, KW=k, REV=_reverse_bits(reverse), HAS_BIAS=bias is not None,
                          SILU=bool(silu), BL=BL, BE=BE, KP=_next_pow2(K), SLOTS=_next_pow2(K * k),
                          num_warps=nw)
    return dx, dw.to(weight.dtype), None if db is None else db.to(bias.dtype)
