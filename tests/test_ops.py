"""vimamba.ops.selective_scan (reference backend) against an independent float64 loop, plus the custom-op
contract: meta/fake, opcheck, torch.compile, torch.fx, FLOP formula, argument errors."""
import math
import os
import re

import pytest
import torch
import torch.nn.functional as F

from vimamba import ops
from vimamba.ops import dispatch
from vimamba.ops import selective_scan, selective_scan_flops
from vimamba.scans.base import ScanOrder


# ----------------------------------------------------------------------------------------------
# The oracle: a plain per-step loop in float64, written from the recurrence, sharing nothing with
# the implementation. Inputs K-explicit (4-D); index (K, L) or None.
# ----------------------------------------------------------------------------------------------
def scan_loop(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=True, index=None,
              local_window=0):
    u, delta, A, B, C = (t.double() for t in (u, delta, A, B, C))
    batch, K, d, L = u.shape
    N = A.shape[-1]
    dt = delta + (0 if delta_bias is None else delta_bias.double()[None, :, :, None])
    if delta_softplus:
        dt = torch.log1p(torch.exp(dt))
    y_dirs, last = [], []
    for k in range(K):
        steps = list(range(L)) if index is None else [int(i) for i in index[k]]
        h = u.new_zeros(batch, d, N)
        decays, inputs, states = [], [], []
        for j in steps:  # j: the token visited at this step
            a = torch.exp(dt[:, k, :, j, None] * A[k])                         # (batch, d, N)
            b = dt[:, k, :, j, None] * B[:, k, None, :, j] * u[:, k, :, j, None]
            h = a * h + b
            decays.append(a)
            inputs.append(b)
            states.append(h)
        last.append(h)
        if local_window > 0:
            full = list(states)
            for start in range(0, L, local_window):
                r = u.new_zeros(batch, d, N)
                for t in reversed(range(start, min(start + local_window, L))):
                    r = decays[t] * r + inputs[t]
                    full[t] = states[t] + r - inputs[t]
            states = full
        y_tok = [None] * L
        for t, j in enumerate(steps):
            y_tok[j] = (states[t] * C[:, k, None, :, j]).sum(-1)             # (batch, d)
        y_dirs.append(torch.stack(y_tok, -1))
    y = torch.stack(y_dirs, 1)
    if D is not None:
        y = y + D.double()[None, :, :, None] * u
    if z is not None:
        y = y * z.double() * torch.sigmoid(z.double())
    return y, torch.stack(last, 1)


def make_inputs(batch=2, K=2, d=3, L=11, N=4, dtype=torch.float64, D=True, z=True, delta_bias=True,
                requires_grad=False):
    t = dict(
        u=torch.randn(batch, K, d, L),
        delta=torch.randn(batch, K, d, L) * 0.5,
        A=-torch.exp(torch.randn(K, d, N) * 0.5),
        B=torch.randn(batch, K, N, L),
        C=torch.randn(batch, K, N, L),
        D=torch.randn(K, d) if D else None,
        z=torch.randn(batch, K, d, L) if z else None,
        delta_bias=torch.randn(K, d) * 0.5 if delta_bias else None,
    )
    out = {}
    for name, v in t.items():
        if v is not None:
            v = v.to(dtype if name in ("u", "delta", "B", "C", "z") else
                     (torch.float64 if dtype == torch.float64 else torch.float32))
            v.requires_grad_(requires_grad)
        out[name] = v
    return out


def random_index(K, L):
    return torch.stack([torch.randperm(L) for _ in range(K)])


def check_against_loop(inputs, order=None, index=None, local_window=0, delta_softplus=True,
                       atol=1e-9, rtol=1e-7):
    names = [n for n, v in inputs.items() if v is not None]
    leaves = {n: (v.detach().requires_grad_(True) if v is not None else None) for n, v in inputs.items()}
    y, last = selective_scan(**leaves, delta_softplus=delta_softplus, order=order,
                             local_window=local_window, return_last_state=True, backend="reference")
    ref_leaves = {n: (v.detach().double().requires_grad_(True) if v is not None else None)
                  for n, v in inputs.items()}
    y_ref, last_ref = scan_loop(**ref_leaves, delta_softplus=delta_softplus, index=index,
                                local_window=local_window)
    assert y.dtype == inputs["u"].dtype and y.shape == inputs["u"].shape
    assert last.dtype == torch.float32 and last.shape == last_ref.shape
    torch.testing.assert_close(y.double(), y_ref, atol=atol, rtol=rtol)
    torch.testing.assert_close(last.double(), last_ref, atol=max(atol, 1e-5), rtol=max(rtol, 1e-5))
    dy = torch.randn_like(y_ref)
    grads = torch.autograd.grad(y, [leaves[n] for n in names], dy.to(y.dtype))
    grads_ref = torch.autograd.grad(y_ref, [ref_leaves[n] for n in names], dy)
    for n, g, g_ref in zip(names, grads, grads_ref):
        assert g.dtype == inputs[n].dtype and g.shape == inputs[n].shape, n
        torch.testing.assert_close(g.double(), g_ref, atol=atol * 10, rtol=rtol * 10, msg=lambda m: f"d{n}: {m}")


