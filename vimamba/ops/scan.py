"""`selective_scan`: S6 over K directions, each reading the tokens in its own order, fp32 accumulation:
    delta_t = softplus(delta_t + delta_bias)                    (when asked)
    h_t = exp(delta_t * A[k, d, n]) * h_{t-1} + delta_t * B_t[n] * u_t
    y_t = sum_n C_t[n] * h_t[n] + D[k, d] * u_t,   then y_t *= silu(z_t) when z is given
LBMamba's `local_window = W > 0` adds r_t - delta_t * B_t * u_t to h_t, r_t = exp(delta_t * A) * r_{t+1} +
delta_t * B_t * u_t inside windows of W steps from step 0. Only a raw `order` tensor's permutation check syncs the host.
"""
from typing import List, Optional, Tuple

import torch
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula

from ..scans.base import GridOrder, ScanOrder, pattern_by_key
from .dispatch import (FLOAT_DTYPES, Op, backend_argument, check_tensor, checked, describe, fake_grad_outputs, fx_proxy,
                       grad_outputs, in_layout_of, jit_sizes, present_grads, run)


def _selective_scan_impl(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
                         z: Optional[Tensor], delta_bias: Optional[Tensor], index: Optional[Tensor],
                         delta_softplus: bool, local_window: int, backend: str,
                         order_grid: Optional[List[int]] = None) -> Tuple[Tensor, Tensor]:
    """Normalised selective scan; `order_grid` [pattern key, h, w] names a cached order in place of index."""
    index = _grid_index(order_grid, u.device) if order_grid else index
    y, last_state = run("selective_scan", "fwd", backend, u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                        index, local_window)
    return in_layout_of(y, u), last_state


_selective_scan_op = Op("selective_scan", _selective_scan_impl)


@_selective_scan_op.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, index, delta_softplus, local_window, backend, order_grid=None):
    batch, K, d, _ = u.shape
    if index is not None:
        # Ties a traced length to the order's, so torch.export keeps an order built for one size.
        torch._check(index.shape[-1] == u.shape[-1], lambda: f"order: index of length {index.shape[-1]} for a "
                     f"sequence of {u.shape[-1]} tokens")
    return torch.empty_like(u), u.new_empty((batch, K, d, A.shape[-1]), dtype=torch.float32)


