"""The one call from a mixer to the op: the pattern's order for the concrete grid, then the selective scan."""
from typing import Optional

import torch
import torch.fx
from timm.layers import register_notrace_function

from vimamba import ops
from vimamba.scans import ScanPattern

__all__ = ['pattern_scan']


@register_notrace_function
def pattern_scan(
        u: torch.Tensor,
        delta: torch.Tensor,
        A: torch.Tensor,
        B: torch.Tensor,
        C: torch.Tensor,
        D: torch.Tensor,
        delta_bias: torch.Tensor,
        pattern: Optional[ScanPattern],
        height: int,
        width: int,
        merge: Optional[str] = None,
        gate: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Selective scan in every direction of `pattern` (None: tokens 0..L-1) over a height x width grid (an FX leaf).
    u (b, K, d, L) or (b, d, L) shared; delta (b, K, d, L); B, C (b, K, N, L); A (K, d, N); D, delta_bias (K, d).
    Returns y (b, K, d, L) in token order, or with `merge` ("mean" / "sum") (b, d, L) gated by silu(gate)."""
    args = (u, delta, A, B, C, D, delta_bias, pattern, height, width, merge, gate)
    proxy = next((a for a in args if isinstance(a, torch.fx.Proxy)), None)
    if proxy is not None:
        return proxy.tracer.create_proxy('call_function', pattern_scan, args, {})
    order = None if pattern is None else pattern.op_order(height, width, u.device)
    window = 0 if pattern is None else pattern.local_window(height, width)
    if u.dim() == 3:
        u = u.unsqueeze(1).expand(-1, delta.shape[1], -1, -1)
    return ops.selective_scan(u, delta, A, B, C, D, gate, delta_bias, True, order=order, local_window=window,
                              merge=merge)
