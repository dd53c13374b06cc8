"""Public ops: `selective_scan`, `causal_conv1d` and `add_rms_norm` (docs/ops.md states the contract)."""
from .conv import causal_conv1d, causal_conv1d_flop_jit, causal_conv1d_flops
from .dispatch import available_backends, resolve_backend
from .norm import add_rms_norm
from .scan import selective_scan, selective_scan_flop_jit, selective_scan_flops

__all__ = ["selective_scan", "selective_scan_flops", "selective_scan_flop_jit", "causal_conv1d",
           "causal_conv1d_flops", "causal_conv1d_flop_jit", "add_rms_norm", "available_backends", "resolve_backend"]