# ----------------------------------------------------------------------------------------------
# Forward and gradients against the loop
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("K", [1, 2, 4])
@pytest.mark.parametrize("order_kind", ["none", "raw_perm", "reversal", "scan_order"])
@pytest.mark.parametrize("local_window", [0, 4])
def test_matches_loop_orders(K, order_kind, local_window):
    L = 13  # W = 4 does not divide it: a partial last window
    inputs = make_inputs(K=K, L=L)
    index = None
    order = None
    if order_kind == "raw_perm":
        order = index = random_index(K, L)
    elif order_kind == "reversal":
        order = index = torch.arange(L - 1, -1, -1).expand(K, L).contiguous()
    elif order_kind == "scan_order":
        index = random_index(K, L)
        order = ScanOrder.from_index(index)
    check_against_loop(inputs, order=order, index=index, local_window=local_window)


@pytest.mark.parametrize("D,z,delta_bias,softplus", [
    (False, False, False, False),
    (True, False, False, True),
    (False, True, True, True),
    (True, True, True, False),
])
@pytest.mark.parametrize("local_window", [0, 3])
def test_matches_loop_optional_inputs(D, z, delta_bias, softplus, local_window):
    inputs = make_inputs(K=2, L=10, D=D, z=z, delta_bias=delta_bias)
    if not softplus:
        inputs["delta"] = inputs["delta"].abs() * 0.5  # a positive step without softplus
    index = random_index(2, 10)
    check_against_loop(inputs, order=index, index=index, local_window=local_window, delta_softplus=softplus)


@pytest.mark.parametrize("local_window", [1, 2, 5, 7, 16, 100])
def test_local_window_sizes_match_loop(local_window):
    inputs = make_inputs(K=2, L=16, N=3)
    index = random_index(2, 16)
    check_against_loop(inputs, order=ScanOrder.from_index(index), index=index, local_window=local_window)


def test_long_sequence_matches_loop():
    # a long sequence, K=1 in the 3-D layout
    L = 150
    inputs = make_inputs(batch=1, K=1, d=2, L=L, N=3)
    y = selective_scan(inputs["u"][:, 0], inputs["delta"][:, 0], inputs["A"][0], inputs["B"][:, 0],
                       inputs["C"][:, 0], inputs["D"][0], inputs["z"][:, 0], inputs["delta_bias"][0],
                       local_window=8, backend="reference")
    y_ref, _ = scan_loop(**inputs, local_window=8)
    assert y.shape == (1, 2, L)
    torch.testing.assert_close(y, y_ref[:, 0])


def test_three_dim_layout_equals_k1():
    x = make_inputs(K=1, L=9)
    y4 = selective_scan(**x, backend="reference")
    y3, last3 = selective_scan(x["u"][:, 0], x["delta"][:, 0], x["A"][0], x["B"][:, 0], x["C"][:, 0],
                               x["D"][0], x["z"][:, 0], x["delta_bias"][0], order=torch.arange(9).flip(0),
                               return_last_state=True, backend="reference")
    y4r = selective_scan(**x, order=torch.arange(9).flip(0)[None], backend="reference")
    assert y3.shape == (2, 3, 9) and last3.shape == (2, 1, 3, 4)
    torch.testing.assert_close(y3, y4r[:, 0])
    assert not torch.allclose(y4, y4r)


@pytest.mark.parametrize("steps", [1, 5, 8, 13, 70])
def test_reference_scan_loop_both_directions(steps):
    from vimamba.kernels.selective_scan_reference import _scan_time_major
    a = torch.rand(steps, 3, 4, dtype=torch.float64)
    b = torch.randn(steps, 3, 4, dtype=torch.float64)
    h, forward = torch.zeros(3, 4, dtype=torch.float64), []
    for t in range(steps):
        h = a[t] * h + b[t]
        forward.append(h)
    r, backward = torch.zeros(3, 4, dtype=torch.float64), [None] * steps
    for t in reversed(range(steps)):
        r = a[t] * r + b[t]
        backward[t] = r
    torch.testing.assert_close(_scan_time_major(a, b), torch.stack(forward, 0))
    torch.testing.assert_close(_scan_time_major(a, b, reverse=True), torch.stack(backward, 0))


