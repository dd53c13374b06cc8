"""The selective scan's merged output mode (`merge="mean" | "sum"`, one gate z for the merged directions): the
reference against the definition in float64, the Triton kernels (under TRITON_INTERPRET=1, outputs poisoned)
against the reference, the op's contract (opcheck, layouts, errors) and the mixers that use it."""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import interpreted
from vimamba.kernels import merge_gate_reference as ref
from vimamba.ops import dispatch, selective_scan

KERNEL_FILE = Path(__file__).resolve().parents[1] / "kernels" / "merge_gate.py"


def _inputs(b=2, K=2, d=5, L=7, N=3, dtype=torch.float64, channels_last=True, seed=0):
    g = torch.Generator().manual_seed(seed)

    def chan(*shape):  # (b, K?, d, L), channels-last like the models' views
        t = torch.randn(*shape[:-2], shape[-1], shape[-2], generator=g, dtype=dtype)
        return t.transpose(-1, -2) if channels_last else t.transpose(-1, -2).contiguous()
    return dict(u=chan(b, K, d, L), delta=chan(b, K, d, L) * 0.5,
                A=-torch.rand(K, d, N, generator=g, dtype=dtype) - 0.5,
                B=torch.randn(b, K, N, L, generator=g, dtype=dtype), C=torch.randn(b, K, N, L, generator=g, dtype=dtype),
                D=torch.randn(K, d, generator=g, dtype=dtype), delta_bias=torch.randn(K, d, generator=g, dtype=dtype) * 0.1,
                z=chan(b, d, L))


def _leaves(x):
    return {k: v.detach().clone().requires_grad_(True) for k, v in x.items()}


