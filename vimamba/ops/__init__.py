"""Public ops: `selective_scan`, `causal_conv1d` and `add_rms_norm` (docs/ops.md states the contract).

One module per op (scan.py, conv.py, norm.py), each built the same way on what dispatch.py shares:
- the public function checks its arguments, normalises them and calls the registered custom op; it is one leaf
  call under symbolic tracing (torch.fx);
- `torch.ops.vimamba.<op>`: the custom op (one opaque node for torch.compile and for the jit trace of fvcore /
  mmengine FLOP counters), with a fake implementation and an autograd formula calling `torch.ops.vimamba.<op>_bwd`;
- backends: modules with `<op>_fwd` / `<op>_bwd` (kernels/*_reference.py state the interfaces), imported on first
  use and chosen per call by `resolve_backend` ("auto": triton on CUDA, else reference; VIMAMBA_BACKEND overrides).
"""
from .conv import causal_conv1d, causal_conv1d_flop_jit, causal_conv1d_flops
from .dispatch import available_backends, resolve_backend
from .norm import add_rms_norm
from .scan import selective_scan, selective_scan_flop_jit, selective_scan_flops

__all__ = ["selective_scan", "selective_scan_flops", "selective_scan_flop_jit", "causal_conv1d",
           "causal_conv1d_flops", "causal_conv1d_flop_jit", "add_rms_norm", "available_backends", "resolve_backend"]
