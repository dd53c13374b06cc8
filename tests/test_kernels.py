"""Selective-scan backends against a float64 oracle (kernels/selective_scan_reference.py on fp64 inputs).

CPU: the Triton kernels run under Triton's interpreter (TRITON_INTERPRET=1) at tiny shapes. The kernel
module is loaded afresh with the interpreter switched on, so these tests work under a plain `pytest`
whatever was imported before. GPU (skipped without CUDA): the same checks at real shapes, plus the
`mamba_ssm` backend when that package is importable.

Outputs are poisoned (NaN) before each run so an element the kernel never writes fails the check.
"""
import importlib.util
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import interpreted

from vimamba.kernels import selective_scan_reference as ref

ROOT = Path(__file__).resolve().parents[1]
KERNEL_FILE = ROOT / "kernels" / "selective_scan.py"
NAMES = ("du", "ddelta", "dA", "dB", "dC", "dD", "dz", "ddelta_bias")


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def interp_kernels():
    """kernels/selective_scan.py loaded with TRITON_INTERPRET=1 (its @triton.jit kernels interpreted)."""
    return interpreted.load(KERNEL_FILE)


def make_inputs(b, K, d, N, L, dtype, device="cpu", order="random", z=True, D=True, bias=True, seed=0,
                layout="contiguous"):
    """layout "channels_last": u, delta, z are transposed views of (b, K, L, d) tensors and B, C transposed
    slices of one (b, K, L, 2N + 3) tensor (what the models hand the op); "shared_u": also u expanded over
    K from one (b, 1, L, d) tensor (the 2-D mixers' case, stride 0 on K)."""
    g = torch.Generator(device="cpu").manual_seed(seed)

    def r(*shape, scale=1.0, shift=0.0):
        return (torch.randn(*shape, generator=g) * scale + shift).to(device)

    def channels(scale=1.0, shift=0.0):
        if layout == "contiguous":
            return r(b, K, d, L, scale=scale, shift=shift).to(dtype)
        return r(b, K, L, d, scale=scale, shift=shift).to(dtype).transpose(-1, -2)

    if layout == "shared_u":
        u = r(b, 1, L, d).to(dtype).transpose(-1, -2).expand(b, K, d, L)
    else:
        u = channels()
    delta = channels(scale=0.5, shift=-1.0)
    A = -(torch.rand(K, d, N, generator=g) * 2 + 0.1).to(device)
    if layout == "contiguous":
        B = r(b, K, N, L).to(dtype)
        C = r(b, K, N, L).to(dtype)
    else:
        R = 4 if layout == "channels_last_even" else 3   # even: bf16 B, C are read two states per word
        x_dbl = r(b, K, L, 2 * N + R).to(dtype)
        B, C = x_dbl[..., R:R + N].transpose(-1, -2), x_dbl[..., R + N:].transpose(-1, -2)
    Dv = r(K, d) if D else None
    zv = channels() if z else None
    bv = r(K, d, scale=0.3) if bias else None
    if order == "identity":
        index = None
    elif order == "reverse":
        index = torch.arange(L - 1, -1, -1).repeat(K, 1)
    elif order == "bidirectional":
        index = torch.stack([torch.arange(L), torch.arange(L - 1, -1, -1)] * (K // 2) + [torch.arange(L)] * (K % 2))
    else:
        index = torch.stack([torch.randperm(L, generator=g) for _ in range(K)])
    if index is not None:
        index = index.to(device).contiguous()
    return dict(u=u, delta=delta, A=A, B=B, C=C, D=Dv, z=zv, delta_bias=bv, index=index)


def _args(x, softplus, W):
    return (x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"], softplus, x["index"], W)


def _f64(x):
    return {k: (v.double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v) for k, v in x.items()}


def rel_err(a, b):
    """||a - b|| / ||b||; where the exact value is 0 (dA at L = 1: every step enters from a zero state),
    the absolute error, which fp32 rounding keeps near 1e-7."""
    a = a.double()
    b = b.double()
    ref = b.norm().item()
    return (a - b).norm().item() / (ref if ref > 1e-12 else 1.0)


def check_backend(module, x, softplus, W, tol, grads=True, dy_seed=1):
    """Forward and every gradient of `module` against the fp64 reference."""
    interpreted.poison(module)
    y, last = module.selective_scan_fwd(*_args(x, softplus, W))
    x64 = _f64(x)
    y_ref, last_ref = ref.selective_scan_fwd(*_args(x64, softplus, W))
    assert y.dtype == x["u"].dtype and y.shape == x["u"].shape
    assert last.dtype == torch.float32 and last.shape == y.shape[:3] + (x["A"].shape[-1],)
    assert y.stride() == torch.empty_like(x["u"]).stride(), "y should take u's layout"
    assert not torch.isnan(y).any(), "NaN (unwritten?) in y"
    assert not torch.isnan(last).any(), "NaN (unwritten?) in last_state"
    errs = {"y": rel_err(y, y_ref), "last_state": rel_err(last, last_ref)}
    if grads:
        gen = torch.Generator(device="cpu").manual_seed(dy_seed)
        dy = torch.randn(y.shape, generator=gen).to(y.device).to(y.dtype)
        got = module.selective_scan_bwd(dy, *_args(x, softplus, W))
        want = ref.selective_scan_bwd(dy.double(), *_args(x64, softplus, W))
        inputs = (x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"])
        for name, g, w, t in zip(NAMES, got, want, inputs):
            if t is None:
                assert g is None, f"{name} should be None"
                continue
            assert g.shape == t.shape and g.dtype == t.dtype, f"{name}: {g.shape} {g.dtype} vs {t.shape} {t.dtype}"
            assert not torch.isnan(g).any(), f"NaN (unwritten?) in {name}"
            errs[name] = rel_err(g, w)
    bad = {k: v for k, v in errs.items() if not v < tol}
    assert not bad, f"relative errors over {tol}: {bad} (all: {errs})"
    return errs


# ----------------------------------------------------------------------------------------------
# interpreter tests (CPU, tiny shapes)
# ----------------------------------------------------------------------------------------------
# (b, K, d, N, L, W, order, z, D, bias, softplus)
CPU_CASES = [
    (1, 1, 4, 4, 1, 0, "identity", True, True, True, True),          # L = 1
    (2, 2, 6, 4, 40, 0, "bidirectional", True, True, True, True),    # 3 chunks, last one partial; d not a block
    (1, 4, 4, 8, 21, 0, "random", False, True, False, True),         # K = 4, permutations, no z / bias
    (1, 1, 4, 16, 37, 8, "identity", True, False, True, True),       # local window, 3 chunks, N = 16
    (1, 2, 4, 4, 19, 4, "reverse", False, False, False, False),      # local window, reversed, no softplus
    (2, 2, 5, 4, 9, 16, "random", True, True, True, True),           # window longer than L
]


@pytest.mark.parametrize("case", CPU_CASES, ids=lambda c: "b{}K{}d{}N{}L{}W{}-{}".format(*c[:7]))
def test_triton_interpreter_fp32(case):
    b, K, d, N, L, W, order, z, D, bias, softplus = case
    x = make_inputs(b, K, d, N, L, torch.float32, order=order, z=z, D=D, bias=bias)
    check_backend(interp_kernels(), x, softplus, W, tol=1e-5)


@pytest.mark.parametrize("case", [(1, 2, 4, 4, 24, 0, "bidirectional"), (1, 1, 4, 4, 13, 4, "random")],
                         ids=lambda c: "K{}L{}W{}".format(c[1], c[4], c[5]))
def test_triton_interpreter_bf16(case):
    b, K, d, N, L, W, order = case
    x = make_inputs(b, K, d, N, L, torch.bfloat16, order=order)
    check_backend(interp_kernels(), x, True, W, tol=1e-2)


def test_triton_interpreter_bf16_state_pairs():
    """bf16 B and C at even offsets with unit state stride: the step kernels read two states per word."""
    mod = interp_kernels()
    x = make_inputs(2, 2, 6, 16, 23, torch.bfloat16, order="bidirectional", layout="channels_last_even")
    assert mod._pairs_ok(x["B"]) and mod._pairs_ok(x["C"])
    check_backend(mod, x, True, 0, tol=1e-2)
    x = make_inputs(2, 2, 6, 16, 23, torch.bfloat16, order="bidirectional", layout="channels_last")
    assert not mod._pairs_ok(x["B"])           # odd offset: one state per load


# local window (LBMamba) in the step kernels: (b, K, d, N, L, W, order, layout, z, D, bias, softplus)
WINDOW_CASES = [
    (1, 1, 4, 4, 11, 1, "identity", "contiguous", True, True, True, True),        # W = 1: the plain scan
    (1, 2, 5, 4, 12, 2, "bidirectional", "channels_last", True, True, True, True),
    (2, 1, 4, 4, 16, 4, "random", "channels_last", False, True, False, True),
    (1, 2, 4, 8, 19, 8, "random", "contiguous", True, False, True, False),        # last window partial
    (1, 1, 6, 4, 14, 3, "reverse", "channels_last", True, True, True, True),       # odd W, L not a multiple
    (1, 2, 4, 4, 10, 5, "identity", "contiguous", False, False, False, True),      # odd W, no D / z / bias
]


@pytest.mark.parametrize("case", WINDOW_CASES, ids=lambda c: "K{}L{}W{}-{}-{}".format(c[1], c[4], c[5], c[6], c[7]))
def test_triton_interpreter_window(case):
    """LBMamba's window in the step kernels (the forward's reverse sweep per window, the backward's window
    adjoint from the left and reverse state from the right): forward and every gradient, fp32."""
    b, K, d, N, L, W, order, layout, z, D, bias, softplus = case
    x = make_inputs(b, K, d, N, L, torch.float32, order=order, z=z, D=D, bias=bias, layout=layout)
    check_backend(interp_kernels(), x, softplus, W, tol=1e-5)


def test_triton_interpreter_window_bf16_state_pairs():
    """bf16 B and C read two states per word, with a window (the reverse sweeps read them again)."""
    mod = interp_kernels()
    x = make_inputs(1, 2, 6, 16, 13, torch.bfloat16, order="bidirectional", layout="channels_last_even")
    assert mod._pairs_ok(x["B"]) and mod._pairs_ok(x["C"])
    check_backend(mod, x, True, 4, tol=1e-2)


@pytest.mark.parametrize("W", [0, 4])
def test_triton_interpreter_staged_bc(W, monkeypatch):
    """B and C read from their fp32 copy (`_bc_fp32`) by every pass, also without a window (`_CFG["bc_fp32"]`),
    through the segments too."""
    mod = interp_kernels()
    monkeypatch.setitem(mod._CFG, "bc_fp32", True)
    monkeypatch.setattr(mod, "_SEG_MIN", 8)
    monkeypatch.setattr(mod, "_SEG_SHORT", 0)
    monkeypatch.setattr(mod, "_SEG_BELOW", 10 ** 9)
    monkeypatch.setattr(mod, "_SEG_TARGET", 10 ** 9)
    x = make_inputs(1, 2, 3, 4, 20, torch.float32, order="random", layout="channels_last")
    check_backend(mod, x, True, W, tol=1e-5)


@pytest.mark.parametrize("layout", ["channels_last", "shared_u"])
def test_triton_interpreter_strided_inputs(layout):
    """Inputs as the models pass them (transposed views, slices of x_dbl, u shared by the directions)."""
    x = make_inputs(2, 2, 6, 4, 21, torch.float32, order="random", layout=layout)
    check_backend(interp_kernels(), x, True, 0, tol=1e-5)
    x = make_inputs(1, 1, 4, 4, 19, torch.float32, order="identity", layout=layout)
    check_backend(interp_kernels(), x, True, 4, tol=1e-5)


@pytest.mark.parametrize("W,L,seg_min,fwd_segments,bwd_segments",
                         [(0, 37, 8, (4, 10), (4, 10)), (4, 37, 8, (4, 12), (4, 12)), (5, 37, 8, (4, 10), (4, 10)),
                          (8, 30, 4, (4, 8), (4, 8)), (0, 100, 32, (3, 34), (3, 34))],
                         ids=["W0", "W4", "W5-odd", "W8-one-window-segments", "W0-long"])
def test_triton_interpreter_segmented(W, L, seg_min, fwd_segments, bwd_segments, monkeypatch):
    """Forward and backward cut into segments (end states and adjoint carries, their combination, the
    rescan), forced at a tiny L, the last segment partial. With a window, segments hold whole windows (and the
    backward's whole chunks of two steps): W = 5 cuts both at multiples of 10."""
    mod = interp_kernels()
    monkeypatch.setattr(mod, "_SEG_MIN", seg_min)
    monkeypatch.setattr(mod, "_SEG_SHORT", 0)
    monkeypatch.setattr(mod, "_SEG_BELOW", 10 ** 9)
    monkeypatch.setattr(mod, "_SEG_TARGET", 10 ** 9)
    assert mod.pick_segments(L, max(W, 1), 1) == fwd_segments
    assert mod.pick_segments(L, math.lcm(2, W) if W else 2, 1) == bwd_segments
    x = make_inputs(1 if W else 2, 2, 5 if W else 6, 4, L, torch.float32, order="random", layout="channels_last")
    check_backend(mod, x, True, W, tol=1e-5)


def test_segments_only_where_the_grid_is_short():
    mod = interp_kernels()
    assert mod.pick_segments(100, 1, 8) == (1, 100)             # short sequence
    assert mod.pick_segments(197, 1, 8) == (1, 197)             # Vim-T at 224 px, however small the batch
    assert mod.pick_segments(4097, 1, 24)[0] == 64               # Vim-T at 1024 px, batch 1: 64-step segments
    assert mod.pick_segments(3136, 1, 10 ** 4) == (1, 3136)     # enough programs
    nseg, seg = mod.pick_segments(230400, 1, 4)                  # batch-1 restoration at 720p
    assert nseg > 100 and seg * nseg >= 230400 and seg * (nseg - 1) < 230400


def test_triton_interpreter_matches_reference_module_directly():
    """Same inputs through the reference at fp32 and through the kernels: agree to fp32 rounding."""
    mod = interp_kernels()
    x = make_inputs(1, 2, 4, 4, 17, torch.float32, order="random")
    y, last = mod.selective_scan_fwd(*_args(x, True, 0))
    y_ref, last_ref = ref.selective_scan_fwd(*_args(x, True, 0))
    assert rel_err(y, y_ref) < 1e-5 and rel_err(last, last_ref) < 1e-5


def test_op_dispatches_to_triton_under_interpreter():
    """vimamba.ops with TRITON_INTERPRET=1 VIMAMBA_BACKEND=triton on CPU tensors: forward and backward
    through the registered op agree with the reference backend (in a fresh process, so the kernel module
    is imported with the interpreter on)."""
    code = textwrap.dedent("""
        import torch, vimamba.ops as ops
        backends = ops.dispatch.BACKENDS["selective_scan"]
        assert backends["triton"] == "vimamba.kernels.selective_scan", backends
        assert backends["mamba_ssm"] == "vimamba.kernels.mamba_ssm_backend", backends
        assert ops.resolve_backend(None, torch.device("cpu")) == "triton"
        from vimamba.scans.base import ScanOrder
        torch.manual_seed(0)
        b, K, d, N, L = 1, 2, 4, 4, 11
        idx = torch.stack([torch.arange(L), torch.arange(L).flip(0)])
        def inputs():
            g = torch.Generator().manual_seed(3)
            r = lambda *s: torch.randn(*s, generator=g)
            return [r(b, K, d, L), r(b, K, d, L) - 1, -torch.rand(K, d, N, generator=g) - 0.1, r(b, K, N, L),
                    r(b, K, N, L), r(K, d), r(b, K, d, L), r(K, d)]
        outs = {}
        for backend in ("triton", "reference"):
            xs = [t.requires_grad_(True) for t in inputs()]
            y = ops.selective_scan(*xs, order=ScanOrder.from_index(idx), local_window=4, backend=backend)
            y.square().sum().backward()
            outs[backend] = [y.detach()] + [t.grad for t in xs]
        for a, r in zip(outs["triton"], outs["reference"]):
            err = ((a - r).norm() / r.norm()).item()
            assert err < 1e-5, err
        import vimamba.kernels.selective_scan as ss, triton
        print("ok", triton.__version__)
    """)
    env = dict(os.environ, TRITON_INTERPRET="1", VIMAMBA_BACKEND="triton")
    if importlib.util.find_spec("vimamba.ops") is None:
        pytest.skip("vimamba.ops not present yet")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env,
                          cwd=str(ROOT))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok" in done.stdout


def test_mamba_ssm_backend_rejects_local_window():
    from vimamba.kernels import mamba_ssm_backend as mb

    x = make_inputs(1, 1, 4, 4, 8, torch.float32, order="identity")
    with pytest.raises(NotImplementedError, match="local_window"):
        mb.selective_scan_fwd(*_args(x, True, 4))
    with pytest.raises(NotImplementedError, match="local_window"):
        mb.selective_scan_bwd(x["u"], *_args(x, True, 4))


def test_segments_hold_whole_windows():
    """Windows start at multiples of W scanned steps; a segment must start one (and the backward's at an even
    step): pick_segments rounds the segment length up to its unit (one segment is the whole sequence)."""
    mod = interp_kernels()
    for L in (197, 4097, 230400):
        for unit in (1, 2, 3, 4, 6, 8, 16):
            nseg, seg = mod.pick_segments(L, unit, 4)
            assert (nseg == 1 and seg == L) or (seg % unit == 0 and nseg * seg >= L and (nseg - 1) * seg < L)
    assert mod.pick_segments(4097, 16, 4)[0] > 1
    assert mod._window(0) == 0 and mod._window(1) == 0 and mod._window(8) == 8
    with pytest.raises(ValueError, match="local_window"):
        mod._window(-1)


# ----------------------------------------------------------------------------------------------
# GPU tests (real shapes, batch cut down so the fp64 reference fits and stays quick)
# ----------------------------------------------------------------------------------------------
# name, (b, K, d, N, L, W, order)
GPU_CASES = [
    ("vim_t", (4, 2, 384, 16, 197, 0, "bidirectional")),
    ("vim_s", (2, 2, 768, 16, 197, 0, "bidirectional")),
    ("vim_t_1024", (1, 2, 384, 16, 4097, 0, "bidirectional")),
    ("vmamba_stage1", (1, 4, 192, 16, 3136, 0, "random")),
    ("lbvim_t", (4, 1, 384, 16, 196, 8, "identity")),
    ("lbvim_t_rev", (2, 1, 384, 16, 196, 8, "reverse")),
    ("lbvim_1024", (1, 1, 384, 16, 4096, 16, "identity")),       # segments of whole windows
    ("window_odd", (2, 2, 384, 16, 197, 7, "random")),             # odd W, L not a multiple, K = 2
    ("window_1024_k2", (1, 2, 384, 16, 4097, 4, "bidirectional")),  # segments, the last window partial
    ("odd", (3, 2, 100, 16, 1, 0, "random")),
]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("name,case", GPU_CASES, ids=[c[0] for c in GPU_CASES])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_triton_gpu(name, case, dtype, layout):
    from vimamba.kernels import selective_scan as ss

    b, K, d, N, L, W, order = case
    x = make_inputs(b, K, d, N, L, dtype, device="cuda", order=order, layout=layout)
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    check_backend(ss, x, True, W, tol=tol)


@pytest.mark.gpu
@pytest.mark.parametrize("name,case", [c for c in GPU_CASES if c[0] in ("vim_t", "vim_t_1024", "odd", "lbvim_t")],
                         ids=["vim_t", "vim_t_1024", "lbvim_t", "odd"])
def test_triton_gpu_bf16_state_pairs(name, case):
    """bf16 B and C read two states per 32-bit word (even offsets, as Vim's x_proj slices usually are)."""
    from vimamba.kernels import selective_scan as ss

    b, K, d, N, L, W, order = case
    x = make_inputs(b, K, d, N, L, torch.bfloat16, device="cuda", order=order, layout="channels_last_even")
    assert ss._pairs_ok(x["B"]) and ss._pairs_ok(x["C"])
    check_backend(ss, x, True, W, tol=1e-2)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_triton_gpu_staged_bc_without_window(dtype, monkeypatch):
    """B and C read from their fp32 copy without a window (`_CFG["bc_fp32"]`, the sweep's option): Vim-T's shape
    and Vim-T at 1024 px (segments)."""
    from vimamba.kernels import selective_scan as ss

    monkeypatch.setitem(ss._CFG, "bc_fp32", True)
    for name in ("vim_t", "vim_t_1024"):
        b, K, d, N, L, W, order = dict(GPU_CASES)[name]
        x = make_inputs(b, K, d, N, L, dtype, device="cuda", order=order, layout="channels_last_even")
        check_backend(ss, x, True, W, tol=1e-5 if dtype == torch.float32 else 1e-2)


@pytest.mark.gpu
@pytest.mark.parametrize("name,case", [c for c in GPU_CASES if c[1][5] == 0][:3],
                         ids=[c[0] for c in GPU_CASES if c[1][5] == 0][:3])
def test_mamba_ssm_backend_gpu(name, case):
    from vimamba.kernels import mamba_ssm_backend as mb

    if not mb.available():
        pytest.skip("mamba_ssm is not importable")
    b, K, d, N, L, W, order = case
    x = make_inputs(b, K, d, N, L, torch.float32, device="cuda", order=order)
    check_backend(mb, x, True, 0, tol=1e-5)


@pytest.mark.parametrize("args", [("step_fwd", "--maxnreg", "80"), ("step_fwd", "--window", "8"),
                                  ("step_bwd", "--maxnreg", "168", "--window", "8")],
                         ids=["fwd", "fwd-window", "bwd-window"])
def test_kernel_sass_compiles_the_step_kernels_for_sm90(args):
    """tools/kernel_sass.py (the offline view of what the H100 runs) on the step kernels, with and without the
    local window: they compile for sm_90 without a GPU, and no loop waits on a barrier; the forward's loops hold no
    shuffle (a layout conversion every step; the backward's lane sums are its only shuffles)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "tools" / "kernel_sass.py"), *args],
                         capture_output=True, text=True, cwd=root, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    head, *loops = out.stdout.strip().splitlines()
    assert loops and all("per state update" in line for line in loops)
    if args[0] == "step_fwd" and "--maxnreg" in args:
        assert "80 registers" in head
    for line in loops:
        assert "BAR.SYNC" not in line
        if args[0] == "step_fwd":
            assert "SHFL" not in line
