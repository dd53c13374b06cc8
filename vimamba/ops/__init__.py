"""Public ops: `selective_scan`, `causal_conv1d` and `add_rms_norm` (docs/ops.md states the contract).

Each op is built the same way, one module per op (scan.py, conv.py, norm.py) on what dispatch.py shares:
- the public function checks its arguments, normalises them and calls the registered custom op; under symbolic
  tracing (torch.fx) it is one leaf call, and under torch.jit tracing (FLOP counters) its checks stay quiet;
- `torch.ops.vimamba.<op>`: the custom op (one opaque node for torch.compile and for the jit trace of fvcore /
  mmengine FLOP counters) with a fake (meta) implementation and an autograd formula that calls the backend's
  backward through a second op, `torch.ops.vimamba.<op>_bwd`;
- backends: modules with `<op>_fwd` / `<op>_bwd` (the kernels/*_reference.py files state the interfaces), chosen
  per call by `resolve_backend` ("auto", the default: triton on CUDA, reference otherwise; VIMAMBA_BACKEND
  overrides "auto") and imported on first use.
"""
from .conv import causal_conv1d, causal_conv1d_flop_jit, causal_conv1d_flops
from .dispatch import available_backends, resolve_backend
from .norm import add_rms_norm
from .scan import selective_scan, selective_scan_flop_jit, selective_scan_flops

__all__ = ["selective_scan", "selective_scan_flops", "selective_scan_flop_jit", "causal_conv1d",
           "causal_conv1d_flops", "causal_conv1d_flop_jit", "add_rms_norm", "available_backends", "resolve_backend"]
