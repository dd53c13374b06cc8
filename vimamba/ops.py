"""Public ops: `selective_scan` and `causal_conv1d` (validate, pick a backend, call the registered custom op).

The selective scan (S6) over K directions, each reading the tokens in its own order:

    delta_t = softplus(delta_t + delta_bias)                    (bias and softplus when asked)
    h_t = exp(delta_t * A[k, d, n]) * h_{t-1} + delta_t * B_t[n] * u_t
    y_t = sum_n C_t[n] * h_t[n] + D[k, d] * u_t,   then y_t *= silu(z_t) when z is given

with fp32 accumulation whatever the input dtype. `local_window = W > 0` switches to LBMamba's locally
bi-directional scan: h_t is replaced by h_t + r_t - delta_t * B_t * u_t, r being the reverse recurrence
r_t = exp(delta_t * A) * r_{t+1} + delta_t * B_t * u_t restricted to the window of W scanned steps
holding t (windows start at step 0 of the scan; the last one may be partial).

Layers:
- `selective_scan(...)`: the public function. Checks arguments (cheap: shapes, dtypes, devices; the
  permutation check of a raw `order` tensor is the only host sync, and `ScanOrder` objects skip it),
  normalises to the K-explicit 4-D layout and calls the op. It is a leaf for torch.fx tracing.
- `torch.ops.vimamba.selective_scan`: the registered custom op (one opaque node for torch.compile and
  for the jit trace of fvcore / mmengine FLOP counters), with a fake (meta) implementation and an
  autograd formula that calls the backend's backward through a second op,
  `torch.ops.vimamba.selective_scan_bwd`. The backward recomputes the forward, so the saved state is
  just the inputs.
- Backends are modules with `selective_scan_fwd` / `selective_scan_bwd` (see kernels/reference.py),
  imported lazily by name through `_BACKENDS`.

The `last_state` output (`return_last_state=True`) is for inference and inspection: it is marked
non-differentiable (requires_grad False), so no gradient flows through it.

`causal_conv1d(x, weight, bias, reverse, silu)`: Mamba's depthwise conv before the scan, K directions from
one (B, L, E) input into u (B, K, L, E), SiLU fused (kernels/causal_conv1d_reference.py states it exactly).
Built the same way: `torch.ops.vimamba.causal_conv1d` and `torch.ops.vimamba.causal_conv1d_bwd`, backends
"reference" and "triton" (`_CONV_BACKENDS`), chosen like the scan's ("mamba_ssm", a scan-only backend,
means "auto" here), a FLOP formula and an fvcore handle.

`add_rms_norm(hidden, residual, weight, eps, residual_dtype, out_dtype)`: the pre-norm block's residual add and
RMSNorm in one pass (kernels/add_rmsnorm_reference.py states it exactly), returning (normed, residual_out).
`torch.ops.vimamba.add_rms_norm` and `torch.ops.vimamba.add_rms_norm_bwd`, backends "reference" and "triton"
(`_NORM_BACKENDS`) chosen like the conv's; under "auto" a dim the Triton kernel declines (a row too long for
registers) falls back to the reference. No FLOP formula: a norm is elementwise work, which the fvcore
convention leaves uncounted (vimamba.benchmark ignores the node).
"""
import contextlib
import importlib
import os
import warnings
from typing import List, Optional, Sequence, Tuple

import torch
import torch.fx
from torch import Tensor

from .scans.base import GridOrder, ScanOrder, pattern_by_key

__all__ = ["selective_scan", "selective_scan_flops", "selective_scan_flop_jit", "causal_conv1d",
           "causal_conv1d_flops", "causal_conv1d_flop_jit", "add_rms_norm", "available_backends", "resolve_backend"]

# name -> module implementing selective_scan_fwd / selective_scan_bwd, imported on first use.
_BACKENDS = {
    "reference": "vimamba.kernels.reference",
    "triton": "vimamba.kernels.selective_scan",
    "mamba_ssm": "vimamba.kernels.mamba_ssm_backend",
}
# name -> module implementing causal_conv1d_fwd / causal_conv1d_bwd.
_CONV_BACKENDS = {
    "reference": "vimamba.kernels.causal_conv1d_reference",
    "triton": "vimamba.kernels.causal_conv1d",
}
# name -> module implementing add_rms_norm_fwd / add_rms_norm_bwd.
_NORM_BACKENDS = {
    "reference": "vimamba.kernels.add_rmsnorm_reference",
    "triton": "vimamba.kernels.add_rmsnorm",
}
_OP_BACKENDS = {"selective_scan": _BACKENDS, "causal_conv1d": _CONV_BACKENDS, "add_rms_norm": _NORM_BACKENDS}
_BACKEND_CHOICES = ("auto",) + tuple(_BACKENDS)
_ENV_BACKEND = "VIMAMBA_BACKEND"
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_MAX_CONV_KERNEL = 8
_loaded = {}


def _load_backend(name: str, op: str = "selective_scan"):
    path = _OP_BACKENDS[op][name]
    module = _loaded.get(path)
    if module is None:
        try:
            module = importlib.import_module(path)
        except Exception as e:  # ImportError, or a kernel module failing at import time
            raise RuntimeError(
                f"{op} backend {name!r} is not available: importing {path} "
                f"failed with {type(e).__name__}: {e}") from e
        _loaded[path] = module
    return module


def available_backends() -> Tuple[str, ...]:
    """Backend names whose module imports here (tries each once)."""
    found = []
    for name in _BACKENDS:
        try:
            _load_backend(name)
        except RuntimeError:
            continue
        found.append(name)
    return tuple(found)