def _selective_scan_bwd_impl(dy: Tensor, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                             D: Optional[Tensor], z: Optional[Tensor], delta_bias: Optional[Tensor],
                             index: Optional[Tensor], delta_softplus: bool, local_window: int, backend: str,
                             order_grid: Optional[List[int]] = None
                             ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients (du, ddelta, dA, dB, dC, dD, dz, ddelta_bias); an absent input gets an empty tensor."""
    index = _grid_index(order_grid, u.device) if order_grid else index
    grads = run("selective_scan", "bwd", backend, dy, u, delta, A, B, C, D, z, delta_bias, delta_softplus, index,
                local_window)
    return grad_outputs(grads, (u, delta, A, B, C, D, z, delta_bias))


_selective_scan_bwd_op = Op("selective_scan_bwd", _selective_scan_bwd_impl)


@_selective_scan_bwd_op.register_fake
def _(dy, u, delta, A, B, C, D, z, delta_bias, index, delta_softplus, local_window, backend, order_grid=None):
    return fake_grad_outputs((u, delta, A, B, C, D, z, delta_bias))


def _grid_index(order_grid: List[int], device: torch.device) -> Tensor:
    key, h, w = order_grid
    return pattern_by_key(key).order(h, w, device).index


# The op's tensor inputs (8 differentiable, then index) are saved for the backward op, which takes them after dy.
_SAVED = 9


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:_SAVED])
    ctx.options = tuple(inputs[_SAVED:])
    ctx.mark_non_differentiable(output[1])  # last_state: inference and inspection only


def _backward(ctx, dy, dlast_state):
    saved = ctx.saved_tensors
    grads = _selective_scan_bwd_op(dy, *saved, *ctx.options)
    return present_grads(grads, saved[:8]) + (None,) * (1 + len(ctx.options))


_selective_scan_op.register_autograd(_backward, setup_context=_setup_context)


def _merged_like(y: Tensor) -> Tensor:
    """An empty meta (b, d, L) tensor with y's dimension order without K: the merged output's layout."""
    one = y[:, 0]
    dims = sorted(range(3), key=lambda i: (one.stride(i), -i), reverse=True)
    return torch.empty([one.shape[i] for i in dims], device="meta", dtype=y.dtype).permute(
        [dims.index(i) for i in range(3)])


def _merge_gate_impl(y: Tensor, z: Optional[Tensor], scale: float, save_merged: bool, backend: str
                     ) -> Tuple[Tensor, Tensor]:
    """(out, the ungated merge the backward needs with save_merged and z, else an empty tensor)."""
    out, merged = run("merge_gate", "fwd", backend, y, z, scale, save_merged)
    like = _merged_like(y)

    def in_layout(t):
        return t if t.stride() == like.stride() else torch.empty_like(like, device=t.device).copy_(t)
    return in_layout(out), (y.new_empty(0) if merged is None or z is None else in_layout(merged))


_merge_gate_op = Op("merge_gate", _merge_gate_impl)


@_merge_gate_op.register_fake
def merge_gate_fake(y, z, scale, save_merged, backend):
    """Output shapes and layouts of `vimamba::merge_gate` (also what torch.compile asks export's decomposition)."""
    like = _merged_like(y)
    out = torch.empty_like(like, device=y.device)
    return out, (torch.empty_like(out) if save_merged and z is not None else y.new_empty(0))


def _merge_gate_bwd_impl(dout: Tensor, z: Optional[Tensor], merged: Tensor, scale: float, backend: str
                         ) -> Tuple[Tensor, Tensor]:
    """(dy, dz): dy (b, d, L) the gradient of every direction's y, dz empty without z."""
    dy, dz = run("merge_gate", "bwd", backend, dout, z, merged, scale)
    return in_layout_of(dy, dout), (dout.new_empty(0) if dz is None else in_layout_of(dz, z))


_merge_gate_bwd_op = Op("merge_gate_bwd", _merge_gate_bwd_impl)


@_merge_gate_bwd_op.register_fake
def _(dout, z, merged, scale, backend):
    return torch.empty_like(dout), (dout.new_empty(0) if z is None else torch.empty_like(z))


def _merge_setup_context(ctx, inputs, output):
    y, z, scale, save_merged, backend = inputs
    ctx.save_for_backward(z, output[1])
    ctx.K, ctx.scale, ctx.backend = y.shape[1], scale, backend
    ctx.mark_non_differentiable(output[1])


def _merge_backward(ctx, dout, dmerged):
    z, merged = ctx.saved_tensors
    if z is not None and merged.numel() == 0 and dout.numel() > 0:
        raise RuntimeError("merge_gate: the merged output was not saved (no input required grad in the forward)")
    dy, dz = _merge_gate_bwd_op(dout, z, merged, ctx.scale, ctx.backend)
    return dy.unsqueeze(1).expand(-1, ctx.K, -1, -1), (None if z is None else dz), None, None, None


_merge_gate_op.register_autograd(_merge_backward, setup_context=_merge_setup_context)


def selective_scan_flops(batch: int, K: int, d: int, L: int, N: int, has_D: bool = True,
                         has_z: bool = False) -> int:
    """MACs of one forward, fvcore style: 9 * bKdLN as VMamba, MaIR and MobileMamba, + bKdL each for D and z.
    LBMamba's window pass is not added, so figures stay comparable."""
    flops = 9 * batch * K * d * L * N
    if has_D:
        flops += batch * K * d * L
    if has_z:
        flops += batch * K * d * L
    return flops


def selective_scan_flop_jit(inputs, outputs) -> int:
    """fvcore / mmengine handle: `FlopCountAnalysis(...).set_op_handle("vimamba::selective_scan", this)`."""
    batch, K, d, L = jit_sizes(inputs[0])
    return selective_scan_flops(batch, K, d, L, jit_sizes(inputs[2])[-1], jit_sizes(inputs[5]) is not None,
                                jit_sizes(inputs[6]) is not None)


@register_flop_formula(torch.ops.vimamba.selective_scan)
def _flops(u_shape, delta_shape, A_shape, B_shape, C_shape, D_shape, z_shape, *args, **kwargs):
    batch, K, d, L = u_shape
    return selective_scan_flops(batch, K, d, L, A_shape[-1], D_shape is not None, z_shape is not None)


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
        trusted = True
    elif isinstance(order, Tensor):
        index = order
        trusted = False
    else:
        raise TypeError(f"order: expected a vimamba.scans.ScanOrder, a (K, L) long tensor or None, "
                        f"got {describe(order)}")
    if index.dtype != torch.long:
        raise TypeError(f"order: expected an index of dtype torch.int64, got {describe(index)}")
    if index.dim() == 1 and K == 1:
        index = index[None]
    if index.dim() != 2 or index.size(0) != K or index.size(1) != L:
        raise ValueError(f"order: expected an index of shape (K, L) = {(K, L)}, got {describe(index)}")
    if index.device != device:
        raise ValueError(f"order: expected an index on {device} (the device of u), got {describe(index)}")
    if not trusted and index.device.type != "meta" and not torch.compiler.is_compiling():
        steps = torch.arange(L, device=index.device)
        if not torch.equal(index.sort(dim=1).values, steps.expand(K, L)):
            raise ValueError(f"order: every row of the index must be a permutation of 0..{L - 1}, "
                             f"got {describe(index)} that is not")
    return index.contiguous(), local_window


def _check_arguments(u, delta, A, B, C, D, z, delta_bias, delta_softplus, order, local_window,
                     return_last_state, backend, merge=None):
    """The argument checks of `selective_scan`; returns (3-D layout?, index or None, local window, backend)."""
    if not isinstance(u, Tensor):
        raise TypeError(f"u: expected a tensor (batch, K, d, L) or (batch, d, L), got {describe(u)}")
    if u.dim() not in (3, 4):
        raise ValueError(f"u: expected 4 dims (batch, K, d, L) or 3 dims (batch, d, L), got {describe(u)}")
    if u.dtype not in FLOAT_DTYPES:
        raise TypeError(f"u: expected float16, bfloat16, float32 or float64, got {describe(u)}")
    squeeze = u.dim() == 3
    if squeeze:
        batch, d, L = u.shape
        K = 1
    else:
        batch, K, d, L = u.shape
    if not isinstance(A, Tensor) or A.dim() != (2 if squeeze else 3):
        expected = "(d, N) for a 3-D u" if squeeze else "(K, d, N) for a 4-D u"
        raise ValueError(f"A: expected shape {expected}, got {describe(A)}")
    N = A.shape[-1]
    k_ = () if squeeze else (K,)
    k_text = "" if squeeze else "K, "
    dev = u.device
    check_tensor("A", A, k_ + (d, N), f"({k_text}d, N)", dev)
    check_tensor("delta", delta, tuple(u.shape), "like u", dev)
    check_tensor("B", B, (batch,) + k_ + (N, L), f"(batch, {k_text}N, L)", dev)
    check_tensor("C", C, (batch,) + k_ + (N, L), f"(batch, {k_text}N, L)", dev)
    if merge is not None and merge not in ("mean", "sum"):
        raise ValueError(f"merge: expected None, 'mean' or 'sum', got {merge!r}")
    if merge is not None and return_last_state:
        raise ValueError("return_last_state: not available with merge (the merged output has no per-direction state)")
    if z is not None and merge is not None:
        check_tensor("z", z, (batch, d, L), "(batch, d, L): one gate for the merged directions", dev)
    elif z is not None:
        check_tensor("z", z, tuple(u.shape), "like u", dev)
    if D is not None:
        check_tensor("D", D, k_ + (d,), f"({k_text}d)", dev)
    if delta_bias is not None:
        check_tensor("delta_bias", delta_bias, k_ + (d,), f"({k_text}d)", dev)
    for name, t in (("delta", delta), ("B", B), ("C", C), ("z", z)):
        if t is not None and t.dtype != u.dtype:
            raise TypeError(f"{name}: expected dtype {u.dtype} (the dtype of u; u, delta, z, B and C "
                            f"must share one), got {describe(t)}")

    if not isinstance(delta_softplus, bool):
        raise TypeError(f"delta_softplus: expected a bool, got {describe(delta_softplus)}")
    if not isinstance(return_last_state, bool):
        raise TypeError(f"return_last_state: expected a bool, got {describe(return_last_state)}")
    if isinstance(local_window, bool) or not isinstance(local_window, int):
        raise TypeError(f"local_window: expected an int >= 0, got {describe(local_window)}")
    if local_window < 0:
        raise ValueError(f"local_window: expected an int >= 0 (0 = plain scan), got {local_window}")
    name = backend_argument(backend, "selective_scan")

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
    merge: Optional[str] = None,
):
    """Selective scan over K directions (recurrence in the module docstring).

    Args:
        u, delta, z: (batch, K, d, L), or (batch, d, L) for K = 1; with `merge`, z is (batch, d, L). Token order.
        A: (K, d, N); B, C: (batch, K, N, L); D, delta_bias: (K, d); no K for K = 1. u, delta, z, B, C: one dtype.
        delta_softplus: delta <- softplus(delta + delta_bias).
        order: a `ScanOrder` / `GridOrder`, a (K, L) long tensor (step t visits token index[k, t]) or None (0..L-1).
        local_window: W > 0 for LBMamba's window scan; 0: the plain scan, or a ScanOrder's own `local_window`.
        return_last_state: also return the last forward state, (batch, K, d, N) fp32, not differentiable.
        backend: "auto" (None), "reference", "triton" or "mamba_ssm"; VIMAMBA_BACKEND overrides "auto".
        merge: None, "mean" or "sum": merge the directions, then gate by silu(z), in one pass.
    Returns:
        y in u's dtype and shape, in token order (merged: (batch, d, L), u[:, 0]'s layout), or (y, last_state).
    """
    args = (u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    proxy = fx_proxy(args)
    if proxy is not None:
        if isinstance(order, ScanOrder):
            if order.local_window and not local_window:
                local_window = order.local_window
            order = order.index
        return proxy.tracer.create_proxy(
            "call_function", selective_scan, args,
            dict(order=order, local_window=local_window, return_last_state=return_last_state, backend=backend,
                 merge=merge))
    squeeze, index, local_window, name = checked(_check_arguments, *args, order, local_window, return_last_state,
                                                 backend, merge)
    gate = None
    if merge is not None:
        gate, z = z, None

    if squeeze:
        u, delta, B, C, A = u[:, None], delta[:, None], B[:, None], C[:, None], A[None]
        z = None if z is None else z[:, None]
        D = None if D is None else D[None]
        delta_bias = None if delta_bias is None else delta_bias[None]
    # The kernels read u, delta, z, B, C in any layout.
    A, D, delta_bias = [None if t is None else t.contiguous() for t in (A, D, delta_bias)]
    grid = None
    if isinstance(index, GridOrder):
        grid, index = list(index), None
    y, last_state = _selective_scan_op(
        u, delta, A, B, C, D, z, delta_bias, index, delta_softplus, local_window, name, grid)
    if merge is not None:
        scale = 1.0 / y.shape[1] if merge == "mean" else 1.0
        save = torch.is_grad_enabled() and (y.requires_grad or (gate is not None and gate.requires_grad))
        return _merge_gate_op(y, gate, scale, save, name)[0]
    if squeeze:
        y = y[:, 0]
    return (y, last_state) if return_last_state else y
