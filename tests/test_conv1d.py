"""The causal depthwise conv before the scan (`vimamba.ops.causal_conv1d`): the reference against the conv2d
path MambaMixer used before, the Triton kernels against a float64 reference (CPU: Triton's interpreter at
tiny shapes; GPU, skipped without CUDA: Vim-T's shape), the op contract (autograd, opcheck, backends,
argument errors, FLOPs, fx) and MambaMixer before and after the switch to the op.

The Triton module is loaded afresh with TRITON_INTERPRET=1, so these tests work under a plain `pytest`
whatever was imported before. Outputs are poisoned (NaN) before each run so an element the kernel never
writes fails the check.
"""
import copy
from types import SimpleNamespace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import interpreted
from references import causal_depthwise_conv1d

from vimamba import ops
from vimamba.kernels import causal_conv1d_reference as ref
from vimamba.layers.mamba import MambaMixer
from vimamba.layers.norm import at_least_fp32
from vimamba.ops import causal_conv1d, causal_conv1d_flops, dispatch

ROOT = Path(__file__).resolve().parents[1]
KERNEL_FILE = ROOT / "kernels" / "causal_conv1d.py"
GRADS = ("dx", "dweight", "dbias")


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def interp_conv():
    """kernels/causal_conv1d.py loaded with TRITON_INTERPRET=1 (its @triton.jit kernels interpreted)."""
    return interpreted.load(KERNEL_FILE)