def _triton_interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _check_backend_name(name: str, what: str, op: str = "selective_scan") -> None:
    if name not in _BACKEND_CHOICES:
        raise ValueError(f"{what}: unknown {op} backend {name!r}; expected one of {_BACKEND_CHOICES}")


def _backend_argument(backend, op: str) -> str:
    """The `backend` argument of a public op, checked: None means "auto"."""
    name = "auto" if backend is None else backend
    if not isinstance(name, str):
        raise TypeError(f"backend: expected a str in {_BACKEND_CHOICES} or None, got {_describe(backend)}")
    _check_backend_name(name, "backend", op)
    return name


def resolve_backend(backend: Optional[str], device: torch.device, op: str = "selective_scan") -> str:
    """The concrete backend of `op` ("selective_scan", "causal_conv1d" or "add_rms_norm") for `backend` ("auto"/None
    follow VIMAMBA_BACKEND, else triton on CUDA when its module imports, else reference) and tensors on
    `device`."""
    name = "auto" if backend is None else backend
    if name == "auto":
        name = os.environ.get(_ENV_BACKEND, "auto") or "auto"
        _check_backend_name(name, f"environment variable {_ENV_BACKEND}", op)
    if name not in _OP_BACKENDS[op]:
        # mamba_ssm brings only the scan: the ops around it take what "auto" would, so that one setting
        # (VIMAMBA_BACKEND=mamba_ssm) runs a whole model.
        name = "auto"
    if name == "auto":
        name = "reference"
        # ROCm: the Triton kernels use NVIDIA PTX inline assembly and assume 32-lane warps
        if device.type == "cuda" and not torch.version.hip:
            try:
                _load_backend("triton", op)
                name = "triton"
            except RuntimeError:
                pass
    if name in ("triton", "mamba_ssm") and device.type != "cuda":
        # The Triton interpreter runs kernels on CPU tensors (CI); mamba_ssm is CUDA only.
        if not (name == "triton" and (_triton_interpreted() or device.type == "meta")):
            raise ValueError(
                f"backend: {name!r} needs CUDA tensors, got tensors on {device}"
                + (" (set TRITON_INTERPRET=1 to run Triton kernels on CPU)" if name == "triton" else ""))
    return name


@contextlib.contextmanager
def _autograd_dispatch():
    """Re-enable autograd inside a custom-op implementation.

    A custom op's implementation runs below the autograd dispatch keys (torch excludes them), so a
    backend backward that differentiates a recomputed forward with torch.autograd.grad (the reference
    does) would see no graph. This guard lifts that exclusion for the duration of the call.
    """
    keys = [getattr(torch._C.DispatchKey, k, None)
            for k in ("AutogradFunctionality", "AutogradOther", "AutogradNestedTensor")]
    guard = getattr(torch._C, "_SetExcludeDispatchKeyGuard", None)
    with contextlib.ExitStack() as stack:
        if guard is not None:
            for key in keys:
                if key is not None:
                    stack.enter_context(guard(key, False))
        with torch.enable_grad():
            yield


_warned_fallback = set()


def _run_backend(backend: str, function: str, *args):
    """Call `function` of the backend that `backend` resolves to for these tensors (args[0] is u in
    the forward, dy in the backward: both on the op's device). Under "auto" (no explicit choice, no
    VIMAMBA_BACKEND), a kernel that declines a shape with NotImplementedError (e.g. Triton with a
    d_state that is not a power of two) falls back to the reference, with one warning per reason;
    the backward resolves the same way, so forward and backward use the same backend."""
    device = args[0].device
    name = resolve_backend(backend, device)
    try:
        return getattr(_load_backend(name), function)(*args)
    except NotImplementedError as e:
        explicit = backend != "auto" or os.environ.get(_ENV_BACKEND, "auto") not in ("", "auto")
        if name == "reference" or explicit:
            raise
        if str(e) not in _warned_fallback:
            _warned_fallback.add(str(e))
            warnings.warn(f"selective_scan: backend {name!r} declined ({e}); using the reference backend",
                          stacklevel=2)
        return getattr(_load_backend("reference"), function)(*args)


# ----------------------------------------------------------------------------------------------
# The custom ops
# ----------------------------------------------------------------------------------------------
def _in_layout_of(out: Tensor, like: Tensor) -> Tensor:
    """`out` with the strides of `torch.empty_like(like)`, the layout the fake implementations promise.

    Outputs follow their input's layout, so channels-last inputs (a token's channels contiguous, as the
    linear layers make them) give channels-last outputs and gradients without a transpose copy.
    """
    if out.stride() == torch.empty_like(like, device="meta").stride():
        return out
    return torch.empty_like(like, dtype=out.dtype).copy_(out)


@torch.library.custom_op("vimamba::selective_scan", mutates_args=())
def _selective_scan_op(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Optional[Tensor],
    z: Optional[Tensor],
    delta_bias: Optional[Tensor],
    index: Optional[Tensor],
    delta_softplus: bool,
    local_window: int,
    backend: str,
    order_grid: Optional[List[int]] = None,
) -> Tuple[Tensor, Tensor]:
    """Normalised selective scan: u, delta, z (b, K, d, L); B, C (b, K, N, L); A (K, d, N); D,
    delta_bias (K, d); index (K, L) long or None, or `order_grid` [pattern key, h, w] naming a cached order.
    Returns y (b, K, d, L) in u's dtype and the last forward state (b, K, d, N) fp32."""
    index = _grid_index(order_grid, u.device) if order_grid else index
    y, last_state = _run_backend(
        backend, "selective_scan_fwd", u, delta, A, B, C, D, z, delta_bias, delta_softplus, index,
        local_window)
    return _in_layout_of(y, u), last_state


