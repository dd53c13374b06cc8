"""Deployment: `torch.export` and ONNX for every vimamba model.

Registers plain-op decompositions of the custom ops in `torch._decomp.decomposition_table`, which
`torch.onnx.export` (dynamo) uses: the scan becomes an ONNX `Scan` over time (LBMamba's windows a second,
reversed one), the conv one depthwise `Conv` per direction. torch.export keeps the ops opaque; use
`ep.run_decompositions(decompositions())`. The TorchScript exporter (`dynamo=False`) is not supported.
"""
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from . import ops as _ops  # noqa: F401  registers torch.ops.vimamba.*
from .scans import base as _scan_base
from .kernels import add_rms_norm_reference, causal_conv1d_reference, merge_gate_reference
from .ops.scan import merge_gate_fake

__all__ = ["decompositions", "export_program", "export_onnx"]


def _gather_steps(x: Tensor, index: Optional[Tensor]) -> Tensor:
    return x if index is None else x.gather(-1, index[None, :, None, :].expand(x.shape))


def _time_major(x: Tensor, index: Optional[Tensor], dtype: torch.dtype) -> Tensor:
    """(b, K, c, L) in token order -> (L, b, K, c) in scan order."""
    return _gather_steps(x.to(dtype), index).permute(3, 0, 1, 2)


def selective_scan_decomposition(u, delta, A, B, C, D, z, delta_bias, index, delta_softplus: bool,
                                 local_window: int, backend: str = "auto", order_grid=None) -> Tuple[Tensor, Tensor]:
    """`vimamba::selective_scan` in standard ops, the loop over time as one scan (same arguments and results)."""
    from torch._higher_order_ops.scan import scan

    if torch.compiler.is_compiling() and not _scan_base._is_exporting():
        # torch.compile asks this table for output shapes only (dynamic batch), where a scan cannot trace.
        return torch.empty_like(u), u.new_empty((*u.shape[:3], A.shape[-1]), dtype=torch.float32)

    if order_grid:
        index = _scan_base.pattern_by_key(order_grid[0]).order(order_grid[1], order_grid[2], u.device).index
    acc = torch.float64 if u.dtype == torch.float64 else torch.float32
    dt = delta.to(acc)
    if delta_bias is not None:
        dt = dt + delta_bias.to(acc)[None, :, :, None]
    if delta_softplus:
        dt = F.softplus(dt)
    A = A.to(acc)
    xs = (_time_major(dt, index, acc), _time_major(u, index, acc), _time_major(B, index, acc),
          _time_major(C, index, acc))

    def forward_step(h, x):
        dt_t, u_t, B_t, C_t = x
        h = torch.exp(dt_t[..., None] * A) * h + (dt_t * u_t)[..., None] * B_t[:, :, None, :]
        return h, (h * C_t[:, :, None, :]).sum(-1)

    batch, K, d, length = u.shape
    h0 = torch.zeros((batch, K, d, A.shape[-1]), dtype=acc, device=u.device)
    last_state, y = scan(forward_step, h0, xs)
    if local_window > 0 and length > 0:
        y = y + _local_reverse(xs, A, min(local_window, length))
    y = y.permute(1, 2, 3, 0)
    if index is not None:
        y = _gather_steps(y, torch.argsort(index, dim=1))
    if D is not None:
        y = y + D.to(acc)[None, :, :, None] * u.to(acc)
    if z is not None:
        y = y * F.silu(z.to(acc))
    return y.to(u.dtype), last_state.float()


