"""The residual add + RMSNorm of the pre-norm blocks (`vimamba.ops.add_rms_norm`): the reference against the
unfused computation MambaBlock ran before, the Triton kernels against a float64 reference (CPU: Triton's
interpreter at tiny shapes; GPU, skipped without CUDA: Vim-T's shape), the op contract (autograd, opcheck, meta,
argument errors, fx, jit/fvcore) and MambaBlock before and after the switch to the op.

The Triton module is loaded afresh with TRITON_INTERPRET=1, so these tests work under a plain `pytest` whatever
was imported before. Outputs are poisoned (NaN) before each run so an element the kernel never writes fails.
"""
import copy
from pathlib import Path

import pytest
import torch

import interpreted

from vimamba import ops
from vimamba.kernels import add_rms_norm_reference as ref
from vimamba.layers.mamba import MambaBlock
from vimamba.layers.norm import MambaLayerNorm, MambaRmsNorm, at_least_fp32
from vimamba.ops import add_rms_norm, dispatch

ROOT = Path(__file__).resolve().parents[1]
KERNEL_FILE = ROOT / "kernels" / "add_rms_norm.py"
EPS = 1e-5


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def interp_norm():
    """kernels/add_rms_norm.py loaded with TRITON_INTERPRET=1 (its @triton.jit kernels interpreted)."""
    return interpreted.load(KERNEL_FILE)


def make_inputs(shape, dtype=torch.float32, residual_dtype=torch.float32, has_residual=True, device="cpu", seed=0):
    """hidden (shape) in dtype, residual (shape) in residual_dtype or None, weight (D,) fp32 around 1."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(shape, generator=g).to(device=device, dtype=dtype)
    residual = (torch.randn(shape, generator=g) * 2).to(device=device, dtype=residual_dtype) if has_residual else None
    weight = (1 + 0.3 * torch.randn(shape[-1], generator=g)).to(device)
    return hidden, residual, weight


def rel_err(a, b):
    a, b = a.double(), b.double()
    scale = b.norm().item()
    return (a - b).norm().item() / (scale if scale > 1e-12 else 1.0)


def unfused(hidden, residual, norm_weight, residual_in_fp32=True, eps=EPS):
    """What MambaBlock computed before the op: add, at_least_fp32, MambaRmsNorm, cast to hidden's dtype."""
    res = hidden if residual is None else residual + hidden
    if residual_in_fp32:
        res = at_least_fp32(res)
    norm = MambaRmsNorm(hidden.shape[-1], eps=eps, device="meta")
    normed = torch.func.functional_call(norm, {"weight": norm_weight}, (res,))
    return normed.to(hidden.dtype), res


def check_backend(module, inputs, residual_dtype, tol, with_dres=True, seed=1):
    """Forward and every gradient of `module` against the float64 reference."""
    hidden, residual, weight = inputs
    interpreted.poison(module)
    normed, res = module.add_rms_norm_fwd(hidden, residual, weight, EPS, residual_dtype, hidden.dtype)
    wide = [None if t is None else t.double() for t in inputs]
    normed_ref, res_ref = ref.add_rms_norm_fwd(*wide, EPS, torch.float64, torch.float64)
    assert normed.shape == hidden.shape and normed.dtype == hidden.dtype and normed.is_contiguous()
    assert res.shape == hidden.shape and res.dtype == residual_dtype and res.is_contiguous()
    assert not torch.isnan(normed).any() and not torch.isnan(res).any(), "NaN (unwritten?) in the outputs"
    errs = {"normed": rel_err(normed, normed_ref), "residual_out": rel_err(res, res_ref)}
    g = torch.Generator().manual_seed(seed)
    dnormed = torch.randn(hidden.shape, generator=g).to(device=hidden.device, dtype=normed.dtype)
    dres = torch.randn(hidden.shape, generator=g).to(device=hidden.device, dtype=res.dtype) if with_dres else None
    r_dtype = None if residual is None else residual.dtype
    dhidden, dresidual, dweight = module.add_rms_norm_bwd(dnormed, dres, res, weight, EPS, hidden.dtype, r_dtype)
    # float64 truth: both input gradients are dx, from the float64 residual_out
    dx_ref, _, dw_ref = ref.add_rms_norm_bwd(dnormed.double(), None if dres is None else dres.double(), res_ref,
                                             weight.double(), EPS, torch.float64, None)
    assert dhidden.shape == hidden.shape and dhidden.dtype == hidden.dtype
    assert dweight.shape == weight.shape and dweight.dtype == weight.dtype
    assert not torch.isnan(dhidden).any() and not torch.isnan(dweight).any(), "NaN (unwritten?) in the gradients"
    errs["dhidden"], errs["dweight"] = rel_err(dhidden, dx_ref), rel_err(dweight, dw_ref)
    if residual is None or residual.dtype == hidden.dtype:
        assert dresidual is None, "dresidual should be None (no residual, or dhidden serves)"
    else:
        assert dresidual.shape == residual.shape and dresidual.dtype == residual.dtype
        assert not torch.isnan(dresidual).any()
        errs["dresidual"] = rel_err(dresidual, dx_ref)
    bad = {n: e for n, e in errs.items() if not e < tol}
    assert not bad, f"relative errors over {tol}: {bad} (all: {errs})"