@_selective_scan_op.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, index, delta_softplus, local_window, backend, order_grid=None):
    batch, K, d, _ = u.shape
    if index is not None:
        # Ties a traced length to the scan order's, so that torch.export never drops an order built for one size.
        torch._check(index.shape[-1] == u.shape[-1], lambda: f"order: index of length {index.shape[-1]} for a "
                     f"sequence of {u.shape[-1]} tokens")
    return torch.empty_like(u), u.new_empty((batch, K, d, A.shape[-1]), dtype=torch.float32)


@torch.library.custom_op("vimamba::selective_scan_bwd", mutates_args=())
def _selective_scan_bwd_op(
    dy: Tensor,
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Optional[Tensor],
    z: Optional[Tensor],
    delta_bias: Optional[Tensor],
    index: Optional[Tensor],
    delta_softplus: bool,
    local_window: int,
    backend: str,
    order_grid: Optional[List[int]] = None,
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients (du, ddelta, dA, dB, dC, dD, dz, ddelta_bias); an absent input gets an empty tensor
    (the op schema has no optional outputs)."""
    index = _grid_index(order_grid, u.device) if order_grid else index
    with _autograd_dispatch():
        grads = _run_backend(
            backend, "selective_scan_bwd", dy, u, delta, A, B, C, D, z, delta_bias,
            delta_softplus, index, local_window)
    return tuple(u.new_empty(0) if g is None else _in_layout_of(g, t)
                 for g, t in zip(grads, (u, delta, A, B, C, D, z, delta_bias)))


@_selective_scan_bwd_op.register_fake
def _(dy, u, delta, A, B, C, D, z, delta_bias, index, delta_softplus, local_window, backend, order_grid=None):
    return tuple(u.new_empty(0) if t is None else torch.empty_like(t)
                 for t in (u, delta, A, B, C, D, z, delta_bias))


def _grid_index(order_grid: List[int], device: torch.device) -> Tensor:
    key, h, w = order_grid
    return pattern_by_key(key).order(h, w, device).index


def _setup_context(ctx, inputs, output):
    u, delta, A, B, C, D, z, delta_bias, index, delta_softplus, local_window, backend = inputs[:12]
    ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, index)
    ctx.order_grid = inputs[12] if len(inputs) > 12 else None
    ctx.mark_non_differentiable(output[1])  # last_state: inference and inspection only
    ctx.delta_softplus = delta_softplus
    ctx.local_window = local_window
    ctx.backend = backend


def _backward(ctx, dy, dlast_state):
    # last_state is marked non-differentiable: dlast_state is always None or zeros.
    u, delta, A, B, C, D, z, delta_bias, index = ctx.saved_tensors
    grads = torch.ops.vimamba.selective_scan_bwd(
        dy, u, delta, A, B, C, D, z, delta_bias, index, ctx.delta_softplus, ctx.local_window,
        ctx.backend, ctx.order_grid)
    grads = [None if t is None else g for g, t in zip(grads, (u, delta, A, B, C, D, z, delta_bias))]
    return (*grads, None, None, None, None, None)


_selective_scan_op.register_autograd(_backward, setup_context=_setup_context)


def selective_scan_flops(batch: int, K: int, d: int, L: int, N: int, has_D: bool = True,
                         has_z: bool = False) -> int:
    """Multiply-accumulate count of one forward, fvcore style (one MAC = one FLOP).

    9 * batch * K * d * L * N for the recurrence and the C contraction (the figure VMamba, MaIR and
    MobileMamba register for their scan, after mamba issue #110), plus batch * K * d * L for the D skip
    and as much again for the z gate. The LBMamba window-local reverse pass (about 3 more per state
    and step) is not added, so figures stay comparable with the VMamba-style count (LBVim's own fvcore
    figures leave the scan out altogether).
    """
    flops = 9 * batch * K * d * L * N
    if has_D:
        flops += batch * K * d * L
    if has_z:
        flops += batch * K * d * L
    return flops


def selective_scan_flop_jit(inputs, outputs) -> int:
    """fvcore / mmengine handle for the traced `vimamba::selective_scan` node:
    `FlopCountAnalysis(model, x).set_op_handle("vimamba::selective_scan", selective_scan_flop_jit)`.
    Reads (batch, K, d, L) from u, N from A, and whether D and z are tensors (not None)."""
    def sizes(value):
        kind = value.type()
        return kind.sizes() if isinstance(kind, torch._C.TensorType) else None

    batch, K, d, L = sizes(inputs[0])
    return selective_scan_flops(batch, K, d, L, sizes(inputs[2])[-1], sizes(inputs[5]) is not None,
                                sizes(inputs[6]) is not None)


def _register_flop_formula():
    try:
        from torch.utils.flop_counter import register_flop_formula
    except ImportError:  # older torch
        return

    @register_flop_formula(torch.ops.vimamba.selective_scan)
    def _flops(u_shape, delta_shape, A_shape, B_shape, C_shape, D_shape, z_shape, *args, **kwargs):
        batch, K, d, L = u_shape
        return selective_scan_flops(batch, K, d, L, A_shape[-1], D_shape is not None, z_shape is not None)


_register_flop_formula()


# ----------------------------------------------------------------------------------------------
# The public function
# ----------------------------------------------------------------------------------------------
def _describe(t) -> str:
    if isinstance(t, Tensor):
        return f"tensor of shape {tuple(t.shape)} and dtype {t.dtype} on {t.device}"
    return f"{type(t).__name__} {t!r}"


def _check_tensor(name: str, t, shape: Tuple[int, ...], shape_text: str, device: torch.device,
                  device_of: str = "u") -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name}: expected a tensor {shape_text}, got {_describe(t)}")
    if t.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name}: expected a floating tensor (float16, bfloat16, float32 or float64), "
                        f"got {_describe(t)}")
    if tuple(t.shape) != shape:
        raise ValueError(f"{name}: expected shape {shape_text} = {shape}, got {_describe(t)}")
    if t.device != device:
        raise ValueError(f"{name}: expected a tensor on {device} (the device of {device_of}), got {_describe(t)}")


def _is_compiling() -> bool:
    try:
        return torch.compiler.is_compiling()
    except AttributeError:  # torch < 2.3
        return False


def _normalise_order(order, local_window: int, K: int, L: int, device: torch.device):
    """(index (K, L) long or None, local_window) from `order` and the `local_window` argument."""
    if order is None or isinstance(order, GridOrder):
        return order, local_window  # a GridOrder (torch.compile) is resolved by the op when it runs
    if isinstance(order, ScanOrder):
        index = order.index
        if order.local_window and local_window and order.local_window != local_window:
            raise ValueError(f"local_window: got {local_window} while order.local_window is "
                             f"{order.local_window}; pass one of them, or equal values")
        local_window = local_window or order.local_window
        trusted = True  # built and validated by vimamba.scans
    elif isinstance(order, Tensor):
        index = order
        trusted = False
    else:
        raise TypeError(f"order: expected a vimamba.scans.ScanOrder, a (K, L) long tensor or None, "
                        f"got {_describe(order)}")
    if index.dtype != torch.long:
        raise TypeError(f"order: expected an index of dtype torch.int64, got {_describe(index)}")
    if index.dim() == 1 and K == 1:
        index = index[None]
    if index.dim() != 2 or index.size(0) != K or index.size(1) != L:
        raise ValueError(f"order: expected an index of shape (K, L) = {(K, L)}, got {_describe(index)}")
    if index.device != device:
        raise ValueError(f"order: expected an index on {device} (the device of u), got {_describe(index)}")
    if not trusted and index.device.type != "meta" and not _is_compiling():
        # The one host sync of the checks; ScanOrder objects are permutations by construction.
        steps = torch.arange(L, device=index.device)
        if not torch.equal(index.sort(dim=1).values, steps.expand(K, L)):
            raise ValueError(f"order: every row of the index must be a permutation of 0..{L - 1}, "
                             f"got {_describe(index)} that is not")
    return index.contiguous(), local_window


def _check_arguments(u, delta, A, B, C, D, z, delta_bias, delta_softplus, order, local_window,
                     return_last_state, backend):
    """The argument checks of `selective_scan`; returns (3-D layout?, index or None, local window,
    backend name)."""
    # ---- shapes and dtypes
    if not isinstance(u, Tensor):
        raise TypeError(f"u: expected a tensor (batch, K, d, L) or (batch, d, L), got {_describe(u)}")
    if u.dim() not in (3, 4):
        raise ValueError(f"u: expected 4 dims (batch, K, d, L) or 3 dims (batch, d, L), got {_describe(u)}")
    if u.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"u: expected float16, bfloat16, float32 or float64, got {_describe(u)}")
    squeeze = u.dim() == 3
    if squeeze:
        batch, d, L = u.shape
        K = 1
    else:
        batch, K, d, L = u.shape
    if not isinstance(A, Tensor) or A.dim() != (2 if squeeze else 3):
        expected = "(d, N) for a 3-D u" if squeeze else "(K, d, N) for a 4-D u"
        raise ValueError(f"A: expected shape {expected}, got {_describe(A)}")
    N = A.shape[-1]
    k_ = () if squeeze else (K,)
    k_text = "" if squeeze else "K, "
    dev = u.device
    _check_tensor("A", A, k_ + (d, N), f"({k_text}d, N)", dev)
    _check_tensor("delta", delta, tuple(u.shape), "like u", dev)
    _check_tensor("B", B, (batch,) + k_ + (N, L), f"(batch, {k_text}N, L)", dev)
    _check_tensor("C", C, (batch,) + k_ + (N, L), f"(batch, {k_text}N, L)", dev)
    if z is not None:
        _check_tensor("z", z, tuple(u.shape), "like u", dev)
    if D is not None:
        _check_tensor("D", D, k_ + (d,), f"({k_text}d)", dev)
    if delta_bias is not None:
        _check_tensor("delta_bias", delta_bias, k_ + (d,), f"({k_text}d)", dev)
    for name, t in (("delta", delta), ("B", B), ("C", C), ("z", z)):
        if t is not None and t.dtype != u.dtype:
            raise TypeError(f"{name}: expected dtype {u.dtype} (the dtype of u; u, delta, z, B and C "
                            f"must share one), got {_describe(t)}")

    # ---- flags
    if not isinstance(delta_softplus, bool):
        raise TypeError(f"delta_softplus: expected a bool, got {_describe(delta_softplus)}")
    if not isinstance(return_last_state, bool):
        raise TypeError(f"return_last_state: expected a bool, got {_describe(return_last_state)}")
    if isinstance(local_window, bool) or not isinstance(local_window, int):
        raise TypeError(f"local_window: expected an int >= 0, got {_describe(local_window)}")
    if local_window < 0:
        raise ValueError(f"local_window: expected an int >= 0 (0 = plain scan), got {local_window}")
    name = _backend_argument(backend, "selective_scan")

    index, local_window = _normalise_order(order, local_window, K, L, dev)
    return squeeze, index, local_window, name



def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Optional[Tensor] = None,
    z: Optional[Tensor] = None,
    delta_bias: Optional[Tensor] = None,
    delta_softplus: bool = True,
    *,
    order=None,
    local_window: int = 0,
    return_last_state: bool = False,
    backend: Optional[str] = None,
):
    """Selective scan over K directions (see the module docstring for the recurrence).

    Args:
        u, delta, z: (batch, K, d, L), or (batch, d, L) for K = 1 (y is then 3-D too). Token order.
        A: (K, d, N) (or (d, N)). B, C: (batch, K, N, L) (or (batch, N, L)). D, delta_bias: (K, d)
            (or (d,)). u, delta, z, B, C share one float dtype; A, D, delta_bias are any float dtype.
        delta_softplus: delta <- softplus(delta + delta_bias).
        order: a `vimamba.scans.ScanOrder` (or the `GridOrder` naming one that a pattern's `op_order` gives
            under torch.compile), a (K, L) long tensor (direction k visits token
            index[k, t] at step t; each row a permutation), or None (every direction scans 0..L-1).
            y is returned in token order either way.
        local_window: W > 0 for LBMamba's window-local reverse scan, 0 for the plain scan. A
            ScanOrder's own `local_window` applies when this is 0.
        return_last_state: also return the forward state after the last scanned step, (batch, K, d, N)
            fp32 (not differentiable).
        backend: "auto" (None), "reference", "triton" or "mamba_ssm"; VIMAMBA_BACKEND overrides "auto".

    Returns:
        y in u's dtype and shape, or (y, last_state).
    """
    args = (u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    if any(isinstance(a, torch.fx.Proxy) for a in args):
        # Symbolic tracing (torch.fx, timm's FX feature extraction): record one leaf call, however
        # the caller imported this function. Arguments are checked when the traced graph runs.
        proxy = next(a for a in args if isinstance(a, torch.fx.Proxy))
        if isinstance(order, ScanOrder):
            # Pass the index tensor; its window goes to local_window (same meaning at run time).
            if order.local_window and not local_window:
                local_window = order.local_window
            order = order.index
        return proxy.tracer.create_proxy(
            "call_function", _SELECTIVE_SCAN, args,
            dict(order=order, local_window=local_window, return_last_state=return_last_state,
                 backend=backend))

    arguments = (u, delta, A, B, C, D, z, delta_bias, delta_softplus, order, local_window,
                 return_last_state, backend)
    if torch.jit.is_tracing():
        # FLOP counters (fvcore, mmengine) trace with torch.jit: the shape checks then compare traced
        # sizes, which is right for this one concrete run but warns at every call.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            squeeze, index, local_window, name = _check_arguments(*arguments)
    else:
        squeeze, index, local_window, name = _check_arguments(*arguments)

    # ---- normalise to the K-explicit layout and call the op
    if squeeze:
        u, delta, B, C, A = u[:, None], delta[:, None], B[:, None], C[:, None], A[None]
        z = None if z is None else z[:, None]
        D = None if D is None else D[None]
        delta_bias = None if delta_bias is None else delta_bias[None]
    # u, delta, z, B, C keep their strides (the kernels read any layout); the small parameters are made
    # contiguous.
    A, D, delta_bias = [None if t is None else t.contiguous() for t in (A, D, delta_bias)]
    grid = None
    if isinstance(index, GridOrder):
        grid, index = list(index), None
    y, last_state = torch.ops.vimamba.selective_scan(
        u, delta, A, B, C, D, z, delta_bias, index, delta_softplus, local_window, name, grid)
    if squeeze:
        y = y[:, 0]
    return (y, last_state) if return_last_state else y


# The node target recorded under symbolic tracing. Deliberately no `torch.fx.wrap("selective_scan")`:
# that patches only this module's global, so a model doing `from vimamba.ops import selective_scan`
# would be traced through; the Proxy branch at the top of the function covers every caller.
_SELECTIVE_SCAN = selective_scan


# ----------------------------------------------------------------------------------------------
# The causal depthwise conv before the scan
# ----------------------------------------------------------------------------------------------
def _flags(reverse) -> Tuple[bool, ...]:
    return tuple(bool(r) for r in reverse)


def _run_conv_backend(backend: str, function: str, *args):
    """`function` of the conv backend that `backend` resolves to for args[0]'s device (x in the forward,
    du in the backward). No fallback as for the scan: the public checks leave no shape a kernel declines."""
    name = resolve_backend(backend, args[0].device, "causal_conv1d")
    return getattr(_load_backend(name, "causal_conv1d"), function)(*args)


@torch.library.custom_op("vimamba::causal_conv1d", mutates_args=())
def _causal_conv1d_op(x: Tensor, weight: Tensor, bias: Optional[Tensor], reverse: List[int], silu: bool,
                      backend: str) -> Tensor:
    """Normalised causal conv: x (B, L, E) with unit channel stride, weight (K, E, k) and bias (K, E)
    contiguous, reverse K ints 0 / 1 (torch.jit traces no bool lists, and FLOP counters trace). Returns
    u (B, K, L, E) direction-major (u.transpose(0, 1) contiguous) in x's dtype."""
    u = _run_conv_backend(backend, "causal_conv1d_fwd", x, weight, bias, _flags(reverse), silu)
    return u.transpose(0, 1).contiguous().transpose(0, 1)


@_causal_conv1d_op.register_fake
def _(x, weight, bias, reverse, silu, backend):
    batch, length, channels = x.shape
    return x.new_empty((weight.shape[0], batch, length, channels)).transpose(0, 1)


@torch.library.custom_op("vimamba::causal_conv1d_bwd", mutates_args=())
def _causal_conv1d_bwd_op(du: Tensor, x: Tensor, weight: Tensor, bias: Optional[Tensor], reverse: List[int],
                          silu: bool, backend: str) -> Tuple[Tensor, Tensor, Tensor]:
    """Gradients (dx, dweight, dbias) in the layouts of x, weight, bias; an empty dbias without bias (the
    op schema has no optional outputs)."""
    with _autograd_dispatch():
        grads = _run_conv_backend(backend, "causal_conv1d_bwd", du, x, weight, bias, _flags(reverse), silu)
    return tuple(x.new_empty(0) if g is None else _in_layout_of(g, t) for g, t in zip(grads, (x, weight, bias)))


@_causal_conv1d_bwd_op.register_fake
def _(du, x, weight, bias, reverse, silu, backend):
    return tuple(x.new_empty(0) if t is None else torch.empty_like(t) for t in (x, weight, bias))


def _conv_setup_context(ctx, inputs, output):
    x, weight, bias, reverse, silu, backend = inputs
    # Only the inputs: the backward recomputes the conv (cheaper than keeping K pre-activation copies).
    ctx.save_for_backward(x, weight, bias)
    ctx.reverse, ctx.silu, ctx.backend = reverse, silu, backend


def _conv_backward(ctx, du):
    x, weight, bias = ctx.saved_tensors
    dx, dweight, dbias = torch.ops.vimamba.causal_conv1d_bwd(du, x, weight, bias, ctx.reverse, ctx.silu,
                                                             ctx.backend)
    return dx, dweight, None if bias is None else dbias, None, None, None


_causal_conv1d_op.register_autograd(_conv_backward, setup_context=_conv_setup_context)


def causal_conv1d_flops(batch: int, K: int, L: int, E: int, k: int) -> int:
    """Multiply-accumulates of one forward, fvcore style (one MAC = one FLOP): batch * K * L * E * k.
    The bias and the SiLU are elementwise, which fvcore's convention leaves out."""
    return batch * K * L * E * k


def causal_conv1d_flop_jit(inputs, outputs) -> int:
    """fvcore / mmengine handle for the traced `vimamba::causal_conv1d` node: (batch, L, E) from x,
    (K, E, k) from weight."""
    def sizes(value):
        return value.type().sizes()

    batch, length, channels = sizes(inputs[0])
    K, _, k = sizes(inputs[1])
    return causal_conv1d_flops(batch, K, length, channels, k)


def _register_conv_flop_formula():
    try:
        from torch.utils.flop_counter import register_flop_formula
    except ImportError:  # older torch
        return

    @register_flop_formula(torch.ops.vimamba.causal_conv1d)
    def _flops(x_shape, weight_shape, *args, **kwargs):
        batch, length, channels = x_shape
        return causal_conv1d_flops(batch, weight_shape[0], length, channels, weight_shape[-1])


_register_conv_flop_formula()


def _check_conv_arguments(x, weight, bias, reverse, silu, backend) -> str:
    """The argument checks of `causal_conv1d`; returns the backend name."""
    if not isinstance(x, Tensor):
        raise TypeError(f"x: expected a tensor (B, L, E), got {_describe(x)}")
    if x.dim() != 3:
        raise ValueError(f"x: expected 3 dims (B, L, E), got {_describe(x)}")
    if x.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"x: expected float16, bfloat16, float32 or float64, got {_describe(x)}")
    channels = x.shape[-1]
    if not isinstance(weight, Tensor):
        raise TypeError(f"weight: expected a tensor (K, E, k), got {_describe(weight)}")
    if weight.dim() != 3 or weight.shape[0] < 1 or weight.shape[1] != channels or not (
            1 <= weight.shape[2] <= _MAX_CONV_KERNEL):
        raise ValueError(f"weight: expected shape (K, E, k) with K >= 1 directions, E = {channels} (the channels "
                         f"of x) and a kernel k from 1 to {_MAX_CONV_KERNEL}, got {_describe(weight)}")
    _check_tensor("weight", weight, tuple(weight.shape), "(K, E, k)", x.device, "x")
    K = weight.shape[0]
    if bias is not None:
        _check_tensor("bias", bias, (K, channels), "(K, E)", x.device, "x")
    if not isinstance(reverse, (tuple, list)) or not all(isinstance(r, bool) for r in reverse):
        raise TypeError(f"reverse: expected a tuple of K bools (one per direction: True scans L-1 .. 0), "
                        f"got {_describe(reverse)}")
    if len(reverse) != K:
        raise ValueError(f"reverse: expected K = {K} bools (one per direction of weight {tuple(weight.shape)}), "
                         f"got {len(reverse)}: {tuple(reverse)}")
    if not isinstance(silu, bool):
        raise TypeError(f"silu: expected a bool, got {_describe(silu)}")
    name = _backend_argument(backend, "causal_conv1d")
    return name


