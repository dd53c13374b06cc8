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
    """Selective scan (softplus step) in every direction of `pattern` over a height x width token grid.

    u (b, K, d, L), or (b, d, L) shared by the K directions (expanded with stride 0, no copy); delta (b, K, d, L);
    B, C (b, K, N, L); A (K, d, N); D, delta_bias (K, d). `pattern` None scans tokens 0..L-1 (K = 1).
    Returns y (b, K, d, L) in token order, in the layout of u; with `merge` ("mean" or "sum") the directions merged
    and gated by silu(gate) (b, d, L) when given: (b, d, L) in the layout of u[:, 0].
    A leaf for FX tracing (timm's and plain torch.fx): the order depends on the concrete grid size.
    """
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