@pytest.mark.parametrize("local_window", [0, 3, 5, 40])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_reference_inference_path_against_loop(local_window, dtype):
    """The fp32 inference path (no autograd: blocks of steps, exp2, in-place scan) against the float64 oracle,
    over several blocks, windows that cross block ends and a window longer than the sequence."""
    from vimamba.kernels.selective_scan_reference import _BLOCK
    torch.manual_seed(0)
    L = 2 * _BLOCK + 5
    x = make_inputs(batch=2, K=2, d=3, L=L, N=4, dtype=dtype)
    index = random_index(2, L)
    with torch.no_grad():
        y, last = selective_scan(**x, order=index, local_window=local_window, return_last_state=True,
                                 backend="reference")
    y_ref, last_ref = scan_loop(**{n: (None if v is None else v.double()) for n, v in x.items()}, index=index,
                                local_window=local_window)
    assert y.dtype == dtype and last.dtype == torch.float32 and last.is_contiguous()
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(y.double(), y_ref, atol=tol, rtol=tol)
    torch.testing.assert_close(last.double(), last_ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("local_window,use_order", [(0, False), (2, True), (3, False)])
def test_gradcheck(local_window, use_order):
    x = make_inputs(batch=1, K=2, d=2, L=5, N=2, requires_grad=True)
    order = ScanOrder.from_index(random_index(2, 5)) if use_order else None
    names = list(x)

    def f(*tensors):
        return selective_scan(**dict(zip(names, tensors)), order=order, local_window=local_window,
                              backend="reference")

    assert torch.autograd.gradcheck(f, tuple(x.values()), eps=1e-6, atol=1e-5)


def test_gradcheck_three_dim_layout_without_softplus():
    x = make_inputs(batch=2, K=1, d=2, L=6, N=2, z=False)
    x = {n: v[:, 0] if n in ("u", "delta", "B", "C") else v[0] for n, v in x.items() if v is not None}
    x["delta"] = x["delta"].abs() + 0.1
    for v in x.values():
        v.requires_grad_(True)
    names = list(x)

    def f(*tensors):
        return selective_scan(**dict(zip(names, tensors)), delta_softplus=False, order=torch.arange(6).flip(0),
                              local_window=4, backend="reference")

    assert torch.autograd.gradcheck(f, tuple(x.values()), eps=1e-6, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# LBMamba identities, checked through the op itself
# ----------------------------------------------------------------------------------------------
def test_local_window_one_is_plain_scan():
    x = make_inputs(K=2, L=12)
    order = random_index(2, 12)
    y0, s0 = selective_scan(**x, order=order, return_last_state=True)
    y1, s1 = selective_scan(**x, order=order, local_window=1, return_last_state=True)
    torch.testing.assert_close(y1, y0)
    torch.testing.assert_close(s1, s0)


@pytest.mark.parametrize("W", [12, 13, 50])
def test_window_covering_sequence_is_forward_plus_reverse(W):
    L = 12
    x = make_inputs(K=2, L=L, D=False, z=False)
    index = random_index(2, L)
    y_lb = selective_scan(**x, order=index, local_window=W)
    y_fwd = selective_scan(**x, order=index)
    y_rev = selective_scan(**x, order=index.flip(1))  # the full reverse recurrence
    dt = F.softplus(x["delta"] + x["delta_bias"][None, :, :, None])
    # the current token's input term, counted once: sum_n C_t[n] * delta_t * B_t[n] * u_t
    y_inp = dt * x["u"] * (x["B"] * x["C"]).sum(2, keepdim=True)
    torch.testing.assert_close(y_lb, y_fwd + y_rev - y_inp)


def test_scan_order_local_window_is_used():
    x = make_inputs(K=2, L=10)
    index = random_index(2, 10)
    y_a = selective_scan(**x, order=ScanOrder.from_index(index, local_window=3))
    y_b = selective_scan(**x, order=index, local_window=3)
    y_c = selective_scan(**x, order=ScanOrder.from_index(index, local_window=3), local_window=3)
    torch.testing.assert_close(y_a, y_b)
    torch.testing.assert_close(y_c, y_b)


# ----------------------------------------------------------------------------------------------
# dtypes, last state, devices
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("local_window", [0, 4])
def test_low_precision_inputs(dtype, local_window):
    x = make_inputs(K=2, L=24, d=8, N=8, dtype=dtype)
    index = random_index(2, 24)
    y, last = selective_scan(**x, order=index, local_window=local_window, return_last_state=True)
    assert y.dtype == dtype and last.dtype == torch.float32
    y_ref, last_ref = scan_loop(**x, index=index, local_window=local_window)
    # fp32 math on the rounded inputs: the error is the rounding of y alone
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(y.double(), y_ref, atol=4 * eps * y_ref.abs().max().item(), rtol=2 * eps)
    torch.testing.assert_close(last.double(), last_ref, atol=1e-4, rtol=1e-4)
    leaves = {n: v.detach().requires_grad_(True) for n, v in x.items()}
    selective_scan(**leaves, order=index, local_window=local_window).float().sum().backward()
    for n, v in leaves.items():
        assert v.grad.dtype == v.dtype and v.grad.shape == v.shape, n
        assert torch.isfinite(v.grad).all(), n


def test_last_state_is_forward_state_in_scan_order():
    x = make_inputs(K=4, L=10)
    index = random_index(4, 10)
    _, last = selective_scan(**x, order=index, local_window=3, return_last_state=True)
    _, last_ref = scan_loop(**x, index=index)
    assert last.shape == (2, 4, 3, 4)
    torch.testing.assert_close(last.double(), last_ref, atol=1e-6, rtol=1e-6)


def test_last_state_is_not_differentiable():
    x = make_inputs(K=2, L=6, requires_grad=True)
    y, last = selective_scan(**x, return_last_state=True)
    assert y.requires_grad and not last.requires_grad


def test_meta_device():
    x = {n: (v.to("meta") if v is not None else None) for n, v in make_inputs(K=2, L=7).items()}
    y, last = selective_scan(**x, order=random_index(2, 7).to("meta"), local_window=2, return_last_state=True)
    assert y.device.type == "meta" and y.shape == (2, 2, 3, 7) and y.dtype == torch.float64
    assert last.shape == (2, 2, 3, 4) and last.dtype == torch.float32
    y3 = selective_scan(x["u"][:, 0], x["delta"][:, 0], x["A"][0], x["B"][:, 0], x["C"][:, 0])
    assert y3.shape == (2, 3, 7)


# ----------------------------------------------------------------------------------------------
# Custom-op contract
# ----------------------------------------------------------------------------------------------
def _op_args(requires_grad, optional=True, index=True, W=2):
    x = make_inputs(batch=1, K=2, d=2, L=6, N=3, dtype=torch.float32, D=optional, z=optional,
                    delta_bias=optional, requires_grad=requires_grad)
    return (x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"],
            random_index(2, 6) if index else None, True, W, "reference")


@pytest.mark.parametrize("requires_grad,optional,index,W", [
    (False, True, True, 2),
    (True, True, True, 2),
    (True, False, False, 0),
])
def test_opcheck(requires_grad, optional, index, W):
    torch.library.opcheck(torch.ops.vimamba.selective_scan.default,
                          _op_args(requires_grad, optional, index, W))


def test_opcheck_backward_op():
    args = _op_args(False)
    dy = torch.randn_like(args[0])
    torch.library.opcheck(torch.ops.vimamba.selective_scan_bwd.default, (dy,) + args)


def _channels_last(t):
    """The same values with a token's channels (or states) contiguous: the layout the models pass."""
    return t.transpose(-1, -2).contiguous().transpose(-1, -2).requires_grad_(t.requires_grad)


@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck_channels_last(requires_grad):
    """Outputs and gradients take their input's layout, in the real and the fake implementations alike
    (opcheck compares their strides)."""
    args = list(_op_args(requires_grad))
    for i in (0, 1, 3, 4, 6):  # u, delta, B, C, z
        args[i] = _channels_last(args[i].detach()).requires_grad_(requires_grad)
    torch.library.opcheck(torch.ops.vimamba.selective_scan.default, tuple(args))
    y, _ = torch.ops.vimamba.selective_scan(*args)
    assert y.stride(-2) == 1
    dy = _channels_last(torch.randn_like(y))
    grads = torch.ops.vimamba.selective_scan_bwd(dy, *args)
    for i, g in zip((0, 1, 3, 4, 6), (grads[0], grads[1], grads[3], grads[4], grads[6])):
        assert g.stride() == args[i].stride()
    # the backward op has no autograd formula of its own (no double backward): checked on detached inputs
    plain = tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args)
    torch.library.opcheck(torch.ops.vimamba.selective_scan_bwd.default, (dy,) + plain)


def test_torch_compile_fullgraph():
    x = make_inputs(batch=1, K=2, d=4, L=8, N=2, dtype=torch.float32)
    order = ScanOrder.from_index(random_index(2, 8), local_window=3)

    def f(u, delta, A, B, C, D, z, delta_bias, order):
        y = selective_scan(u, delta, A, B, C, D, z, delta_bias, order=order)
        return (y * 2).sum(1)

    # aot_eager: the graph capture and the AOT autograd split are what matter here; inductor's C++
    # compile on 2 cores would dominate the test time without testing the op any further.
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    leaves = [v.detach().requires_grad_(True) for v in x.values()]
    leaves_c = [v.detach().requires_grad_(True) for v in x.values()]
    out, out_c = f(*leaves, order), compiled(*leaves_c, order)
    torch.testing.assert_close(out_c, out)
    out.sum().backward()
    out_c.sum().backward()
    for a, b in zip(leaves, leaves_c):
        torch.testing.assert_close(b.grad, a.grad)


@pytest.mark.skipif(os.environ.get("VIMAMBA_TEST_INDUCTOR", "0") == "0",
                    reason="inductor's C++ build takes 30-45 s on 2 cores; set VIMAMBA_TEST_INDUCTOR=1")
def test_torch_compile_inductor():
    x = make_inputs(batch=1, K=2, d=4, L=8, N=2, dtype=torch.float32, requires_grad=True)
    order = ScanOrder.from_index(random_index(2, 8), local_window=3)

    def f(x, order):
        return (selective_scan(**x, order=order) * 2).sum(1)

    out = torch.compile(f, fullgraph=True)(x, order)
    torch.testing.assert_close(out, f(x, order))
    out.sum().backward()


class _Mixer(torch.nn.Module):
    def __init__(self, order):
        super().__init__()
        self.order = order
        self.A_log = torch.nn.Parameter(torch.zeros(2, 3, 4))
        self.D = torch.nn.Parameter(torch.ones(2, 3))

    def forward(self, u, delta, B, C):
        # reached as the imported name; `ops.selective_scan` is the other way a model may call it
        y = selective_scan(u, delta, -torch.exp(self.A_log), B, C, self.D, order=self.order)
        return ops.selective_scan(y, delta, -torch.exp(self.A_log), B, C).sum(1)


def test_fx_symbolic_trace_single_leaf():
    x = make_inputs(K=2, L=10, dtype=torch.float32)
    module = _Mixer(ScanOrder.from_index(random_index(2, 10), local_window=2))
    gm = torch.fx.symbolic_trace(module)
    calls = [n for n in gm.graph.nodes if n.op == "call_function" and n.target is selective_scan]
    assert len(calls) == 2
    assert not any("vimamba" in str(n.target) and n.target is not selective_scan for n in gm.graph.nodes)
    args = (x["u"], x["delta"], x["B"], x["C"])
    torch.testing.assert_close(gm(*args), module(*args))


def test_timm_fx_feature_extraction():
    timm_layers = pytest.importorskip("timm.layers")
    x = make_inputs(K=2, L=10, dtype=torch.float32)
    module = _Mixer(ScanOrder.from_index(random_index(2, 10)))
    train_nodes, eval_nodes = timm_layers.get_graph_node_names(module)
    scans = [n for n in eval_nodes if "selective_scan" in n]
    assert len(scans) == 2, eval_nodes
    extractor = timm_layers.create_feature_extractor(module, return_nodes={scans[0]: "scan0"})
    args = (x["u"], x["delta"], x["B"], x["C"])
    expected = selective_scan(x["u"], x["delta"], -torch.exp(module.A_log), x["B"], x["C"], module.D,
                              order=module.order)
    torch.testing.assert_close(extractor(*args)["scan0"], expected)


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:FutureWarning")
def test_jit_trace_sees_one_op_node():
    # fvcore and mmengine count FLOPs from a jit trace: the op must be one `vimamba::selective_scan` node
    x = make_inputs(K=2, L=6, dtype=torch.float32)
    module = _Mixer(None)
    with torch.no_grad():
        graph = str(torch.jit.trace(module, (x["u"], x["delta"], x["B"], x["C"]), check_trace=False).graph)
    assert graph.count("vimamba::selective_scan(") == 2


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:FutureWarning")
def test_fvcore_flop_count():
    fvcore_nn = pytest.importorskip("fvcore.nn")
    x = make_inputs(K=2, L=6, dtype=torch.float32)
    module = _Mixer(None).eval()
    args = (x["u"], x["delta"], x["B"], x["C"])
    analysis = fvcore_nn.FlopCountAnalysis(module, args).set_op_handle(
        "vimamba::selective_scan", ops.selective_scan_flop_jit)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    assert analysis.by_operator()["selective_scan"] == (
        selective_scan_flops(2, 2, 3, 6, 4, True, False) + selective_scan_flops(2, 2, 3, 6, 4, False, False))


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:FutureWarning")
def test_fvcore_style_jit_handle():
    # what fvcore's handle receives: the jit values of the traced node
    x = make_inputs(K=2, L=6, dtype=torch.float32)
    module = _Mixer(None)
    with torch.no_grad():
        graph = torch.jit.trace(module, (x["u"], x["delta"], x["B"], x["C"]), check_trace=False).inlined_graph
    nodes = [n for n in graph.nodes() if n.kind() == "vimamba::selective_scan"]
    assert len(nodes) == 2
    flops = [ops.selective_scan_flop_jit(list(n.inputs()), list(n.outputs())) for n in nodes]
    assert flops == [selective_scan_flops(2, 2, 3, 6, 4, has_D=True, has_z=False),
                     selective_scan_flops(2, 2, 3, 6, 4, has_D=False, has_z=False)]


def test_flop_formula_and_counter():
    assert selective_scan_flops(2, 2, 64, 197, 16, has_D=True, has_z=True) == \
        9 * 2 * 2 * 64 * 197 * 16 + 2 * (2 * 2 * 64 * 197)
    assert selective_scan_flops(1, 1, 8, 10, 4, has_D=False, has_z=False) == 9 * 8 * 10 * 4
    from torch.utils.flop_counter import FlopCounterMode
    x = make_inputs(K=2, L=10, z=False, dtype=torch.float32)
    with FlopCounterMode(display=False) as counter:
        torch.ops.vimamba.selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], None,
                                         x["delta_bias"], None, True, 0, "reference")
    assert counter.get_total_flops() == selective_scan_flops(2, 2, 3, 10, 4, True, False)