def causal_conv1d(
    x: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    reverse: Sequence[bool] = (False,),
    silu: bool = True,
    backend: Optional[str] = None,
) -> Tensor:
    """Depthwise conv over the tokens of x, causal in each of K scan directions, SiLU fused.

    u[:, i] = act(y_i), act SiLU when `silu` (else identity), with x read as 0 outside 0..L-1 and for
    direction i (w = weight[i, e], c = bias[i, e]):
        reverse[i] False:  y[l, e] = c + sum_j w[j] * x[l + j - (k-1), e]      (sees tokens <= l)
        reverse[i] True:   y[l, e] = c + sum_j w[k-1-j] * x[l + j, e]          (sees tokens >= l)
    The reversed direction is what a causal conv gives on the flipped sequence, flipped back; no flipped
    copy is made. Accumulates in fp32.

    Args:
        x: (B, L, E), any float dtype; a token's channels contiguous (other strides free; otherwise a
            contiguous copy is made).
        weight: (K, E, k), k from 1 to 8 (nn.Conv1d's depthwise weight (E, 1, k), stacked over directions
            without the 1). bias: (K, E) or None. Any float dtypes; gradients come back in theirs.
        reverse: K bools, True where the direction scans L-1 .. 0.
        silu: apply SiLU to the conv output.
        backend: "auto" (None), "reference" or "triton"; VIMAMBA_BACKEND overrides "auto"; "mamba_ssm"
            (a scan-only backend) means "auto" for this op.

    Returns:
        u (B, K, L, E) contiguous in x's dtype: u.transpose(2, 3) is the channels-last (B, K, E, L) view
        the selective scan reads fastest.
    """
    if any(isinstance(a, torch.fx.Proxy) for a in (x, weight, bias)):
        # Symbolic tracing: one leaf call, as for selective_scan.
        proxy = next(a for a in (x, weight, bias) if isinstance(a, torch.fx.Proxy))
        return proxy.tracer.create_proxy("call_function", _CAUSAL_CONV1D, (x, weight, bias),
                                         dict(reverse=reverse, silu=silu, backend=backend))
    if torch.jit.is_tracing():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            name = _check_conv_arguments(x, weight, bias, reverse, silu, backend)
    else:
        name = _check_conv_arguments(x, weight, bias, reverse, silu, backend)
    if x.stride(-1) != 1:
        x = x.contiguous()
    weight = weight.contiguous()
    bias = None if bias is None else bias.contiguous()
    return torch.ops.vimamba.causal_conv1d(x, weight, bias, [int(r) for r in reverse], silu, name)


