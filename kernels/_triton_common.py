"""@triton.jit helpers of the kernels. Only tl builtins: Triton's interpreter cannot call tl.standard's jit helpers
(tl.sum, tl.sigmoid) when triton was imported before TRITON_INTERPRET was set (a test session).
"""
import triton
import triton.language as tl


@triton.jit
def _col_sum(x):
    """Sum over the rows of a [rows, cols] tile -> [cols]."""
    return tl.reduce(x, 0, tl.standard._sum_combine)


@triton.jit
def _exp2(x, FAST: tl.constexpr):
    # MUFU.EX2 with flush-to-zero: one instruction (tl.exp2 / tl.exp add denormal range fix-ups around it)
    if FAST:
        return tl.inline_asm_elementwise("ex2.approx.ftz.f32 $0, $1;", "=r,r", [x], dtype=tl.float32,
                                         is_pure=True, pack=1)
    else:
        return tl.exp2(x)


@triton.jit
def _sigmoid(x, FAST: tl.constexpr):
    e = _exp2(x * -1.4426950408889634, FAST)
    if FAST:
        return tl.inline_asm_elementwise("rcp.approx.ftz.f32 $0, $1;", "=r,r", [1.0 + e], dtype=tl.float32,
                                         is_pure=True, pack=1)
    else:
        return 1.0 / (1.0 + e)