# ----------------------------------------------------------------------------------------------
# The reference against the unfused computation
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("has_residual", [True, False], ids=["residual", "first-block"])
def test_reference_matches_unfused(has_residual):
    hidden, residual, weight = make_inputs((2, 7, 12), torch.float64, torch.float64, has_residual)
    leaves = [None if t is None else t.clone().requires_grad_(True) for t in (hidden, residual, weight)]
    normed, res = add_rms_norm(*leaves, EPS, torch.float64, torch.float64, backend="reference")
    old = [None if t is None else t.clone().requires_grad_(True) for t in (hidden, residual, weight)]
    normed_old, res_old = unfused(*old)
    torch.testing.assert_close(normed, normed_old, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(res, res_old, rtol=1e-12, atol=1e-12)
    g = torch.Generator().manual_seed(3)
    dn, dr = torch.randn(normed.shape, generator=g, dtype=torch.float64), torch.randn(res.shape, generator=g,
                                                                                      dtype=torch.float64)
    ((normed * dn).sum() + (res * dr).sum()).backward()
    ((normed_old * dn).sum() + (res_old * dr).sum()).backward()
    for new_leaf, old_leaf, name in zip(leaves, old, ("hidden", "residual", "weight")):
        if new_leaf is not None:
            torch.testing.assert_close(new_leaf.grad, old_leaf.grad, rtol=1e-10, atol=1e-12,
                                       msg=lambda m: f"{name}: {m}")


def test_reference_rounds_residual_before_the_norm():
    """bf16 residual_dtype: the norm is taken of the stored (rounded) sum, as the unfused path does."""
    hidden, residual, weight = make_inputs((3, 40), torch.bfloat16, torch.bfloat16)
    normed, res = ref.add_rms_norm_fwd(hidden, residual, weight, EPS, torch.bfloat16, torch.bfloat16)
    normed_old, res_old = unfused(hidden, residual, weight, residual_in_fp32=False)
    assert torch.equal(res, res_old) and torch.equal(normed, normed_old)


# ----------------------------------------------------------------------------------------------
# Triton kernels under the interpreter (CPU, tiny shapes; the interpreter's tiles are 32 elements)
# ----------------------------------------------------------------------------------------------
# (shape, hidden dtype, residual dtype or None, residual_dtype (of residual_out), dresidual_out given)
CPU_CASES = [
    ((2, 7, 12), torch.float32, torch.float32, torch.float32, True),     # D not a power of two, 14 rows / 2
    ((3, 5, 20), torch.float32, None, torch.float32, True),              # first block (no residual)
    ((13, 8), torch.float32, torch.float32, torch.float32, False),       # D = 8, 4 rows a block, 13 rows
    ((1, 1, 5), torch.float32, torch.float32, torch.float32, True),      # one row
    ((2, 9, 33), torch.bfloat16, torch.float32, torch.float32, True),    # residual_in_fp32 with bf16 hidden
    ((2, 9, 33), torch.bfloat16, None, torch.float32, True),             # first block, bf16 -> fp32 residual
    ((4, 6, 24), torch.bfloat16, torch.bfloat16, torch.bfloat16, True),  # all bf16 (residual_in_fp32 off)
    ((2, 5, 10), torch.float16, torch.float32, torch.float32, False),
]


@pytest.mark.parametrize("case", CPU_CASES,
                         ids=lambda c: "x".join(map(str, c[0])) + f"-{str(c[1])[6:]}-{str(c[2])[6:]}")
def test_triton_interpreter(case):
    shape, dtype, r_dtype, residual_dtype, with_dres = case
    inputs = make_inputs(shape, dtype, r_dtype or torch.float32, r_dtype is not None)
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    check_backend(interp_norm(), inputs, residual_dtype, tol, with_dres)


def test_triton_interpreter_row_stretches_and_weight_dtype():
    """A backward whose programs walk several row blocks (the last stretch partial), bf16 weight."""
    mod = interp_norm()
    BM, BD, per_program, _ = mod.pick_config(37, 12, True, "cpu")
    assert (BM, BD) == (2, 16) and per_program > 1 and 37 % (BM * per_program) != 0
    hidden, residual, weight = make_inputs((37, 12))
    check_backend(mod, (hidden, residual, weight.bfloat16()), torch.float32, 1e-2)
    check_backend(mod, (hidden, residual, weight), torch.float32, 1e-5)


def test_triton_declines_rows_too_long():
    mod = interp_norm()
    hidden, residual, weight = make_inputs((1, mod.MAX_DIM + 1))
    with pytest.raises(NotImplementedError, match="D = 8193"):
        mod.add_rms_norm_fwd(hidden, residual, weight, EPS, torch.float32, torch.float32)


def _loops_without_layout_changes(ttgir: str) -> None:
    """No ttg.convert_layout inside an scf.for body (a layout change per iteration costs shared-memory trips)."""
    depth, loops = 0, []  # brace depth, and the depth each open loop started at
    for line in ttgir.splitlines():
        if "scf.for" in line:
            loops.append(depth)
        if loops and "ttg.convert_layout" in line:
            raise AssertionError(f"ttg.convert_layout inside a loop: {line.strip()}")
        depth += line.count("{") - line.count("}")
        while loops and depth <= loops[-1]:
            loops.pop()


@pytest.mark.parametrize("dtype,D", [("bf16", 192), ("fp32", 384), ("bf16", 4096)], ids=["bf16-192", "fp32-384",
                                                                                          "bf16-4096"])
def test_kernels_compile_for_gpu(dtype, D):
    """The interpreter runs Python, so it accepts code the compiler rejects: compile both kernels for sm_90 on
    the CPU as well, and check the backward's row loop keeps its layouts."""
    import triton
    import triton.language as tl

    from vimamba.kernels import add_rms_norm as kernels
    if not hasattr(kernels._fwd_kernel, "arg_names"):
        pytest.skip("the kernel module was imported under TRITON_INTERPRET=1")
    ptrs = dict(h_ptr=f"*{dtype}", r_ptr="*fp32", w_ptr="*fp32", y_ptr=f"*{dtype}", res_ptr="*fp32",
                dy_ptr=f"*{dtype}", dres_ptr="*fp32", x_ptr="*fp32", dh_ptr=f"*{dtype}", dr_ptr="*fp32",
                dw_ptr="*fp32")
    scalars = dict(M="i32", D="i32", eps="fp32", rows_per_program="i32")
    M = 256 * 197
    try:
        BM, BD, _, nw = kernels.pick_config(M, D, False, "cuda")
        interpreted.compile_for_sm90(kernels._fwd_kernel, {**ptrs, **scalars},
                                     dict(HAS_RES=True, ACC=tl.float32, BM=BM, BD=BD), nw)
        BM, BD, _, nw = kernels.pick_config(M, D, True, "cuda")
        compiled = interpreted.compile_for_sm90(
            kernels._bwd_kernel, {**ptrs, **scalars},
            dict(HAS_DRES=True, HAS_DR=dtype != "fp32", ACC=tl.float32, BM=BM, BD=BD), nw)
    except triton.CompilationError:
        raise
    except Exception as e:  # no CUDA backend or ptxas in this Triton build: nothing to check here
        pytest.skip(f"cannot compile for sm_90 here: {type(e).__name__}: {e}")
    ttgir = compiled.asm["ttgir"]
    assert "scf.for" in ttgir
    _loops_without_layout_changes(ttgir)


@pytest.fixture
def triton_op(monkeypatch):
    """vimamba.ops with its triton norm backend the interpreted module (CPU tensors allowed)."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setitem(dispatch._loaded, dispatch.BACKENDS["add_rms_norm"]["triton"], interp_norm())


def _op_outputs(backend, inputs, residual_dtype, out_dtype):
    leaves = [None if t is None else t.detach().clone().requires_grad_(True) for t in inputs]
    normed, res = add_rms_norm(*leaves, EPS, residual_dtype, out_dtype, backend=backend)
    g = torch.Generator().manual_seed(5)
    loss = (normed.double() * torch.randn(normed.shape, generator=g, dtype=torch.float64)).sum()
    loss = loss + (res.double() * torch.randn(res.shape, generator=g, dtype=torch.float64)).sum()
    loss.backward()
    return [normed.detach(), res.detach()] + [None if t is None else t.grad for t in leaves]


@pytest.mark.parametrize("dtype,r_dtype", [(torch.float32, torch.float32), (torch.bfloat16, torch.float32),
                                           (torch.float32, None), (torch.bfloat16, torch.bfloat16)],
                         ids=["fp32", "bf16-fp32", "first-block", "bf16-bf16"])
def test_op_triton_backend_matches_reference(triton_op, dtype, r_dtype):
    inputs = make_inputs((2, 5, 12), dtype, r_dtype or dtype, r_dtype is not None)
    residual_dtype = torch.float32 if r_dtype is not None and r_dtype != dtype else dtype
    got = _op_outputs("triton", inputs, residual_dtype, dtype)
    want = _op_outputs("reference", inputs, residual_dtype, dtype)
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    for name, a, b in zip(("normed", "residual_out", "dhidden", "dresidual", "dweight"), got, want):
        assert (a is None) == (b is None), name
        if a is not None:
            assert a.dtype == b.dtype, name
            assert rel_err(a, b) < tol, (name, rel_err(a, b))


def test_env_backend_selects_triton_under_interpreter(triton_op, monkeypatch):
    monkeypatch.setenv("VIMAMBA_BACKEND", "triton")
    assert ops.resolve_backend(None, torch.device("cpu"), "add_rms_norm") == "triton"
    hidden, residual, weight = make_inputs((3, 10))
    for a, b in zip(add_rms_norm(hidden, residual, weight), add_rms_norm(hidden, residual, weight,
                                                                          backend="reference")):
        torch.testing.assert_close(a, b)


def test_auto_falls_back_for_long_rows(triton_op, monkeypatch):
    """Under "auto" a row the Triton kernel declines runs on the reference (the CPU resolves "auto" to the
    reference anyway, so make "auto" pick triton here)."""
    monkeypatch.setattr(dispatch, "resolve_backend", lambda backend, device, op="selective_scan": "triton")
    hidden, residual, weight = make_inputs((2, interp_norm().MAX_DIM + 3))
    with pytest.warns(UserWarning, match="add_rms_norm: backend 'triton' declined"):
        normed, res = add_rms_norm(hidden, residual, weight)
    normed_ref, res_ref = ref.add_rms_norm_fwd(hidden, residual, weight, EPS, torch.float32, torch.float32)
    torch.testing.assert_close(normed, normed_ref)


# ----------------------------------------------------------------------------------------------
# The op
# ----------------------------------------------------------------------------------------------
def test_gradcheck_reference():
    for has_residual in (True, False):
        leaves = [None if t is None else t.double().requires_grad_(True)
                  for t in make_inputs((2, 3, 5), torch.float64, torch.float64, has_residual)]
        if has_residual:
            fn = lambda h, r, w: add_rms_norm(h, r, w, 0.1, backend="reference")  # noqa: E731
            assert torch.autograd.gradcheck(fn, tuple(leaves))
        else:
            fn = lambda h, w: add_rms_norm(h, None, w, 0.1, backend="reference")  # noqa: E731
            assert torch.autograd.gradcheck(fn, (leaves[0], leaves[2]))


def test_dtypes_and_defaults():
    hidden, residual, weight = make_inputs((2, 4, 6), torch.bfloat16, torch.float32)
    normed, res = add_rms_norm(hidden, residual, weight)
    assert normed.dtype == torch.bfloat16 and res.dtype == torch.float32   # defaults: promotion, hidden's dtype
    normed, res = add_rms_norm(hidden, None, weight, EPS, torch.float32, torch.float32)
    assert normed.dtype == torch.float32 and res.dtype == torch.float32
    torch.testing.assert_close(res, hidden.float())
    # non-contiguous inputs are copied
    ht = torch.randn(2, 6, 4).transpose(1, 2)
    for a, b in zip(add_rms_norm(ht, residual, weight), add_rms_norm(ht.contiguous(), residual, weight)):
        torch.testing.assert_close(a, b)


def test_opcheck():
    hidden, residual, weight = make_inputs((2, 3, 6), torch.float32, torch.float32)
    args = (hidden.requires_grad_(True), residual.requires_grad_(True), weight.requires_grad_(True), EPS,
            torch.float32, torch.float32, "reference")
    torch.library.opcheck(torch.ops.vimamba.add_rms_norm.default, args)
    hb = hidden.detach().bfloat16().requires_grad_(True)
    torch.library.opcheck(torch.ops.vimamba.add_rms_norm.default,
                          (hb, None, weight, EPS, torch.float32, torch.bfloat16, "reference"))
    res = torch.randn(2, 3, 6)
    torch.library.opcheck(torch.ops.vimamba.add_rms_norm_bwd.default,
                          (torch.randn(2, 3, 6).bfloat16(), res.clone(), res, weight.detach(), EPS, torch.bfloat16,
                           torch.float32, "reference"))
    torch.library.opcheck(torch.ops.vimamba.add_rms_norm_bwd.default,
                          (torch.randn(2, 3, 6), None, res, weight.detach(), EPS, torch.float32, None, "reference"))


def test_meta_device_and_compile():
    hidden, residual, weight = (t.to("meta") for t in make_inputs((2, 7, 5), torch.bfloat16))
    normed, res = add_rms_norm(hidden, residual, weight, EPS, torch.float32, torch.bfloat16)
    assert normed.device.type == "meta" and normed.shape == (2, 7, 5) and normed.dtype == torch.bfloat16
    assert res.dtype == torch.float32
    hidden, residual, weight = make_inputs((2, 6, 4))
    compiled = torch.compile(lambda *a: sum(t.sum(-1) for t in add_rms_norm(*a)), fullgraph=True,
                             backend="aot_eager")
    leaves = [t.requires_grad_(True) for t in (hidden, residual, weight)]
    out = compiled(*leaves)
    torch.testing.assert_close(out, sum(t.sum(-1) for t in add_rms_norm(hidden, residual, weight)))
    (out * torch.randn(out.shape)).sum().backward()
    assert all(t.grad is not None for t in leaves)


def test_backend_resolution(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.delenv("VIMAMBA_BACKEND", raising=False)
    cpu = torch.device("cpu")
    assert ops.resolve_backend(None, cpu, "add_rms_norm") == "reference"
    assert ops.resolve_backend("mamba_ssm", cpu, "add_rms_norm") == "reference"
    hidden, residual, weight = make_inputs((2, 4))
    with pytest.raises(ValueError, match=r"'triton' needs CUDA tensors.*TRITON_INTERPRET=1"):
        add_rms_norm(hidden, residual, weight, backend="triton")
    monkeypatch.setenv("VIMAMBA_BACKEND", "fast")
    with pytest.raises(ValueError, match=r"VIMAMBA_BACKEND: unknown add_rms_norm backend 'fast'"):
        add_rms_norm(hidden, residual, weight)


_h, _r, _w = make_inputs((2, 3, 4))


@pytest.mark.parametrize("kwargs,error,pattern", [
    (dict(hidden=_h.long()), TypeError, r"hidden: expected float16, bfloat16, float32 or float64"),
    (dict(hidden=[1.0]), TypeError, r"hidden: expected a tensor"),
    (dict(hidden=torch.tensor(1.0)), ValueError, r"hidden: expected a tensor \(\.\.\., D\)"),
    (dict(residual=_r[:, :2]), ValueError, r"residual: expected shape like hidden = \(2, 3, 4\)"),
    (dict(residual=_r.int()), TypeError, r"residual: expected a floating tensor"),
    (dict(weight=_w[:3]), ValueError, r"weight: expected shape \(D,\), D the last dim of hidden = \(4,\)"),
    (dict(weight=_w.to("meta")), ValueError, r"weight: expected a tensor on cpu \(the device of hidden\)"),
    (dict(eps="1e-5"), TypeError, r"eps: expected a float >= 0"),
    (dict(eps=-1.0), ValueError, r"eps: expected a float >= 0, got -1.0"),
    (dict(residual_dtype=torch.int32), TypeError, r"residual_dtype: expected None or a float dtype"),
    (dict(out_dtype="bf16"), TypeError, r"out_dtype: expected None or a float dtype"),
    (dict(backend="cuda"), ValueError, r"backend: unknown add_rms_norm backend 'cuda'"),
], ids=["hidden-dtype", "hidden-type", "hidden-0d", "residual-shape", "residual-dtype", "weight-shape",
        "weight-device", "eps-type", "eps-negative", "residual_dtype", "out_dtype", "backend"])
def test_bad_arguments(kwargs, error, pattern):
    args = dict(hidden=_h, residual=_r, weight=_w)
    args.update(kwargs)
    with pytest.raises(error, match=pattern):
        add_rms_norm(**args)


class _NormModule(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(4))

    def forward(self, hidden, residual):
        normed, res = add_rms_norm(hidden, residual, self.weight, EPS, torch.promote_types(hidden.dtype,
                                                                                          torch.float32))
        return normed + res


def test_fx_symbolic_trace_single_leaf():
    module = _NormModule()
    gm = torch.fx.symbolic_trace(module)
    assert [n.target for n in gm.graph.nodes if n.op == "call_function"].count(add_rms_norm) == 1
    x, r = torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    torch.testing.assert_close(gm(x, r), module(x, r))


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:FutureWarning")
def test_jit_trace_node_and_fvcore_ignores_it():
    x, r = torch.randn(3, 6, 4), torch.randn(3, 6, 4)
    with torch.no_grad():
        graph = torch.jit.trace(_NormModule(), (x, r), check_trace=False).inlined_graph
    assert len([n for n in graph.nodes() if n.kind() == "vimamba::add_rms_norm"]) == 1
    fvcore = pytest.importorskip("fvcore.nn")
    from vimamba import benchmark
    analysis = fvcore.FlopCountAnalysis(_NormModule(), (x, r)).set_op_handle(**benchmark.FVCORE_HANDLES)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    assert analysis.total() == 0 and "vimamba::add_rms_norm" not in analysis.unsupported_ops()


# ----------------------------------------------------------------------------------------------
# MambaBlock before and after
# ----------------------------------------------------------------------------------------------
def old_block_forward(self, hidden, residual=None):
    """MambaBlock.forward as it was before the op."""
    residual = hidden if residual is None else residual + self.drop_path(hidden)
    if self.residual_in_fp32:
        residual = at_least_fp32(residual)
    hidden = self.mixer(self.norm(residual).to(hidden.dtype))
    return hidden, residual


def _run_blocks(blocks, x, seed=7):
    """Two chained blocks (the first gets residual None, as in Vim): outputs and all gradients."""
    xi = x.clone().requires_grad_(True)
    hidden, residual = xi, None
    for blk in blocks:
        hidden, residual = blk(hidden, residual)
    g = torch.Generator().manual_seed(seed)
    loss = (hidden.double() * torch.randn(hidden.shape, generator=g, dtype=torch.float64).to(x.device)).sum()
    loss = loss + (residual.double() * torch.randn(residual.shape, generator=g, dtype=torch.float64).to(x.device)).sum()
    loss.backward()
    grads = {n: p.grad for n, p in blocks.named_parameters()}
    return hidden.detach(), residual.detach(), xi.grad, grads


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("kwargs", [dict(bidirectional=True), dict(bidirectional=False, reverse=True, local_window=4),
                                    dict(bidirectional=True, residual_in_fp32=False)],
                         ids=["vim", "lbvim-reverse", "residual-in-model-dtype"])
def test_mamba_block_same_as_before(kwargs, mode, one_thread):
    torch.manual_seed(0)
    new = torch.nn.Sequential(*[MambaBlock(16, d_state=4, drop_path=0., **kwargs) for _ in range(2)]).double()
    for blk in new:
        with torch.no_grad():
            blk.norm.weight.uniform_(0.5, 1.5)
    old = copy.deepcopy(new)
    for blk in old:
        blk.forward = old_block_forward.__get__(blk)
    assert list(new.state_dict()) == list(old.state_dict())
    getattr(new, mode)()
    getattr(old, mode)()
    assert all(blk._fused_add_norm() for blk in new)
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    (y, res, dx, grads), (y_old, res_old, dx_old, grads_old) = _run_blocks(new, x), _run_blocks(old, x)
    torch.testing.assert_close(y, y_old, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(res, res_old, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(dx, dx_old, rtol=1e-10, atol=1e-12)
    assert grads.keys() == grads_old.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], grads_old[name], rtol=1e-10, atol=1e-12, msg=lambda m: f"{name}: {m}")
    assert all(blk.norm.weight.grad is not None for blk in new)


def test_mamba_block_bf16_model_fp32_residual(one_thread):
    """A bf16 model with the residual in fp32: the fused path keeps the dtypes of the unfused one."""
    torch.manual_seed(0)
    new = torch.nn.Sequential(*[MambaBlock(16, d_state=4) for _ in range(2)]).bfloat16().eval()
    old = copy.deepcopy(new)
    for blk in old:
        blk.forward = old_block_forward.__get__(blk)
    x = torch.randn(2, 9, 16).bfloat16()
    (y, res, dx, grads), (y_old, res_old, dx_old, grads_old) = _run_blocks(new, x), _run_blocks(old, x)
    assert y.dtype == y_old.dtype == torch.bfloat16 and res.dtype == res_old.dtype == torch.float32
    assert dx.dtype == dx_old.dtype == torch.bfloat16
    assert rel_err(y, y_old) < 2e-2 and rel_err(res, res_old) < 2e-2 and rel_err(dx, dx_old) < 5e-2
    for name in grads:
        assert grads[name].dtype == grads_old[name].dtype, name


def test_mamba_block_keeps_unfused_paths():
    """LayerNorm blocks, and drop path in training, run the unfused code."""
    assert not MambaBlock(8, d_state=4, norm_layer=MambaLayerNorm)._fused_add_norm()
    blk = MambaBlock(8, d_state=4, drop_path=0.1)
    assert not blk.train()._fused_add_norm() and blk.eval()._fused_add_norm()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("norm_name", ["ours", "timm", "timm-no-weight", "timm-layernorm", "ours-layernorm"])
def test_mamba_block_fused_path_by_what_the_norm_computes(norm_name, dtype, one_thread, monkeypatch):
    """Our RMSNorm and timm's RmsNormFp32 (the same math) both take the fused path, except timm's for an fp64
    stream (it computes in fp32), and give the unfused path's output; norms of other math stay unfused."""
    import functools

    import timm.layers

    import vimamba.layers.mamba as mamba_module

    norm_layer, fused = {
        "ours": (MambaRmsNorm, True),
        "timm": (timm.layers.RmsNormFp32, dtype != torch.float64),
        "timm-no-weight": (functools.partial(timm.layers.RmsNormFp32, affine=False), False),
        "timm-layernorm": (timm.layers.LayerNormFp32, False),
        "ours-layernorm": (MambaLayerNorm, False),
    }[norm_name]
    torch.manual_seed(0)
    new = torch.nn.Sequential(*[MambaBlock(16, d_state=4, norm_layer=norm_layer) for _ in range(2)]).to(dtype).eval()
    for blk in new:
        if getattr(blk.norm, "weight", None) is not None:
            with torch.no_grad():
                blk.norm.weight.uniform_(0.5, 1.5)
    old = copy.deepcopy(new)
    for blk in old:
        blk.forward = old_block_forward.__get__(blk)
    stream = torch.promote_types(dtype, torch.float32)
    assert [blk._fused_add_norm(stream) for blk in new] == [fused, fused]
    calls = []
    monkeypatch.setattr(mamba_module, "add_rms_norm", lambda *a, **k: calls.append(1) or add_rms_norm(*a, **k))
    x = torch.randn(2, 9, 16).to(dtype)
    (y, res, dx, grads), (y_old, res_old, dx_old, grads_old) = _run_blocks(new, x), _run_blocks(old, x)
    assert len(calls) == (2 if fused else 0)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
    if dtype == torch.bfloat16:
        assert rel_err(y, y_old) < 2e-2 and rel_err(res, res_old) < 2e-2 and rel_err(dx, dx_old) < 5e-2
    else:
        torch.testing.assert_close(y, y_old, **tol)
        torch.testing.assert_close(res, res_old, **tol)
        torch.testing.assert_close(dx, dx_old, **tol)
    assert grads.keys() == grads_old.keys()
    for name in grads:
        if dtype == torch.bfloat16:
            assert grads[name].dtype == grads_old[name].dtype, name
        else:
            torch.testing.assert_close(grads[name], grads_old[name], **tol, msg=lambda m: f"{name}: {m}")


# ----------------------------------------------------------------------------------------------
# GPU (Vim-T's shape, batch cut down so the float64 reference stays quick)
# ----------------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("dtype,r_dtype", [(torch.float32, torch.float32), (torch.bfloat16, torch.float32),
                                           (torch.bfloat16, None), (torch.bfloat16, torch.bfloat16)],
                         ids=["fp32", "bf16-fp32", "first-block", "bf16-bf16"])
@pytest.mark.parametrize("D", [192, 384, 1000])
def test_triton_gpu_vim_t(dtype, r_dtype, D):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from vimamba.kernels import add_rms_norm as kernels

    inputs = make_inputs((8, 197, D), dtype, r_dtype or dtype, r_dtype is not None, device="cuda")
    residual_dtype = torch.float32 if r_dtype is not None else dtype
    check_backend(kernels, inputs, residual_dtype, 1e-5 if dtype == torch.float32 else 1e-2)


@pytest.mark.gpu
def test_mamba_block_gpu_matches_reference(monkeypatch):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    torch.manual_seed(0)
    blocks = torch.nn.Sequential(*[MambaBlock(192, d_state=16) for _ in range(2)]).cuda().eval()
    x = torch.randn(4, 197, 192, device="cuda")
    outs = {}
    for backend in ("triton", "reference"):
        monkeypatch.setenv("VIMAMBA_BACKEND", backend)
        outs[backend] = _run_blocks(blocks, x)
        blocks.zero_grad(set_to_none=True)
    for a, b in zip(outs["triton"][:3], outs["reference"][:3]):
        assert rel_err(a, b) < 1e-4