# The node target recorded under symbolic tracing (see _SELECTIVE_SCAN).
_CAUSAL_CONV1D = causal_conv1d


# ----------------------------------------------------------------------------------------------
# The residual add + RMSNorm of the pre-norm blocks
# ----------------------------------------------------------------------------------------------
def _run_norm_backend(backend: str, function: str, *args):
    """`function` of the add_rms_norm backend that `backend` resolves to for args[0]'s device (hidden in the
    forward, dnormed in the backward). Under "auto" a kernel that declines a shape (NotImplementedError: a row
    longer than the Triton kernel keeps in registers) falls back to the reference with one warning per reason;
    the backward resolves the same way as its forward."""
    name = resolve_backend(backend, args[0].device, "add_rms_norm")
    try:
        return getattr(_load_backend(name, "add_rms_norm"), function)(*args)
    except NotImplementedError as e:
        explicit = backend != "auto" or os.environ.get(_ENV_BACKEND, "auto") not in ("", "auto")
        if name == "reference" or explicit:
            raise
        if str(e) not in _warned_fallback:
            _warned_fallback.add(str(e))
            warnings.warn(f"add_rms_norm: backend {name!r} declined ({e}); using the reference backend",
                          stacklevel=2)
        return getattr(_load_backend("reference", "add_rms_norm"), function)(*args)


