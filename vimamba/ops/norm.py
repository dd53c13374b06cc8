"""`add_rms_norm`: residual add and RMSNorm in one pass (no FLOP formula: fvcore skips elementwise work)."""
from typing import Optional, Tuple

import torch
from torch import Tensor

from .dispatch import FLOAT_DTYPES, Op, backend_argument, check_tensor, checked, describe, fx_proxy, run


def _add_rms_norm_impl(hidden: Tensor, residual: Optional[Tensor], weight: Tensor, eps: float,
                       residual_dtype: torch.dtype, out_dtype: torch.dtype, backend: str) -> Tuple[Tensor, Tensor]:
    """Normalised add + RMSNorm over contiguous inputs."""
    normed, residual_out = run("add_rms_norm", "fwd", backend, hidden, residual, weight, eps, residual_dtype,
                               out_dtype)
    return normed.contiguous(), residual_out.contiguous()


_add_rms_norm_op = Op("add_rms_norm", _add_rms_norm_impl)


@_add_rms_norm_op.register_fake
def _(hidden, residual, weight, eps, residual_dtype, out_dtype, backend):
    return (hidden.new_empty(hidden.shape, dtype=out_dtype), hidden.new_empty(hidden.shape, dtype=residual_dtype))


def _add_rms_norm_bwd_impl(dnormed: Tensor, dresidual_out: Optional[Tensor], residual_out: Tensor, weight: Tensor,
                           eps: float, hidden_dtype: torch.dtype, residual_in_dtype: Optional[torch.dtype],
                           backend: str) -> Tuple[Tensor, Tensor, Tensor]:
    """(dhidden, dresidual, dweight); dresidual empty when dhidden is its gradient too (outputs may not alias)."""
    dhidden, dresidual, dweight = run("add_rms_norm", "bwd", backend, dnormed, dresidual_out, residual_out, weight,
                                      eps, hidden_dtype, residual_in_dtype)
    return (dhidden.contiguous(), residual_out.new_empty(0) if dresidual is None else dresidual.contiguous(),
            dweight.contiguous())


_add_rms_norm_bwd_op = Op("add_rms_norm_bwd", _add_rms_norm_bwd_impl)


@_add_rms_norm_bwd_op.register_fake
def _(dnormed, dresidual_out, residual_out, weight, eps, hidden_dtype, residual_in_dtype, backend):
    shape = residual_out.shape
    write_dr = residual_in_dtype is not None and residual_in_dtype != hidden_dtype
    return (residual_out.new_empty(shape, dtype=hidden_dtype),
            residual_out.new_empty(shape, dtype=residual_in_dtype) if write_dr else residual_out.new_empty(0),
            torch.empty_like(weight))


def _setup_context(ctx, inputs, output):
    hidden, residual, weight, eps, residual_dtype, out_dtype, backend = inputs
    # residual_out is kept anyway (the next block's input); the backward recomputes rstd.
    ctx.save_for_backward(output[1], weight)
    ctx.eps, ctx.backend = eps, backend
    ctx.hidden_dtype = hidden.dtype
    ctx.residual_in_dtype = None if residual is None else residual.dtype


def _backward(ctx, dnormed, dresidual_out):
    residual_out, weight = ctx.saved_tensors
    if dnormed is None:
        dnormed = torch.zeros_like(residual_out)
    dhidden, dresidual, dweight = _add_rms_norm_bwd_op(
        dnormed, dresidual_out, residual_out, weight, ctx.eps, ctx.hidden_dtype, ctx.residual_in_dtype,
        ctx.backend)
    if ctx.residual_in_dtype is None:
        dresidual = None
    elif ctx.residual_in_dtype == ctx.hidden_dtype:
        dresidual = dhidden  # the same gradient, as autograd's add hands it to both summands
    return dhidden, dresidual, dweight, None, None, None, None


_add_rms_norm_op.register_autograd(_backward, setup_context=_setup_context)


def _check_dtype_argument(name: str, dtype) -> None:
    if dtype is not None and (not isinstance(dtype, torch.dtype) or dtype not in FLOAT_DTYPES):
        raise TypeError(f"{name}: expected None or a float dtype (float16, bfloat16, float32 or float64), "
                        f"got {describe(dtype)}")


def _check_arguments(hidden, residual, weight, eps, residual_dtype, out_dtype, backend) -> str:
    if not isinstance(hidden, Tensor):
        raise TypeError(f"hidden: expected a tensor (..., D), got {describe(hidden)}")
    if hidden.dim() < 1 or hidden.shape[-1] < 1:
        raise ValueError(f"hidden: expected a tensor (..., D) with D >= 1, got {describe(hidden)}")
    if hidden.dtype not in FLOAT_DTYPES:
        raise TypeError(f"hidden: expected float16, bfloat16, float32 or float64, got {describe(hidden)}")
    if residual is not None:
        check_tensor("residual", residual, tuple(hidden.shape), "like hidden", hidden.device, "hidden")
    check_tensor("weight", weight, (hidden.shape[-1],), "(D,), D the last dim of hidden", hidden.device, "hidden")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        raise TypeError(f"eps: expected a float >= 0, got {describe(eps)}")
    if not eps >= 0:
        raise ValueError(f"eps: expected a float >= 0, got {eps!r}")
    _check_dtype_argument("residual_dtype", residual_dtype)
    _check_dtype_argument("out_dtype", out_dtype)
    return backend_argument(backend, "add_rms_norm")


def add_rms_norm(
    hidden: Tensor,
    residual: Optional[Tensor],
    weight: Tensor,
    eps: float = 1e-5,
    residual_dtype: Optional[torch.dtype] = None,
    out_dtype: Optional[torch.dtype] = None,
    backend: Optional[str] = None,
) -> Tuple[Tensor, Tensor]:
    """Residual add and RMSNorm over the last dim in one pass, computed in fp32 (fp64 if an input is):
    residual_out = residual + hidden; normed = residual_out * rsqrt(mean(residual_out^2, -1) + eps) * weight.

    Args:
        hidden: (..., D); residual: like hidden, or None (the first block); weight: (D,). Any float dtypes.
        residual_dtype: of residual_out; None: hidden's and residual's dtypes promoted (torch's add).
        out_dtype: of normed; None: hidden's.
        backend: "auto" (None), "reference" or "triton"; VIMAMBA_BACKEND overrides "auto"; "mamba_ssm" = "auto".
    Returns:
        (normed, residual_out), contiguous, in hidden's shape.
    """
    args = (hidden, residual, weight, eps, residual_dtype, out_dtype)
    proxy = fx_proxy(args)
    if proxy is not None:
        return proxy.tracer.create_proxy("call_function", add_rms_norm, args, dict(backend=backend))
    name = checked(_check_arguments, *args, backend)
    if residual_dtype is None:
        residual_dtype = hidden.dtype if residual is None else torch.promote_types(hidden.dtype, residual.dtype)
    if out_dtype is None:
        out_dtype = hidden.dtype
    hidden = hidden.contiguous()
    residual = None if residual is None else residual.contiguous()
    return _add_rms_norm_op(hidden, residual, weight.contiguous(), float(eps), residual_dtype,
                                          out_dtype, name)