@pytest.mark.parametrize("merge", ["mean", "sum"])
@pytest.mark.parametrize("gate", [True, False])
def test_merged_mode_equals_merging_the_directions(merge, gate):
    """Forward and every gradient equal the K outputs merged and gated with plain ops (float64)."""
    x = _inputs()
    got, want = _leaves(x), _leaves(x)
    z = got.pop("z") if gate else None
    zw = want.pop("z") if gate else None
    got.pop("z", None), want.pop("z", None)
    out = selective_scan(**got, z=z, merge=merge)
    y = selective_scan(**want)
    expected = y.mean(1) if merge == "mean" else y.sum(1)
    if gate:
        expected = expected * F.silu(zw)
    assert out.shape == expected.shape == (2, 5, 7)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    dout = torch.randn_like(out)
    leaves_got = list(got.values()) + ([z] if gate else [])
    leaves_want = list(want.values()) + ([zw] if gate else [])
    for a, b in zip(torch.autograd.grad(out, leaves_got, dout), torch.autograd.grad(expected, leaves_want, dout)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_gradcheck_merged_mode():
    x = _leaves(_inputs(b=1, d=3, L=5))
    keys = list(x)
    assert torch.autograd.gradcheck(
        lambda *t: selective_scan(**dict(zip(keys, t)), merge="mean"), tuple(x.values()))


def test_merged_output_layout_and_no_saved_merge_without_grad():
    x = _inputs(dtype=torch.float32)
    with torch.no_grad():
        out = selective_scan(**x, merge="sum")
    assert out.stride(1) == 1  # channels-last y gives a channels-last merge (a (b, L, d) tensor transposed)
    x = _inputs(dtype=torch.float32, channels_last=False)
    assert selective_scan(**x, merge="sum").stride(-1) == 1


def test_three_dim_input_with_merge_is_the_gated_scan():
    x = _inputs(K=1)
    three = {k: (v[:, 0] if k in ("u", "delta", "B", "C") else v[0] if k in ("A", "D", "delta_bias") else v)
             for k, v in x.items()}
    torch.testing.assert_close(selective_scan(**three, merge="sum"),
                               selective_scan(**{k: v for k, v in three.items() if k != "z"}) * F.silu(x["z"]))


def test_opcheck_merge_gate_ops():
    y = torch.randn(2, 3, 4, 5).transpose(-1, -2).contiguous().transpose(-1, -2).requires_grad_(True)
    z = torch.randn(2, 5, 4).transpose(-1, -2).requires_grad_(True)
    for gate in (z, None):
        torch.library.opcheck(torch.ops.vimamba.merge_gate.default, (y, gate, 1 / 3, True, "reference"))
    out, merged = torch.ops.vimamba.merge_gate(y.detach(), z.detach(), 1 / 3, True, "reference")
    torch.library.opcheck(torch.ops.vimamba.merge_gate_bwd.default,
                          (torch.randn_like(out), z.detach(), merged, 1 / 3, "reference"))


def test_merge_argument_errors():
    x = _inputs()
    with pytest.raises(ValueError, match="merge: expected None, 'mean' or 'sum', got 'max'"):
        selective_scan(**x, merge="max")
    bad = dict(x, z=torch.randn(2, 2, 5, 7, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"z: expected shape \(batch, d, L\): one gate"):
        selective_scan(**bad, merge="mean")
    with pytest.raises(ValueError, match="return_last_state: not available with merge"):
        selective_scan(**x, merge="mean", return_last_state=True)


# ----------------------------------------------------------------------------------------------
# The Triton kernels, interpreted
# ----------------------------------------------------------------------------------------------
@pytest.fixture
def kernels():
    module = interpreted.load(KERNEL_FILE)
    interpreted.poison(module)
    return module


@pytest.mark.parametrize("K,d,L,channels_last", [(2, 70, 33, True), (4, 5, 130, False), (1, 64, 32, True)])
@pytest.mark.parametrize("gate", [True, False])
def test_triton_kernels_match_reference(kernels, K, d, L, channels_last, gate):
    g = torch.Generator().manual_seed(K * d + L)
    y = torch.randn(2, K, L, d, generator=g).transpose(2, 3)
    z = torch.randn(2, L, 2 * d, generator=g)[..., :d].transpose(1, 2) if gate else None  # in_proj's half
    if not channels_last:
        y = y.contiguous()
        z = None if z is None else z.contiguous()
    out, merged = kernels.merge_gate_fwd(y, z, 1 / K, True)
    out_ref, merged_ref = ref.merge_gate_fwd(y.double(), None if z is None else z.double(), 1 / K, True)
    assert out.stride(1 if channels_last else 2) == 1  # y's layout without K
    assert not out.isnan().any() and not merged.isnan().any()
    torch.testing.assert_close(out, out_ref.float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(merged, merged_ref.float(), rtol=1e-5, atol=1e-6)
    dout = torch.randn(out.shape, generator=g)
    dy, dz = kernels.merge_gate_bwd(dout, z, merged, 1 / K)
    dy_ref, dz_ref = ref.merge_gate_bwd(dout.double(), None if z is None else z.double(), merged_ref, 1 / K)
    assert not dy.isnan().any()
    torch.testing.assert_close(dy, dy_ref.float(), rtol=1e-5, atol=1e-6)
    if gate:
        assert not dz.isnan().any()
        torch.testing.assert_close(dz, dz_ref.float(), rtol=1e-5, atol=1e-6)
    else:
        assert dz is None


def test_op_with_triton_backend_matches_reference(kernels, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setitem(dispatch._loaded, dispatch.BACKENDS["merge_gate"]["triton"], kernels)
    y = torch.randn(2, 2, 9, 6).transpose(2, 3)
    z = torch.randn(2, 9, 6).transpose(1, 2)
    outs = {}
    for backend in ("triton", "reference"):
        yl, zl = y.clone().requires_grad_(True), z.clone().requires_grad_(True)
        out, _ = torch.ops.vimamba.merge_gate(yl, zl, 0.5, True, backend)
        (out * torch.linspace(-1, 1, out.numel()).view(out.shape)).sum().backward()
        outs[backend] = (out.detach(), yl.grad, zl.grad)
    for a, b in zip(outs["triton"], outs["reference"]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
def test_kernels_compile_for_gpu(dtype):
    """The interpreter accepts code the compiler rejects: compile both kernels for sm_90 on the CPU as well."""
    import triton

    from vimamba.kernels import merge_gate as compiled
    if not hasattr(compiled._fwd_kernel, "arg_names"):
        pytest.skip("the kernel module was imported under TRITON_INTERPRET=1")
    ptrs = {n: f"*{dtype}" for n in ("y_ptr", "z_ptr", "out_ptr", "m_ptr", "do_ptr", "dy_ptr", "dz_ptr")}
    ints = {n: "i32" for fn in (compiled._fwd_kernel, compiled._bwd_kernel) for n in fn.arg_names
            if n == "K" or n == "L" or n == "D" or n.startswith("s_")}
    tiles = dict(BT=compiled._BT, BC=compiled._BC)
    try:
        for has_z, save in ((True, True), (False, False)):
            interpreted.compile_for_sm90(compiled._fwd_kernel, {**ptrs, **ints, "scale": "fp32"},
                                         dict(tiles, HAS_Z=has_z, SAVE=save), compiled._WARPS)
        interpreted.compile_for_sm90(compiled._bwd_kernel, {**ptrs, **ints, "scale": "fp32"}, tiles, compiled._WARPS)
    except triton.CompilationError:
        raise
    except Exception as e:  # no CUDA backend or ptxas in this Triton build: nothing to check here
        pytest.skip(f"cannot compile for sm_90 here: {type(e).__name__}: {e}")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_triton_gpu_vim_t(dtype):
    """Vim-T's shape (batch cut down), channels-last as the mixer hands it over, against the float64 reference."""
    from vimamba.kernels import _common, merge_gate as kernels
    _common._POISON = True
    try:
        y = torch.randn(8, 2, 197, 768, device="cuda").to(dtype).transpose(2, 3)
        z = torch.randn(8, 197, 1536, device="cuda").to(dtype)[..., 768:].transpose(1, 2)
        out, merged = kernels.merge_gate_fwd(y, z, 0.5, True)
        dout = torch.randn_like(out)
        dy, dz = kernels.merge_gate_bwd(dout, z, merged, 0.5)
    finally:
        _common._POISON = False
    out_ref, merged_ref = ref.merge_gate_fwd(y.double(), z.double(), 0.5, True)
    dy_ref, dz_ref = ref.merge_gate_bwd(dout.double(), z.double(), merged_ref, 0.5)
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    for name, a, b in (("out", out, out_ref), ("merged", merged, merged_ref), ("dy", dy, dy_ref), ("dz", dz, dz_ref)):
        assert not a.isnan().any(), name
        assert ((a.double() - b).norm() / b.norm()).item() < tol, name