@torch.library.custom_op("vimamba::add_rms_norm", mutates_args=())
def _add_rms_norm_op(hidden: Tensor, residual: Optional[Tensor], weight: Tensor, eps: float,
                     residual_dtype: torch.dtype, out_dtype: torch.dtype, backend: str) -> Tuple[Tensor, Tensor]:
    """Normalised add + RMSNorm: hidden and residual (..., D) contiguous, weight (D,) contiguous. Returns
    (normed in out_dtype, residual_out in residual_dtype), contiguous in hidden's shape."""
    normed, residual_out = _run_norm_backend(backend, "add_rms_norm_fwd", hidden, residual, weight, eps,
                                             residual_dtype, out_dtype)
    return normed.contiguous(), residual_out.contiguous()


@_add_rms_norm_op.register_fake
def _(hidden, residual, weight, eps, residual_dtype, out_dtype, backend):
    return (hidden.new_empty(hidden.shape, dtype=out_dtype), hidden.new_empty(hidden.shape, dtype=residual_dtype))


@torch.library.custom_op("vimamba::add_rms_norm_bwd", mutates_args=())
def _add_rms_norm_bwd_op(dnormed: Tensor, dresidual_out: Optional[Tensor], residual_out: Tensor, weight: Tensor,
                         eps: float, hidden_dtype: torch.dtype, residual_in_dtype: Optional[torch.dtype],
                         backend: str) -> Tuple[Tensor, Tensor, Tensor]:
    """Gradients (dhidden, dresidual, dweight). dresidual is an empty tensor when there was no residual
    (residual_in_dtype None) or when it has hidden's dtype: dhidden is then its gradient too (the op schema has
    no optional outputs, and outputs may not alias)."""
    with _autograd_dispatch():
        dhidden, dresidual, dweight = _run_norm_backend(
            backend, "add_rms_norm_bwd", dnormed, dresidual_out, residual_out, weight, eps, hidden_dtype,
            residual_in_dtype)
    return (dhidden.contiguous(), residual_out.new_empty(0) if dresidual is None else dresidual.contiguous(),
            dweight.contiguous())


