"""`causal_conv1d`: Mamba's depthwise conv before the scan, K directions from one input, SiLU fused."""
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula

from .dispatch import (FLOAT_DTYPES, Op, backend_argument, check_tensor, checked, describe, fake_grad_outputs, fx_proxy,
                       grad_outputs, jit_sizes, present_grads, run)

_MAX_KERNEL = 8


def _flags(reverse) -> Tuple[bool, ...]:
    return tuple(bool(r) for r in reverse)


def _causal_conv1d_impl(x: Tensor, weight: Tensor, bias: Optional[Tensor], reverse: List[int], silu: bool,
                        backend: str) -> Tensor:
    """Normalised causal conv; reverse as K ints 0 / 1 (torch.jit, which FLOP counters use, traces no bool lists)."""
    u = run("causal_conv1d", "fwd", backend, x, weight, bias, _flags(reverse), silu)
    return u.transpose(0, 1).contiguous().transpose(0, 1)


_causal_conv1d_op = Op("causal_conv1d", _causal_conv1d_impl)


@_causal_conv1d_op.register_fake
def _(x, weight, bias, reverse, silu, backend):
    batch, length, channels = x.shape
    return x.new_empty((weight.shape[0], batch, length, channels)).transpose(0, 1)


def _causal_conv1d_bwd_impl(du: Tensor, x: Tensor, weight: Tensor, bias: Optional[Tensor], reverse: List[int],
                            silu: bool, backend: str) -> Tuple[Tensor, Tensor, Tensor]:
    """Gradients (dx, dweight, dbias) in the layouts of x, weight, bias; an empty dbias without bias."""
    grads = run("causal_conv1d", "bwd", backend, du, x, weight, bias, _flags(reverse), silu)
    return grad_outputs(grads, (x, weight, bias))


_causal_conv1d_bwd_op = Op("causal_conv1d_bwd", _causal_conv1d_bwd_impl)


@_causal_conv1d_bwd_op.register_fake
def _(du, x, weight, bias, reverse, silu, backend):
    return fake_grad_outputs((x, weight, bias))


def _setup_context(ctx, inputs, output):
    # Only the inputs: the backward recomputes the conv (cheaper than keeping K pre-activation copies).
    ctx.save_for_backward(*inputs[:3])
    ctx.options = tuple(inputs[3:])


def _backward(ctx, du):
    saved = ctx.saved_tensors
    grads = _causal_conv1d_bwd_op(du, *saved, *ctx.options)
    return present_grads(grads, saved) + (None,) * len(ctx.options)


_causal_conv1d_op.register_autograd(_backward, setup_context=_setup_context)


def causal_conv1d_flops(batch: int, K: int, L: int, E: int, k: int) -> int:
    """Multiply-accumulates of one forward, fvcore style (one MAC = one FLOP; bias and SiLU not counted)."""
    return batch * K * L * E * k


def causal_conv1d_flop_jit(inputs, outputs) -> int:
    """fvcore / mmengine handle for the traced `vimamba::causal_conv1d` node."""
    batch, length, channels = jit_sizes(inputs[0])
    K, _, k = jit_sizes(inputs[1])
    return causal_conv1d_flops(batch, K, length, channels, k)


@register_flop_formula(torch.ops.vimamba.causal_conv1d)
def _flops(x_shape, weight_shape, *args, **kwargs):
    batch, length, channels = x_shape
    return causal_conv1d_flops(batch, weight_shape[0], length, channels, weight_shape[-1])


def _check_arguments(x, weight, bias, reverse, silu, backend) -> str:
    if not isinstance(x, Tensor):
        raise TypeError(f"x: expected a tensor (B, L, E), got {describe(x)}")
    if x.dim() != 3:
        raise ValueError(f"x: expected 3 dims (B, L, E), got {describe(x)}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"x: expected float16, bfloat16, float32 or float64, got {describe(x)}")
    channels = x.shape[-1]
    if not isinstance(weight, Tensor):
        raise TypeError(f"weight: expected a tensor (K, E, k), got {describe(weight)}")
    if weight.dim() != 3 or weight.shape[0] < 1 or weight.shape[1] != channels or not (
            1 <= weight.shape[2] <= _MAX_KERNEL):
        raise ValueError(f"weight: expected shape (K, E, k) with K >= 1 directions, E = {channels} (the channels "
                         f"of x) and a kernel k from 1 to {_MAX_KERNEL}, got {describe(weight)}")
    check_tensor("weight", weight, tuple(weight.shape), "(K, E, k)", x.device, "x")
    K = weight.shape[0]
    if bias is not None:
        check_tensor("bias", bias, (K, channels), "(K, E)", x.device, "x")
    if not isinstance(reverse, (tuple, list)) or not all(isinstance(r, bool) for r in reverse):
        raise TypeError(f"reverse: expected a tuple of K bools (one per direction: True scans L-1 .. 0), "
                        f"got {describe(reverse)}")
    if len(reverse) != K:
        raise ValueError(f"reverse: expected K = {K} bools (one per direction of weight {tuple(weight.shape)}), "
                         f"got {len(reverse)}: {tuple(reverse)}")
    if not isinstance(silu, bool):
        raise TypeError(f"silu: expected a bool, got {describe(silu)}")
    return backend_argument(backend, "causal_conv1d")


def causal_conv1d(
    x: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    reverse: Sequence[bool] = (False,),
    silu: bool = True,
    backend: Optional[str] = None,
) -> Tensor:
    """Depthwise conv over the tokens of x, causal in each of K scan directions (reversed: tokens >= l), in fp32.

    Args:
        x: (B, L, E), any float dtype; copied unless a token's channels are contiguous.
        weight: (K, E, k), k from 1 to 8; bias: (K, E) or None. Any float dtypes; gradients come back in theirs.
        reverse: K bools, True where the direction scans L-1 .. 0.
        silu: apply SiLU to the conv output.
        backend: "auto" (None), "reference" or "triton"; VIMAMBA_BACKEND overrides "auto"; "mamba_ssm" = "auto".
    Returns:
        u (B, K, L, E) in x's dtype, direction-major (u.transpose(2, 3) is the scan's fastest layout).
    """
    proxy = fx_proxy((x, weight, bias))
    if proxy is not None:
        return proxy.tracer.create_proxy("call_function", causal_conv1d, (x, weight, bias),
                                         dict(reverse=reverse, silu=silu, backend=backend))
    name = checked(_check_arguments, x, weight, bias, reverse, silu, backend)
    if x.stride(-1) != 1:
        x = x.contiguous()
    weight = weight.contiguous()
    bias = None if bias is None else bias.contiguous()
    return _causal_conv1d_op(x, weight, bias, [int(r) for r in reverse], silu, name)