def _local_reverse(xs, A: Tensor, window: int) -> Tensor:
    """C_t . (r_t - delta_t B_t u_t) of LBMamba's in-window reverse recurrence, (L, b, K, d), all windows at once."""
    from torch._higher_order_ops.scan import scan

    length = xs[0].shape[0]
    windows = -(-length // window)
    pad = windows * window - length

    def by_window(x):
        # Zero padding is the identity step (decay exp(0) = 1, input 0): it leaves the reverse state at 0.
        x = F.pad(x, (0, 0) * (x.dim() - 1) + (0, pad))
        return x.reshape((windows, window) + x.shape[1:]).transpose(0, 1)

    def reverse_step(r, x):
        dt_t, u_t, B_t, C_t = x
        # r_t - input_t is the decayed later state: what the window adds to the forward state at t.
        carried = torch.exp(dt_t[..., None] * A) * r
        r = carried + (dt_t * u_t)[..., None] * B_t[..., None, :]
        return r, (carried * C_t[..., None, :]).sum(-1)

    dt = by_window(xs[0])
    r0 = torch.zeros(dt.shape[1:] + A.shape[-1:], dtype=dt.dtype, device=dt.device)
    _, y = scan(reverse_step, r0, tuple(by_window(x) for x in xs), reverse=True)
    return y.transpose(0, 1).reshape((windows * window,) + y.shape[2:])[:length]


def causal_conv1d_decomposition(x: Tensor, weight: Tensor, bias: Optional[Tensor], reverse: Sequence[int],
                                silu: bool, backend: str = "auto") -> Tensor:
    """`vimamba::causal_conv1d` as one depthwise conv per direction (same arguments and result)."""
    return causal_conv1d_reference.conv_forward(x, weight, bias, [bool(r) for r in reverse], silu).to(x.dtype)


def merge_gate_decomposition(y: Tensor, z: Optional[Tensor], scale: float, save_merged: bool,
                             backend: str = "auto") -> Tuple[Tensor, Tensor]:
    """`vimamba::merge_gate` in plain ops (the reference backend's forward)."""
    if torch.compiler.is_compiling() and not _scan_base._is_exporting():
        return merge_gate_fake(y, z, scale, save_merged, backend)  # shapes only, as for the scan
    out, merged = merge_gate_reference.merge_gate_fwd(y, z, scale, save_merged and z is not None)
    return out, (y.new_empty(0) if merged is None else merged)


def add_rms_norm_decomposition(hidden, residual, weight, eps: float, residual_dtype, out_dtype,
                               backend: str = "auto") -> Tuple[Tensor, Tensor]:
    """`vimamba::add_rms_norm` in plain ops (the reference backend's forward)."""
    return add_rms_norm_reference.add_rms_norm_fwd(hidden, residual, weight, eps, residual_dtype, out_dtype)


def decompositions() -> Dict[torch._ops.OpOverload, Callable]:
    """The plain-op forms of the vimamba ops, for `ExportedProgram.run_decompositions`."""
    return {
        torch.ops.vimamba.selective_scan.default: selective_scan_decomposition,
        torch.ops.vimamba.merge_gate.default: merge_gate_decomposition,
        torch.ops.vimamba.causal_conv1d.default: causal_conv1d_decomposition,
        torch.ops.vimamba.add_rms_norm.default: add_rms_norm_decomposition,
    }


def _register() -> None:
    table = torch._decomp.decomposition_table
    for op, fn in decompositions().items():
        table.setdefault(op, fn)
    _register_torchscript_refusal()


def _register_torchscript_refusal() -> None:
    """`torch.onnx.export(..., dynamo=False)` stops at our ops with an error naming the supported call."""
    try:
        from torch.onnx import register_custom_op_symbolic
        from torch.onnx.errors import SymbolicValueError
    except ImportError:
        return

    def refuse(name):
        def symbolic(g, *args, **kwargs):
            raise SymbolicValueError(
                f"vimamba::{name}: the TorchScript-based ONNX exporter (dynamo=False) is not supported; call "
                f"torch.onnx.export(model, args, dynamo=True) (the default), which lowers the op to standard ONNX",
                args[0] if args else None)
        return symbolic

    for name in ("selective_scan", "merge_gate", "causal_conv1d", "add_rms_norm"):
        try:
            register_custom_op_symbolic(f"vimamba::{name}", refuse(name), 9)
        except Exception:  # a torch whose TorchScript exporter is gone
            return


def export_program(model: torch.nn.Module, example: Tensor, *, dynamic_batch: bool = True
                   ) -> torch.export.ExportedProgram:
    """`torch.export.export` of `model` (eval mode) for inputs like `example` (B, C, H, W), dynamic batch.
    The image size is fixed: scan orders are per-grid constants."""
    if not isinstance(example, Tensor) or example.dim() != 4:
        got = tuple(example.shape) if isinstance(example, Tensor) else type(example).__name__
        raise ValueError(f"example: expected an image batch tensor (batch, C, H, W), got {got}")
    model.eval()
    if dynamic_batch and example.shape[0] == 1:
        example = example.expand(2, *example.shape[1:])  # torch.export specialises a dynamic dim traced at size 1
    shapes = {_input_name(model): {0: torch.export.Dim("batch", min=1, max=4096)}} if dynamic_batch else None
    return torch.export.export(model, (example,), dynamic_shapes=shapes)


def export_onnx(model: torch.nn.Module, example: Tensor, path: str, *, dynamic_batch: bool = True,
                opset_version: Optional[int] = None, optimize: bool = True):
    """Write `model` (eval mode) to ONNX `path` (dynamo exporter, "input" -> "output"); returns the ONNXProgram."""
    if not isinstance(path, str) or not path:
        raise ValueError(f"path: expected a file name, got {path!r}")
    program = export_program(model, example, dynamic_batch=dynamic_batch)
    onnx_program = torch.onnx.export(program, (example,), input_names=["input"], output_names=["output"],
                                     opset_version=opset_version, optimize=optimize, dynamo=True)
    onnx_program.save(path)
    return onnx_program


def _input_name(model: torch.nn.Module) -> str:
    import inspect
    return next(iter(inspect.signature(model.forward).parameters))


_register()