@_add_rms_norm_bwd_op.register_fake
def _(dnormed, dresidual_out, residual_out, weight, eps, hidden_dtype, residual_in_dtype, backend):
    shape = residual_out.shape
    write_dr = residual_in_dtype is not None and residual_in_dtype != hidden_dtype
    return (residual_out.new_empty(shape, dtype=hidden_dtype),
            residual_out.new_empty(shape, dtype=residual_in_dtype) if write_dr else residual_out.new_empty(0),
            torch.empty_like(weight))


def _norm_setup_context(ctx, inputs, output):
    hidden, residual, weight, eps, residual_dtype, out_dtype, backend = inputs
    # residual_out (an output, kept anyway as the next block's input) and weight: the backward recomputes rstd.
    ctx.save_for_backward(output[1], weight)
    ctx.eps, ctx.backend = eps, backend
    ctx.hidden_dtype = hidden.dtype
    ctx.residual_in_dtype = None if residual is None else residual.dtype


def _norm_backward(ctx, dnormed, dresidual_out):
    residual_out, weight = ctx.saved_tensors
    if dnormed is None:
        dnormed = torch.zeros_like(residual_out)
    dhidden, dresidual, dweight = torch.ops.vimamba.add_rms_norm_bwd(
        dnormed, dresidual_out, residual_out, weight, ctx.eps, ctx.hidden_dtype, ctx.residual_in_dtype,
        ctx.backend)
    if ctx.residual_in_dtype is None:
        dresidual = None
    elif ctx.residual_in_dtype == ctx.hidden_dtype:
        dresidual = dhidden  # the same gradient, as autograd's add hands it to both summands
    return dhidden, dresidual, dweight, None, None, None, None