# ----------------------------------------------------------------------------------------------
# Backends
# ----------------------------------------------------------------------------------------------
def test_auto_backend_on_cpu_is_reference(monkeypatch):
    monkeypatch.delenv("VIMAMBA_BACKEND", raising=False)
    assert ops.resolve_backend(None, torch.device("cpu")) == "reference"
    assert ops.resolve_backend("auto", torch.device("cpu")) == "reference"
    monkeypatch.setenv("VIMAMBA_BACKEND", "reference")
    assert ops.resolve_backend("auto", torch.device("cuda")) == "reference"


def test_auto_backend_on_rocm_is_reference(monkeypatch):
    """The Triton kernels use NVIDIA PTX inline assembly and 32-lane warps: a ROCm build never picks them."""
    monkeypatch.delenv("VIMAMBA_BACKEND", raising=False)
    monkeypatch.setattr(dispatch, "load_backend", lambda name, op: object())  # triton importable
    assert ops.resolve_backend("auto", torch.device("cuda")) == "triton"
    monkeypatch.setattr(torch.version, "hip", "6.2.41133")
    for op in ("selective_scan", "causal_conv1d", "add_rms_norm"):
        assert ops.resolve_backend("auto", torch.device("cuda"), op) == "reference"


def test_mamba_ssm_without_its_scan_extension(monkeypatch):
    """Recent mamba-ssm imports without `selective_scan_cuda`: the backend is unavailable and says why."""
    import sys
    import types
    from vimamba.kernels import mamba_ssm_backend as mb
    interface = types.ModuleType("mamba_ssm.ops.selective_scan_interface")
    interface.selective_scan_fn = lambda *args, **kwargs: None
    for name, module in (("mamba_ssm", types.ModuleType("mamba_ssm")), ("mamba_ssm.ops", types.ModuleType("ops")),
                         ("mamba_ssm.ops.selective_scan_interface", interface), ("selective_scan_cuda", None)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(mb, "_fn", None)
    assert not mb.available()
    with pytest.raises(ImportError, match="Mamba-1 CUDA extension `selective_scan_cuda`"):
        mb._scan_fn()
    monkeypatch.setitem(sys.modules, "selective_scan_cuda", types.ModuleType("selective_scan_cuda"))
    assert mb.available()


def test_env_override_and_unknown_backends(monkeypatch):
    x = make_inputs(K=1, L=5)
    with pytest.raises(ValueError, match=r"backend: unknown selective_scan backend 'cuda'.*expected one of"):
        selective_scan(**x, backend="cuda")
    monkeypatch.setenv("VIMAMBA_BACKEND", "fast")
    with pytest.raises(ValueError, match=r"VIMAMBA_BACKEND: unknown selective_scan backend 'fast'"):
        selective_scan(**x)
    # an explicit backend wins over the environment variable
    selective_scan(**x, backend="reference")


def test_cuda_only_backends_reject_cpu(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    x = make_inputs(K=1, L=5)
    with pytest.raises(ValueError, match=r"backend: 'mamba_ssm' needs CUDA tensors, got tensors on cpu"):
        selective_scan(**x, backend="mamba_ssm")
    with pytest.raises(ValueError, match=r"'triton' needs CUDA tensors.*TRITON_INTERPRET=1"):
        selective_scan(**x, backend="triton")
    # under the Triton interpreter CPU tensors are allowed
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert ops.resolve_backend("triton", torch.device("cpu")) == "triton"


def test_unimportable_backend_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(dispatch.BACKENDS["selective_scan"], "triton", "vimamba.kernels._no_such_module")
    monkeypatch.setattr(dispatch, "_loaded", {})
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv("VIMAMBA_BACKEND", "triton")
    x = make_inputs(K=1, L=5)
    with pytest.raises(RuntimeError, match=r"backend 'triton' is not available: importing "
                                           r"vimamba\.kernels\._no_such_module failed"):
        selective_scan(**x)


def test_auto_falls_back_when_a_kernel_declines(monkeypatch):
    import sys
    import types
    declining = types.ModuleType("_declining_backend")

    def decline(*args):
        raise NotImplementedError("d_state 3 is not a power of two")
    declining.selective_scan_fwd = declining.selective_scan_bwd = decline
    monkeypatch.setitem(sys.modules, "_declining_backend", declining)
    monkeypatch.setitem(dispatch.BACKENDS["selective_scan"], "triton", "_declining_backend")
    monkeypatch.setattr(dispatch, "_loaded", {})
    monkeypatch.setattr(dispatch, "_warned_fallback", set())
    monkeypatch.delenv("VIMAMBA_BACKEND", raising=False)
    real_resolve = dispatch.resolve_backend
    monkeypatch.setattr(dispatch, "resolve_backend",
                        lambda name, device, op: "triton" if name in (None, "auto") else real_resolve(name, device, op))
    x = make_inputs(K=2, L=6, requires_grad=True)
    with pytest.warns(UserWarning, match=r"backend 'triton' declined \(d_state 3 is not a power of two\)"):
        y = selective_scan(**x)
    y.sum().backward()
    torch.testing.assert_close(y, selective_scan(**x, backend="reference"))
    # an explicit choice does not fall back
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with pytest.raises(NotImplementedError):
        selective_scan(**x, backend="triton")


def test_empty_sequence():
    x = make_inputs(K=2, L=0, requires_grad=True)
    y, last = selective_scan(**x, local_window=4, return_last_state=True, backend="reference")
    assert y.shape == (2, 2, 3, 0) and last.shape == (2, 2, 3, 4) and not last.any()
    y.sum().backward()
    assert x["A"].grad is not None and not x["A"].grad.any()


def test_reference_backend_module_interface():
    from vimamba.kernels import selective_scan_reference as reference
    x = make_inputs(K=2, L=7, dtype=torch.float32, D=False)
    index = random_index(2, 7)
    y, last = reference.selective_scan_fwd(x["u"], x["delta"], x["A"], x["B"], x["C"], None, x["z"],
                                           x["delta_bias"], True, index, 3)
    assert y.shape == x["u"].shape and last.shape == (2, 2, 3, 4) and last.dtype == torch.float32
    grads = reference.selective_scan_bwd(torch.ones_like(y), x["u"], x["delta"], x["A"], x["B"], x["C"],
                                         None, x["z"], x["delta_bias"], True, index, 3)
    assert len(grads) == 8 and grads[5] is None
    for g, name in zip(grads, ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]):
        if x[name] is not None:
            assert g.shape == x[name].shape and g.dtype == x[name].dtype


# ----------------------------------------------------------------------------------------------
# Argument errors: each names the argument, what was received and what is expected
# ----------------------------------------------------------------------------------------------
def _bad(**changes):
    x = make_inputs(K=2, d=3, L=6, N=4, dtype=torch.float32)
    kwargs = dict(order=None, local_window=0)
    for k, v in changes.items():
        if k in x:
            x[k] = v(x) if callable(v) else v
        else:
            kwargs[k] = v
    return x, kwargs


BAD_CASES = [
    ("u", dict(u=lambda x: x["u"][0, 0]), ValueError, r"u: expected 4 dims .* got tensor of shape \(3, 6\)"),
    ("u int", dict(u=lambda x: x["u"].long()), TypeError, r"u: expected float16, bfloat16, float32 or float64"),
    ("u list", dict(u=[1.0]), TypeError, r"u: expected a tensor"),
    ("delta", dict(delta=lambda x: x["delta"][..., :5]), ValueError,
     r"delta: expected shape like u = \(2, 2, 3, 6\), got tensor of shape \(2, 2, 3, 5\)"),
    ("A rank", dict(A=lambda x: x["A"][0]), ValueError, r"A: expected shape \(K, d, N\) for a 4-D u, got .*\(3, 4\)"),
    ("A K", dict(A=lambda x: x["A"][:1]), ValueError, r"A: expected shape \(K, d, N\) = \(2, 3, 4\), got .*\(1, 3, 4\)"),
    ("B N", dict(B=lambda x: x["B"][:, :, :3]), ValueError,
     r"B: expected shape \(batch, K, N, L\) = \(2, 2, 4, 6\), got .*\(2, 2, 3, 6\)"),
    ("C L", dict(C=lambda x: x["C"][..., :5]), ValueError, r"C: expected shape \(batch, K, N, L\)"),
    ("z", dict(z=lambda x: x["z"][:1]), ValueError, r"z: expected shape like u"),
    ("D", dict(D=lambda x: x["D"][0]), ValueError, r"D: expected shape \(K, d\) = \(2, 3\), got .*\(3,\)"),
    ("delta_bias", dict(delta_bias=lambda x: x["delta_bias"][:, :2]), ValueError,
     r"delta_bias: expected shape \(K, d\) = \(2, 3\)"),
    ("dtype mix", dict(B=lambda x: x["B"].half()), TypeError,
     r"B: expected dtype torch.float32 \(the dtype of u; u, delta, z, B and C must share one\), got .*float16"),
    ("z dtype", dict(z=lambda x: x["z"].double()), TypeError, r"z: expected dtype torch.float32"),
    ("A int", dict(A=lambda x: x["A"].long()), TypeError, r"A: expected a floating tensor"),
    ("order shape", dict(order=torch.arange(5)[None].expand(2, 5)), ValueError,
     r"order: expected an index of shape \(K, L\) = \(2, 6\), got .*\(2, 5\)"),
    ("order not perm", dict(order=torch.zeros(2, 6, dtype=torch.long)), ValueError,
     r"order: every row of the index must be a permutation of 0\.\.5"),
    ("order dtype", dict(order=torch.arange(6, dtype=torch.int32).expand(2, 6)), TypeError,
     r"order: expected an index of dtype torch.int64"),
    ("order type", dict(order=[0, 1, 2, 3, 4, 5]), TypeError, r"order: expected a vimamba.scans.ScanOrder"),
    ("scan order shape", dict(order=ScanOrder.from_index(torch.arange(6))), ValueError,
     r"order: expected an index of shape \(K, L\) = \(2, 6\), got .*\(1, 6\)"),
    ("window conflict", dict(order=ScanOrder.from_index(torch.arange(6).expand(2, 6), local_window=2),
                             local_window=3), ValueError, r"local_window: got 3 while order.local_window is 2"),
    ("window negative", dict(local_window=-1), ValueError, r"local_window: expected an int >= 0 .*got -1"),
    ("window float", dict(local_window=2.0), TypeError, r"local_window: expected an int >= 0, got float 2.0"),
    ("window bool", dict(local_window=True), TypeError, r"local_window: expected an int >= 0, got bool"),
    ("softplus", dict(delta_softplus=1), TypeError, r"delta_softplus: expected a bool, got int 1"),
    ("backend", dict(backend="fast"), ValueError, r"backend: unknown selective_scan backend 'fast'"),
    ("backend type", dict(backend=1), TypeError, r"backend: expected a str"),
]


@pytest.mark.parametrize("case", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_arguments(case):
    _, changes, error, message = case
    x, kwargs = _bad(**changes)
    with pytest.raises(error, match=message):
        selective_scan(**x, **kwargs)


def test_device_mismatch_is_reported():
    x, kwargs = _bad(A=lambda x: x["A"].to("meta"))
    with pytest.raises(ValueError, match=r"A: expected a tensor on cpu \(the device of u\), got .* on meta"):
        selective_scan(**x)
    x, _ = _bad()
    with pytest.raises(ValueError, match=r"order: expected an index on cpu"):
        selective_scan(**x, order=torch.arange(6).expand(2, 6).to("meta"))


def test_eager_calls_skip_the_dispatcher(monkeypatch):
    """Plain eager calls run each op's implementation and autograd formula from Python, never `torch.ops`; a dispatch
    mode (as FLOP counters and export use) gets the registered ops, with the same outputs and gradients."""
    import timm
    from torch.utils._python_dispatch import TorchDispatchMode

    from vimamba.ops import conv, norm, scan

    through = []
    for op in (scan._selective_scan_op, scan._selective_scan_bwd_op, scan._merge_gate_op, scan._merge_gate_bwd_op,
               conv._causal_conv1d_op, conv._causal_conv1d_bwd_op, norm._add_rms_norm_op, norm._add_rms_norm_bwd_op):
        monkeypatch.setattr(op, "overload", (lambda o: lambda *a: through.append(str(o)) or o(*a))(op.overload))

    class Passing(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    model = timm.create_model("test_vim")
    x = torch.randn(2, 3, 64, 64)
    results = []
    for mode in (None, Passing()):
        model.zero_grad(set_to_none=True)
        with mode if mode is not None else torch.enable_grad():
            out = model(x)
            out.square().sum().backward()
        results.append([out.detach()] + [p.grad for p in model.parameters()])
        if mode is None:
            assert through == []
    assert {"vimamba.selective_scan.default", "vimamba.selective_scan_bwd.default", "vimamba.merge_gate_bwd.default",
            "vimamba.causal_conv1d_bwd.default", "vimamba.add_rms_norm_bwd.default"} <= set(through)
    for direct, registered in zip(*results):
        torch.testing.assert_close(direct, registered, rtol=1e-6, atol=1e-7)


def test_double_backward_is_refused_in_eager_too():
    """create_graph through the eager path: the gradient keeps a graph whose backward names the missing formula."""
    mk = lambda *s: torch.randn(*s, dtype=torch.float64, requires_grad=True)  # noqa: E731
    u, delta, A, B, C = mk(1, 1, 4, 5), mk(1, 1, 4, 5), mk(1, 4, 3), mk(1, 1, 3, 5), mk(1, 1, 3, 5)
    y = selective_scan(u, delta, -A.exp(), B, C)
    du, = torch.autograd.grad(y.sum(), u, create_graph=True)
    assert du.requires_grad
    with pytest.raises(RuntimeError, match="no autograd formula was registered"):
        torch.autograd.grad(du.sum(), B)