def make_inputs(B, L, E, K, k, dtype=torch.float32, bias=True, strided=False, device="cpu", seed=0):
    """x (B, L, E), weight (K, E, k), bias (K, E) or None; `strided`: x is the first half of a (B, L, 2E)
    tensor, as MambaMixer's in_proj split hands it over."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, L, 2 * E if strided else E, generator=g)[..., :E]
    weight = torch.randn(K, E, k, generator=g) * 0.5
    b = torch.randn(K, E, generator=g) * 0.3 if bias else None
    return [None if t is None else t.to(device=device, dtype=dtype) for t in (x, weight, b)]


def rel_err(a, b):
    a, b = a.double(), b.double()
    scale = b.norm().item()
    return (a - b).norm().item() / (scale if scale > 1e-12 else 1.0)


def old_conv(x, weight, bias, reverse):
    """What MambaMixer computed before the op: per direction an nn.Conv1d through causal_depthwise_conv1d on
    the (B, E, L) view, stacked over directions, then SiLU."""
    E, k = weight.shape[1:]
    outs = []
    for i, rev in enumerate(reverse):
        conv = torch.nn.Conv1d(E, E, k, groups=E, padding=k - 1, bias=bias is not None, dtype=x.dtype)
        with torch.no_grad():
            conv.weight.copy_(weight[i, :, None])
            if bias is not None:
                conv.bias.copy_(bias[i])
        outs.append(causal_depthwise_conv1d(x.transpose(1, 2), conv, rev).transpose(1, 2))
    return F.silu(torch.stack(outs, 1))


def check_backend(module, inputs, reverse, silu, tol, dy_seed=1):
    """Forward and every gradient of `module` against the float64 reference."""
    x, weight, bias = inputs
    interpreted.poison(module)
    u = module.causal_conv1d_fwd(x, weight, bias, reverse, silu)
    wide = [None if t is None else t.double() for t in inputs]
    u_ref = ref.causal_conv1d_fwd(*wide, reverse, silu)
    B, L, E = x.shape
    assert u.shape == (B, len(reverse), L, E) and u.dtype == x.dtype and u.transpose(0, 1).is_contiguous()
    assert not torch.isnan(u).any(), "NaN (unwritten?) in u"
    errs = {"u": rel_err(u, u_ref)}
    du = torch.randn(u.shape, generator=torch.Generator().manual_seed(dy_seed)).to(u)
    got = module.causal_conv1d_bwd(du, x, weight, bias, reverse, silu)
    want = ref.causal_conv1d_bwd(du.double(), *wide, reverse, silu)
    for name, g, w, t in zip(GRADS, got, want, inputs):
        if t is None:
            assert g is None, f"{name} should be None"
            continue
        assert g.shape == t.shape and g.dtype == t.dtype, f"{name}: {g.shape} {g.dtype} vs {t.shape} {t.dtype}"
        assert not torch.isnan(g).any(), f"NaN (unwritten?) in {name}"
        errs[name] = rel_err(g, w)
    bad = {n: e for n, e in errs.items() if not e < tol}
    assert not bad, f"relative errors over {tol}: {bad} (all: {errs})"


# ----------------------------------------------------------------------------------------------
# The reference against the conv2d path the mixer used
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("K,k,reverse,bias", [
    (1, 4, (False,), True), (1, 4, (True,), True), (1, 3, (True,), False),
    (2, 4, (False, True), True), (2, 3, (False, True), False), (2, 4, (True, False), False),
], ids=lambda v: str(v))
def test_reference_matches_old_conv2d_path(K, k, reverse, bias):
    x, weight, b = make_inputs(2, 13, 6, K, k, torch.float64, bias=bias)
    u = ref.causal_conv1d_fwd(x, weight, b, reverse, True)
    torch.testing.assert_close(u, old_conv(x, weight, b, reverse), rtol=1e-12, atol=1e-12)


def test_reference_without_silu_and_by_hand():
    # L = 3, k = 2, one channel: causal y[l] = w0 x[l-1] + w1 x[l] + c; reversed y[l] = w1 x[l] + w0 x[l+1] + c
    x = torch.tensor([[[1.0], [2.0], [4.0]]], dtype=torch.float64)
    weight = torch.tensor([[[10.0, 1.0]], [[10.0, 1.0]]], dtype=torch.float64)
    bias = torch.tensor([[0.5], [0.5]], dtype=torch.float64)
    u = ref.causal_conv1d_fwd(x, weight, bias, (False, True), False)
    assert u[0, :, :, 0].tolist() == [[1.5, 12.5, 24.5], [21.5, 42.5, 4.5]]


# ----------------------------------------------------------------------------------------------
# Triton kernels under the interpreter (CPU, tiny shapes; the interpreter's blocks are 8 rows x 16 channels)
# ----------------------------------------------------------------------------------------------
# (B, L, E, K, k, reverse, silu, bias, strided x)
CPU_CASES = [
    (2, 21, 20, 2, 4, (False, True), True, True, True),     # partial row and channel blocks, in_proj view
    (1, 1, 5, 1, 4, (True,), True, False, False),           # L = 1
    (1, 10, 16, 3, 3, (True, False, True), False, True, False),  # K = 3, no SiLU
    (2, 9, 7, 2, 1, (False, True), True, True, False),      # k = 1
]


@pytest.mark.parametrize("case", CPU_CASES, ids=lambda c: "B{}L{}E{}K{}k{}".format(*c[:5]))
def test_triton_interpreter_fp32(case):
    B, L, E, K, k, reverse, silu, bias, strided = case
    check_backend(interp_conv(), make_inputs(B, L, E, K, k, bias=bias, strided=strided), reverse, silu, 1e-5)


def test_triton_interpreter_bf16_row_stretches():
    """bf16, and a backward whose programs walk two row blocks each, the second stretch partial."""
    mod = interp_conv()
    assert mod.pick_config(1, 21, 20, 2, True, "cpu") == (8, 16, 2, 1)
    check_backend(mod, make_inputs(1, 21, 20, 2, 4, torch.bfloat16, strided=True), (False, True), True, 1e-2)


@pytest.mark.parametrize("programs,g_fp32", [(1, True), (8, True), (1000, True), (8, False)],
                         ids=["one-stretch", "uneven-stretches", "one-block-each", "g-in-input-dtype"])
def test_triton_interpreter_backward_stretches(monkeypatch, programs, g_fp32):
    """The g/dweight/dbias kernel's row stretches: one program over all of L (partial last block), stretches of
    several blocks with a short last one, one block each (L = 37: 5 blocks of 8); and g kept in bf16."""
    mod = interp_conv()
    monkeypatch.setitem(mod._CFG_INTERPRETER, "programs_bwd", programs)
    monkeypatch.setitem(mod._CFG_INTERPRETER, "g_fp32", g_fp32)
    dtype = torch.float32 if g_fp32 else torch.bfloat16
    per_program = {1: 5, 8: 3, 1000: 1}[programs]  # row blocks of 8 per program
    assert mod.pick_config(2, 37, 20, 4, True, "cpu") == (8, 16, per_program, 1)
    check_backend(mod, make_inputs(2, 37, 20, 2, 4, dtype, strided=True), (False, True), True,
                  1e-5 if g_fp32 else 1e-2)


def test_triton_interpreter_short_sequence_long_kernel():
    """L shorter than the halo (L = 2, k = 8: most taps fall outside 0..L-1 in both directions), K = 3."""
    check_backend(interp_conv(), make_inputs(2, 2, 17, 3, 8), (True, False, True), True, 1e-5)


def test_triton_interpreter_mixed_parameter_dtype():
    """bf16 activations with fp32 parameters (autocast leaves the op's inputs as they come)."""
    x, weight, bias = make_inputs(1, 9, 16, 2, 4, torch.bfloat16)
    check_backend(interp_conv(), (x, weight.float(), bias.float()), (False, True), True, 1e-2)


@pytest.mark.parametrize("dtype,K,rev,bias,silu", [("bf16", 2, 2, True, True), ("fp32", 1, 0, False, False)],
                         ids=["bf16-K2", "fp32-K1"])
def test_kernels_compile_for_gpu(dtype, K, rev, bias, silu):
    """The interpreter runs Python, so it accepts code the compiler rejects (a reassigned constexpr, a
    tl.standard call in the wrong place): compile both kernels for sm_90 on the CPU as well."""
    import triton

    # a plain import (not the interpreted copy): @triton.jit functions the compiler can read
    from vimamba.kernels import causal_conv1d as kernels
    if not hasattr(kernels._fwd_kernel, "arg_names"):
        pytest.skip("the kernel module was imported under TRITON_INTERPRET=1")
    ints = dict.fromkeys(("L", "E", "s_xb", "s_xl", "s_ub", "s_uk", "s_gb", "s_gk", "s_gl", "rows_per_program"), "i32")
    ptrs = dict(x_ptr=f"*{dtype}", w_ptr="*fp32", b_ptr="*fp32", u_ptr=f"*{dtype}", du_ptr=f"*{dtype}",
                dx_ptr=f"*{dtype}", dw_ptr="*fp32", db_ptr="*fp32")
    flags = dict(K=K, KW=4, REV=rev, HAS_BIAS=bias, SILU=silu)
    BL, BE, _, nw = kernels.pick_config(8, 197, 384, 2, False, "cuda")
    try:
        interpreted.compile_for_sm90(kernels._fwd_kernel, {**ptrs, **ints}, dict(flags, BL=BL, BE=BE), nw)
        BL, BE, _, nw = kernels.pick_config(8, 197, 384, 2, True, "cuda")
        interpreted.compile_for_sm90(kernels._bwd_grad_kernel, {**ptrs, **ints, "g_ptr": "*fp32"},
                          dict(flags, BL=BL, BE=BE), nw)
        BL, BE, nw = kernels._dx_config(197, 384, "cuda")
        interpreted.compile_for_sm90(kernels._bwd_dx_kernel, {**ptrs, **ints, "g_ptr": "*fp32"},
                          dict(K=K, KW=4, REV=rev, BL=BL, BE=BE), nw)
    except triton.CompilationError:
        raise
    except Exception as e:  # no CUDA backend or ptxas in this Triton build: nothing to check here
        pytest.skip(f"cannot compile for sm_90 here: {type(e).__name__}: {e}")


@pytest.fixture
def triton_op(monkeypatch):
    """vimamba.ops with its triton conv backend the interpreted module (CPU tensors allowed)."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setitem(dispatch._loaded, dispatch.BACKENDS["causal_conv1d"]["triton"], interp_conv())


def test_op_triton_backend_matches_reference(triton_op):
    x, weight, bias = make_inputs(2, 11, 12, 2, 4, strided=True)
    outs = {}
    for backend in ("triton", "reference"):
        leaves = [t.detach().requires_grad_(True) for t in (x, weight, bias)]
        u = causal_conv1d(*leaves, reverse=(False, True), backend=backend)
        (u * torch.linspace(-1, 1, u.numel()).view(u.shape)).sum().backward()
        outs[backend] = [u.detach()] + [t.grad for t in leaves]
    for name, a, b in zip(("u",) + GRADS, outs["triton"], outs["reference"]):
        assert rel_err(a, b) < 1e-5, name


def test_env_backend_selects_triton_under_interpreter(triton_op, monkeypatch):
    monkeypatch.setenv("VIMAMBA_BACKEND", "triton")
    assert ops.resolve_backend(None, torch.device("cpu"), "causal_conv1d") == "triton"
    x, weight, bias = make_inputs(1, 5, 4, 1, 4)
    torch.testing.assert_close(causal_conv1d(x, weight, bias),
                               causal_conv1d(x, weight, bias, backend="reference"))


# ----------------------------------------------------------------------------------------------
# The op
# ----------------------------------------------------------------------------------------------
def test_gradcheck_reference():
    x, weight, bias = (t.requires_grad_(True) for t in make_inputs(2, 7, 3, 2, 3, torch.float64, strided=True))
    assert torch.autograd.gradcheck(lambda *a: causal_conv1d(*a, reverse=(True, False), backend="reference"),
                                    (x, weight, bias))
    x, weight, _ = make_inputs(1, 5, 2, 1, 4, torch.float64, bias=False)
    x, weight = x.requires_grad_(True), weight.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda *a: causal_conv1d(*a, silu=False, backend="reference"), (x, weight))


def test_layouts_and_dtypes():
    x, weight, bias = make_inputs(2, 6, 4, 2, 4, strided=True)
    x.requires_grad_(True)
    weight, bias = weight.double().requires_grad_(True), bias.double().requires_grad_(True)
    u = causal_conv1d(x, weight, bias, reverse=(False, True))
    assert u.shape == (2, 2, 6, 4) and u.dtype == torch.float32 and u.transpose(0, 1).is_contiguous()   # direction-major
    assert u.transpose(2, 3).stride(-2) == 1       # the channels-last view the scan reads
    u.sum().backward()
    assert x.grad.shape == x.shape and weight.grad.dtype == torch.float64 and bias.grad.dtype == torch.float64
    # channels not contiguous: the op copies x, with the same result
    xt = torch.randn(2, 4, 6).transpose(1, 2)
    torch.testing.assert_close(causal_conv1d(xt, weight, bias, reverse=(False, True)),
                               causal_conv1d(xt.contiguous(), weight, bias, reverse=(False, True)))


def test_opcheck():
    x, weight, bias = make_inputs(1, 6, 3, 2, 4)
    args = (x.requires_grad_(True), weight.requires_grad_(True), bias, [0, 1], True, "reference")
    torch.library.opcheck(torch.ops.vimamba.causal_conv1d.default, args)
    du = torch.randn(1, 2, 6, 3)
    torch.library.opcheck(torch.ops.vimamba.causal_conv1d_bwd.default,
                          (du, x.detach(), weight.detach(), None, [1, 0], False, "reference"))


def test_meta_device_and_compile():
    x, weight, bias = (t.to("meta") for t in make_inputs(2, 7, 5, 2, 4))
    u = causal_conv1d(x, weight, bias, reverse=(False, True))
    assert u.device.type == "meta" and u.shape == (2, 2, 7, 5)
    x, weight, bias = make_inputs(1, 6, 4, 2, 4)
    compiled = torch.compile(lambda *a: causal_conv1d(*a, reverse=(False, True)).sum(1), fullgraph=True,
                             backend="aot_eager")
    leaves = [t.requires_grad_(True) for t in (x, weight, bias)]
    out = compiled(*leaves)
    torch.testing.assert_close(out, causal_conv1d(x, weight, bias, reverse=(False, True)).sum(1))
    out.sum().backward()
    assert all(t.grad is not None for t in leaves)


def test_backend_resolution(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.delenv("VIMAMBA_BACKEND", raising=False)
    cpu = torch.device("cpu")
    assert ops.resolve_backend(None, cpu, "causal_conv1d") == "reference"
    # mamba_ssm brings only the scan: the conv takes what "auto" would
    assert ops.resolve_backend("mamba_ssm", cpu, "causal_conv1d") == "reference"
    monkeypatch.setenv("VIMAMBA_BACKEND", "mamba_ssm")
    assert ops.resolve_backend(None, cpu, "causal_conv1d") == "reference"
    x, weight, bias = make_inputs(1, 5, 4, 1, 4)
    causal_conv1d(x, weight, bias)
    with pytest.raises(ValueError, match=r"'triton' needs CUDA tensors.*TRITON_INTERPRET=1"):
        causal_conv1d(x, weight, bias, backend="triton")
    monkeypatch.setenv("VIMAMBA_BACKEND", "fast")
    with pytest.raises(ValueError, match=r"VIMAMBA_BACKEND: unknown causal_conv1d backend 'fast'"):
        causal_conv1d(x, weight, bias)


_x, _w, _b = make_inputs(2, 5, 4, 2, 4)


@pytest.mark.parametrize("kwargs,error,pattern", [
    (dict(weight=_w[:, :3]), ValueError, r"weight: expected shape \(K, E, k\).*E = 4"),
    (dict(weight=torch.randn(2, 4, 9)), ValueError, r"weight: .*k from 1 to 8"),
    (dict(weight=_w[0]), ValueError, r"weight: expected shape \(K, E, k\)"),
    (dict(weight=_w.long()), TypeError, r"weight: expected a floating tensor"),
    (dict(bias=_b[0]), ValueError, r"bias: expected shape \(K, E\) = \(2, 4\)"),
    (dict(reverse=(False,)), ValueError, r"reverse: expected K = 2 bools"),
    (dict(reverse=False), TypeError, r"reverse: expected a tuple of K bools"),
    (dict(x=_x.long()), TypeError, r"x: expected float16, bfloat16, float32 or float64"),
    (dict(x=_x[0]), ValueError, r"x: expected 3 dims \(B, L, E\)"),
    (dict(silu=1), TypeError, r"silu: expected a bool"),
    (dict(backend="cuda"), ValueError, r"backend: unknown causal_conv1d backend 'cuda'"),
], ids=["weight-channels", "weight-kernel", "weight-2d", "weight-dtype", "bias-shape", "reverse-length",
        "reverse-type", "x-dtype", "x-dims", "silu", "backend"])
def test_bad_arguments(kwargs, error, pattern):
    args = dict(x=_x, weight=_w, bias=_b, reverse=(False, True))
    args.update(kwargs)
    with pytest.raises(error, match=pattern):
        causal_conv1d(**args)


def test_flops():
    assert causal_conv1d_flops(2, 2, 197, 384, 4) == 2 * 2 * 197 * 384 * 4
    from torch.utils.flop_counter import FlopCounterMode
    x, weight, bias = make_inputs(2, 7, 5, 2, 3)
    with FlopCounterMode(display=False) as counter:
        causal_conv1d(x, weight, bias, reverse=(False, True))
    assert counter.get_total_flops() == causal_conv1d_flops(2, 2, 7, 5, 3)


class _ConvModule(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(2, 4, 4))

    def forward(self, x):
        return causal_conv1d(x, self.weight, None, reverse=(False, True))


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:FutureWarning")
def test_jit_trace_node_and_fvcore_handle():
    x = torch.randn(3, 6, 4)
    with torch.no_grad():
        graph = torch.jit.trace(_ConvModule(), (x,), check_trace=False).inlined_graph
    nodes = [n for n in graph.nodes() if n.kind() == "vimamba::causal_conv1d"]
    assert len(nodes) == 1
    assert ops.causal_conv1d_flop_jit(list(nodes[0].inputs()), list(nodes[0].outputs())) == 3 * 2 * 6 * 4 * 4


def test_fx_symbolic_trace_single_leaf():
    module = _ConvModule()
    gm = torch.fx.symbolic_trace(module)
    assert [n.target for n in gm.graph.nodes if n.op == "call_function"] == [causal_conv1d]
    x = torch.randn(2, 5, 4)
    torch.testing.assert_close(gm(x), module(x))


# ----------------------------------------------------------------------------------------------
# MambaMixer before and after
# ----------------------------------------------------------------------------------------------
def old_scan_inputs(self, x):
    """MambaMixer.scan_inputs as it was before the op: a conv2d, SiLU and projections per direction, stacked."""
    x, z = self.in_proj(x).split(self.d_inner, dim=-1)
    x = x.contiguous().transpose(1, 2)
    num_dir, _, k = self.conv1d.weight.shape
    us = []
    for d in range(num_dir):
        conv = SimpleNamespace(kernel_size=(k,), weight=self.conv1d.weight[d][:, None], groups=self.d_inner,
                               bias=None if self.conv1d.bias is None else self.conv1d.bias[d])
        us.append(causal_depthwise_conv1d(x, conv, self.reverse or d == 1).transpose(1, 2))
    u = F.silu(torch.stack(us, 1))
    x_dbl = torch.stack([u[:, d] @ self.x_proj.weight[d].T for d in range(num_dir)], 1)
    dt, B, C = x_dbl.split([self.dt_rank, self.d_state, self.d_state], dim=-1)
    delta = torch.stack([dt[:, d] @ self.dt_proj.weight[d].T for d in range(num_dir)], 1)
    A = -torch.exp(at_least_fp32(self.A_log))
    D = at_least_fp32(self.D)
    delta_bias = at_least_fp32(self.dt_proj.bias)
    return u.transpose(2, 3), delta.transpose(2, 3), A, B.transpose(2, 3), C.transpose(2, 3), D, delta_bias, z


@pytest.mark.parametrize("kwargs", [dict(bidirectional=True), dict(bidirectional=False),
                                    dict(bidirectional=False, reverse=True),
                                    dict(bidirectional=False, reverse=True, local_window=4, conv_bias=False)],
                         ids=["bidirectional", "forward", "reverse", "reverse-window-nobias"])
def test_mamba_mixer_same_as_before(kwargs, one_thread):
    torch.manual_seed(0)
    new = MambaMixer(16, d_state=4, **kwargs).double()
    old = copy.deepcopy(new)
    old.scan_inputs = old_scan_inputs.__get__(old)
    assert list(new.state_dict()) == list(old.state_dict())
    assert new.conv1d.weight.shape == (len(new.suffixes), 32, 4)
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    outs = []
    for mixer in (new, old):
        xi = x.clone().requires_grad_(True)
        y = mixer(xi)
        (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view(y.shape)).sum().backward()
        outs.append((y, xi.grad, {n: p.grad for n, p in mixer.named_parameters()}))
    (y, dx, grads), (y_old, dx_old, grads_old) = outs
    torch.testing.assert_close(y, y_old, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(dx, dx_old, rtol=1e-10, atol=1e-12)
    assert grads.keys() == grads_old.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], grads_old[name], rtol=1e-10, atol=1e-12, msg=lambda m: f"{name}: {m}")


# ----------------------------------------------------------------------------------------------
# GPU (Vim-T's shape, batch cut down so the float64 reference stays quick)
# ----------------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_triton_gpu_vim_t(dtype, bias):
    from vimamba.kernels import causal_conv1d as kernels

    inputs = make_inputs(8, 197, 384, 2, 4, dtype, bias=bias, strided=True, device="cuda")
    check_backend(kernels, inputs, (False, True), True, 1e-5 if dtype == torch.float32 else 1e-2)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_op_triton_matches_reference_gpu(dtype):
    x, weight, bias = make_inputs(8, 197, 384, 2, 4, dtype, strided=True, device="cuda")
    outs = {}
    for backend in ("triton", "reference"):
        leaves = [t.detach().requires_grad_(True) for t in (x, weight, bias)]
        u = causal_conv1d(*leaves, reverse=(False, True), backend=backend)
        u.float().square().sum().backward()
        outs[backend] = [u.detach()] + [t.grad for t in leaves]
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    for name, a, b in zip(("u",) + GRADS, outs["triton"], outs["reference"]):
        assert rel_err(a, b) < tol, (name, rel_err(a, b))