_add_rms_norm_op.register_autograd(_norm_backward, setup_context=_norm_setup_context)


def _check_dtype_argument(name: str, dtype) -> None:
    if dtype is not None and (not isinstance(dtype, torch.dtype) or dtype not in _FLOAT_DTYPES):
        raise TypeError(f"{name}: expected None or a float dtype (float16, bfloat16, float32 or float64), "
                        f"got {_describe(dtype)}")


def _check_norm_arguments(hidden, residual, weight, eps, residual_dtype, out_dtype, backend) -> str:
    """The argument checks of `add_rms_norm`; returns the backend name."""
    if not isinstance(hidden, Tensor):
        raise TypeError(f"hidden: expected a tensor (..., D), got {_describe(hidden)}")
    if hidden.dim() < 1 or hidden.shape[-1] < 1:
        raise ValueError(f"hidden: expected a tensor (..., D) with D >= 1, got {_describe(hidden)}")
    if hidden.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"hidden: expected float16, bfloat16, float32 or float64, got {_describe(hidden)}")
    if residual is not None:
        _check_tensor("residual", residual, tuple(hidden.shape), "like hidden", hidden.device, "hidden")
    _check_tensor("weight", weight, (hidden.shape[-1],), "(D,), D the last dim of hidden", hidden.device, "hidden")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        raise TypeError(f"eps: expected a float >= 0, got {_describe(eps)}")
    if not eps >= 0:
        raise ValueError(f"eps: expected a float >= 0, got {eps!r}")
    _check_dtype_argument("residual_dtype", residual_dtype)
    _check_dtype_argument("out_dtype", out_dtype)
    name = _backend_argument(backend, "add_rms_norm")
    return name


def add_rms_norm(
    hidden: Tensor,
    residual: Optional[Tensor],
    weight: Tensor,
    eps: float = 1e-5,
    residual_dtype: Optional[torch.dtype] = None,
    out_dtype: Optional[torch.dtype] = None,
    backend: Optional[str] = None,
) -> Tuple[Tensor, Tensor]:
    """The pre-norm block's residual add and RMSNorm over the last dim, in one pass:

        residual_out = residual + hidden (hidden when residual is None), summed in fp32, stored in residual_dtype
        normed = residual_out * rsqrt(mean(residual_out^2, -1) + eps) * weight, in fp32, returned in out_dtype

    (fp64 instead of fp32 when an input or residual_dtype is fp64.) Gradients flow to hidden, residual and
    weight.

    Args:
        hidden: (..., D), any float dtype (the previous mixer's output).
        residual: like hidden (any float dtype), or None (the first block).
        weight: (D,), any float dtype.
        eps: added to the mean square.
        residual_dtype: the dtype of residual_out; None: hidden's and residual's dtypes promoted (torch's add).
            MambaBlock passes at least fp32 for `residual_in_fp32`.
        out_dtype: the dtype of normed; None: hidden's.
        backend: "auto" (None), "reference" or "triton"; VIMAMBA_BACKEND overrides "auto"; "mamba_ssm" (a
            scan-only backend) means "auto" for this op.

    Returns:
        (normed, residual_out), contiguous, in hidden's shape.
    """
    args = (hidden, residual, weight, eps, residual_dtype, out_dtype)
    if any(isinstance(a, torch.fx.Proxy) for a in args):
        # Symbolic tracing: one leaf call, as for selective_scan.
        proxy = next(a for a in args if isinstance(a, torch.fx.Proxy))
        return proxy.tracer.create_proxy("call_function", _ADD_RMS_NORM, args, dict(backend=backend))
    if torch.jit.is_tracing():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            name = _check_norm_arguments(*args, backend)
    else:
        name = _check_norm_arguments(*args, backend)
    if residual_dtype is None:
        residual_dtype = hidden.dtype if residual is None else torch.promote_types(hidden.dtype, residual.dtype)
    if out_dtype is None:
        out_dtype = hidden.dtype
    hidden = hidden.contiguous()
    residual = None if residual is None else residual.contiguous()
    return torch.ops.vimamba.add_rms_norm(hidden, residual, weight.contiguous(), float(eps), residual_dtype,
                                          out_dtype, name)


# The node target recorded under symbolic tracing (see _SELECTIVE_SCAN).
_ADD_RMS_NORM = add_rms_norm
